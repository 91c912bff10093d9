import { ChordError } from './chord-error.js';
import { NotRegistered } from './not-registered.js';

/** Celery's task states. */
export type TaskState = 'PENDING' | 'STARTED' | 'SUCCESS' | 'FAILURE' | 'RETRY' | 'REVOKED';

/** States after which nothing changes (Celery's `READY_STATES`). */
export const READY_STATES: ReadonlySet<TaskState> = new Set<TaskState>(['SUCCESS', 'FAILURE', 'REVOKED']);

/** A failure as Celery stores it, so Python reads it back as an exception. */
export interface ExceptionInfo {
  exc_type: string;
  exc_message: unknown[];
  exc_module: string;
}

/** A task's result as Celery's result backends store it (`celery-task-meta-<id>`). */
export interface TaskMeta {
  status: TaskState;
  result: unknown;
  traceback: string | null;
  children: unknown[];
  date_done: string | null;
  task_id: string;
}

export interface TaskResult<T = unknown> {
  taskId: string;
  status: TaskState;
  /** The value for SUCCESS; the `ExceptionInfo` for FAILURE and RETRY; null while PENDING. */
  result: T | ExceptionInfo | null;
  traceback: string | null;
  dateDone: Date | null;
}

export interface WaitOptions {
  /** Milliseconds to wait before rejecting with `ResultTimeoutError`. Default 10 000. */
  timeout?: number;
}

/** The task failed remotely; carries the remote exception's type and message. */
export class TaskFailedError extends Error {
  override readonly name = 'TaskFailedError';
  constructor(
    readonly taskId: string,
    /** The remote exception's class name, e.g. `ValueError`. */
    readonly excType: string,
    readonly excMessage: string,
    readonly excModule: string,
    readonly traceback: string | null,
    readonly state: TaskState = 'FAILURE',
  ) {
    super(`Task ${taskId} ${state === 'REVOKED' ? 'was revoked' : 'failed'}: ${excType}: ${excMessage}`);
  }
}

export class ResultTimeoutError extends Error {
  override readonly name = 'ResultTimeoutError';
  constructor(
    readonly taskId: string,
    readonly timeout: number,
    readonly lastStatus: TaskState,
  ) {
    super(
      `No result for task ${taskId} within ${timeout} ms (last state ${lastStatus}). Is a worker consuming its queue, and is the result backend the one the worker writes to?`,
    );
  }
}

// JS errors whose names Python also has are stored under Python's module so Celery re-raises the same class.
const PYTHON_BUILTIN_ERRORS = new Set([
  'TypeError',
  'SyntaxError',
  'ValueError',
  'KeyError',
  'RuntimeError',
  'TimeoutError',
  'NotImplementedError',
]);

// The built-in error classes: a `name` found on one of their prototypes is inherited, not the class's own.
const BUILTIN_ERRORS: ReadonlySet<unknown> = new Set([
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
  AggregateError,
]);

/**
 * The error's class name as Celery stores it (`type(exc).__qualname__`): `error.name`, unless that
 * is only inherited from a built-in (`class QuotaExceeded extends Error {}` leaves `name` 'Error'),
 * in which case the constructor's own name.
 */
export function errorTypeName(error: Error): string {
  const constructor: unknown = error.constructor;
  if (typeof constructor !== 'function' || BUILTIN_ERRORS.has(constructor) || !constructor.name) return error.name;
  let owner: object | null = error;
  while (owner !== null && !Object.hasOwn(owner, 'name')) owner = Object.getPrototypeOf(owner) as object | null;
  const inherited = owner !== null && owner !== error && BUILTIN_ERRORS.has(owner.constructor);
  return inherited ? constructor.name : error.name;
}

export function exceptionInfo(error: unknown): ExceptionInfo {
  if (error instanceof TaskFailedError) {
    return { exc_type: error.excType, exc_message: [error.excMessage], exc_module: error.excModule };
  }
  if (error instanceof ChordError) {
    return { exc_type: 'ChordError', exc_message: [error.message], exc_module: 'celery.exceptions' };
  }
  if (error instanceof NotRegistered) {
    return { exc_type: 'NotRegistered', exc_message: [error.taskName], exc_module: 'celery.exceptions' };
  }
  if (error instanceof Error) {
    const type = errorTypeName(error);
    return {
      exc_type: type,
      exc_message: [error.message],
      exc_module: PYTHON_BUILTIN_ERRORS.has(type) ? 'builtins' : 'nestjs_batches',
    };
  }
  return { exc_type: 'Error', exc_message: [String(error)], exc_module: 'nestjs_batches' };
}

export function isExceptionInfo(value: unknown): value is ExceptionInfo {
  return typeof value === 'object' && value !== null && typeof (value as ExceptionInfo).exc_type === 'string';
}

export function exceptionMessage(info: ExceptionInfo): string {
  const parts = Array.isArray(info.exc_message) ? info.exc_message : [info.exc_message];
  return parts.length === 1 ? String(parts[0]) : parts.map((part) => String(part)).join(', ');
}

// Celery writes naive UTC timestamps (no zone); read them as UTC.
export function parseDateDone(value: string | null): Date | null {
  if (value === null) return null;
  return new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value}Z`);
}

export function toTaskResult(meta: TaskMeta): TaskResult {
  return {
    taskId: meta.task_id,
    status: meta.status,
    result: meta.result ?? null,
    traceback: meta.traceback ?? null,
    dateDone: parseDateDone(meta.date_done),
  };
}

export function pendingResult(taskId: string): TaskResult {
  return { taskId, status: 'PENDING', result: null, traceback: null, dateDone: null };
}

/** The value a finished task resolves to, or the error it rejects with. */
export function unwrapResult(result: TaskResult): unknown {
  if (result.status === 'SUCCESS') return result.result;
  const info = isExceptionInfo(result.result)
    ? result.result
    : {
        exc_type: result.status === 'REVOKED' ? 'TaskRevokedError' : 'Error',
        exc_message: [String(result.result)],
        exc_module: 'celery.exceptions',
      };
  throw new TaskFailedError(result.taskId, info.exc_type, exceptionMessage(info), info.exc_module, result.traceback, result.status);
}
