import { childTuple } from '../canvas/signature.js';
import type { SimpleRequest } from '../simple-request.js';
import { exceptionInfo, type TaskMeta, type TaskResult, type TaskState, type WaitOptions } from './task-result.js';

/** What the handler recorded for one request of a running batch. */
export interface RecordedMark {
  status: TaskState;
  result: unknown;
}

/** A batch whose handler is running, as the worker shows it to the result backend. */
export interface MarkedBatch {
  /** The batch's request with this id. */
  request(id: string): SimpleRequest | undefined;
  /** The handler marked request `id`; `write` is its store. */
  record(id: string, mark: RecordedMark, write: Promise<void>): void;
}

/** How the worker learns of the marks its handlers make (see transport/batch-marks.ts). */
export interface MarkObserver {
  batchOf(id: string): MarkedBatch | undefined;
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
  /** @internal set by the worker, which keeps its own bookkeeping in the transport. */
  markObserver?: MarkObserver;

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

  /** @internal the worker stores the results a batch's return resolved, in one write. */
  storeResolved(metas: TaskMeta[]): Promise<void> {
    return this.storeMany(metas);
  }

  private mark(id: string, status: TaskState, result: unknown, traceback: string | null, request?: SimpleRequest): Promise<void> {
    const batch = this.markObserver?.batchOf(id);
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
    batch?.record(id, { status, result }, write);
    return write;
  }
}

/** Most requests send no tasks of their own; one shared, never-mutated empty list. */
export const NO_CHILDREN: unknown[] = Object.freeze([]) as unknown as unknown[];

/** What a request's success sends (its callbacks and the next task of its chain), as Celery stores `children`. */
export function childrenOf(request: SimpleRequest): unknown[] {
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
