import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import type { Metric, Registry } from 'prom-client';
import { Subscription } from 'rxjs';
import { BATCHES_OPTIONS } from '../batches.constants.js';
import { BatchesConfigError } from '../options/option-checks.js';
import type { ResolvedModuleOptions } from '../options/resolve-module-options.js';
import { WorkerActivity } from '../control/worker-activity.js';
import { BatchWorker } from '../transport/batch-worker.js';
import { BatchEvents, type BatchEvent } from '../events/batch-events.js';
import { optionalPeer } from '../optional-peer.js';
import type { SimpleRequest } from '../simple-request.js';
import { BatchesServer, type BatchesStatus } from '../transport/batches.server.js';
import { createInstruments, type Instruments } from './metrics-instruments.js';
import type { ResolvedMetricsOptions } from './metrics-options.js';

type PromClient = typeof import('prom-client');

/** Outcomes counted by `requests_total`. */
export type RequestOutcome = 'succeeded' | 'failed' | 'retried' | 'dead_lettered' | 'revoked' | 'expired';

const STATUSES: readonly BatchesStatus[] = ['connecting', 'connected', 'disconnected', 'failed'];

/**
 * Prometheus metrics of the worker, with prom-client (an optional peer), when the module option
 * `metrics` is set. Registered on the given registry (prom-client's default `register` otherwise)
 * when the app initializes, removed from it when the app shuts down. Counters and histograms follow
 * `BatchEvents`; the buffered and in-flight gauges are read from the worker on each scrape. Serves
 * nothing over HTTP: expose `await registry.metrics()` from your own route.
 */
@Injectable()
export class BatchesMetrics implements OnModuleInit, OnApplicationShutdown {
  private readonly options?: ResolvedMetricsOptions;
  private readonly prom?: PromClient;
  private registry?: Registry;
  private registered: Metric[] = [];
  private subscription?: Subscription;

  constructor(
    @Inject(BATCHES_OPTIONS) moduleOptions: ResolvedModuleOptions,
    private readonly events: BatchEvents,
    private readonly activity: WorkerActivity,
    private readonly server: BatchesServer,
    private readonly worker: BatchWorker,
  ) {
    this.options = moduleOptions.metrics;
    // At construction, so a missing prom-client stops startup before anything connects.
    if (this.options) this.prom = optionalPeer<PromClient>('prom-client', 'BatchesModule.forRoot({ metrics })');
  }

  /** Whether the `metrics` option is set. */
  get enabled(): boolean {
    return this.options !== undefined;
  }

  /** Names of the metrics registered now (empty while off or after shutdown). */
  get names(): string[] {
    return this.registered.map(nameOf);
  }

  onModuleInit(): void {
    if (!this.options || !this.prom || this.subscription) return;
    const registry = (this.options.registry as Registry | undefined) ?? this.prom.register;
    const instruments = createInstruments(this.prom, this.options.prefix, this.activity, this.worker);
    const metrics = Object.values(instruments) as Metric[];
    const taken = metrics.map(nameOf).filter((name) => registry.getSingleMetric(name));
    if (taken.length > 0) {
      throw new BatchesConfigError(
        `BatchesModule.forRoot({ metrics }): the registry already holds ${taken.join(', ')}. ` +
          'Another app on this registry is still running: close it first, or give each app its own `metrics.prefix` or `metrics.registry`.',
      );
    }
    for (const metric of metrics) registry.registerMetric(metric);
    this.registry = registry;
    this.registered = metrics;
    this.subscription = new Subscription();
    this.subscription.add(this.events.events$.subscribe((event) => this.record(instruments, event)));
    this.subscription.add(
      this.server.status.subscribe((status) => {
        for (const each of STATUSES) instruments.broker.set({ status: each }, each === status ? 1 : 0);
      }),
    );
  }

  /** Unregisters every metric, so another app can register on the same registry. */
  onApplicationShutdown(): void {
    this.subscription?.unsubscribe();
    this.subscription = undefined;
    for (const metric of this.registered) {
      const name = nameOf(metric);
      // Only our own instance: a later app may have registered the name again.
      if (this.registry?.getSingleMetric(name) === metric) this.registry.removeSingleMetric(name);
    }
    this.registered = [];
    this.registry = undefined;
  }

  private record(metrics: Instruments, event: BatchEvent): void {
    switch (event.type) {
      case 'batch.flushed':
        metrics.batches.inc({ task: event.task, reason: event.reason });
        metrics.batchSize.observe({ task: event.task }, event.size);
        return;
      case 'batch.completed':
      case 'batch.failed':
        metrics.batchDuration.observe(
          { task: event.task, outcome: event.type === 'batch.completed' ? 'completed' : 'failed' },
          event.durationMs / 1000,
        );
        return;
      case 'request.received':
        metrics.received.inc({ task: event.task });
        return;
      case 'request.succeeded':
        return this.settled(metrics, event.task, event.queue, event.request, 'succeeded');
      case 'request.failed':
        return this.settled(metrics, event.task, event.queue, event.request, 'failed');
      case 'request.retried':
        return this.settled(metrics, event.task, event.queue, event.request, 'retried');
      case 'request.revoked':
        return this.settled(metrics, event.task, event.queue, event.request, 'revoked');
      case 'request.expired':
        return this.settled(metrics, event.task, event.queue, event.request, 'expired');
      case 'request.deadLettered':
        metrics.deadLetters.inc({ queue: event.queue });
        // A request that spent its retries was counted (and acked) as failed already; an unreadable
        // or unknown-task message has no request, and its task name is not ours to make a label of.
        if (event.request) metrics.requests.inc({ task: event.task, outcome: 'dead_lettered' });
        else metrics.acks.inc({ queue: event.queue });
        return;
      default:
        return;
    }
  }

  private settled(metrics: Instruments, task: string, queue: string, request: SimpleRequest, outcome: RequestOutcome): void {
    metrics.requests.inc({ task, outcome });
    // Eager requests (`apply()`, `eager: true`) have no message to ack.
    if (!request.deliveryInfo.isEager) metrics.acks.inc({ queue });
  }
}

/** prom-client keeps each metric's name on the instance (its types do not declare it). */
function nameOf(metric: Metric): string {
  return (metric as unknown as { name: string }).name;
}
