import type { BatchesStatus } from '../transport/batches.server.js';

/** A mean and a maximum over the monitor's window; null when nothing was measured in it. */
export interface MonitorSpread {
  mean: number;
  max: number;
}

/** One of a task's latest settled requests: only with `showArguments` or `showResults`. */
export interface MonitorRequestSample {
  id: string;
  state: 'SUCCESS' | 'FAILURE';
  /** When it settled (`Date.now()`). */
  at: number;
  /** `args` and `kwargs` as JSON, cut at 200 characters; only with `showArguments`. */
  args?: string;
  kwargs?: string;
  /** The result as JSON, or the error as `Name: message`, cut at 200 characters; only with `showResults`. */
  outcome?: string;
}

/** One task (one `@BatchHandler`) on the monitor page. */
export interface MonitorTaskSnapshot {
  task: string;
  queue: string;
  flushEvery: number;
  flushInterval: number;
  concurrency: number;
  /** `'fixed'` or `'adaptive'`. */
  flush: string;
  /** Whether the handler batches by key (`groupBy`). */
  grouped: boolean;
  /** Over the window. */
  batchesPerSecond: number;
  requestsPerSecond: number;
  batchSize: MonitorSpread | null;
  /** How long each batch's oldest request waited in the buffer. */
  oldestWaitMs: MonitorSpread | null;
  /** How long the handler took, completed and failed batches alike. */
  handlerMs: MonitorSpread | null;
  /** Now: requests waiting in the buffer, and in batches whose handler is running. */
  buffered: number;
  inFlight: number;
  /** Since counting began. `batches` by flush reason in `flushReasons`. */
  totals: { batches: number; requests: number; failedBatches: number; retried: number; failed: number; deadLettered: number };
  flushReasons: Record<string, number>;
  /** The latest settled requests, newest first: only with `showArguments` or `showResults`. */
  recent?: MonitorRequestSample[];
}

/** One queue the worker consumes. */
export interface MonitorQueueSnapshot {
  queue: string;
  tasks: string[];
  /** Now: requests held unacked until their ETA. */
  held: number;
  /** Since counting began: messages moved to `<queue>.dead` (spent retries and bad input). */
  deadLetters: number;
  /** The latest dead letter's reason: only with `showResults` (it may quote a handler's error). */
  lastDeadLetterReason?: string;
}

/** What the page's event stream (`<path>/events`) sends, once per `refreshInterval`. */
export interface MonitorSnapshot {
  /** When it was taken (`Date.now()`). */
  at: number;
  hostname: string;
  broker: BatchesStatus;
  /** Rates, means and maxima are over the last `windowMs` (less while counting has just begun). */
  windowMs: number;
  /** When counting began: totals count from here. */
  since: number;
  showArguments: boolean;
  showResults: boolean;
  tasks: MonitorTaskSnapshot[];
  queues: MonitorQueueSnapshot[];
}
