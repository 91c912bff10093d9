/** What the transport needs of a broker: Celery-style queues, confirmed publishes, and consumers with late ack. */

export type HeaderValue = unknown;

export interface MessageProperties {
  contentType?: string;
  contentEncoding?: string;
  correlationId?: string;
  replyTo?: string;
  priority?: number;
  deliveryMode?: number;
  messageId?: string;
  headers?: Record<string, HeaderValue>;
}

export interface OutgoingMessage {
  exchange: string;
  routingKey: string;
  body: Buffer;
  properties: MessageProperties;
}

/** The channel a delivery came from: its tags mean nothing on any other channel. */
export interface DeliveryChannel {
  /** False once the channel is gone; its deliveries are then redelivered by the broker and must not be settled. */
  readonly open: boolean;
  ack(deliveryTag: number, multiple: boolean): void;
}

export interface Delivery {
  readonly body: Buffer;
  readonly properties: MessageProperties;
  readonly exchange: string;
  readonly routingKey: string;
  readonly redelivered: boolean;
  readonly deliveryTag: number;
  readonly channel: DeliveryChannel;
}

export interface PublishOptions {
  /** Reject with a `PublishTimeoutError` when the broker has not confirmed the message within this many ms. */
  timeout?: number;
  /**
   * Reject with a `PublishUnroutableError` when no queue takes the message (AMQP's mandatory flag),
   * instead of the broker dropping it: for tasks, retries and dead letters, whose queue was declared.
   */
  mandatory?: boolean;
}

export interface ConsumeOptions {
  prefetch: number;
}

/** RabbitMQ queue types a task queue can have: `classic` (Celery's default) or `quorum` (replicated). */
export type QueueType = 'classic' | 'quorum';

/** Exchange types a task queue can be bound through. */
export type QueueExchangeType = 'direct' | 'topic' | 'fanout';

/**
 * How a task queue is declared (kombu's `Queue(name, Exchange(exchange, type), routing_key,
 * queue_arguments)`); every side sharing the queue must declare it the same way.
 */
export interface QueueDeclaration {
  /** `classic` sends no `x-queue-type`, as Celery; `quorum` sends `x-queue-type: quorum`. */
  type: QueueType;
  /** `x-max-priority` (classic queues only). */
  maxPriority?: number;
  /** Further queue arguments, as given (`x-message-ttl`, `x-delivery-limit`, …). */
  arguments: Record<string, unknown>;
  /** Durable exchange the queue is bound to and `BatchClient` publishes to. */
  exchange: string;
  exchangeType: QueueExchangeType;
  /** Binding key and the routing key `BatchClient` publishes with. */
  routingKey: string;
  /** Further binding keys on the same exchange. */
  bindings: string[];
}

/** What a task queue's dead-letter queue is named after it: `<queue>.dead`. */
export const DEAD_LETTER_SUFFIX = '.dead';

export function deadLetterQueue(queue: string): string {
  return `${queue}${DEAD_LETTER_SUFFIX}`;
}

/** Celery's declaration of `queue`: direct exchange `queue`, routing key `queue`, no arguments. */
export function celeryQueueDeclaration(queue: string, exchange = queue): QueueDeclaration {
  return { type: 'classic', arguments: {}, exchange, exchangeType: 'direct', routingKey: queue, bindings: [] };
}

/** The queue arguments RabbitMQ is sent for `declaration`. */
export function queueArguments(declaration: Pick<QueueDeclaration, 'type' | 'maxPriority' | 'arguments'>): Record<string, unknown> {
  return {
    ...declaration.arguments,
    ...(declaration.type !== 'classic' && { 'x-queue-type': declaration.type }),
    ...(declaration.maxPriority !== undefined && { 'x-max-priority': declaration.maxPriority }),
  };
}

export interface QueueConsumer {
  /**
   * Asks for room for `prefetch` unacked messages (held ETA requests widen it). On RabbitMQ the
   * prefetch is per consumer: the window is changed by consuming again, at least this wide.
   */
  setPrefetch(prefetch: number): Promise<void>;
  /** Stops new deliveries; unacked ones stay settleable. */
  cancel(): Promise<void>;
}

/**
 * A transient queue bound to an exchange and consumed without acks, declared anew on every
 * (re)connect: what kombu's pidbox node (remote control) and event receivers use.
 */
export interface BroadcastBinding {
  exchange: string;
  exchangeType: 'fanout' | 'direct' | 'topic';
  queue: string;
  routingKey: string;
  /** RabbitMQ queue arguments (`x-expires`, `x-message-ttl`, …), exactly as the other side declares them. */
  queueArguments?: Record<string, unknown>;
  /** Called after each declaration with the consumers the queue already had (kombu warns when a node name is in use). */
  onDeclared?: (consumerCount: number) => void;
}

/** A message consumed without ack. */
export interface BroadcastMessage {
  readonly body: Buffer;
  readonly properties: MessageProperties;
}

/** A task queue's consumer as health checks see it: `consuming` while the broker delivers to it. */
export interface QueueConsumption {
  queue: string;
  consuming: boolean;
}

/** `failed`: an error that reconnecting cannot fix stopped the broker for good. */
export type BrokerEvent = 'connect' | 'disconnect' | 'failed';

export interface Broker {
  readonly url: string;
  /** Set once an error that reconnecting cannot fix (credentials, vhost, TLS, a conflicting queue) stopped the broker. */
  readonly failure?: Error;
  /**
   * Declares `queue` durable and binds it to its durable exchange. By default the way Celery does:
   * bound with key `queue` to the direct exchange of the same name (`celery` for the default queue)
   * with no arguments. A `declaration` (or, for a string, the exchange name) says otherwise; without
   * one, the last declaration given for this queue name on this broker is used again.
   */
  /**
   * `fresh`: ask the broker again even if this connection declared it already (it may have been
   * deleted since). `timeout` (ms): reject with `PublishTimeoutError` if the declaration is not done
   * by then (no timer when it is done already).
   */
  declareQueue(queue: string, declaration?: QueueDeclaration | string, options?: { fresh?: boolean; timeout?: number }): Promise<void>;
  /** Declares a durable queue reached through the default exchange (dead letters), of `type` (classic by default). */
  declareDeadLetterQueue(queue: string, type?: QueueType): Promise<void>;
  consume(queue: string, options: ConsumeOptions, onDelivery: (delivery: Delivery) => void): Promise<QueueConsumer>;
  /**
   * Declares a non-durable exchange (kombu's `durable=False`, e.g. `reply.celery.pidbox`) once per
   * connection. A conflicting declaration rejects without stopping the broker. Absent on in-process brokers.
   */
  declareTransientExchange?(exchange: string, type: BroadcastBinding['exchangeType']): Promise<void>;
  /**
   * Consumes `binding.queue` with noAck after declaring the exchange (non-durable), the queue
   * (non-durable, auto-delete, with its arguments) and the binding, again on every reconnect.
   * Absent on in-process brokers.
   */
  consumeBroadcast?(binding: BroadcastBinding, onMessage: (message: BroadcastMessage) => void): Promise<QueueConsumer>;
  /**
   * Read-only: the task queues' consumers (not broadcast ones) and whether each consumes right now
   * (false while its channel is down, after the broker cancelled it, or once cancelled). Absent on
   * in-process brokers.
   */
  consuming?(): QueueConsumption[];
  /** Resolves once the broker has confirmed the message; survives reconnects. */
  publish(message: OutgoingMessage, options?: PublishOptions): Promise<void>;
  on(event: BrokerEvent, listener: (detail?: unknown) => void): void;
  /** Resolves once connected (or at once for in-process brokers). */
  ready(): Promise<void>;
  close(): Promise<void>;
}
