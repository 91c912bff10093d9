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
  /**
   * Deliveries not yet passed by a multiple-ack, in delivery order (so their tags rise), in a ring
   * that doubles when full: receiving and acking allocate nothing per message.
   */
  private tags = new Float64Array(1024);
  private states = new Uint8Array(1024);
  /** Ring slot of the oldest delivery not yet passed, and how many follow it. */
  private start = 0;
  private count = 0;
  /** The tag last passed by a multiple-ack: every tag up to it is acked. */
  private passed = -1;

  constructor(readonly channel: DeliveryChannel) {}

  received(deliveryTag: number): void {
    if (this.count === this.tags.length) this.grow();
    const slot = (this.start + this.count) & (this.tags.length - 1);
    this.tags[slot] = deliveryTag;
    this.states[slot] = UNSETTLED;
    this.count++;
  }

  /** Deliveries still unacked. */
  get pending(): number {
    let pending = 0;
    for (let offset = 0; offset < this.count; offset++) if (this.stateAt(offset) !== ACKED) pending++;
    return pending;
  }

  ack(deliveryTags: readonly number[]): void {
    if (!this.channel.open) return; // the broker redelivers a dead channel's messages
    const mask = this.tags.length - 1;
    for (let at = 0; at < deliveryTags.length; at++) {
      const offset = this.offsetOf(deliveryTags[at]);
      if (offset >= 0 && this.stateAt(offset) === UNSETTLED) this.states[(this.start + offset) & mask] = SETTLED;
    }
    let upTo = -1;
    while (this.count > 0 && this.states[this.start] !== UNSETTLED) {
      if (this.states[this.start] === SETTLED) upTo = this.tags[this.start];
      this.passed = this.tags[this.start];
      this.start = (this.start + 1) & mask;
      this.count--;
    }
    if (upTo >= 0) this.channel.ack(upTo, true);
    for (let at = 0; at < deliveryTags.length; at++) {
      const tag = deliveryTags[at];
      // Tags rise, so a tag up to the last one passed is acked already: no search for those.
      if (tag <= this.passed) continue;
      const offset = this.offsetOf(tag);
      if (offset < 0 || this.stateAt(offset) !== SETTLED) continue;
      this.states[(this.start + offset) & mask] = ACKED;
      this.channel.ack(tag, false);
    }
  }

  private stateAt(offset: number): State {
    return this.states[(this.start + offset) & (this.tags.length - 1)] as State;
  }

  private tagAt(offset: number): number {
    return this.tags[(this.start + offset) & (this.tags.length - 1)];
  }

  /** Where `tag` is among the deliveries not yet passed (offset from the oldest), or -1: tags usually rise by one, else binary search. */
  private offsetOf(tag: number): number {
    if (this.count === 0) return -1;
    const guess = tag - this.tagAt(0);
    if (guess >= 0 && guess < this.count && this.tagAt(guess) === tag) return guess;
    let low = 0;
    let high = this.count - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const found = this.tagAt(middle);
      if (found === tag) return middle;
      if (found < tag) low = middle + 1;
      else high = middle - 1;
    }
    return -1;
  }

  /** Doubles the ring, its deliveries moved to the front in order. */
  private grow(): void {
    const tags = new Float64Array(this.tags.length * 2);
    const states = new Uint8Array(this.tags.length * 2);
    for (let offset = 0; offset < this.count; offset++) {
      tags[offset] = this.tagAt(offset);
      states[offset] = this.stateAt(offset);
    }
    this.tags = tags;
    this.states = states;
    this.start = 0;
  }
}

/** The trackers of every channel deliveries came on; a channel's tracker goes with the channel. */
export class AckTrackers {
  private readonly trackers = new Map<DeliveryChannel, AckTracker>();
  /** The channel of the last delivery received, and its tracker: deliveries come in runs from one channel. */
  private last?: AckTracker;

  /** Deliveries not yet acked on channels still open (a closed channel's are back with the broker). */
  unacked(): number {
    let count = 0;
    for (const [channel, tracker] of this.trackers) {
      if (channel.open) count += tracker.pending;
      else this.forget(channel);
    }
    return count;
  }

  received(delivery: Delivery): void {
    const { channel } = delivery;
    let tracker = this.last;
    if (tracker?.channel !== channel) {
      tracker = this.trackers.get(channel);
      if (!tracker) {
        // A new channel is rare (one per queue per connection): forget the closed ones then.
        for (const known of this.trackers.keys()) if (!known.open) this.forget(known);
        tracker = new AckTracker(channel);
        this.trackers.set(channel, tracker);
      }
      this.last = tracker;
    }
    tracker.received(delivery.deliveryTag);
  }

  ack(deliveries: readonly Delivery[]): void {
    if (deliveries.length === 0) return;
    const first = deliveries[0].channel;
    const tags: number[] = [];
    for (let at = 0; at < deliveries.length; at++) {
      const delivery = deliveries[at];
      if (delivery.channel !== first) return this.ackByChannel(deliveries);
      tags.push(delivery.deliveryTag);
    }
    this.trackers.get(first)?.ack(tags);
  }

  private ackByChannel(deliveries: readonly Delivery[]): void {
    const byChannel = new Map<DeliveryChannel, number[]>();
    for (const delivery of deliveries) {
      const tags = byChannel.get(delivery.channel) ?? [];
      byChannel.set(delivery.channel, tags);
      tags.push(delivery.deliveryTag);
    }
    for (const [channel, tags] of byChannel) this.trackers.get(channel)?.ack(tags);
  }

  private forget(channel: DeliveryChannel): void {
    this.trackers.delete(channel);
    if (this.last?.channel === channel) this.last = undefined;
  }
}
