import type { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { WorkerActivity } from '../control/worker-activity.js';
import type { SimpleRequest } from '../simple-request.js';
import type { BatchWorker } from '../transport/batch-worker.js';

type PromClient = typeof import('prom-client');

const SIZE_BUCKETS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000];
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** The worker's metrics: BatchesMetrics registers them and records BatchEvents on them. */
export interface Instruments {
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

/** The worker's metrics, unregistered: their names, help, labels and buckets, and the gauges read on each scrape. */
export function createInstruments(prom: PromClient, prefix: string, activity: WorkerActivity, worker: BatchWorker): Instruments {
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

/** Sets `gauge` to the number of `requests` per task, 0 for handled tasks with none. */
function countByTask(gauge: Gauge<'task'>, tasks: readonly string[], requests: readonly SimpleRequest[]): void {
  const counts = new Map<string, number>();
  for (const task of tasks) counts.set(task, 0);
  for (const request of requests) counts.set(request.name, (counts.get(request.name) ?? 0) + 1);
  gauge.reset();
  for (const [task, count] of counts) gauge.set({ task }, count);
}
