import type { MessageProperties } from '../broker/broker.interface.js';
import { isSignature, signaturesOf, type Signature } from '../canvas/signature.js';
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
  /** Its place in its group or chord header (Celery's `group_index`). */
  groupIndex: number | null;
  /** The protocol-2 embed: what runs after this task (Celery's `link`, `link_error`, chain and chord). */
  callbacks: Signature[];
  errbacks: Signature[];
  chain: Signature[];
  chord: Signature | null;
  /** Every header of the message (protocol v1: the body's fields other than args and kwargs). */
  headers: Record<string, unknown>;
}

/** Why a message cannot become a task request; it is dead-lettered with this reason. */
export class InvalidMessageError extends Error {
  override readonly name = 'InvalidMessageError';
}

/** The only content type decoded, and the one encoding writes. */
export const JSON_CONTENT_TYPE = 'application/json';
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
  if (encoding !== undefined && encoding !== 'utf-8' && !UTF8.has(encoding) && !UTF8.has(encoding.toLowerCase())) {
    throw new InvalidMessageError(`content encoding ${JSON.stringify(encoding)} refused; only utf-8 is accepted`);
  }
  let text: string;
  try {
    text = STRICT_UTF8.decode(body);
  } catch {
    // Strict UTF-8: decoding invalid bytes would hand the handler replacement characters instead.
    throw new InvalidMessageError('body is not valid UTF-8');
  }
  let payload: unknown;
  try {
    payload = parseBody(text);
  } catch (error) {
    // V8's message quotes the body around the error: keep only where it is, never the bytes.
    const position = /position (\d+)/.exec((error as Error).message)?.[1];
    throw new InvalidMessageError(position ? `body is not valid JSON (at character ${position})` : 'body is not valid JSON');
  }
  const headers = properties.headers ?? {};
  // An absent header and a null one mean the same (Celery reads headers with `.get()`).
  if (headers.task !== undefined && headers.task !== null) return decodeV2(payload, headers);
  if (isObject(payload) && payload.task !== undefined) return decodeV1(payload);
  throw new InvalidMessageError('no `task` header (protocol v2) and no `task` field in the body (protocol v1)');
}

/** Validates and decodes in one pass; a byte-order mark is kept (so it fails the parse, as before). */
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

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
  for (let index = 0; index < DEFAULT_EMBEDS.length; index++) {
    const embed = DEFAULT_EMBEDS[index];
    const head = text.length - embed.length;
    // A slice compared with `===` costs a fraction of `endsWith`, which walks the characters one by one.
    if (head <= 0 || text.slice(head) !== embed) continue;
    try {
      const parsed: unknown = JSON.parse(`${text.slice(0, head)}]`);
      if (Array.isArray(parsed) && parsed.length === 2) return parsed;
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
  const rawEmbed: unknown = payload[2];
  if (rawEmbed !== undefined && rawEmbed !== null && !isObject(rawEmbed)) {
    throw new InvalidMessageError('protocol v2 body: embed (third element) must be an object');
  }
  const embed = rawEmbed as Record<string, unknown> | null | undefined;
  return {
    protocol: 2,
    id: requiredString(headers.id, 'id header'),
    task: requiredString(headers.task, 'task header'),
    args: argsOf(payload[0]),
    kwargs: kwargsOf(payload[1]),
    retries: retriesOf(headers.retries),
    eta: dateOf(headers.eta, 'eta'),
    expires: dateOf(headers.expires, 'expires'),
    ignoreResult: headers.ignore_result === true,
    rootId: optionalString(headers.root_id),
    parentId: optionalString(headers.parent_id),
    group: optionalString(headers.group),
    groupIndex: typeof headers.group_index === 'number' ? headers.group_index : null,
    callbacks: signaturesOf(embed?.callbacks),
    errbacks: signaturesOf(embed?.errbacks),
    chain: signaturesOf(embed?.chain),
    chord: isSignature(embed?.chord) ? embed.chord : null,
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
    groupIndex: null,
    callbacks: signaturesOf(body.callbacks),
    errbacks: signaturesOf(body.errbacks),
    chain: [],
    chord: isSignature(body.chord) ? body.chord : null,
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
