import {
  celeryQueueDeclaration,
  type Broker,
  type BrokerEvent,
  type ConsumeOptions,
  type Delivery,
  type DeliveryChannel,
  type OutgoingMessage,
  type QueueConsumer,
  type QueueDeclaration,
} from './broker.interface.js';

/**
 * A message in a queue. Handed to a consumer it is itself the delivery, with the consumer's tag and
 * channel: it is delivered once, since a requeue puts a fresh copy back.
 */
class StoredMessage implements Delivery {
  deliveryTag = 0;
  channel: DeliveryChannel = NOT_DELIVERED;

  constructor(
    readonly body: Buffer,
    readonly properties: OutgoingMessage['properties'],
    readonly exchange: string,
    readonly routingKey: string,
    readonly redelivered: boolean,
  ) {}

  /** The same message as the broker hands it out again after its channel closed. */
  redelivery(): StoredMessage {
    return new StoredMessage(this.body, this.properties, this.exchange, this.routingKey, true);
  }
}

const NOT_DELIVERED: DeliveryChannel = {
  open: false,
  ack: () => undefined,
};

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

class MemoryQueue {
  private ready: StoredMessage[] = [];
  private head = 0;
  private readonly consumers: MemoryConsumer[] = [];
  private next = 0;
  private scheduled = false;
  /** Waiters for the moment no message is left waiting. */
  private emptied: Array<() => void> = [];

  push(message: StoredMessage): void {
    this.ready.push(message);
    this.schedule();
  }

  /** Puts unacked messages back at the front, marked redelivered, as RabbitMQ does. */
  requeue(messages: StoredMessage[]): void {
    const rest = this.ready.slice(this.head);
    this.ready = [...messages.map((message) => message.redelivery()), ...rest];
    this.head = 0;
    this.schedule();
  }

  addConsumer(prefetch: number, onDelivery: (delivery: Delivery) => void): MemoryConsumer {
    const consumer = new MemoryConsumer(this, prefetch, onDelivery);
    this.consumers.push(consumer);
    this.schedule();
    return consumer;
  }

  removeConsumer(consumer: MemoryConsumer): void {
    const index = this.consumers.indexOf(consumer);
    if (index >= 0) this.consumers.splice(index, 1);
  }

  stats(): { ready: number; unacked: number } {
    return { ready: this.ready.length - this.head, unacked: this.consumers.reduce((sum, consumer) => sum + consumer.unackedCount, 0) };
  }

  /** Resolves once every waiting message has been handed to a consumer. */
  drained(): Promise<void> {
    if (this.head >= this.ready.length) return Promise.resolve();
    return new Promise((resolve) => this.emptied.push(resolve));
  }

  take(): StoredMessage[] {
    const taken = this.ready.slice(this.head);
    this.ready = [];
    this.head = 0;
    this.wakeDrainers();
    return taken;
  }

  closeConsumers(): void {
    // closeChannel() removes the consumer from the list.
    while (this.consumers.length > 0) this.consumers[0].closeChannel();
    // With no consumer left, nothing more will be delivered.
    this.wakeDrainers();
  }

  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // Deliver on a later turn, never inside publish() or ack(): callers must not be re-entered.
    setImmediate(() => {
      this.scheduled = false;
      this.dispatch();
    });
  }

  /** Round-robins waiting messages over consumers with room in their prefetch window. */
  private dispatch(): void {
    let idle = 0;
    while (this.head < this.ready.length && this.consumers.length > 0 && idle < this.consumers.length) {
      const consumer = this.consumers[this.next++ % this.consumers.length];
      if (!consumer.hasRoom) {
        idle++;
        continue;
      }
      idle = 0;
      const message = this.ready[this.head];
      this.ready[this.head++] = undefined as unknown as StoredMessage;
      consumer.deliver(message);
    }
    if (this.head > 1024 && this.head * 2 > this.ready.length) {
      this.ready = this.ready.slice(this.head);
      this.head = 0;
    }
    if (this.head >= this.ready.length) this.wakeDrainers();
  }

  private wakeDrainers(): void {
    const waiters = this.emptied;
    this.emptied = [];
    for (const resolve of waiters) resolve();
  }
}

class MemoryConsumer implements QueueConsumer, DeliveryChannel {
  open = true;
  private consuming = true;
  private nextTag = 1;
  private readonly unacked = new Map<number, StoredMessage>();

  constructor(
    private readonly queue: MemoryQueue,
    private prefetch: number,
    private readonly onDelivery: (delivery: Delivery) => void,
  ) {}

  get hasRoom(): boolean {
    return this.consuming && this.unacked.size < this.prefetch;
  }

  get unackedCount(): number {
    return this.unacked.size;
  }

  deliver(message: StoredMessage): void {
    message.deliveryTag = this.nextTag++;
    message.channel = this;
    this.unacked.set(message.deliveryTag, message);
    this.onDelivery(message);
  }

  ack(deliveryTag: number, multiple: boolean): void {
    if (!this.open) return;
    if (!this.unacked.has(deliveryTag)) {
      // RabbitMQ closes the channel on an unknown tag (PRECONDITION_FAILED); fail as loudly.
      throw new Error(`memory broker: unknown delivery tag ${deliveryTag}`);
    }
    if (multiple) {
      for (const tag of this.unacked.keys()) {
        if (tag > deliveryTag) break;
        this.unacked.delete(tag);
      }
    } else {
      this.unacked.delete(deliveryTag);
    }
    this.queue.schedule();
  }

  async setPrefetch(prefetch: number): Promise<void> {
    this.prefetch = prefetch;
    this.queue.schedule();
  }

  /**
   * Nothing in memory survives the process, so what was published before the cancel is delivered
   * first (the caller's handlers run it while it drains); then deliveries stop.
   */
  async cancel(): Promise<void> {
    if (this.open) await this.queue.drained();
    this.consuming = false;
  }

  /** The channel closes: its unacked messages go back to the queue. */
  closeChannel(): void {
    if (!this.open) return;
    this.open = false;
    this.queue.removeConsumer(this);
    this.queue.requeue([...this.unacked.values()]);
    this.unacked.clear();
  }
}
