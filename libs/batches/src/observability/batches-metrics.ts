import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import type { Counter, Gauge, Histogram, Metric, Registry } from 'prom-client';
import { Subscription } from 'rxjs';
import { BATCHES_OPTIONS } from '../batches.constants.js';
import { BatchesConfigError, type ResolvedModuleOptions } from '../batches.options.js';
import { WorkerActivity } from '../control/worker-activity.js';
import { BatchWorker } from '../transport/batch-worker.js';
import { BatchEvents, type BatchEvent } from '../events/batch-events.js';
import { optionalPeer } from '../optional-peer.js';
import type { SimpleRequest } from '../simple-request.js';
import { BatchesServer, type BatchesStatus } from '../transport/batches.server.js';
import type { ResolvedMetricsOptions } from './metrics-options.js';

type PromClient = typeof import('prom-client');

/** Outcomes counted by `requests_total`. */
export type RequestOutcome = 'succeeded' | 'failed' | 'retried' | 'dead_lettered' | 'revoked' | 'expired';

const STATUSES: readonly BatchesStatus[] = ['connecting', 'connected', 'disconnected', 'failed'];
const SIZE_BUCKETS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000];
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

interface Instruments {
  batches: Counter<'task' | 'reason'>;
  batchSize: Histogram<'task'>;
  batchDuration: Histogram<'task' | 'outcome'>;
  requests: Counter<'task' | 'outcome'>;
  received: Counter<'task'>;
  buffered: Gauge<'task'>;
  inFlight: Gauge<'task'>;
  held: Gauge<'queue'>;
  acks: Counter<'queue'>;
  deadLetters: Counter<'queue'>;
  broker: Gauge<'status'>;
}

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
    const instruments = this.create(this.prom, this.options.prefix);
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

  private create(prom: PromClient, prefix: string): Instruments {
    const activity = this.activity;
    const registers: Registry[] = [];
    const buffered: Gauge<'task'> = new prom.Gauge({
      name: `${prefix}requests_buffered`,
      help: 'Requests waiting in a batch buffer for their flush.',
      labelNames: ['task'],
      registers,
      collect: () => countByTask(buffered, activity.tasks(), activity.reserved()),
    });
    const inFlight: Gauge<'task'> = new prom.Gauge({
      name: `${prefix}requests_in_flight`,
      help: 'Requests in batches whose handler is running.',
      labelNames: ['task'],
      registers,
      collect: () =>
        countByTask(
          inFlight,
          activity.tasks(),
          activity.active().map(({ request }) => request),
        ),
    });
    const worker = this.worker;
    const held: Gauge<'queue'> = new prom.Gauge({
      name: `${prefix}requests_held`,
      help: 'Requests held unacked until their ETA (countdown, eta, retry backoff), by queue.',
      labelNames: ['queue'],
      registers,
      collect: () => {
        for (const { queue, count } of worker.held()) held.set({ queue }, count);
      },
    });
    return {
      batches: new prom.Counter({
        name: `${prefix}batches_total`,
        help: 'Batches flushed from their buffer, by task and flush reason (count, interval, idle, evicted, shutdown).',
        labelNames: ['task', 'reason'],
        registers,
      }),
      batchSize: new prom.Histogram({
        name: `${prefix}batch_size`,
        help: 'Requests per flushed batch.',
        labelNames: ['task'],
        buckets: SIZE_BUCKETS,
        registers,
      }),
      batchDuration: new prom.Histogram({
        name: `${prefix}batch_duration_seconds`,
        help: 'Time a batch handler took, by task and outcome (completed, failed).',
        labelNames: ['task', 'outcome'],
        buckets: DURATION_BUCKETS,
        registers,
      }),
      requests: new prom.Counter({
        name: `${prefix}requests_total`,
        help: 'Requests by outcome: succeeded, failed (final), retried, dead_lettered, revoked, expired.',
        labelNames: ['task', 'outcome'],
        registers,
      }),
      received: new prom.Counter({
        name: `${prefix}requests_received_total`,
        help: 'Requests received from the broker (a retried request is received again).',
        labelNames: ['task'],
        registers,
      }),
      buffered,
      inFlight,
      held,
      acks: new prom.Counter({
        name: `${prefix}acks_total`,
        help: 'Messages acked once their request was settled (succeeded, failed, retried, revoked, expired or dead-lettered).',
        labelNames: ['queue'],
        registers,
      }),
      deadLetters: new prom.Counter({
        name: `${prefix}dead_letters_total`,
        help: 'Messages moved to the dead-letter queue <queue>.dead, by source queue (spent retries and bad input).',
        labelNames: ['queue'],
        registers,
      }),
      broker: new prom.Gauge({
        name: `${prefix}broker_connection_state`,
        help: "1 for the worker's current broker connection status, 0 for the others.",
        labelNames: ['status'],
        registers,
      }),
    };
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

/** Sets `gauge` to the number of `requests` per task, 0 for handled tasks with none. */
function countByTask(gauge: Gauge<'task'>, tasks: readonly string[], requests: readonly SimpleRequest[]): void {
  const counts = new Map<string, number>();
  for (const task of tasks) counts.set(task, 0);
  for (const request of requests) counts.set(request.name, (counts.get(request.name) ?? 0) + 1);
  gauge.reset();
  for (const [task, count] of counts) gauge.set({ task }, count);
}
