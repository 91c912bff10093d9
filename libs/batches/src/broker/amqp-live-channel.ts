import type { Channel, Message } from 'amqplib';
import type { DeliveryChannel } from './broker.interface.js';

/** A raw amqplib channel as deliveries see it: acks go to the channel the delivery came on, never to its successor. */
export class LiveChannel implements DeliveryChannel {
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
