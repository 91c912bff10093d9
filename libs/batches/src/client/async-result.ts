import type { ResultBackend } from '../results/result-backend.js';
import { READY_STATES, unwrapResult, type TaskState, type WaitOptions } from '../results/task-result.js';

/** A sent task's handle (Celery's `AsyncResult`). */
export class AsyncResult<T = unknown> {
  constructor(
    readonly id: string,
    private readonly results: ResultBackend,
  ) {}

  /** Waits for the result: resolves with the value, rejects with `TaskFailedError` or `ResultTimeoutError`. */
  get(options?: WaitOptions): Promise<T> {
    return this.results.waitForResult<T>(this.id, options);
  }

  async status(): Promise<TaskState> {
    return (await this.results.getResult(this.id)).status;
  }

  async ready(): Promise<boolean> {
    return READY_STATES.has(await this.status());
  }
}

/** The results of a group's tasks (Celery's `GroupResult`). */
export class GroupResult<T = unknown> {
  constructor(
    /** The group id each task carries in its `group` header. */
    readonly id: string,
    readonly results: readonly AsyncResult<T>[],
  ) {}

  /** Waits for every task: resolves with their values in order, rejects with the first failure. */
  get(options?: WaitOptions): Promise<T[]> {
    return Promise.all(this.results.map((result) => result.get(options)));
  }

  /** True once every task has finished. */
  async ready(): Promise<boolean> {
    return (await Promise.all(this.results.map((result) => result.ready()))).every(Boolean);
  }
}

/** A task run in-process (Celery's `EagerResult`): its outcome is already known. */
export class EagerResult<T = unknown> {
  constructor(
    readonly id: string,
    readonly state: TaskState,
    /** The value on SUCCESS; the stored exception info on FAILURE. */
    readonly result: unknown,
  ) {}

  async get(): Promise<T> {
    return unwrapResult({ taskId: this.id, status: this.state, result: this.result, traceback: null, dateDone: null }) as T;
  }

  async status(): Promise<TaskState> {
    return this.state;
  }

  async ready(): Promise<boolean> {
    return READY_STATES.has(this.state);
  }
}
