import { Module, type DynamicModule } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { BATCHES_BROKER, BATCHES_OPTIONS } from './batches.constants.js';
import { ConfigurableModuleClass, MODULE_OPTIONS_TOKEN, OPTIONS_TYPE } from './batches.module-definition.js';
import type { BatchesModuleOptions } from './batches.options.js';
import { resolveModuleOptions, type ResolvedModuleOptions } from './options/resolve-module-options.js';
import { AmqpBroker } from './broker/amqp.broker.js';
import type { Broker } from './broker/broker.interface.js';
import { MemoryBroker } from './broker/memory.broker.js';
import { CanvasSender } from './canvas/canvas-sender.js';
import { BatchClient } from './client/batch.client.js';
import { ConnectionsLifecycle } from './connections.lifecycle.js';
import { CeleryEvents } from './control/celery-events.js';
import { RemoteControl } from './control/remote-control.js';
import { RevokedIds } from './control/revoked-ids.js';
import { WorkerActivity } from './control/worker-activity.js';
import { BatchEventListeners } from './events/batch-event-listeners.js';
import { BatchEvents } from './events/batch-events.js';
import { HandlerExplorer } from './handler.explorer.js';
import { BatchesHealthIndicator } from './observability/batches-health.indicator.js';
import { HandlerInvokers } from './handler-invokers.js';
import { BatchesMetrics } from './observability/batches-metrics.js';
import { MemoryResultBackend } from './results/memory.result-backend.js';
import { RedisResultBackend } from './results/redis.result-backend.js';
import { ResultBackend } from './results/result-backend.js';
import { BatchWorker } from './transport/batch-worker.js';
import { BatchesServer } from './transport/batches.server.js';

function createBroker(options: ResolvedModuleOptions): Broker {
  return options.brokerUrls[0].startsWith('memory:') ? new MemoryBroker() : new AmqpBroker(options.brokerUrls, { tls: options.brokerTls });
}

function createResultBackend(options: ResolvedModuleOptions): ResultBackend {
  return options.resultBackend.startsWith('memory:')
    ? new MemoryResultBackend(options.resultExpires)
    : new RedisResultBackend(options.resultBackend, options.resultExpires, { tls: options.resultBackendTls });
}

/**
 * `BatchesModule.forRoot(options)` / `forRootAsync({ imports, inject, useFactory })`: global;
 * provides `BatchClient`, `ResultBackend` and the `BatchesServer` transport strategy.
 */
@Module({
  imports: [DiscoveryModule],
  providers: [
    {
      provide: BATCHES_OPTIONS,
      inject: [MODULE_OPTIONS_TOKEN],
      useFactory: (options: BatchesModuleOptions) => resolveModuleOptions(options),
    },
    { provide: BATCHES_BROKER, inject: [BATCHES_OPTIONS], useFactory: createBroker },
    {
      provide: CanvasSender,
      inject: [BATCHES_BROKER, BATCHES_OPTIONS],
      useFactory: (broker: Broker, options: ResolvedModuleOptions) => new CanvasSender(broker, options),
    },
    { provide: ResultBackend, inject: [BATCHES_OPTIONS], useFactory: createResultBackend },
    HandlerExplorer,
    HandlerInvokers,
    BatchWorker,
    BatchesServer,
    BatchClient,
    ConnectionsLifecycle,
    BatchEvents,
    BatchEventListeners,
    { provide: RevokedIds, useFactory: () => new RevokedIds() },
    WorkerActivity,
    RemoteControl,
    CeleryEvents,
    BatchesHealthIndicator,
    BatchesMetrics,
  ],
  exports: [ResultBackend, BatchClient, BatchesServer, BatchEvents, BATCHES_BROKER, BatchesHealthIndicator],
})
export class BatchesModule extends ConfigurableModuleClass {
  /** Options are all optional: `forRoot()` runs on the embedded `memory://` broker. */
  static override forRoot(options: typeof OPTIONS_TYPE = {}): DynamicModule {
    return super.forRoot(options);
  }
}
