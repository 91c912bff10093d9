import { Logger } from '@nestjs/common';
import { EventEmitter } from 'node:events';
import { connect, type AmqpConnectionManager } from 'amqp-connection-manager';
import type { ChannelModel } from 'amqplib';
import type { BatchesTlsOptions } from '../batches.options.js';
import { AmqpBroadcastConsumer } from './amqp-broadcast-consumer.js';
import { AmqpDeclarations } from './amqp-declarations.js';
import { AmqpPublisher } from './amqp-publisher.js';
import { AmqpQueueConsumer } from './amqp-queue-consumer.js';
import { BrokerFailedError, unrecoverableConnectError } from './broker-errors.js';
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
  /** Publishes on a confirm channel (see `AmqpPublisher`). */
  private readonly publisher: AmqpPublisher;
  private readonly events = new EventEmitter();
  private readonly consumers = new Set<AmqpQueueConsumer | AmqpBroadcastConsumer>();
  /** Queues, exchanges and bindings declared on the current connection (see `AmqpDeclarations`). */
  private readonly declarations: AmqpDeclarations;
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
    this.declarations = new AmqpDeclarations(
      { connected: () => this.connected(), fail: (error) => this.fail(error), stopped: () => this.closed || this.failure !== undefined },
      this.events,
    );
    // Registered before any channel's: the declaration cache is cleared before channels set up again.
    this.connection.on('connect', ({ url }) => {
      this.declarations.forget();
      if (this.failedAttempts > 0) logger.log(`Connected to ${redact(String(url))} after ${this.failedAttempts} failed attempt(s)`);
      this.failedAttempts = 0;
      this.events.emit('connect', redact(String(url)));
    });
    this.connection.on('disconnect', ({ err }) => {
      this.declarations.forget();
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
    this.publisher = new AmqpPublisher(this.connection, this.events, {
      url: this.url,
      failure: () => this.failure,
      closed: () => this.closed,
    });
  }

  declareQueue(queue: string, declaration?: QueueDeclaration | string, options: { fresh?: boolean; timeout?: number } = {}): Promise<void> {
    return this.declarations.declareQueue(queue, declaration, options);
  }

  declareDeadLetterQueue(queue: string, type: QueueType = 'classic'): Promise<void> {
    return this.declarations.declareDeadLetterQueue(queue, type);
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
    return this.declarations.declareTransientExchange(exchange, type);
  }

  async consumeBroadcast(binding: BroadcastBinding, onMessage: (message: BroadcastMessage) => void): Promise<QueueConsumer> {
    const consumer = new AmqpBroadcastConsumer(this.connection, binding, onMessage, () => this.declarations.declareBroadcast(binding));
    this.consumers.add(consumer);
    await Promise.race([consumer.start(), this.stopped]);
    return consumer;
  }

  publish(message: OutgoingMessage, options: PublishOptions = {}): Promise<void> {
    return this.publisher.publish(message, options);
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
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}
