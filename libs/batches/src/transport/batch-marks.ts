import {
  celeryTimestamp,
  childrenOf,
  type MarkedBatch,
  type MarkObserver,
  type RecordedMark,
  type ResultBackend,
} from '../results/result-backend.js';
import type { TaskMeta } from '../results/task-result.js';
import type { SimpleRequest } from '../simple-request.js';

/** The marks made for one batch's requests while its handler runs; the worker settles the rest. */
export class BatchMarks implements MarkedBatch {
  /** Marks made one by one: by the handler, or by the worker for retries and failures. */
  readonly marks = new Map<string, RecordedMark>();
  readonly writes: Promise<void>[] = [];
  private byId?: Map<string, SimpleRequest>;
  private resolved?: { requests: readonly SimpleRequest[]; values: readonly unknown[] };

  constructor(readonly requests: readonly SimpleRequest[]) {}

  /** Built on the first mark only: most batches are resolved by their return value. */
  request(id: string): SimpleRequest | undefined {
    this.byId ??= new Map(this.requests.map((request) => [request.id, request]));
    return this.byId.get(id);
  }

  record(id: string, mark: RecordedMark, write: Promise<void>): void {
    this.marks.set(id, mark);
    this.writes.push(write);
  }

  /** A request's final state: its mark, else the value the handler's return resolved it with. */
  stateOf(id: string): RecordedMark | undefined {
    const mark = this.marks.get(id);
    if (mark || !this.resolved) return mark;
    const index = this.resolved.requests.findIndex((request) => request.id === id);
    return index < 0 ? undefined : { status: 'SUCCESS', result: this.resolved.values[index] };
  }

  /**
   * Stores SUCCESS for the requests the handler left unmarked, with the values its return gave
   * them, in one write; `stateOf` reads them back without a mark per request.
   */
  resolve(results: ResultBackend, requests: readonly SimpleRequest[], values: readonly unknown[]): Promise<void> {
    this.resolved = { requests, values };
    // Read the clock only when a result is stored: ignoreResult batches store none.
    let dateDone: string | undefined;
    const metas: TaskMeta[] = [];
    for (let index = 0; index < requests.length; index++) {
      const request = requests[index];
      if (request.ignoreResult) continue;
      dateDone ??= celeryTimestamp();
      metas.push({
        status: 'SUCCESS',
        result: values[index],
        traceback: null,
        children: childrenOf(request),
        date_done: dateDone,
        task_id: request.id,
      });
    }
    const write = metas.length > 0 ? results.storeResolved(metas) : Promise.resolve();
    this.writes.push(write);
    return write;
  }
}

/**
 * The batches whose handler is running (few at a time: a handler's concurrency), so that a mark
 * made through the injectable `ResultBackend` finds its batch. The worker's bookkeeping, kept here
 * rather than on the class users inject.
 */
export class RunningBatches implements MarkObserver {
  private readonly running = new Set<BatchMarks>();

  constructor(results: ResultBackend) {
    results.markObserver = this;
  }

  track(requests: readonly SimpleRequest[]): BatchMarks {
    const batch = new BatchMarks(requests);
    this.running.add(batch);
    return batch;
  }

  untrack(batch: BatchMarks): void {
    this.running.delete(batch);
  }

  batchOf(id: string): BatchMarks | undefined {
    for (const batch of this.running) if (batch.request(id)) return batch;
    return undefined;
  }
}
