import type { SimpleRequest } from '../simple-request.js';
import type { LamportClock } from './lamport-clock.js';
import type { RevokedIds } from './revoked-ids.js';

/** A request whose batch is running, with when the batch started (Unix time in seconds, like Celery). */
export interface ActiveRequest {
  request: SimpleRequest;
  timeStart: number;
}

/** What remote control reads of the worker. */
export interface WorkerState {
  readonly hostname: string;
  readonly clock: LamportClock;
  readonly revoked: RevokedIds;
  /** Whether task events are on; `enable_events`/`disable_events` flip it, the event sender reads it. */
  eventsEnabled: boolean;
  /** Milliseconds since the Unix epoch at which the worker started. */
  readonly startedAt: number;
  /** Registered task names, sorted. */
  tasks(): string[];
  /** Consumed queues, each bound Celery's way (direct exchange of the same name, key = name). */
  queues(): string[];
  /** Buffered requests whose batch has not started. */
  reserved(): SimpleRequest[];
  /** Requests in running batches. */
  active(): ActiveRequest[];
  /** Requests started per task name since the worker started (Celery's `stats.total`). */
  processedTotals(): Record<string, number>;
  /** Batches that may run at once, over all handlers (Celery's pool `max-concurrency`). */
  concurrency(): number;
  /** The sum of the queues' prefetch windows (Celery's `prefetch_count`). */
  prefetchCount(): number;
}
