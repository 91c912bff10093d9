import {
  celeryQueueDeclaration,
  type Broker,
  type BrokerEvent,
  type ConsumeOptions,
  type Delivery,
  type OutgoingMessage,
  type QueueConsumer,
  type QueueDeclaration,
} from './broker.interface.js';
import { StoredMessage } from './memory-messages.js';
import { MemoryQueue } from './memory-queue.js';

/**
 * The embedded broker: in-process queues with AMQP's consume semantics (prefetch, late ack,
 * redelivery of unacked messages when a consumer goes away), so apps run with no services.
 */
export class MemoryBroker implements Broker {
  readonly url = 'memory://';
  private readonly queues = new Map<string, MemoryQueue>();
  /** exchange → routing key → queues (Celery's direct exchanges). */
  private readonly bindings = new Map<string, Map<string, Set<string>>>();

  /** Routes by exchange and routing key (direct semantics for every exchange type); queue types and arguments do not apply in memory. */
  async declareQueue(queue: string, declaration?: QueueDeclaration | string): Promise<void> {
    this.queue(queue);
    const { exchange, routingKey, bindings } =
      typeof declaration === 'object' ? declaration : celeryQueueDeclaration(queue, declaration ?? queue);
    const routes = this.bindings.get(exchange) ?? new Map<string, Set<string>>();
    this.bindings.set(exchange, routes);
    for (const key of [routingKey, ...bindings]) {
      const bound = routes.get(key) ?? new Set<string>();
      routes.set(key, bound.add(queue));
    }
  }

  async declareDeadLetterQueue(queue: string): Promise<void> {
    this.queue(queue);
  }

  async consume(queue: string, options: ConsumeOptions, onDelivery: (delivery: Delivery) => void): Promise<QueueConsumer> {
    return this.queue(queue).addConsumer(options.prefetch, onDelivery);
  }

  async publish(message: OutgoingMessage): Promise<void> {
    const targets = message.exchange === '' ? [message.routingKey] : (this.bindings.get(message.exchange)?.get(message.routingKey) ?? []);
    for (const name of targets) {
      const queue = this.queues.get(name);
      // Like AMQP, a message routed nowhere is dropped; the default exchange reaches only declared queues.
      queue?.push(new StoredMessage(Buffer.from(message.body), message.properties, message.exchange, message.routingKey, false));
    }
  }

  /** Messages waiting (not delivered) and delivered but unacked, per queue; for tests and examples. */
  stats(queue: string): { ready: number; unacked: number } {
    return this.queues.get(queue)?.stats() ?? { ready: 0, unacked: 0 };
  }

  /** Takes every waiting message off a queue (for inspecting dead letters). */
  drain(queue: string): Array<Omit<Delivery, 'channel' | 'deliveryTag'>> {
    return this.queues.get(queue)?.take() ?? [];
  }

  on(_event: BrokerEvent, _listener: (detail?: unknown) => void): void {
    // In-process: never connects or disconnects.
  }

  async ready(): Promise<void> {}

  async close(): Promise<void> {
    for (const queue of this.queues.values()) queue.closeConsumers();
  }

  private queue(name: string): MemoryQueue {
    let queue = this.queues.get(name);
    if (!queue) {
      queue = new MemoryQueue();
      this.queues.set(name, queue);
    }
    return queue;
  }
}
