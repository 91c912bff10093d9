import { childTuple } from '../canvas/signature.js';
import type { SimpleRequest } from '../simple-request.js';
import { exceptionInfo, type TaskMeta, type TaskResult, type TaskState, type WaitOptions } from './task-result.js';

/** What was recorded for one request while its batch ran. */
export interface RecordedMark {
  status: TaskState;
  result: unknown;
}

/** The marks made for one batch's requests while its handler runs; the worker settles the rest. */
export class BatchMarks {
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

  /** A request's final state: its mark, else the value the handler's return resolved it with. */
  stateOf(id: string): RecordedMark | undefined {
    const mark = this.marks.get(id);
    if (mark || !this.resolved) return mark;
    const index = this.resolved.requests.findIndex((request) => request.id === id);
    return index < 0 ? undefined : { status: 'SUCCESS', result: this.resolved.values[index] };
  }

  /** Records which requests the return resolved, looked up only by `stateOf`: no mark per request. */
  resolvedBy(requests: readonly SimpleRequest[], values: readonly unknown[]): void {
    this.resolved = { requests, values };
  }
}

/** One finished header task of a chord, as the result backend counts it. */
export interface ChordPart {
  groupId: string;
  taskId: string;
  /** Its place in the header (Celery's `group_index`); null sorts last. */
  groupIndex: number | null;
  state: TaskState;
  /** The SUCCESS value, or the exception info of a FAILURE. */
  result: unknown;
}

/**
 * Per-request results in Celery's format. Inject it into a batch handler to mark each request;
 * requests left unmarked are resolved by the worker (see the README, "Results").
 */
export abstract class ResultBackend {
  /** Batches whose handler is running: few at a time (a handler's concurrency), so marks search them. */
  private readonly running = new Set<BatchMarks>();

  /** Stores `result` as the request's SUCCESS value. */
  markAsDone(id: string, result: unknown, request?: SimpleRequest): Promise<void> {
    return this.mark(id, 'SUCCESS', result, null, request);
  }

  /** Stores `error` as the request's FAILURE; the request is not retried. */
  markAsFailure(id: string, error: unknown, request?: SimpleRequest): Promise<void> {
    return this.mark(id, 'FAILURE', exceptionInfo(error), error instanceof Error ? (error.stack ?? null) : null, request);
  }

  /** Stores RETRY; inside a batch handler it also asks the worker to run the request again later. */
  markAsRetry(id: string, error: unknown, request?: SimpleRequest): Promise<void> {
    return this.mark(id, 'RETRY', exceptionInfo(error), error instanceof Error ? (error.stack ?? null) : null, request);
  }

  /** Stores REVOKED: the request was not run (for example its `expires` had passed). */
  markAsRevoked(id: string, reason: string, request?: SimpleRequest): Promise<void> {
    return this.mark(
      id,
      'REVOKED',
      { exc_type: 'TaskRevokedError', exc_message: [reason], exc_module: 'celery.exceptions' },
      null,
      request,
    );
  }

  /** The stored result, or PENDING when there is none. */
  abstract getResult<T = unknown>(id: string): Promise<TaskResult<T>>;

  /** Resolves with the SUCCESS value; rejects with `TaskFailedError` on FAILURE/REVOKED and `ResultTimeoutError` on timeout. */
  abstract waitForResult<T = unknown>(id: string, options?: WaitOptions): Promise<T>;

  /** Writes the meta unless a SUCCESS is already stored under its id. */
  protected abstract store(meta: TaskMeta): Promise<void>;

  /** Writes many metas; backends that can write them in one go override it. */
  protected async storeMany(metas: TaskMeta[]): Promise<void> {
    await Promise.all(metas.map((meta) => this.store(meta)));
  }

  abstract close(): Promise<void>;

  /**
   * Resolves when the backend answers, rejects with what is wrong otherwise (for health checks).
   * In-process backends always answer; backends with a server override it with a short-timeout probe.
   */
  async ping(): Promise<void> {}

  /**
   * Counts a finished header task of a chord, as Celery's `on_chord_part_return`. Resolves with
   * every part, in header order, when this one completed the chord (exactly once, across workers),
   * else with undefined. Backends without chord support (memory) never complete one.
   */
  async chordPartReturn(_part: ChordPart): Promise<ChordPart[] | undefined> {
    return undefined;
  }

  /**
   * Called by the worker around a handler call, to learn which requests the handler marked.
   * @internal the worker's bookkeeping, not part of the public API (left out of the typings)
   */
  track(requests: readonly SimpleRequest[]): BatchMarks {
    const batch = new BatchMarks(requests);
    this.running.add(batch);
    return batch;
  }

  /**
   * Called by the worker after a handler resolved: stores SUCCESS for the requests it left
   * unmarked, with the values its return gave them, in one write.
   * @internal
   */
  resolveUnmarked(batch: BatchMarks, requests: readonly SimpleRequest[], values: readonly unknown[]): Promise<void> {
    batch.resolvedBy(requests, values);
    const dateDone = celeryTimestamp();
    const metas: TaskMeta[] = [];
    for (let index = 0; index < requests.length; index++) {
      const request = requests[index];
      if (request.ignoreResult) continue;
      metas.push({
        status: 'SUCCESS',
        result: values[index],
        traceback: null,
        children: childrenOf(request),
        date_done: dateDone,
        task_id: request.id,
      });
    }
    const write = metas.length > 0 ? this.storeMany(metas) : Promise.resolve();
    batch.writes.push(write);
    return write;
  }

  /** @internal */
  untrack(batch: BatchMarks): void {
    this.running.delete(batch);
  }

  private batchOf(id: string): BatchMarks | undefined {
    for (const batch of this.running) if (batch.request(id)) return batch;
    return undefined;
  }

  private mark(id: string, status: TaskState, result: unknown, traceback: string | null, request?: SimpleRequest): Promise<void> {
    const batch = this.batchOf(id);
    const known = request ?? batch?.request(id);
    const write =
      known?.ignoreResult === true
        ? Promise.resolve()
        : this.store({
            status,
            result,
            traceback,
            children: status === 'SUCCESS' && known ? childrenOf(known) : NO_CHILDREN,
            date_done: status === 'RETRY' ? null : celeryTimestamp(),
            task_id: id,
          });
    if (batch) {
      batch.marks.set(id, { status, result });
      batch.writes.push(write);
    }
    return write;
  }
}

/** Most requests send no tasks of their own; one shared, never-mutated empty list. */
const NO_CHILDREN: unknown[] = Object.freeze([]) as unknown as unknown[];

/** What a request's success sends (its callbacks and the next task of its chain), as Celery stores `children`. */
function childrenOf(request: SimpleRequest): unknown[] {
  if (request.callbacks.length === 0 && request.chain.length === 0) return NO_CHILDREN;
  const next = request.chain.length > 0 ? [request.chain[request.chain.length - 1]] : [];
  return [...request.callbacks, ...next].map(childTuple);
}

let lastStamp = { ms: 0, text: '' };

/** Celery 5.2's `date_done`: naive UTC ISO 8601 with microseconds (memoized per millisecond: batches mark many at once). */
export function celeryTimestamp(ms = Date.now()): string {
  if (ms !== lastStamp.ms) lastStamp = { ms, text: `${new Date(ms).toISOString().slice(0, -1)}000` };
  return lastStamp.text;
}
