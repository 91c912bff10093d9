import type { QueueDeclaration, QueueExchangeType, QueueType } from '../broker/broker.interface.js';
import { BatchesConfigError, describeValue, queueName } from './option-checks.js';

/**
 * How one queue is declared (`BatchesModule.forRoot({ queues: { [name]: … } })`); the Celery side
 * must declare it the same way (kombu's `Queue(name, Exchange(exchange, type=exchangeType),
 * routing_key=routingKey, queue_arguments={…})`), or RabbitMQ refuses the second declaration.
 */
export interface QueueOptions {
  /**
   * `'classic'` (default; no `x-queue-type` is sent, as Celery) or `'quorum'` (`x-queue-type:
   * quorum`: replicated across a cluster). The queue's `<queue>.dead` gets the same type.
   */
  type?: QueueType;
  /**
   * `x-max-priority` (1–255, RabbitMQ advises at most 10): messages sent with a higher `priority`
   * are delivered first. Classic queues only: RabbitMQ 3.x quorum queues refuse the argument, and
   * RabbitMQ 4 quorum queues have two priorities (0–4 and 5+) without it.
   */
  maxPriority?: number;
  /** Further queue arguments, sent as given (e.g. `{ 'x-delivery-limit': 20 }` for a quorum queue). */
  arguments?: Record<string, unknown>;
  /** Exchange the queue is bound to and `BatchClient` publishes to; the queue's name by default (Celery's). */
  exchange?: string;
  /** `'direct'` (default), `'topic'` or `'fanout'`. */
  exchangeType?: QueueExchangeType;
  /** Binding key, and the routing key `BatchClient` publishes with; the queue's name by default. */
  routingKey?: string;
  /** Further binding keys of the queue on the same exchange (e.g. topic patterns `'billing.*'`). */
  bindings?: string[];
}

const QUEUE_OPTION_KEYS = new Set(['type', 'maxPriority', 'arguments', 'exchange', 'exchangeType', 'routingKey', 'bindings']);
const EXCHANGE_TYPES: readonly QueueExchangeType[] = ['direct', 'topic', 'fanout'];

export function resolveQueues(where: string, queues: unknown): Record<string, QueueDeclaration> {
  if (typeof queues !== 'object' || queues === null || Array.isArray(queues)) {
    throw new BatchesConfigError(
      `${where}: \`queues\` must be an object of queue name → declaration, got ${describeValue(queues)}. ` +
        "E.g. `queues: { billing: { type: 'quorum' } }`.",
    );
  }
  const resolved: Record<string, QueueDeclaration> = {};
  for (const [queue, options] of Object.entries(queues as Record<string, unknown>)) {
    resolved[queueName(where, 'queues', queue)] = queueDeclaration(`${where}: \`queues['${queue}']\``, queue, options);
  }
  return resolved;
}

function queueDeclaration(where: string, queue: string, value: unknown): QueueDeclaration {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BatchesConfigError(`${where} must be an object such as { type: 'quorum' }, got ${describeValue(value)}.`);
  }
  const options = value as QueueOptions;
  const unknown = Object.keys(options).filter((key) => !QUEUE_OPTION_KEYS.has(key));
  if (unknown.length > 0) {
    throw new BatchesConfigError(
      `${where} has unknown option(s) ${unknown.map((key) => `'${key}'`).join(', ')}. ` +
        `Known: ${[...QUEUE_OPTION_KEYS].join(', ')}; RabbitMQ queue arguments go in \`arguments\`.`,
    );
  }
  const type = options.type ?? 'classic';
  if (type !== 'classic' && type !== 'quorum') {
    throw new BatchesConfigError(`${where}: \`type\` must be 'classic' or 'quorum', got ${JSON.stringify(type)}.`);
  }
  if (options.maxPriority !== undefined) {
    if (!Number.isInteger(options.maxPriority) || options.maxPriority < 1 || options.maxPriority > 255) {
      throw new BatchesConfigError(
        `${where}: \`maxPriority\` must be an integer from 1 to 255 (RabbitMQ advises at most 10), got ${String(options.maxPriority)}.`,
      );
    }
    if (type === 'quorum') {
      throw new BatchesConfigError(
        `${where}: \`maxPriority\` is for classic queues; RabbitMQ refuses 'x-max-priority' on quorum queues. ` +
          'Leave it unset (RabbitMQ 4 quorum queues deliver priority 5 and above first without it), or use a classic queue.',
      );
    }
  }
  const args = options.arguments ?? {};
  if (typeof args !== 'object' || args === null || Array.isArray(args)) {
    throw new BatchesConfigError(`${where}: \`arguments\` must be an object of RabbitMQ queue arguments, got ${describeValue(args)}.`);
  }
  for (const [key, option] of [
    ['x-queue-type', 'type'],
    ['x-max-priority', 'maxPriority'],
  ]) {
    if (key in args) throw new BatchesConfigError(`${where}: set \`${option}\` instead of '${key}' in \`arguments\`.`);
  }
  const exchangeType = options.exchangeType ?? 'direct';
  if (!EXCHANGE_TYPES.includes(exchangeType)) {
    throw new BatchesConfigError(
      `${where}: \`exchangeType\` must be ${EXCHANGE_TYPES.map((each) => `'${each}'`).join(', ')}, got ${JSON.stringify(exchangeType)}.`,
    );
  }
  const exchange = options.exchange ?? queue;
  if (typeof exchange !== 'string' || exchange.length === 0 || exchange.length > 255) {
    throw new BatchesConfigError(
      `${where}: \`exchange\` must be an exchange name of 1 to 255 characters, got ${JSON.stringify(exchange)}; ` +
        "leave it unset for Celery's (the queue's name).",
    );
  }
  const routingKey = options.routingKey ?? queue;
  const bindings = options.bindings ?? [];
  if (typeof routingKey !== 'string' || routingKey.length > 255) {
    throw new BatchesConfigError(`${where}: \`routingKey\` must be a string of at most 255 characters, got ${JSON.stringify(routingKey)}.`);
  }
  if (!Array.isArray(bindings) || bindings.some((key) => typeof key !== 'string' || key.length > 255)) {
    throw new BatchesConfigError(`${where}: \`bindings\` must be a list of routing keys, got ${describeValue(bindings)}.`);
  }
  return {
    type,
    ...(options.maxPriority !== undefined && { maxPriority: options.maxPriority }),
    arguments: { ...args },
    exchange,
    exchangeType,
    routingKey,
    bindings: [...new Set(bindings)].filter((key) => key !== routingKey),
  };
}
