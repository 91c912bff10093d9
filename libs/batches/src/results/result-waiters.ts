import {
  READY_STATES,
  ResultTimeoutError,
  unwrapResult,
  toTaskResult,
  type TaskMeta,
  type TaskState,
  type WaitOptions,
} from './task-result.js';

const DEFAULT_TIMEOUT_MS = 10_000;

/** How a backend hears about the writes to one task's result. */
export interface ResultSource {
  /** Starts hearing writes to `id`; resolves once every later write will be delivered. Called for an id's first waiter. */
  listen(id: string): Promise<unknown>;
  /** Called once an id's last waiter is gone. */
  unlisten(id: string): void;
  /** Reads the stored result once: one stored before listening began was announced to no one. */
  read(id: string): Promise<TaskMeta | undefined>;
}

/** One `waitForResult` call. */
interface Waiter {
  deliver(meta: TaskMeta): void;
  abort(error: Error): void;
}

/** Everyone waiting on one task, and the listening they share. */
interface Listening {
  waiters: Set<Waiter>;
  ready: Promise<unknown>;
}

/**
 * The `waitForResult` calls of one backend, by task id: each settles on the first ready state
 * (SUCCESS resolves, FAILURE and REVOKED reject), on its timeout, or when the backend closes.
 */
export class ResultWaiters {
  private readonly byId = new Map<string, Listening>();
  private closed = false;

  constructor(
    private readonly source: ResultSource,
    private readonly backendName: string,
  ) {}

  /** Task ids someone is waiting for (to listen again after a reconnect). */
  ids(): string[] {
    return [...this.byId.keys()];
  }

  wait<T>(id: string, { timeout = DEFAULT_TIMEOUT_MS }: WaitOptions = {}): Promise<T> {
    if (this.closed) return Promise.reject(this.closedError(id));
    return new Promise<T>((resolve, reject) => {
      let lastStatus: TaskState = 'PENDING';
      let ended = false;
      const end = (): boolean => {
        if (ended) return false;
        ended = true;
        clearTimeout(timer);
        this.remove(id, waiter);
        return true;
      };
      const waiter: Waiter = {
        deliver: (meta) => {
          if (ended) return;
          lastStatus = meta.status;
          if (!READY_STATES.has(meta.status) || !end()) return;
          try {
            resolve(unwrapResult(toTaskResult(meta)) as T);
          } catch (error) {
            reject(error);
          }
        },
        abort: (error) => {
          if (end()) reject(error);
        },
      };
      const timer = setTimeout(() => waiter.abort(new ResultTimeoutError(id, timeout, lastStatus)), timeout);
      this.add(id, waiter)
        .then(() => this.source.read(id))
        .then((meta) => meta && waiter.deliver(meta))
        .catch((error: unknown) => waiter.abort(error instanceof Error ? error : new Error(String(error))));
    });
  }

  /** Hands a write of `id`'s result to everyone waiting for it. */
  deliver(id: string, meta: TaskMeta): void {
    const listening = this.byId.get(id);
    // A settled waiter removes itself while we iterate; Set iteration allows that.
    if (listening) for (const waiter of listening.waiters) waiter.deliver(meta);
  }

  /** Rejects every pending wait, and every later one, with a clear error. */
  close(): void {
    this.closed = true;
    for (const [id, { waiters }] of this.byId) for (const waiter of waiters) waiter.abort(this.closedError(id));
  }

  private add(id: string, waiter: Waiter): Promise<unknown> {
    let listening = this.byId.get(id);
    if (!listening) {
      listening = { waiters: new Set(), ready: this.source.listen(id) };
      this.byId.set(id, listening);
    }
    listening.waiters.add(waiter);
    return listening.ready;
  }

  private remove(id: string, waiter: Waiter): void {
    const listening = this.byId.get(id);
    if (!listening?.waiters.delete(waiter) || listening.waiters.size > 0) return;
    this.byId.delete(id);
    this.source.unlisten(id);
  }

  private closedError(id: string): Error {
    return new Error(`The ${this.backendName} result backend was closed while waiting for the result of task ${id}`);
  }
}
