import type { Delivery, DeliveryChannel, QueueConsumer } from './broker.interface.js';
import { WaitingMessages, type StoredMessage } from './memory-messages.js';
import { Ring } from '../ring.js';

export class MemoryQueue {
  private readonly waiting = new WaitingMessages();
  private readonly consumers: MemoryConsumer[] = [];
  private next = 0;
  private scheduled = false;
  /** Waiters for the moment no message is left waiting. */
  private emptied: Array<() => void> = [];

  push(message: StoredMessage): void {
    this.waiting.push(message);
    this.schedule();
  }

  /** Puts unacked messages back at the front, marked redelivered, as RabbitMQ does. */
  requeue(messages: StoredMessage[]): void {
    const rest = this.waiting.takeAll();
    for (const message of messages) this.waiting.push(message.redelivery());
    for (const message of rest) this.waiting.push(message);
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
    return { ready: this.waiting.size, unacked: this.consumers.reduce((sum, consumer) => sum + consumer.unackedCount, 0) };
  }

  /** Resolves once every waiting message has been handed to a consumer. */
  drained(): Promise<void> {
    if (this.waiting.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.emptied.push(resolve));
  }

  take(): StoredMessage[] {
    const taken = this.waiting.takeAll();
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
    while (this.waiting.size > 0 && this.consumers.length > 0 && idle < this.consumers.length) {
      const consumer = this.consumers[this.next++ % this.consumers.length];
      if (!consumer.hasRoom) {
        idle++;
        continue;
      }
      idle = 0;
      consumer.deliver(this.waiting.shift());
    }
    if (this.waiting.size === 0) this.wakeDrainers();
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
  /**
   * Delivered messages in tag order, cleared once acked (acked ones behind an unacked one stay as
   * empty slots): tags rise by one, so the message of tag `t` is `t - firstTag` slots after the
   * front, and delivering and acking need no map and allocate nothing.
   */
  private readonly delivered = new Ring<StoredMessage>();
  /** The tag of the front slot. */
  private firstTag = 1;
  private unacked = 0;

  constructor(
    private readonly queue: MemoryQueue,
    private prefetch: number,
    private readonly onDelivery: (delivery: Delivery) => void,
  ) {}

  get hasRoom(): boolean {
    return this.consuming && this.unacked < this.prefetch;
  }

  get unackedCount(): number {
    return this.unacked;
  }

  deliver(message: StoredMessage): void {
    message.deliveryTag = this.firstTag + this.delivered.length;
    message.channel = this;
    this.delivered.push(message);
    this.unacked++;
    this.onDelivery(message);
  }

  ack(deliveryTag: number, multiple: boolean): void {
    if (!this.open) return;
    const { delivered } = this;
    const offset = deliveryTag - this.firstTag;
    if (!(offset >= 0 && offset < delivered.length && delivered.at(offset) !== undefined)) {
      // RabbitMQ closes the channel on an unknown tag (PRECONDITION_FAILED); fail as loudly.
      throw new Error(`memory broker: unknown delivery tag ${deliveryTag}`);
    }
    for (let at = multiple ? 0 : offset; at <= offset; at++) {
      if (delivered.at(at) === undefined) continue;
      delivered.clear(at);
      this.unacked--;
    }
    // Acked messages at the front leave the ring.
    while (delivered.length > 0 && delivered.at(0) === undefined) {
      delivered.shift();
      this.firstTag++;
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
    const unacked: StoredMessage[] = [];
    while (this.delivered.length > 0) {
      const message = this.delivered.shift();
      this.firstTag++;
      if (message !== undefined) unacked.push(message);
    }
    this.unacked = 0;
    this.queue.requeue(unacked);
  }
}
