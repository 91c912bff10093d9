import type { FlushReason } from 'nestjs-batches';

/** `fixed` (bufferTime: `flushEvery` or `flushInterval`) against `adaptive` (hand over when idle). */
export const POLICIES = ['fixed', 'adaptive'] as const;
export type Policy = (typeof POLICIES)[number];

export const TASK = 'bench.bulk_insert';
export const FLUSH_EVERY = 100;
export const FLUSH_INTERVAL_MS = 1000;
export const CONCURRENCY = 1;

/** The handler's cost, like a bulk insert: a round trip and commit per batch, plus a share per row. */
export const COST = { perBatchMs: 20, perRequestMs: 0.8 } as const;

export function batchCostMs(size: number): number {
  return COST.perBatchMs + COST.perRequestMs * size;
}

/** Requests per second the handler can take at best: full batches back to back (1,000/s here). */
export const CAPACITY = FLUSH_EVERY / (batchCostMs(FLUSH_EVERY) / 1000);

/** Offered load as a share of `CAPACITY`. */
export const LOADS = [0.1, 0.5, 0.9, 1.2] as const;

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Milliseconds since the epoch, sub-millisecond: comparable between the producer and the worker processes. */
export const now = (): number => performance.timeOrigin + performance.now();

/** One run: a fresh queue, one policy, one offered rate. */
export interface RunSpec {
  queue: string;
  policy: Policy;
  /** Requests per second, Poisson arrivals. */
  rate: number;
  /**
   * How long load is offered, ms. The first `warmupMs` are not measured, nor the last `cooldownMs`:
   * load keeps coming after the window so that its last requests wait as the others do, not for a
   * partial batch that only the interval flushes once the load stops.
   */
  durationMs: number;
  warmupMs: number;
  cooldownMs: number;
  /** Seeds the arrival times, so both policies of a round get the same arrivals. */
  seed: number;
  /** Task ids are `<runTag>-<index>`, so the producer subscribes to its own results only. */
  runTag: string;
}

/** The measured window, epoch ms: requests that arrived in it, batches that started in it. */
export interface Window {
  from: number;
  to: number;
}

/** What the worker saw in the window: arrival → handler start, and its batches. */
export interface WorkerReport {
  handlerStartP50Ms: number;
  handlerStartP99Ms: number;
  requests: number;
  batches: number;
  meanBatchSize: number;
  reasons: Partial<Record<FlushReason, number>>;
  /** The worker's event-loop delay over the run: how much the machine held it back (noise, not policy). */
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
}

/** What the producer saw: what it offered, arrival → result stored, and the completion rate. */
export interface ProducerReport {
  sent: number;
  /** Requests sent per second in the window (the offered load as achieved). */
  offeredRate: number;
  storedP50Ms: number;
  storedP99Ms: number;
  /** Results stored per second in the window. */
  throughput: number;
  /** Requests confirmed by the broker whose result never arrived before the producer gave up (should be 0). */
  missing: number;
  publishFailures: number;
  /** How late the producer sent, against the arrival times, p99 ms (an open loop that lags offers less). */
  sendLateP99Ms: number;
  window: Window;
}

/** One run's figures; `loadAverage` is the machine's 1-minute load average as the run ended. */
export type RunResult = { policy: Policy; load: number; round: number; loadAverage: number } & WorkerReport & ProducerReport;

/** Messages between the bench and its two children (over the fork IPC channel). */
export type ChildMessage =
  | { type: 'ready' }
  | { type: 'worker-report'; report: WorkerReport }
  | { type: 'producer-report'; report: ProducerReport }
  | { type: 'error'; message: string };
export type ParentMessage = { type: 'go' } | { type: 'stop'; window: Window };
