import { Logger } from '@nestjs/common';
import { EventEmitter } from 'node:events';
import { connect, type AmqpConnectionManager, type ChannelWrapper } from 'amqp-connection-manager';
import type { Channel, ChannelModel, ConsumeMessage, Message } from 'amqplib';
import { MAX_PREFETCH, type BatchesTlsOptions } from '../batches.options.js';
import { pythonSafeHeaders } from './amqp-integer.js';
import {
  BrokerFailedError,
  declarationConflict,
  PublishTimeoutError,
  unrecoverableConnectError,
  type DeclarationContext,
} from './broker-errors.js';
import { celeryQueueDeclaration, queueArguments } from './broker.interface.js';
import type {
  BroadcastBinding,
  BroadcastMessage,
  Broker,
  BrokerEvent,
  ConsumeOptions,
  Delivery,
  DeliveryChannel,
  OutgoingMessage,
  PublishOptions,
  QueueConsumer,
  QueueConsumption,
  QueueDeclaration,
  QueueType,
} from './broker.interface.js';

const logger = new Logger('BatchesServer');

/** Options of `new AmqpBroker(urls, options)`. */
export interface AmqpBrokerOptions {
  /** TLS of `amqps://` URLs (the module's `brokerTls`). */
  tls?: BatchesTlsOptions;
}

/**
 * RabbitMQ through amqp-connection-manager: reconnects and re-consumes by itself, and publishes on
 * a confirm channel that keeps unconfirmed messages across reconnects. Errors that reconnecting
 * cannot fix stop it for good (`failure`), with one log line naming the cause and the fix.
 */
export class AmqpBroker implements Broker {
  readonly url: string;
  private readonly connection: AmqpConnectionManager;
  private readonly publisher: ChannelWrapper;
  private readonly events = new EventEmitter();
  private readonly consumers = new Set<AmqpQueueConsumer | AmqpBroadcastConsumer>();
  /** Declarations made on the current connection; like kombu, declared again after a reconnect. */
  private readonly declared = new Map<string, Promise<void>>();
  /** The last declaration given per queue name: used again by callers that give none (re-declarations, canvas sends). */
  private readonly queueDeclarations = new Map<string, QueueDeclaration>();
  private failedAttempts = 0;
  private closed = false;
  private stop!: (error: Error) => void;
  /** Rejects once the broker failed or was closed: what waits for it should stop waiting. */
  private readonly stopped = new Promise<never>((_resolve, reject) => (this.stop = reject));
  /** Set once an error that retrying cannot fix has stopped the broker. */
  failure?: BrokerFailedError;

  /** `options.tls`: for `amqps://` URLs, Node `tls.connect` options (CA, client certificate, servername). */
  constructor(urls: string[], options: AmqpBrokerOptions = {}) {
    this.url = urls.map(redact).join(', ');
    this.events.setMaxListeners(0);
    this.stopped.catch(() => undefined);
    this.connection = connect(urls, {
      heartbeatIntervalInSeconds: 5,
      reconnectTimeInSeconds: 1,
      // amqplib hands these to tls.connect for amqps:// URLs (and ignores them for amqp://).
      ...(options.tls && { connectionOptions: { ...options.tls } }),
    });
    // Registered before any channel's: the declaration cache is cleared before channels set up again.
    this.connection.on('connect', ({ url }) => {
      this.declared.clear();
      if (this.failedAttempts > 0) logger.log(`Connected to ${redact(String(url))} after ${this.failedAttempts} failed attempt(s)`);
      this.failedAttempts = 0;
      this.events.emit('connect', redact(String(url)));
    });
    this.connection.on('disconnect', ({ err }) => {
      this.declared.clear();
      if (this.closed || this.failure) return;
      logger.warn(`Lost the connection to ${this.url} (${err?.message ?? 'closed'}); reconnecting`);
      this.events.emit('disconnect', err);
    });
    this.connection.on('connectFailed', ({ err, url }) => {
      if (this.closed || this.failure) return;
      const fatal = unrecoverableConnectError(err, redact(String(url ?? this.url)));
      if (fatal) return void this.fail(fatal);
      this.failedAttempts++;
      // 1, 2, 4, 8… attempts: a broker that stays down is reported without a line every second.
      if ((this.failedAttempts & (this.failedAttempts - 1)) === 0) {
        logger.warn(`Cannot connect to ${this.url} (${err?.message ?? 'refused'}); retrying every second (attempt ${this.failedAttempts})`);
      }
      this.events.emit('disconnect', err);
    });
    this.publisher = this.connection.createChannel({ confirm: true });
    // A publisher channel error is followed by a reconnect that re-sends unconfirmed messages.
    this.publisher.on('error', (err: Error) => this.events.emit('disconnect', err));
  }

  declareQueue(queue: string, declaration?: QueueDeclaration | string): Promise<void> {
    if (typeof declaration === 'object') this.queueDeclarations.set(queue, declaration);
    const declared =
      typeof declaration === 'string'
        ? celeryQueueDeclaration(queue, declaration)
        : (declaration ?? this.queueDeclarations.get(queue) ?? celeryQueueDeclaration(queue));
    return this.declareOnce(
      queue,
      `queue:${queue}:${JSON.stringify(declared)}`,
      (channel) => declareTaskQueue(channel, queue, declared),
      true,
      {
        declaration: declared,
      },
    );
  }

  /** `type`: the main queue's, so dead letters are as safe as the tasks were. */
  declareDeadLetterQueue(queue: string, type: QueueType = 'classic'): Promise<void> {
    const deadLetterOf = queue.endsWith('.dead') ? queue.slice(0, -'.dead'.length) : queue;
    return this.declareOnce(
      queue,
      `dead:${queue}:${type}`,
      async (channel) => {
        await channel.assertQueue(queue, {
          durable: true,
          autoDelete: false,
          exclusive: false,
          arguments: queueArguments({ type, arguments: {} }),
        });
      },
      true,
      { deadLetterOf },
    );
  }

  async consume(queue: string, options: ConsumeOptions, onDelivery: (delivery: Delivery) => void): Promise<QueueConsumer> {
    const consumer = new AmqpQueueConsumer(this.connection, queue, options.prefetch, onDelivery, () => this.declareQueue(queue));
    this.consumers.add(consumer);
    await Promise.race([consumer.start(), this.stopped]);
    return consumer;
  }

  /** Read-only, for health checks: each task queue consumer and whether it consumes right now. */
  consuming(): QueueConsumption[] {
    const consumptions: QueueConsumption[] = [];
    for (const consumer of this.consumers) {
      if (consumer instanceof AmqpQueueConsumer) consumptions.push({ queue: consumer.queue, consuming: consumer.consuming });
    }
    return consumptions;
  }

  declareTransientExchange(exchange: string, type: BroadcastBinding['exchangeType']): Promise<void> {
    return this.declareOnce(
      exchange,
      `transient-exchange:${exchange}`,
      async (channel) => {
        await channel.assertExchange(exchange, type, { durable: false, autoDelete: false });
      },
      false,
    );
  }

  async consumeBroadcast(binding: BroadcastBinding, onMessage: (message: BroadcastMessage) => void): Promise<QueueConsumer> {
    const consumer = new AmqpBroadcastConsumer(this.connection, binding, onMessage, () => this.declareBroadcast(binding));
    this.consumers.add(consumer);
    await Promise.race([consumer.start(), this.stopped]);
    return consumer;
  }

  /**
   * Not cached per connection: an auto-delete queue goes away with its consumer's channel, so each
   * new consumer channel declares it again. A conflict is this binding's problem, not the worker's.
   */
  private declareBroadcast(binding: BroadcastBinding): Promise<void> {
    return this.onOwnChannel(
      binding.queue,
      async (channel) => {
        await channel.assertExchange(binding.exchange, binding.exchangeType, { durable: false, autoDelete: false });
        const { consumerCount } = await channel.assertQueue(binding.queue, {
          durable: false,
          autoDelete: true,
          exclusive: false,
          arguments: binding.queueArguments,
        });
        await channel.bindQueue(binding.queue, binding.exchange, binding.routingKey);
        binding.onDeclared?.(consumerCount);
      },
      false,
    );
  }

  async publish(message: OutgoingMessage, options: PublishOptions = {}): Promise<void> {
    if (this.failure) throw this.failure;
    try {
      const properties = { ...message.properties, headers: pythonSafeHeaders(message.properties.headers), timeout: options.timeout };
      await this.publisher.publish(message.exchange, message.routingKey, message.body, properties);
    } catch (error) {
      if (this.failure) throw this.failure;
      if (error instanceof Error && error.message === 'timeout') {
        throw new PublishTimeoutError(
          `RabbitMQ at ${this.url} did not confirm the message to '${message.routingKey}' within ${options.timeout} ms; it may not have been sent.`,
        );
      }
      throw error;
    }
  }

  on(event: BrokerEvent, listener: (detail?: unknown) => void): void {
    this.events.on(event, listener);
  }

  async ready(): Promise<void> {
    await this.connected();
  }

  /** The underlying amqp-connection-manager connection (for `BatchesServer.unwrap()`). */
  unwrap(): AmqpConnectionManager {
    return this.connection;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.events.emit('closed');
    this.stop(new Error(`The broker connection to ${this.url} is closed`));
    // Closing a channel hands its unacked messages back to the queue.
    await Promise.all([...this.consumers].map((consumer) => consumer.close()));
    await this.publisher.close();
    await this.connection.close();
  }

  /** Stops for good: no more reconnects; waiting declarations, consumers and publishes get `error`. */
  private fail(error: BrokerFailedError): BrokerFailedError {
    if (this.failure) return this.failure;
    this.failure = error;
    logger.error(error.message);
    this.stop(error);
    this.events.emit('failed', error);
    void this.connection.close().catch(() => undefined);
    return error;
  }

  /** The current connection, once there is one. */
  private async connected(): Promise<ChannelModel> {
    for (;;) {
      if (this.failure) throw this.failure;
      if (this.closed) throw new Error(`The broker connection to ${this.url} is closed`);
      const current = this.connection.connection;
      if (current) return current;
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          this.connection.off('connect', wake);
          this.events.off('failed', wake);
          this.events.off('closed', wake);
          resolve();
        };
        this.connection.on('connect', wake);
        this.events.on('failed', wake);
        this.events.on('closed', wake);
      });
    }
  }

  /** `fatal`: a refused declaration (PRECONDITION_FAILED) stops the broker; otherwise it only rejects. */
  private declareOnce(
    queue: string,
    key: string,
    declare: (channel: Channel) => Promise<void>,
    fatal = true,
    context?: DeclarationContext,
  ): Promise<void> {
    let declared = this.declared.get(key);
    if (!declared) {
      declared = this.onOwnChannel(queue, declare, fatal, context);
      this.declared.set(key, declared);
      declared.catch(() => this.declared.delete(key));
    }
    return declared;
  }

  /**
   * Runs a declaration on a channel of its own, so a refused declaration (which closes its channel)
   * never takes the publisher or a consumer down with it. A lost connection means: again on the next.
   */
  private async onOwnChannel(
    queue: string,
    work: (channel: Channel) => Promise<void>,
    fatal = true,
    context?: DeclarationContext,
  ): Promise<void> {
    for (;;) {
      const connection = await this.connected();
      try {
        const channel = await connection.createChannel();
        channel.on('error', () => undefined); // the refused call rejects with the same error
        await work(channel);
        await channel.close().catch(() => undefined);
        return;
      } catch (error) {
        const conflict = declarationConflict(error, queue, context);
        if (conflict && fatal) throw this.fail(conflict);
        if (conflict) throw conflict;
        if (this.failure || this.closed || !isConnectionLoss(error)) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }
}

function isConnectionLoss(error: unknown): boolean {
  return (
    error instanceof Error && (error.name === 'IllegalOperationError' || /Connection closed|Socket closed|ECONNRESET/.test(error.message))
  );
}

/**
 * One channel per queue, consuming with a per-consumer prefetch (`basic.qos` with global false: what
 * quorum queues support). Its deliveries carry the channel they came on.
 *
 * Held ETA requests must not eat the window full batches need, but a per-consumer prefetch applies
 * only to consumers created after the `basic.qos`. So the window is widened by consuming again on
 * the same channel with the wider prefetch and then cancelling the old consumer: unacked deliveries
 * of the old consumer stay ackable by their tags (tags belong to the channel) and no longer count
 * against the new consumer's window; deliveries already on their way to the old one arrive before
 * its cancel-ok and go to the same handler, so nothing is lost or delivered twice.
 */
class AmqpQueueConsumer implements QueueConsumer {
  private readonly wrapper: ChannelWrapper;
  /** The consumer now receiving: its channel, tag and prefetch. */
  private current?: { channel: Channel; tag: ConsumerTag; prefetch: number; live: LiveChannel };
  private cancelled = false;
  /** The channel now consuming; unset while the broker has cancelled the consumer. */
  private live?: LiveChannel;
  /** The window asked for by `setPrefetch` (the base prefetch plus the held requests). */
  private wanted: number;
  /** Re-consumes run one at a time; changes asked for meanwhile are coalesced into the next. */
  private reconsuming?: Promise<void>;
  private consumingStarted?: () => void;
  /** Resolves once the first setup consumes. */
  readonly started = new Promise<void>((resolve) => (this.consumingStarted = resolve));

  constructor(
    connection: AmqpConnectionManager,
    readonly queue: string,
    private readonly base: number,
    private readonly onDelivery: (delivery: Delivery) => void,
    private readonly declare: () => Promise<void>,
  ) {
    this.wanted = base;
    this.wrapper = connection.createChannel({ confirm: false });
    // The wrapper reopens the channel; deliveries of the old one are already marked closed.
    this.wrapper.on('error', (error: Error) => {
      if (!(error instanceof BrokerFailedError)) logger.warn(`Channel consuming '${queue}' failed: ${error.message}`);
    });
  }

  async start(): Promise<void> {
    await this.wrapper.addSetup((channel: Channel) => this.setup(channel));
    await this.started;
  }

  private async setup(channel: Channel): Promise<void> {
    if (this.cancelled) return;
    this.current = undefined;
    // Declared on every (re)connect, on a channel of its own: consuming a queue the broker lost would fail this one.
    await this.declare();
    const live = new LiveChannel(channel);
    channel.once('close', () => live.markClosed());
    channel.on('error', (error: Error) => {
      live.markClosed();
      logger.warn(`Channel consuming '${this.queue}' closed by the broker: ${error.message}`);
    });
    const prefetch = this.windowFor(this.wanted);
    await channel.prefetch(prefetch, false);
    const tag = await this.consumeOn(channel, live);
    this.current = { channel, tag, prefetch, live };
    this.live = live;
    this.consumingStarted?.();
  }

  /** Starts a consumer on `channel` with the prefetch of the last `basic.qos`. */
  private async consumeOn(channel: Channel, live: LiveChannel): Promise<ConsumerTag> {
    const tag: ConsumerTag = { value: '' };
    const { consumerTag } = await channel.consume(
      this.queue,
      (message: ConsumeMessage | null) => {
        if (message === null) {
          // The broker cancelled this consumer (queue deleted); the wrapper's reconnect re-consumes.
          if (this.current?.tag === tag && this.live === live) this.live = undefined;
          return;
        }
        this.onDelivery({
          body: message.content,
          properties: message.properties,
          exchange: message.fields.exchange,
          routingKey: message.fields.routingKey,
          redelivered: message.fields.redelivered,
          deliveryTag: message.fields.deliveryTag,
          channel: live,
        });
      },
      { noAck: false },
    );
    tag.value = consumerTag;
    return tag;
  }

  /** True while the broker delivers to this consumer: its channel is open and neither side cancelled it. */
  get consuming(): boolean {
    return !this.cancelled && this.live?.open === true;
  }

  /**
   * Asks for a window of `prefetch` (base + held). A wider one is given with slack (twice the held
   * count), so a growing number of held requests re-consumes only each time it doubles; the window
   * is narrowed again once the held requests are down to a quarter of the slack.
   */
  setPrefetch(prefetch: number): Promise<void> {
    this.wanted = Math.max(this.base, prefetch);
    this.reconsuming ??= this.reconsume().finally(() => (this.reconsuming = undefined));
    return this.reconsuming;
  }

  private windowFor(wanted: number): number {
    return Math.min(MAX_PREFETCH, this.base + 2 * Math.max(0, wanted - this.base));
  }

  private needsReconsume(applied: number): boolean {
    if (this.wanted > applied) return applied < MAX_PREFETCH;
    const slack = applied - this.base;
    return slack > 0 && 4 * (this.wanted - this.base) <= slack;
  }

  private async reconsume(): Promise<void> {
    for (;;) {
      const old = this.current;
      if (!old || this.cancelled || !old.live.open || !this.needsReconsume(old.prefetch)) return;
      const { channel, live } = old;
      const prefetch = this.windowFor(this.wanted);
      try {
        // Consume anew first, then cancel the old consumer: no gap in deliveries.
        await channel.prefetch(prefetch, false);
        const tag = await this.consumeOn(channel, live);
        if (this.current !== old || this.cancelled) {
          // Set up again on another channel meanwhile, or stopped: this consumer must not stay.
          await channel.cancel(tag.value).catch(() => undefined);
          return;
        }
        this.current = { channel, tag, prefetch, live };
        await channel.cancel(old.tag.value);
      } catch (error) {
        // A closed channel is set up again by the wrapper, with the window asked for by then.
        if (live.open && !this.cancelled) logger.warn(`Could not change the prefetch of '${this.queue}': ${String(error)}`);
        return;
      }
    }
  }

  async cancel(): Promise<void> {
    this.cancelled = true;
    await this.reconsuming?.catch(() => undefined);
    const current = this.current;
    if (current) await current.channel.cancel(current.tag.value).catch(() => undefined);
  }

  close(): Promise<void> {
    this.cancelled = true;
    return this.wrapper.close();
  }
}

/** A consumer tag, known once basic.consume-ok has come (deliveries may reach the handler first). */
interface ConsumerTag {
  value: string;
}

/** A noAck consumer of a transient queue (remote control, events), declared on every (re)connect. */
class AmqpBroadcastConsumer implements QueueConsumer {
  private readonly wrapper: ChannelWrapper;
  private current?: { channel: Channel; consumerTag: string };
  private cancelled = false;

  constructor(
    connection: AmqpConnectionManager,
    private readonly binding: BroadcastBinding,
    private readonly onMessage: (message: BroadcastMessage) => void,
    private readonly declare: () => Promise<void>,
  ) {
    this.wrapper = connection.createChannel({ confirm: false });
    this.wrapper.on('error', (error: Error) => {
      if (!(error instanceof BrokerFailedError)) logger.warn(`Channel consuming '${binding.queue}' failed: ${error.message}`);
    });
  }

  start(): Promise<void> {
    return this.wrapper.addSetup((channel: Channel) => this.setup(channel));
  }

  private async setup(channel: Channel): Promise<void> {
    if (this.cancelled) return;
    await this.declare();
    channel.on('error', (error: Error) => logger.warn(`Channel consuming '${this.binding.queue}' closed by the broker: ${error.message}`));
    const { consumerTag } = await channel.consume(
      this.binding.queue,
      (message: ConsumeMessage | null) => {
        if (message !== null) this.onMessage({ body: message.content, properties: message.properties });
      },
      { noAck: true },
    );
    this.current = { channel, consumerTag };
  }

  async setPrefetch(): Promise<void> {
    // noAck: the broker sends without a window.
  }

  async cancel(): Promise<void> {
    this.cancelled = true;
    const current = this.current;
    if (current) await current.channel.cancel(current.consumerTag).catch(() => undefined);
  }

  close(): Promise<void> {
    this.cancelled = true;
    return this.wrapper.close();
  }
}

/** A raw amqplib channel as deliveries see it: acks go to the channel the delivery came on, never to its successor. */
class LiveChannel implements DeliveryChannel {
  open = true;
  private readonly ackTarget = { fields: { deliveryTag: 0 } } as Message;

  constructor(private readonly channel: Channel) {}

  markClosed(): void {
    this.open = false;
  }

  ack(deliveryTag: number, multiple: boolean): void {
    if (!this.open) return;
    this.ackTarget.fields.deliveryTag = deliveryTag;
    try {
      this.channel.ack(this.ackTarget, multiple);
    } catch {
      // The channel closed under us: the broker redelivers what we could not ack.
      this.open = false;
    }
  }
}

/**
 * kombu's `Queue(queue, Exchange(exchange, type), routing_key, queue_arguments)`: by default Celery's
 * (direct exchange and key named after the queue, no arguments). Python workers must declare the
 * queue the same way: RabbitMQ refuses a declaration whose type or arguments differ.
 */
async function declareTaskQueue(channel: Channel, queue: string, declaration: QueueDeclaration): Promise<void> {
  await channel.assertExchange(declaration.exchange, declaration.exchangeType, { durable: true, autoDelete: false });
  await channel.assertQueue(queue, { durable: true, autoDelete: false, exclusive: false, arguments: queueArguments(declaration) });
  for (const key of [declaration.routingKey, ...declaration.bindings]) await channel.bindQueue(queue, declaration.exchange, key);
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}
