import { randomUUID } from 'node:crypto';
import type { MessageProperties } from '../broker/broker.interface.js';
import type { TaskArgs, TaskKwargs } from '../simple-request.js';

/** A task message as Celery protocol v2 (or v1) carries it, after decoding. */
export interface TaskMessage {
  protocol: 1 | 2;
  id: string;
  task: string;
  args: TaskArgs;
  kwargs: TaskKwargs;
  retries: number;
  eta: Date | null;
  expires: Date | null;
  ignoreResult: boolean;
  rootId: string | null;
  parentId: string | null;
  group: string | null;
  /** Every header of the message (protocol v1: the body's fields other than args and kwargs). */
  headers: Record<string, unknown>;
}

/** Why a message cannot become a task request; it is dead-lettered with this reason. */
export class InvalidMessageError extends Error {
  override readonly name = 'InvalidMessageError';
}

const JSON_CONTENT_TYPE = 'application/json';
const UTF8 = new Set(['utf-8', 'utf8']);

export function decodeTaskMessage(body: Buffer, properties: MessageProperties, maxBytes: number): TaskMessage {
  if (body.length > maxBytes) {
    throw new InvalidMessageError(`message of ${body.length} bytes exceeds maxMessageBytes (${maxBytes})`);
  }
  // Only JSON is ever parsed: pickle and yaml bodies can run code when deserialized.
  if (properties.contentType !== JSON_CONTENT_TYPE) {
    throw new InvalidMessageError(
      `content type ${JSON.stringify(properties.contentType ?? null)} refused; only ${JSON_CONTENT_TYPE} is accepted`,
    );
  }
  const encoding = properties.contentEncoding;
  if (encoding !== undefined && !UTF8.has(encoding) && !UTF8.has(encoding.toLowerCase())) {
    throw new InvalidMessageError(`content encoding ${JSON.stringify(encoding)} refused; only utf-8 is accepted`);
  }
  let payload: unknown;
  try {
    payload = parseBody(body.toString('utf8'));
  } catch (error) {
    throw new InvalidMessageError(`body is not valid JSON (${(error as Error).message})`);
  }
  const headers = properties.headers ?? {};
  if (headers.task !== undefined) return decodeV2(payload, headers);
  if (isObject(payload) && payload.task !== undefined) return decodeV1(payload);
  throw new InvalidMessageError('no `task` header (protocol v2) and no `task` field in the body (protocol v1)');
}

/** Celery's embed for a task without callbacks, chain or chord, as Node (compact) and Python's json module write it. */
const DEFAULT_EMBEDS = [
  ',{"callbacks":null,"errbacks":null,"chain":null,"chord":null}]',
  ', {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]',
];

/**
 * JSON.parse, but a v2 body ending in the default embed is parsed as `[args, kwargs]` alone: the
 * worker never reads the embed, and building it is over half of the parse. Anything else, including
 * a head that does not parse as two elements, takes the full parse, so the outcome is the same.
 */
function parseBody(text: string): unknown {
  for (const embed of DEFAULT_EMBEDS) {
    if (!text.endsWith(embed)) continue;
    try {
      const head: unknown = JSON.parse(`${text.slice(0, -embed.length)}]`);
      if (Array.isArray(head) && head.length === 2) return head;
    } catch {
      // not [args, kwargs]: the full parse decides
    }
    break;
  }
  return JSON.parse(text);
}

function decodeV2(payload: unknown, headers: Record<string, unknown>): TaskMessage {
  if (!Array.isArray(payload) || payload.length < 2) {
    throw new InvalidMessageError('protocol v2 body must be a JSON array [args, kwargs, embed]');
  }
  const [args, kwargs, embed] = payload as unknown[];
  if (embed !== undefined && embed !== null && !isObject(embed)) {
    throw new InvalidMessageError('protocol v2 body: embed (third element) must be an object');
  }
  return {
    protocol: 2,
    id: requiredString(headers.id, 'id header'),
    task: requiredString(headers.task, 'task header'),
    args: argsOf(args),
    kwargs: kwargsOf(kwargs),
    retries: retriesOf(headers.retries),
    eta: dateOf(headers.eta, 'eta'),
    expires: dateOf(headers.expires, 'expires'),
    ignoreResult: headers.ignore_result === true,
    rootId: optionalString(headers.root_id),
    parentId: optionalString(headers.parent_id),
    group: optionalString(headers.group),
    headers,
  };
}

function decodeV1(body: Record<string, unknown>): TaskMessage {
  const { args, kwargs, ...rest } = body;
  return {
    protocol: 1,
    id: requiredString(body.id, 'id field'),
    task: requiredString(body.task, 'task field'),
    args: argsOf(args ?? []),
    kwargs: kwargsOf(kwargs ?? {}),
    retries: retriesOf(body.retries),
    eta: dateOf(body.eta, 'eta'),
    expires: dateOf(body.expires, 'expires'),
    ignoreResult: false,
    rootId: null,
    parentId: null,
    group: optionalString(body.taskset),
    headers: rest,
  };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function requiredString(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.length === 0) throw new InvalidMessageError(`${what} missing or not a string`);
  return value;
}

function optionalString(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

function argsOf(value: unknown): TaskArgs {
  if (!Array.isArray(value)) throw new InvalidMessageError('args must be a JSON array');
  return value;
}

function kwargsOf(value: unknown): TaskKwargs {
  if (!isObject(value)) throw new InvalidMessageError('kwargs must be a JSON object');
  return value;
}

function retriesOf(value: unknown): number {
  if (value === undefined || value === null) return 0;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0)
    throw new InvalidMessageError('retries must be a non-negative integer');
  return value;
}

function dateOf(value: unknown, what: string): Date | null {
  if (value === undefined || value === null) return null;
  const date = typeof value === 'string' ? new Date(value) : typeof value === 'number' ? new Date(value * 1000) : null;
  if (date === null || Number.isNaN(date.getTime()))
    throw new InvalidMessageError(`${what} must be an ISO 8601 date, got ${JSON.stringify(value)}`);
  return date;
}

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
  replyTo?: string;
  origin?: string;
  /** Extra headers, merged over the protocol's. */
  headers?: Record<string, unknown>;
}

const EMBED = '{"callbacks":null,"errbacks":null,"chain":null,"chord":null}';
const REPR_LIMIT = 1024;

function repr(value: unknown): string {
  const text = JSON.stringify(value);
  return text.length > REPR_LIMIT ? `${text.slice(0, REPR_LIMIT - 3)}...` : text;
}

/** Encodes a task as Celery message protocol v2 with a JSON body. */
export function encodeTaskMessage(spec: TaskSpec): { id: string; body: Buffer; properties: MessageProperties } {
  const id = spec.id ?? randomUUID();
  const args = spec.args ?? [];
  const kwargs = spec.kwargs ?? {};
  const argsJson = JSON.stringify(args);
  const kwargsJson = JSON.stringify(kwargs);
  const properties: MessageProperties = {
    contentType: JSON_CONTENT_TYPE,
    contentEncoding: 'utf-8',
    correlationId: id,
    deliveryMode: 2,
    headers: {
      lang: 'js',
      task: spec.task,
      id,
      shadow: null,
      eta: spec.eta ? spec.eta.toISOString() : null,
      expires: spec.expires ? spec.expires.toISOString() : null,
      group: null,
      group_index: null,
      retries: spec.retries ?? 0,
      timelimit: [null, null],
      root_id: spec.rootId ?? id,
      parent_id: spec.parentId ?? null,
      argsrepr: argsJson.length > REPR_LIMIT ? repr(args) : argsJson,
      kwargsrepr: kwargsJson.length > REPR_LIMIT ? repr(kwargs) : kwargsJson,
      origin: spec.origin ?? 'nestjs-batches',
      ignore_result: spec.ignoreResult ?? false,
      ...spec.headers,
    },
  };
  if (spec.priority !== undefined) properties.priority = spec.priority;
  if (spec.replyTo !== undefined) properties.replyTo = spec.replyTo;
  return { id, body: Buffer.from(`[${argsJson},${kwargsJson},${EMBED}]`), properties };
}

/** The same task again, its retry count raised and due at `eta` (Celery's `Task.retry`), always as protocol v2. */
export function encodeRetry(message: TaskMessage, eta: Date): { id: string; body: Buffer; properties: MessageProperties } {
  return encodeTaskMessage({
    task: message.task,
    id: message.id,
    args: message.args,
    kwargs: message.kwargs,
    expires: message.expires,
    rootId: message.rootId,
    parentId: message.parentId,
    ignoreResult: message.ignoreResult,
    headers: message.protocol === 2 ? { ...message.headers, retries: message.retries + 1, eta: eta.toISOString() } : undefined,
    retries: message.retries + 1,
    eta,
  });
}
