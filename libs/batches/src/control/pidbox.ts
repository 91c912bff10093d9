import type { BroadcastBinding } from '../broker/broker.interface.js';

/**
 * Celery's remote-control mailbox as kombu declares it (`kombu.pidbox.Mailbox` with Celery 5's
 * defaults: `control_exchange='celery'`, `control_queue_ttl=300`, `control_queue_expires=10`).
 * Python declares the same names with the same properties, so both sides must agree exactly.
 */
export const PIDBOX_EXCHANGE = 'celery.pidbox';
export const PIDBOX_REPLY_EXCHANGE = 'reply.celery.pidbox';
/** `x-message-ttl` (ms) of a node queue: kombu's `message_ttl=control_queue_ttl` (300 s). */
export const PIDBOX_MESSAGE_TTL = 300_000;
/** `x-expires` (ms) of a node queue: kombu's `expires=control_queue_expires` (10 s). */
export const PIDBOX_QUEUE_EXPIRES = 10_000;

/** This node's queue on the fanout exchange: `<hostname>.celery.pidbox`, non-durable, auto-delete. */
export function pidboxBinding(hostname: string): BroadcastBinding {
  return {
    exchange: PIDBOX_EXCHANGE,
    exchangeType: 'fanout',
    queue: `${hostname}.celery.pidbox`,
    routingKey: '',
    queueArguments: { 'x-expires': PIDBOX_QUEUE_EXPIRES, 'x-message-ttl': PIDBOX_MESSAGE_TTL },
  };
}

/** A broadcast command as `Mailbox._publish` sends it. */
export interface ControlMessage {
  method: string;
  arguments?: Record<string, unknown> | null;
  destination?: string[] | null;
  pattern?: string | null;
  matcher?: string | null;
  reply_to?: { exchange: string; routing_key: string } | null;
  ticket?: string | null;
}

/** Parses a command body; undefined when it is not one (kombu's node accepts JSON only by default). */
export function parseControlMessage(body: Buffer, contentType: string | undefined): ControlMessage | undefined {
  if (contentType !== undefined && contentType !== 'application/json') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || typeof (parsed as ControlMessage).method !== 'string') return undefined;
  return parsed as ControlMessage;
}

/** `Node.handle_message`: a destination list, else a pattern with its matcher (glob or pcre), else everyone. */
export function isForNode(message: ControlMessage, hostname: string): boolean {
  if (message.destination && message.destination.length > 0) return message.destination.includes(hostname);
  if (message.pattern && message.matcher) {
    if (message.matcher === 'glob') return globToRegExp(message.pattern).test(hostname);
    // Python's re.match: anchored at the start only.
    if (message.matcher === 'pcre') return safeRegExp(`^(?:${message.pattern})`)?.test(hostname) ?? false;
    return false;
  }
  return true;
}

/** Python's fnmatch: `*`, `?`, `[seq]`, `[!seq]` over the whole name. */
function globToRegExp(pattern: string): RegExp {
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern[i];
    if (char === '*') source += '.*';
    else if (char === '?') source += '.';
    else if (char === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) source += '\\[';
      else {
        let set = pattern.slice(i + 1, end).replace(/\\/g, '\\\\');
        if (set.startsWith('!')) set = `^${set.slice(1)}`;
        source += `[${set}]`;
        i = end;
      }
    } else source += char.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  return safeRegExp(`^${source}$`, 's') ?? /$^/;
}

function safeRegExp(source: string, flags = ''): RegExp | undefined {
  try {
    return new RegExp(source, flags);
  } catch {
    return undefined;
  }
}

export { amqpInteger } from '../broker/amqp-integer.js';
