import type { Delivery, DeliveryChannel } from '../broker/broker.interface.js';

/**
 * Acks one channel's deliveries with as few frames as is safe: a single multiple-ack when every
 * earlier unacked delivery is settled too, single acks for those settled behind one still running.
 */
export class AckTracker {
  /** Unacked tags in delivery order → settled yet. */
  private readonly unacked = new Map<number, boolean>();

  constructor(private readonly channel: DeliveryChannel) {}

  received(deliveryTag: number): void {
    this.unacked.set(deliveryTag, false);
  }

  get pending(): number {
    return this.unacked.size;
  }

  settle(deliveryTags: readonly number[]): void {
    if (!this.channel.open) return; // the broker redelivers a dead channel's messages
    for (const tag of deliveryTags) if (this.unacked.has(tag)) this.unacked.set(tag, true);
    let upTo = -1;
    for (const [tag, settled] of this.unacked) {
      if (!settled) break;
      upTo = tag;
      this.unacked.delete(tag);
    }
    if (upTo >= 0) this.channel.ack(upTo, true);
    for (const tag of deliveryTags) {
      if (this.unacked.get(tag) !== true) continue;
      this.unacked.delete(tag);
      this.channel.ack(tag, false);
    }
  }
}

/** The trackers of every channel deliveries came on; a channel's tracker goes with the channel. */
export class AckTrackers {
  private readonly trackers = new WeakMap<DeliveryChannel, AckTracker>();

  received(delivery: Delivery): void {
    let tracker = this.trackers.get(delivery.channel);
    if (!tracker) {
      tracker = new AckTracker(delivery.channel);
      this.trackers.set(delivery.channel, tracker);
    }
    tracker.received(delivery.deliveryTag);
  }

  settle(deliveries: readonly Delivery[]): void {
    if (deliveries.length === 0) return;
    const first = deliveries[0].channel;
    if (deliveries.every((delivery) => delivery.channel === first)) {
      this.trackers.get(first)?.settle(deliveries.map((delivery) => delivery.deliveryTag));
      return;
    }
    const byChannel = new Map<DeliveryChannel, number[]>();
    for (const delivery of deliveries) {
      const tags = byChannel.get(delivery.channel) ?? [];
      byChannel.set(delivery.channel, tags);
      tags.push(delivery.deliveryTag);
    }
    for (const [channel, tags] of byChannel) this.trackers.get(channel)?.settle(tags);
  }
}
