import type { BatchEvent, RequestFailedEvent, RequestSucceededEvent } from '../events/batch-events.js';
import type { MonitorRequestSample, MonitorSpread, MonitorTaskSnapshot } from './monitor-snapshot.js';

/** Latest settled requests kept per task (with `showArguments` / `showResults`). */
const RECENT = 5;
/** Longest text of one argument, result or reason on the page. */
const TEXT_LIMIT = 200;

/** What one tick saw of a task. */
interface Bucket {
  batches: number;
  requests: number;
  sizeMax: number;
  waitSum: number;
  waitMax: number;
  handled: number;
  durationSum: number;
  durationMax: number;
}

type TaskTotals = MonitorTaskSnapshot['totals'];
type TaskFigures = Pick<
  MonitorTaskSnapshot,
  'batchesPerSecond' | 'requestsPerSecond' | 'batchSize' | 'oldestWaitMs' | 'handlerMs' | 'totals' | 'flushReasons' | 'recent'
>;

class TaskTally {
  /** Newest last; at most the window's ticks. */
  readonly buckets: Bucket[] = [];
  readonly totals: TaskTotals = { batches: 0, requests: 0, failedBatches: 0, retried: 0, failed: 0, deadLettered: 0 };
  readonly reasons: Record<string, number> = {};
  readonly recent: MonitorRequestSample[] = [];

  get current(): Bucket {
    if (this.buckets.length === 0) this.buckets.push(emptyBucket());
    return this.buckets[this.buckets.length - 1];
  }
}

/** What the monitor may show of a request. */
export interface MonitorPrivacy {
  showArguments: boolean;
  showResults: boolean;
}

/**
 * The monitor's counts, fed one tick of events at a time: a sliding window of the last `ticks`
 * ticks per task (rates, means, maxima) and totals since it was created.
 */
export class MonitorWindow {
  readonly since = Date.now();
  private readonly tasks = new Map<string, TaskTally>();
  private readonly deadLetters = new Map<string, { count: number; reason?: string }>();
  private ticksSeen = 0;

  constructor(
    private readonly ticks: number,
    private readonly tickMs: number,
    private readonly privacy: MonitorPrivacy,
  ) {}

  /** The span (ms) the window's rates are over now. */
  get windowMs(): number {
    return Math.min(this.ticksSeen, this.ticks) * this.tickMs;
  }

  /** Events of one tick become the newest bucket of every task; the oldest bucket leaves the window. */
  add(events: readonly BatchEvent[]): this {
    this.ticksSeen++;
    for (const tally of this.tasks.values()) {
      tally.buckets.push(emptyBucket());
      if (tally.buckets.length > this.ticks) tally.buckets.shift();
    }
    for (const event of events) this.record(event);
    return this;
  }

  /** Whether the monitor records events of this type (the others are left out of its buffers). */
  wants(event: BatchEvent): boolean {
    switch (event.type) {
      case 'batch.flushed':
      case 'batch.completed':
      case 'batch.failed':
      case 'request.retried':
      case 'request.failed':
      case 'request.deadLettered':
        return true;
      case 'request.succeeded':
        return this.privacy.showArguments || this.privacy.showResults;
      default:
        return false;
    }
  }

  task(name: string): TaskFigures {
    const tally = this.tasks.get(name) ?? new TaskTally();
    const seconds = this.windowMs / 1000;
    let batches = 0;
    let requests = 0;
    let handled = 0;
    let waitSum = 0;
    let durationSum = 0;
    let sizeMax = 0;
    let waitMax = 0;
    let durationMax = 0;
    for (const bucket of tally.buckets) {
      batches += bucket.batches;
      requests += bucket.requests;
      handled += bucket.handled;
      waitSum += bucket.waitSum;
      durationSum += bucket.durationSum;
      sizeMax = Math.max(sizeMax, bucket.sizeMax);
      waitMax = Math.max(waitMax, bucket.waitMax);
      durationMax = Math.max(durationMax, bucket.durationMax);
    }
    const figures: TaskFigures = {
      batchesPerSecond: seconds > 0 ? batches / seconds : 0,
      requestsPerSecond: seconds > 0 ? requests / seconds : 0,
      batchSize: spread(requests, batches, sizeMax),
      oldestWaitMs: spread(waitSum, batches, waitMax),
      handlerMs: spread(durationSum, handled, durationMax),
      totals: { ...tally.totals },
      flushReasons: { ...tally.reasons },
    };
    if (this.privacy.showArguments || this.privacy.showResults) figures.recent = [...tally.recent];
    return figures;
  }

  queue(name: string): { deadLetters: number; lastDeadLetterReason?: string } {
    const dead = this.deadLetters.get(name);
    if (!dead) return { deadLetters: 0 };
    return this.privacy.showResults && dead.reason !== undefined
      ? { deadLetters: dead.count, lastDeadLetterReason: dead.reason }
      : { deadLetters: dead.count };
  }

  private tally(task: string): TaskTally {
    let tally = this.tasks.get(task);
    if (!tally) {
      tally = new TaskTally();
      this.tasks.set(task, tally);
    }
    return tally;
  }

  private record(event: BatchEvent): void {
    switch (event.type) {
      case 'batch.flushed': {
        const tally = this.tally(event.task);
        const bucket = tally.current;
        bucket.batches++;
        bucket.requests += event.size;
        bucket.sizeMax = Math.max(bucket.sizeMax, event.size);
        bucket.waitSum += event.oldestWaitMs;
        bucket.waitMax = Math.max(bucket.waitMax, event.oldestWaitMs);
        tally.totals.batches++;
        tally.totals.requests += event.size;
        tally.reasons[event.reason] = (tally.reasons[event.reason] ?? 0) + 1;
        return;
      }
      case 'batch.completed':
      case 'batch.failed': {
        const tally = this.tally(event.task);
        const bucket = tally.current;
        bucket.handled++;
        bucket.durationSum += event.durationMs;
        bucket.durationMax = Math.max(bucket.durationMax, event.durationMs);
        if (event.type === 'batch.failed') tally.totals.failedBatches++;
        return;
      }
      case 'request.retried':
        this.tally(event.task).totals.retried++;
        return;
      case 'request.failed':
        this.tally(event.task).totals.failed++;
        this.sample(event);
        return;
      case 'request.succeeded':
        this.sample(event);
        return;
      case 'request.deadLettered': {
        // A message that could not be read has no request, and its task name is not ours to show.
        if (event.request) this.tally(event.task).totals.deadLettered++;
        const dead = this.deadLetters.get(event.queue) ?? { count: 0 };
        dead.count++;
        dead.reason = cut(event.reason);
        this.deadLetters.set(event.queue, dead);
        return;
      }
      default:
        return;
    }
  }

  private sample(event: RequestSucceededEvent | RequestFailedEvent): void {
    const { showArguments, showResults } = this.privacy;
    if (!showArguments && !showResults) return;
    const { request } = event;
    const sample: MonitorRequestSample = {
      id: request.id,
      state: event.type === 'request.succeeded' ? 'SUCCESS' : 'FAILURE',
      at: event.at,
    };
    if (showArguments) {
      sample.args = json(request.args);
      sample.kwargs = json(request.kwargs);
    }
    if (showResults) sample.outcome = event.type === 'request.succeeded' ? json(event.result) : errorText(event.error);
    const recent = this.tally(event.task).recent;
    recent.unshift(sample);
    if (recent.length > RECENT) recent.pop();
  }
}

function emptyBucket(): Bucket {
  return { batches: 0, requests: 0, sizeMax: 0, waitSum: 0, waitMax: 0, handled: 0, durationSum: 0, durationMax: 0 };
}

function spread(sum: number, count: number, max: number): MonitorSpread | null {
  return count === 0 ? null : { mean: sum / count, max };
}

function cut(text: string): string {
  return text.length > TEXT_LIMIT ? `${text.slice(0, TEXT_LIMIT - 1)}…` : text;
}

function json(value: unknown): string {
  try {
    return cut(JSON.stringify(value) ?? String(value));
  } catch {
    return cut(String(value));
  }
}

function errorText(error: unknown): string {
  if (error instanceof Error) return cut(`${error.name}: ${error.message}`);
  // A FAILURE mark holds Celery's exception info.
  const info = error as { exc_type?: unknown; exc_message?: unknown } | null;
  if (info && typeof info === 'object' && typeof info.exc_type === 'string') {
    const message = Array.isArray(info.exc_message) ? info.exc_message.map(String).join(', ') : String(info.exc_message ?? '');
    return cut(`${info.exc_type}: ${message}`);
  }
  return json(error);
}
