import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { BatchesModule, BatchesMonitorModule } from 'nestjs-batches';
import { ClickCounter } from './click-counter.service.js';
import { HealthController } from './health.controller.js';
import { MetricsController } from './metrics.controller.js';

@Module({
  imports: [
    TerminusModule,
    BatchesModule.forRoot({
      broker: process.env.BROKER_URL ?? 'memory://',
      resultBackend: process.env.RESULT_BACKEND ?? 'memory://',
      defaultQueue: process.env.QUEUE ?? 'celery',
      // Prometheus metrics on prom-client's default registry, served by MetricsController (with HTTP_PORT).
      metrics: true,
    }),
    // The live page of the batches at /batches (with HTTP_PORT). No arguments or results on it: clicked URLs stay private.
    BatchesMonitorModule.forRoot({ path: '/batches' }),
  ],
  controllers: [MetricsController, HealthController],
  providers: [ClickCounter],
})
export class ClickCounterModule {}
