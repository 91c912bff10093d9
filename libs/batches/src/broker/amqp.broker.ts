import { Logger } from '@nestjs/common';
import { EventEmitter } from 'node:events';
import { connect, type AmqpConnectionManager, type ChannelWrapper } from 'amqp-connection-manager';
import type { Channel, ChannelModel, ConsumeMessage, Message, Options } from 'amqplib';
import { MAX_PREFETCH, type BatchesTlsOptions } from '../batches.options.js';
import { pythonSafeHeaders } from './amqp-integer.js';
import {
  BrokerFailedError,
  declarationConflict,
  PublishTimeoutError,
  PublishUnroutableError,
  unrecoverableConnectError,
  withPublishTimeout,
  unreachableQueue,
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
  /** The confirm channel every publish goes through; replaced when RabbitMQ closes it (see `publisherClosed`). */
  private publisher: ChannelWrapper;
  /** Why RabbitMQ closed each replaced publisher channel, so the publish that caused it can be told apart. */
  private readonly publisherErrors = new WeakMap<ChannelWrapper, Error>();
  private readonly events = new EventEmitter();
  private readonly consumers = new Set<AmqpQueueConsumer | AmqpBroadcastConsumer>();
  /** Declarations made on the current connection; like kombu, declared again after a reconnect. */
  private readonly declared = new Map<string, Declaration>();
  /** Each queue declaration's cache key (its JSON), built once per declaration object. */
  private readonly declarationKeys = new WeakMap<QueueDeclaration, string>();
  /** Celery's default declaration of each queue name sent to without one, and its key. */
  private readonly defaultDeclarations = new Map<string, { declaration: QueueDeclaration; key: string }>();
  /** The last declaration given per queue name: used again by callers that give none (re-declarations, canvas sends). */
  private readonly queueDeclarations = new Map<string, QueueDeclaration>();
  private failedAttempts = 0;
  /** Messages RabbitMQ handed back as unroutable, until the publish they belong to is confirmed. */
  private readonly returns = new ReturnedMessages();
  /** Queues RabbitMQ could not reach (home node down, no quorum), with the failed declarations so far. */
  private readonly unreachable = new Map<string, number>();
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
    this.publisher = this.openPublisher();
  }

  private openPublisher(): ChannelWrapper {
    const publisher: ChannelWrapper = this.connection.createChannel({
      confirm: true,
      setup: (channel: Channel) => {
        // RabbitMQ sends basic.return before the basic.ack of the same message, so a confirm can tell it apart.
        channel.on('return', (returned: Message) => this.returns.add(returned));
        channel.on('error', (error: Error) => this.publisherClosed(publisher, error));
      },
    });
    // A failed setup is followed by a reconnect that re-sends unconfirmed messages.
    publisher.on('error', (err: Error) => this.events.emit('disconnect', err));
    return publisher;
  }

  /**
   * RabbitMQ closed the publishing channel while the connection lives (a publish to an exchange
   * deleted since it was declared: 404 NOT_FOUND). amqp-connection-manager would hold every publish
   * until the next reconnect, so they move to a new channel: the old one's queued and unconfirmed
   * publishes are rejected by its close and sent again on the new one by `publish`.
   */
  private publisherClosed(publisher: ChannelWrapper, error: Error): void {
    if (publisher !== this.publisher || this.closed || this.failure || !this.connection.isConnected()) return;
    logger.warn(`RabbitMQ closed the publishing channel (${error.message}); publishing on a new one`);
    this.publisherErrors.set(publisher, error);
    this.publisher = this.openPublisher();
    void publisher.close().catch(() => undefined);
  }

  declareQueue(queue: string, declaration?: QueueDeclaration | string, options: { fresh?: boolean; timeout?: number } = {}): Promise<void> {
    if (options.fresh) for (const key of this.declared.keys()) if (key.startsWith(`queue:${queue}:`)) this.declared.delete(key);
    if (typeof declaration === 'object') this.queueDeclarations.set(queue, declaration);
    const { declaration: declared, key } = this.queueDeclaration(queue, declaration);
    const done = this.declareOnce(queue, key, (channel) => declareTaskQueue(channel, queue, declared), true, { declaration: declared });
    // Every send declares its queue: once this connection has, no timer and no race.
    if (options.timeout === undefined || this.declared.get(key)?.settled) return done;
    return withPublishTimeout(done, options.timeout);
  }

  /** What `queue` is declared as, and the cache key of that declaration (its JSON, computed once per declaration). */
  private queueDeclaration(queue: string, given: QueueDeclaration | string | undefined): { declaration: QueueDeclaration; key: string } {
    const declaration = typeof given === 'object' ? given : typeof given === 'string' ? undefined : this.queueDeclarations.get(queue);
    if (declaration) {
      let key = this.declarationKeys.get(declaration);
      if (key === undefined) this.declarationKeys.set(declaration, (key = `queue:${queue}:${JSON.stringify(declaration)}`));
      return { declaration, key };
    }
    // Through a named exchange (rare): built anew each time.
    if (typeof given === 'string') {
      const named = celeryQueueDeclaration(queue, given);
      return { declaration: named, key: `queue:${queue}:${JSON.stringify(named)}` };
    }
    let celery = this.defaultDeclarations.get(queue);
    if (!celery) {
      const standard = celeryQueueDeclaration(queue);
      celery = { declaration: standard, key: `queue:${queue}:${JSON.stringify(standard)}` };
      this.defaultDeclarations.set(queue, celery);
    }
    return celery;
  }

  /**
   * `type`: the main queue's, so dead letters are as safe as the tasks were. Resolves once declared,
   * or once RabbitMQ said it cannot reach the queue (its node is down): the declaration goes on in
   * the background and the task queue is consumed meanwhile.
   */
  declareDeadLetterQueue(queue: string, type: QueueType = 'classic'): Promise<void> {
    const deadLetterOf = queue.endsWith('.dead') ? queue.slice(0, -'.dead'.length) : queue;
    const declared = this.declareOnce(
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
    return new Promise<void>((resolve, reject) => {
      const settle = (): void => {
        this.events.off('unreachable', unreachable);
        resolve();
      };
      const unreachable = (name: string): void => {
        if (name === queue) settle();
      };
      this.events.on('unreachable', unreachable);
      declared.then(settle, (error: unknown) => {
        this.events.off('unreachable', unreachable);
        reject(error);
      });
    });
  }

  async consume(queue: string, options: ConsumeOptions, onDelivery: (delivery: Delivery) => void): Promise<QueueConsumer> {
    const consumer = new AmqpQueueConsumer(
      queue,
      options.prefetch,
      onDelivery,
      // After the broker cancelled the consumer or closed its channel, what was declared may be gone: ask RabbitMQ again.
      (fresh) => this.declareQueue(queue, undefined, { fresh }),
      this.connection,
    );
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

  /**
   * Resolves once RabbitMQ confirms the message. Sent while the connection is down, it waits for the
   * reconnect; caught on a connection that dies before its confirm, it is sent again on the next one
   * (at least once: RabbitMQ may have taken the first copy).
   */
  async publish(message: OutgoingMessage, options: PublishOptions = {}): Promise<void> {
    // mandatory: a queue that cannot take the message (deleted, or its node is down) hands it back instead of RabbitMQ dropping it.
    const publishOptions: Options.Publish & { timeout?: number } = {
      ...message.properties,
      headers: pythonSafeHeaders(message.properties.headers),
      mandatory: options.mandatory === true,
    };
    const deadline = options.timeout === undefined ? undefined : Date.now() + options.timeout;
    for (;;) {
      if (this.failure) throw this.failure;
      publishOptions.timeout = deadline === undefined ? undefined : Math.max(1, deadline - Date.now());
      const publisher = this.publisher;
      try {
        await publisher.publish(message.exchange, message.routingKey, message.body, publishOptions);
        if (options.mandatory && this.returns.take(message)) {
          throw new PublishUnroutableError(
            `RabbitMQ could not route the message to '${message.routingKey}'${message.exchange ? ` through exchange '${message.exchange}'` : ''} ` +
              '(312 NO_ROUTE): no queue took it, because the queue was deleted or, on a cluster, its node is down. It was not stored; send it again once the queue is back.',
          );
        }
        return;
      } catch (error) {
        if (this.failure) throw this.failure;
        if (error instanceof Error && error.message === 'timeout') {
          throw new PublishTimeoutError(
            `RabbitMQ at ${this.url} did not confirm the message to '${message.routingKey}' within ${options.timeout} ms; it may not have been sent.`,
          );
        }
        if (this.closed) throw error;
        if (publisher !== this.publisher) {
          // Its channel was closed by RabbitMQ and replaced. If this publish is what closed it, sending it again would close the next one too.
          const closedBy = this.publisherErrors.get(publisher);
          if (message.exchange && closedBy?.message.includes(`no exchange '${message.exchange}'`)) {
            throw new PublishUnroutableError(
              `RabbitMQ has no exchange '${message.exchange}' (404 NOT_FOUND: it was deleted since it was declared), so the message to '${message.routingKey}' was not stored; declare the exchange again and resend it.`,
            );
          }
          continue;
        }
        if (!lostBeforeConfirm(error)) throw error;
      }
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
      const entry: Declaration = { promise: this.onOwnChannel(queue, declare, fatal, context), settled: false };
      this.declared.set(key, entry);
      entry.promise.then(
        () => (entry.settled = true),
        () => {
          if (this.declared.get(key) === entry) this.declared.delete(key);
        },
      );
      declared = entry;
    }
    return declared.promise;
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
        this.reachable(queue);
        return;
      } catch (error) {
        const conflict = declarationConflict(error, queue, context);
        if (conflict && fatal) throw this.fail(conflict);
        if (conflict) throw conflict;
        if (this.failure || this.closed) throw error;
        const reason = unreachableQueue(error);
        if (reason !== undefined) {
          await this.waitForReachable(queue, reason);
          continue;
        }
        if (!isConnectionLoss(error)) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  /**
   * A queue RabbitMQ cannot reach (its node is down): logged by name and reason at the 1st, 2nd,
   * 4th, 8th… failed declaration, retried every second at first and at most every 5 s, alone: the
   * connection, the publisher and other queues' consumers carry on.
   */
  private async waitForReachable(queue: string, reason: string): Promise<void> {
    const attempts = (this.unreachable.get(queue) ?? 0) + 1;
    this.unreachable.set(queue, attempts);
    if ((attempts & (attempts - 1)) === 0) {
      logger.warn(
        `Queue '${queue}' is unreachable: ${reason}. Declaring it again until its node is back (attempt ${attempts}); other queues are consumed meanwhile.`,
      );
    }
    this.events.emit('unreachable', queue);
    await new Promise((resolve) => setTimeout(resolve, Math.min(1_000 * attempts, 5_000)));
  }

  /** A declaration of `queue` succeeded: if it was unreachable, say it is back. */
  private reachable(queue: string): void {
    const attempts = this.unreachable.get(queue);
    if (attempts === undefined) return;
    this.unreachable.delete(queue);
    logger.log(`Queue '${queue}' is reachable again after ${attempts} failed declaration(s)`);
  }
}

/** A declaration made on the current connection; `settled` once RabbitMQ answered it. */
interface Declaration {
  promise: Promise<void>;
  settled: boolean;
}

/**
 * Returned (unroutable) messages, matched to their publish by exchange, routing key and body. Kept
 * for a minute at most, so returns of timed-out publishes do not pile up.
 */
class ReturnedMessages {
  private readonly returned: Array<{ exchange: string; routingKey: string; body: Buffer; at: number }> = [];

  add(message: Message): void {
    const now = Date.now();
    while (this.returned.length > 0 && (now - this.returned[0].at > 60_000 || this.returned.length >= 10_000)) this.returned.shift();
    this.returned.push({ exchange: message.fields.exchange, routingKey: message.fields.routingKey, body: message.content, at: now });
  }

  /** True (and forgotten) when `message` was returned. */
  take(message: OutgoingMessage): boolean {
    if (this.returned.length === 0) return false;
    const index = this.returned.findIndex(
      (each) => each.routingKey === message.routingKey && each.exchange === message.exchange && each.body.equals(message.body),
    );
    if (index < 0) return false;
    this.returned.splice(index, 1);
    return true;
  }
}

/** The publish's channel closed (its connection died) before RabbitMQ confirmed it. */
function lostBeforeConfirm(error: unknown): boolean {
  return error instanceof Error && (error.message === 'channel closed' || isConnectionLoss(error));
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
  private wrapper: ChannelWrapper;
  /** Set when the broker closed our channel: the next setup declares the queue anew. */
  private redeclare = false;
  private reopening?: NodeJS.Timeout;
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
    readonly queue: string,
    private readonly base: number,
    private readonly onDelivery: (delivery: Delivery) => void,
    private readonly declare: (fresh: boolean) => Promise<void>,
    private readonly connection: AmqpConnectionManager,
  ) {
    this.wanted = base;
    this.wrapper = this.openWrapper();
  }

  /** A channel that amqp-connection-manager sets up again on each reconnect. */
  private openWrapper(): ChannelWrapper {
    const wrapper = this.connection.createChannel({ confirm: false });
    // Deliveries of a lost channel are already marked closed.
    wrapper.on('error', (error: Error) => {
      if (!(error instanceof BrokerFailedError)) logger.warn(`Channel consuming '${this.queue}' failed: ${error.message}`);
    });
    return wrapper;
  }

  async start(): Promise<void> {
    await this.wrapper.addSetup((channel: Channel) => this.setup(channel));
    await this.started;
  }

  /**
   * The broker closed our channel while the connection lives (amqp-connection-manager would only
   * reopen it on the next reconnect): consume again on a new channel, declaring the queue anew.
   */
  private reopen(): void {
    if (this.cancelled || this.reopening) return;
    this.redeclare = true;
    this.reopening = setTimeout(() => {
      this.reopening = undefined;
      if (this.cancelled) return;
      const old = this.wrapper;
      this.wrapper = this.openWrapper();
      void old.close().catch(() => undefined);
      this.wrapper
        .addSetup((channel: Channel) => this.setup(channel))
        .catch((error: unknown) => {
          if (!this.cancelled) logger.warn(`Could not consume '${this.queue}' again: ${String(error)}`);
        });
    }, 1_000);
  }

  private async setup(channel: Channel): Promise<void> {
    if (this.cancelled) return;
    this.current = undefined;
    // Declared on every (re)connect, on a channel of its own: consuming a queue the broker lost would fail this one.
    const fresh = this.redeclare;
    await this.declare(fresh);
    this.redeclare = false;
    const live = new LiveChannel(channel);
    channel.once('close', () => live.markClosed());
    channel.on('error', (error: Error) => {
      live.markClosed();
      logger.warn(`Channel consuming '${this.queue}' closed by the broker: ${error.message}`);
      if (this.connection.isConnected()) this.reopen();
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
          // The broker cancelled this consumer: the queue was deleted, or its node went down. Like Celery, declare and consume it again.
          if (this.current?.tag === tag && this.live === live) {
            this.live = undefined;
            void this.resume(channel, live);
          }
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

  /**
   * Consumes again on the same channel once the queue can be declared (at once if it was deleted;
   * when its node is back if that node went down). Unacked deliveries stay ackable meanwhile.
   */
  private async resume(channel: Channel, live: LiveChannel): Promise<void> {
    logger.warn(
      `RabbitMQ cancelled the consumer of '${this.queue}' (the queue was deleted or its node went down); consuming it again once it can be declared`,
    );
    try {
      await this.declare(true);
      const current = this.current;
      if (this.cancelled || !live.open || this.live !== undefined || current?.channel !== channel) return;
      const tag = await this.consumeOn(channel, live);
      this.current = { channel, tag, prefetch: current.prefetch, live };
      this.live = live;
      logger.log(`Consuming '${this.queue}' again`);
    } catch (error) {
      // A closed channel is set up again by the wrapper on the next connection.
      if (live.open && !this.cancelled) logger.warn(`Could not consume '${this.queue}' again: ${String(error)}`);
    }
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
    clearTimeout(this.reopening);
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
