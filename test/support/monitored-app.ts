import { Module, type DynamicModule, type INestApplication, type Provider } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { BatchesModule, type BatchesModuleOptions } from 'nestjs-batches';
import { AMQP_URL } from './rabbitmq.js';
import { RecordingLogger, startHybrid } from './worker-app.js';

/** A hybrid app (HTTP + the worker on RabbitMQ) as a user builds it, with the monitor's module among its imports. */
export async function startApp(
  options: BatchesModuleOptions,
  imports: DynamicModule[],
  providers: Provider[],
): Promise<{ app: INestApplication; url: string }> {
  @Module({ imports: [BatchesModule.forRoot({ broker: AMQP_URL, waitForBroker: true, ...options }), ...imports], providers })
  class MonitoredAppModule {}
  const moduleRef = await Test.createTestingModule({ imports: [MonitoredAppModule] })
    .setLogger(new RecordingLogger())
    .compile();
  return startHybrid(moduleRef);
}
