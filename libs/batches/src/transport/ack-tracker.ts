import type { Delivery, DeliveryChannel } from '../broker/broker.interface.js';

const UNSETTLED = 0;
const SETTLED = 1;
/** Acked on its own, behind an unsettled delivery; the multiple-ack that passes it later skips it. */
const ACKED = 2;
type State = typeof UNSETTLED | typeof SETTLED | typeof ACKED;

/**
 * Acks one channel's deliveries with as few frames as is safe: a single multiple-ack when every
 * earlier unacked delivery is settled too, single acks for those settled behind one still running.
 */
export class AckTracker {
  /** Deliveries not yet passed by a multiple-ack, in delivery order, so their tags rise. */
  private tags: number[] = [];
  private states: State[] = [];
  /** Index of the oldest delivery not yet acked by a multiple-ack. */
  private head = 0;

  constructor(private readonly channel: DeliveryChannel) {}

  received(deliveryTag: number): void {
    this.tags.push(deliveryTag);
    this.states.push(UNSETTLED);
  }

  /** Deliveries still unacked. */
  get pending(): number {
    let count = 0;
    for (let index = this.head; index < this.states.length; index++) if (this.states[index] !== ACKED) count++;
    return count;
  }

  ack(deliveryTags: readonly number[]): void {
    if (!this.channel.open) return; // the broker redelivers a dead channel's messages
    for (const tag of deliveryTags) {
      const index = this.indexOf(tag);
      if (index >= 0 && this.states[index] === UNSETTLED) this.states[index] = SETTLED;
    }
    let upTo = -1;
    while (this.head < this.states.length && this.states[this.head] !== UNSETTLED) {
      if (this.states[this.head] === SETTLED) upTo = this.tags[this.head];
      this.head++;
    }
    if (upTo >= 0) this.channel.ack(upTo, true);
    for (const tag of deliveryTags) {
      const index = this.indexOf(tag);
      if (index < 0 || this.states[index] !== SETTLED) continue;
      this.states[index] = ACKED;
      this.channel.ack(tag, false);
    }
    this.compact();
  }

  /** Where `tag` is among the deliveries not yet passed, or -1: tags usually rise by one, else binary search. */
  private indexOf(tag: number): number {
    const { tags, head } = this;
    if (head >= tags.length) return -1;
    const guess = head + (tag - tags[head]);
    if (guess >= head && guess < tags.length && tags[guess] === tag) return guess;
    let low = head;
    let high = tags.length - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      if (tags[middle] === tag) return middle;
      if (tags[middle] < tag) low = middle + 1;
      else high = middle - 1;
    }
    return -1;
  }

  /** Drops what multiple-acks passed once it is most of the arrays, so they stay as long as the prefetch window. */
  private compact(): void {
    if (this.head < 1024 || this.head * 2 < this.tags.length) return;
    this.tags = this.tags.slice(this.head);
    this.states = this.states.slice(this.head);
    this.head = 0;
  }
}

/** The trackers of every channel deliveries came on; a channel's tracker goes with the channel. */
export class AckTrackers {
  private readonly trackers = new Map<DeliveryChannel, AckTracker>();

  /** Deliveries not yet acked on channels still open (a closed channel's are back with the broker). */
  unacked(): number {
    let count = 0;
    for (const [channel, tracker] of this.trackers) {
      if (channel.open) count += tracker.pending;
      else this.trackers.delete(channel);
    }
    return count;
  }

  received(delivery: Delivery): void {
    let tracker = this.trackers.get(delivery.channel);
    if (!tracker) {
      // A new channel is rare (one per queue per connection): forget the closed ones then.
      for (const channel of this.trackers.keys()) if (!channel.open) this.trackers.delete(channel);
      tracker = new AckTracker(delivery.channel);
      this.trackers.set(delivery.channel, tracker);
    }
    tracker.received(delivery.deliveryTag);
  }

  ack(deliveries: readonly Delivery[]): void {
    if (deliveries.length === 0) return;
    const first = deliveries[0].channel;
    if (deliveries.every((delivery) => delivery.channel === first)) {
      this.trackers.get(first)?.ack(deliveries.map((delivery) => delivery.deliveryTag));
      return;
    }
    const byChannel = new Map<DeliveryChannel, number[]>();
    for (const delivery of deliveries) {
      const tags = byChannel.get(delivery.channel) ?? [];
      byChannel.set(delivery.channel, tags);
      tags.push(delivery.deliveryTag);
    }
    for (const [channel, tags] of byChannel) this.trackers.get(channel)?.ack(tags);
  }
}
