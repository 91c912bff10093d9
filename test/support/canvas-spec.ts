import assert from 'node:assert/strict';

/** A canvas in the spec language of test/python/canvas_client.py, which builds it with Celery's API. */
export type CanvasSpec = SignatureSpec | { chain: CanvasSpec[] } | { chord: CanvasSpec[]; body: CanvasSpec } | { group: CanvasSpec[] };
export interface SignatureSpec {
  task: string;
  args?: unknown[];
  kwargs?: Record<string, unknown>;
  immutable?: boolean;
  options?: Record<string, unknown>;
  link?: CanvasSpec[];
  link_error?: CanvasSpec[];
}

/** One result as canvas_client.py read it. */
export interface Described {
  kind: 'task' | 'group';
  id: string;
  status?: string;
  result?: unknown;
  error?: { type: string; module: string; message: string };
  /** `AsyncResult(id).children` as ids (a group child as `{ group, ids }`). */
  children?: Array<string | { group: string; ids: string[] }> | null;
  /** Set when `py.record_error` ran for this task id. */
  errback_key?: string;
  /** A group's (or chord header's) members. */
  results?: Described[];
}

/** canvas_client.py's outcome line. */
export interface Outcome extends Described {
  /** The result apply_async returned and its `.parent`s, first to last (a chord's header is a group). */
  steps: Described[];
  callbacks: Array<Described & { task: string }>;
  errbacks: Array<Described & { task: string }>;
}

/** What `py.whoami` returns: its args and the ids Celery gave its request. */
export interface WhoAmI {
  args: unknown[];
  id: string;
  parent_id: string | null;
  root_id: string | null;
  group: string | null;
}

/** `task.s(*args)` in the spec language of canvas_client.py. */
export function s(task: string, ...args: unknown[]): SignatureSpec {
  return { task, args };
}

/** What a task returned, failing with what Python saw when it did not succeed. */
export function valueOf(described: Described): unknown {
  assert.equal(described.error, undefined, `task ${described.id} did not succeed: ${JSON.stringify(described.error)}`);
  assert.equal(described.status, 'SUCCESS');
  return described.result;
}

export function childIds(described: Described): string[] {
  return (described.children ?? []).flatMap((child) => (typeof child === 'string' ? [child] : child.ids));
}
