import { Logger } from '@nestjs/common';
import { EventEmitter } from 'node:events';
import { connect, type AmqpConnectionManager, type ChannelWrapper } from 'amqp-connection-manager';
import type { Channel, ConfirmChannel, ConsumeMessage, Message } from 'amqplib';
import type { Broker, BrokerEvent, ConsumeOptions, Delivery, DeliveryChannel, OutgoingMessage, QueueConsumer } from './broker.interface.js';

/** Celery's exchange type: a queue `q` is bound to direct exchange `q` with key `q` (kombu's `Queue('q')`). */
const EXCHANGE_TYPE = 'direct';

const logger = new Logger('BatchesServer');

/**
 * RabbitMQ through amqp-connection-manager: reconnects, re-declares and re-consumes by itself,
 * and publishes on a confirm channel that keeps unconfirmed messages across reconnects.
 */
export class AmqpBroker implements Broker {
  readonly url: string;
  private readonly connection: AmqpConnectionManager;
  private readonly publisher: ChannelWrapper;
  private readonly events = new EventEmitter();
  private readonly consumers = new Set<AmqpQueueConsumer>();
  private readonly declared = new Map<string, Promise<void>>();

  constructor(urls: string[]) {
    this.url = urls.map(redact).join(', ');
    this.connection = connect(urls, { heartbeatIntervalInSeconds: 5, reconnectTimeInSeconds: 1 });
    this.connection.on('connect', ({ url }) => this.events.emit('connect', redact(String(url))));
    this.connection.on('disconnect', ({ err }) => {
      logger.warn(`Lost the connection to ${this.url} (${err?.message ?? 'closed'}); reconnecting`);
      this.events.emit('disconnect', err);
    });
    this.connection.on('connectFailed', ({ err }) => {
      logger.warn(`Cannot connect to ${this.url} (${err?.message ?? 'refused'}); retrying`);
      this.events.emit('disconnect', err);
    });
    this.publisher = this.connection.createChannel({ confirm: true });
    // A publisher channel error is followed by a reconnect that re-sends unconfirmed messages.
    this.publisher.on('error', (err: Error) => this.events.emit('disconnect', err));
  }

  declareQueue(queue: string, exchange = queue): Promise<void> {
    return this.declareOnce(`queue:${exchange}:${queue}`, (channel) => declareCeleryQueue(channel, queue, exchange));
  }

  declareDeadLetterQueue(queue: string): Promise<void> {
    return this.declareOnce(`dead:${queue}`, async (channel) => {
      await channel.assertQueue(queue, { durable: true, autoDelete: false, exclusive: false });
    });
  }

  async consume(queue: string, options: ConsumeOptions, onDelivery: (delivery: Delivery) => void): Promise<QueueConsumer> {
    const consumer = new AmqpQueueConsumer(this.connection, queue, options.prefetch, onDelivery);
    this.consumers.add(consumer);
    await consumer.start();
    return consumer;
  }

  async publish(message: OutgoingMessage): Promise<void> {
    await this.publisher.publish(message.exchange, message.routingKey, message.body, message.properties);
  }

  on(event: BrokerEvent, listener: (detail?: unknown) => void): void {
    this.events.on(event, listener);
  }

  ready(): Promise<void> {
    return this.publisher.waitForConnect();
  }

  /** The underlying amqp-connection-manager connection (for `BatchesServer.unwrap()`). */
  unwrap(): AmqpConnectionManager {
    return this.connection;
  }

  async close(): Promise<void> {
    // Closing a channel hands its unacked messages back to the queue.
    await Promise.all([...this.consumers].map((consumer) => consumer.close()));
    await this.publisher.close();
    await this.connection.close();
  }

  private declareOnce(key: string, declare: (channel: ConfirmChannel) => Promise<void>): Promise<void> {
    let declared = this.declared.get(key);
    if (!declared) {
      // addSetup runs at once only on a connected channel, so wait for one; as a setup it also runs on every reconnect.
      declared = this.publisher.waitForConnect().then(() => this.publisher.addSetup(declare));
      this.declared.set(key, declared);
      declared.catch(() => this.declared.delete(key));
    }
    return declared;
  }
}

/** One channel per queue: its prefetch is the queue's own, and its deliveries carry the channel they came on. */
class AmqpQueueConsumer implements QueueConsumer {
  private readonly wrapper: ChannelWrapper;
  private current?: { channel: Channel; consumerTag: string };
  private cancelled = false;

  constructor(
    connection: AmqpConnectionManager,
    private readonly queue: string,
    private prefetch: number,
    private readonly onDelivery: (delivery: Delivery) => void,
  ) {
    this.wrapper = connection.createChannel({ confirm: false });
    // The wrapper reopens the channel; deliveries of the old one are already marked closed.
    this.wrapper.on('error', (error: Error) => logger.warn(`Channel consuming '${queue}' failed: ${error.message}`));
  }

  start(): Promise<void> {
    return this.wrapper.addSetup((channel: Channel) => this.setup(channel));
  }

  private async setup(channel: Channel): Promise<void> {
    if (this.cancelled) return;
    // Declared on every (re)connect: consuming a queue the broker lost would fail the channel.
    await declareCeleryQueue(channel, this.queue, this.queue);
    const live = new LiveChannel(channel);
    channel.once('close', () => live.markClosed());
    channel.on('error', (error: Error) => {
      live.markClosed();
      logger.warn(`Channel consuming '${this.queue}' closed by the broker: ${error.message}`);
    });
    // Global (per-channel) prefetch can be changed while consuming; one consumer per channel makes it equal to per-consumer.
    await channel.prefetch(this.prefetch, true);
    const { consumerTag } = await channel.consume(
      this.queue,
      (message: ConsumeMessage | null) => {
        if (message === null) return; // the broker cancelled us (queue deleted); the wrapper's reconnect re-consumes
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
    this.current = { channel, consumerTag };
  }

  async setPrefetch(prefetch: number): Promise<void> {
    if (prefetch === this.prefetch) return;
    this.prefetch = prefetch;
    await this.current?.channel.prefetch(prefetch, true).catch(() => undefined);
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

async function declareCeleryQueue(channel: Channel, queue: string, exchange: string): Promise<void> {
  await channel.assertExchange(exchange, EXCHANGE_TYPE, { durable: true, autoDelete: false });
  // No queue arguments: Python workers declare queues the same way and RabbitMQ refuses mismatches.
  await channel.assertQueue(queue, { durable: true, autoDelete: false, exclusive: false });
  await channel.bindQueue(queue, exchange, queue);
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}
