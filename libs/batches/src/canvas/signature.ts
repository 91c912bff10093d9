import { randomUUID } from 'node:crypto';
import type { TaskArgs, TaskKwargs } from '../simple-request.js';

/**
 * A Celery signature as it travels in JSON (`celery.canvas.Signature` is a dict): a task name with
 * partial arguments and the options it is sent with (`task_id`, `link`, `link_error`, `queue`,
 * `group_id`, `chord`, …). `subtask_type` is `'chain'`, `'group'` or `'chord'` for canvas
 * primitives, whose parts are in `kwargs.tasks` (and `kwargs.body` for a chord).
 */
export interface Signature {
  task: string;
  args: TaskArgs;
  kwargs: TaskKwargs;
  options: SignatureOptions;
  subtask_type: 'chain' | 'group' | 'chord' | null;
  immutable: boolean;
  chord_size?: number | null;
}

export interface SignatureOptions {
  /** The id the task will run under (Celery freezes it when the canvas is built). */
  task_id?: string;
  /** Callbacks applied with this task's result. */
  link?: Signature | Signature[];
  /** Errbacks applied with this task's id when it fails. */
  link_error?: Signature | Signature[];
  queue?: string;
  group_id?: string;
  group_index?: number;
  chord?: Signature;
  countdown?: number;
  priority?: number;
  [option: string]: unknown;
}

/** Builds a signature, Celery's `signature(task, args, kwargs, **options)` (`task.s(...)`, or `.si(...)` when immutable). */
export function signature(
  task: string,
  spec: { args?: TaskArgs; kwargs?: TaskKwargs; options?: SignatureOptions; immutable?: boolean } = {},
): Signature {
  return {
    task,
    args: spec.args ?? [],
    kwargs: spec.kwargs ?? {},
    options: spec.options ?? {},
    subtask_type: null,
    immutable: spec.immutable ?? false,
    chord_size: null,
  };
}

export function isSignature(value: unknown): value is Signature {
  return typeof value === 'object' && value !== null && typeof (value as { task?: unknown }).task === 'string';
}

const NO_SIGNATURES = Object.freeze([]) as unknown as Signature[];

/** The signatures of an embed field or a `link` option: absent, one signature, or a list of them. */
export function signaturesOf(value: unknown): Signature[] {
  // Most messages have no canvas: one shared, frozen empty list, no allocation per message.
  if (value === null || value === undefined) return NO_SIGNATURES;
  const list = Array.isArray(value) ? value : [value];
  return list.filter(isSignature).map(normalized);
}

/** Fills what a hand-written or older producer may leave out. */
export function normalized(sig: Signature): Signature {
  return {
    task: sig.task,
    args: Array.isArray(sig.args) ? sig.args : [],
    kwargs: typeof sig.kwargs === 'object' && sig.kwargs !== null && !Array.isArray(sig.kwargs) ? sig.kwargs : {},
    options: typeof sig.options === 'object' && sig.options !== null ? sig.options : {},
    subtask_type: sig.subtask_type ?? null,
    immutable: sig.immutable === true,
    chord_size: sig.chord_size ?? null,
  };
}

/** A signature's arguments once `partial` (a parent's result) is prepended, as Celery's `Signature._merge`. */
export function mergedArgs(sig: Signature, partial: TaskArgs): TaskArgs {
  return sig.immutable || partial.length === 0 ? sig.args : [...partial, ...sig.args];
}

/** The signature with its task id fixed (Celery's `freeze`), so the id is known before it is sent. */
export function frozen(sig: Signature): Signature {
  return typeof sig.options.task_id === 'string' ? sig : { ...sig, options: { ...sig.options, task_id: randomUUID() } };
}

/** A sent task as Celery lists it among a result's `children`: `AsyncResult.as_tuple()`, `((id, None), None)`. */
export function childTuple(sig: Signature): unknown {
  return [[sig.options.task_id ?? null, null], null];
}
