import { Logger } from '@nestjs/common';
import { EventEmitter } from 'node:events';
import { connect, type AmqpConnectionManager, type ChannelWrapper } from 'amqp-connection-manager';
import type { Channel, ChannelModel, Message, Options } from 'amqplib';
import type { BatchesTlsOptions } from '../batches.options.js';
import { AmqpBroadcastConsumer } from './amqp-broadcast-consumer.js';
import { AmqpQueueConsumer } from './amqp-queue-consumer.js';
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
