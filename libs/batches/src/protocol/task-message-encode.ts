import { randomUUID } from 'node:crypto';
import type { MessageProperties } from '../broker/broker.interface.js';
import type { Signature } from '../canvas/signature.js';
import type { TaskArgs, TaskKwargs } from '../simple-request.js';
import { JSON_CONTENT_TYPE, type TaskMessage } from './task-message-decode.js';

/** What a producer says about one task; everything but `task` has Celery's defaults. */
export interface TaskSpec {
  task: string;
  args?: TaskArgs;
  kwargs?: TaskKwargs;
  id?: string;
  retries?: number;
  eta?: Date | null;
  expires?: Date | null;
  priority?: number;
  ignoreResult?: boolean;
  rootId?: string | null;
  parentId?: string | null;
  /** Id of the group the task belongs to (Celery's `group` header, `Task.request.group`). */
  group?: string | null;
  /** Its place in the group (Celery's `group_index`). */
  groupIndex?: number | null;
  /** The embed: sent with the result on success, with the id on failure; the rest of a chain; a chord body. */
  callbacks?: readonly Signature[];
  errbacks?: readonly Signature[];
  chain?: readonly Signature[];
  chord?: Signature | null;
  replyTo?: string;
  origin?: string;
  /** Extra headers, merged over the protocol's. */
  headers?: Record<string, unknown>;
}

/**
 * How a task message's protocol-2 header table is written.
 *
 * - `'lean'` (the default): Celery's table without its null-valued headers (`shadow`, `group`,
 *   `group_index`, `parent_id`, `eta`, `expires` when unset) and without `timelimit` when both
 *   limits are unset. Celery's worker reads every one of them with `.get()`, so an absent header
 *   means what a null one does, and RabbitMQ spends far less CPU on the message (null header
 *   values are most of its cost for a Celery message).
 * - `'full'`: Celery's complete table as `celery.app.amqp.as_task_v2` writes it, nulls included,
 *   for consumers that expect every header to be present.
 */
export type MessageFormat = 'lean' | 'full';

export const MESSAGE_FORMATS: readonly MessageFormat[] = ['lean', 'full'];

const EMBED = '{"callbacks":null,"errbacks":null,"chain":null,"chord":null}';
const REPR_LIMIT = 1024;

function repr(value: unknown): string {
  const text = JSON.stringify(value);
  return text.length > REPR_LIMIT ? `${text.slice(0, REPR_LIMIT - 3)}...` : text;
}

/**
 * An instant as Python's `datetime.isoformat()` writes an aware UTC one (`…T03:37:28.373000+00:00`),
 * the form Celery itself sends. Celery 5.2's ISO 8601 parser reads the fraction as microseconds,
 * so JavaScript's millisecond `….373Z` would reach a Python worker as 373 µs and an eta would fire
 * up to a second early.
 */
export function celeryIsoFormat(date: Date): string {
  return date.toISOString().replace(/Z$/, '000+00:00');
}

/** `[null, null]`, or any time limit pair that sets neither limit. */
function noTimeLimit(value: unknown): boolean {
  return Array.isArray(value) && value.every((limit) => limit === null || limit === undefined);
}

/**
 * Encodes a task as Celery message protocol v2 with a JSON body, its headers in `format`
 * (`'lean'` by default: no null-valued headers; `'full'`: Celery's complete table).
 */
export function encodeTaskMessage(
  spec: TaskSpec,
  format: MessageFormat = 'lean',
): { id: string; body: Buffer; properties: MessageProperties } {
  const id = spec.id ?? randomUUID();
  const args = spec.args ?? [];
  const kwargs = spec.kwargs ?? {};
  const argsJson = JSON.stringify(args);
  const kwargsJson = JSON.stringify(kwargs);
  const eta = spec.eta ? celeryIsoFormat(spec.eta) : null;
  const expires = spec.expires ? celeryIsoFormat(spec.expires) : null;
  const argsrepr = argsJson.length > REPR_LIMIT ? repr(args) : argsJson;
  const kwargsrepr = kwargsJson.length > REPR_LIMIT ? repr(kwargs) : kwargsJson;
  let headers: Record<string, unknown>;
  if (format === 'full') {
    headers = {
      lang: 'js',
      task: spec.task,
      id,
      shadow: null,
      eta,
      expires,
      group: spec.group ?? null,
      group_index: spec.groupIndex ?? null,
      retries: spec.retries ?? 0,
      timelimit: [null, null],
      root_id: spec.rootId ?? id,
      parent_id: spec.parentId ?? null,
      argsrepr,
      kwargsrepr,
      origin: spec.origin ?? 'nestjs-batches',
      ignore_result: spec.ignoreResult ?? false,
      ...spec.headers,
    };
  } else if (format === 'lean') {
    // Celery's order, every null left out.
    headers = { lang: 'js', task: spec.task, id };
    if (eta !== null) headers.eta = eta;
    if (expires !== null) headers.expires = expires;
    if (spec.group) headers.group = spec.group;
    if (spec.groupIndex !== undefined && spec.groupIndex !== null) headers.group_index = spec.groupIndex;
    headers.retries = spec.retries ?? 0;
    headers.root_id = spec.rootId ?? id;
    if (spec.parentId) headers.parent_id = spec.parentId;
    headers.argsrepr = argsrepr;
    headers.kwargsrepr = kwargsrepr;
    headers.origin = spec.origin ?? 'nestjs-batches';
    headers.ignore_result = spec.ignoreResult ?? false;
    if (spec.headers) {
      for (const [name, value] of Object.entries(spec.headers)) {
        // An extra header set to null (e.g. a full table being re-sent) means the header is absent.
        if (value === null || value === undefined || (name === 'timelimit' && noTimeLimit(value))) delete headers[name];
        else headers[name] = value;
      }
    }
  } else {
    throw new TypeError(`message format must be 'lean' or 'full', got ${JSON.stringify(format)}`);
  }
  const properties: MessageProperties = {
    contentType: JSON_CONTENT_TYPE,
    contentEncoding: 'utf-8',
    correlationId: id,
    deliveryMode: 2,
    headers,
  };
  if (spec.priority !== undefined) properties.priority = spec.priority;
  if (spec.replyTo !== undefined) properties.replyTo = spec.replyTo;
  return { id, body: Buffer.from(`[${argsJson},${kwargsJson},${embedJson(spec)}]`), properties };
}

/** The embed, as Celery writes it: `null` for an empty list. */
function embedJson(spec: TaskSpec): string {
  const { callbacks, errbacks, chain, chord } = spec;
  if (!callbacks?.length && !errbacks?.length && !chain?.length && !chord) return EMBED;
  return JSON.stringify({
    callbacks: listOrNull(callbacks),
    errbacks: listOrNull(errbacks),
    chain: listOrNull(chain),
    chord: chord ?? null,
  });
}

function listOrNull(sigs: readonly Signature[] | undefined): readonly Signature[] | null {
  return sigs?.length ? sigs : null;
}

/**
 * The same task again, its retry count raised and due at `eta` (Celery's `Task.retry`), always as
 * protocol v2, its headers in `format` (a lean retry of a full message leaves the full table's nulls out).
 */
export function encodeRetry(
  message: TaskMessage,
  eta: Date,
  format: MessageFormat = 'lean',
): { id: string; body: Buffer; properties: MessageProperties } {
  return encodeTaskMessage(
    {
      task: message.task,
      id: message.id,
      args: message.args,
      kwargs: message.kwargs,
      expires: message.expires,
      rootId: message.rootId,
      parentId: message.parentId,
      group: message.group,
      groupIndex: message.groupIndex,
      callbacks: message.callbacks,
      errbacks: message.errbacks,
      chain: message.chain,
      chord: message.chord,
      ignoreResult: message.ignoreResult,
      headers: message.protocol === 2 ? { ...message.headers, retries: message.retries + 1, eta: celeryIsoFormat(eta) } : undefined,
      retries: message.retries + 1,
      eta,
    },
    format,
  );
}
