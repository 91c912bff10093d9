import type { Delivery, DeliveryChannel, OutgoingMessage } from './broker.interface.js';

/**
 * A message in a queue. Handed to a consumer it is itself the delivery, with the consumer's tag and
 * channel: it is delivered once, since a requeue puts a fresh copy back.
 */
export class StoredMessage implements Delivery {
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

/** Messages taken from the front in chunks of this many: the spent chunk is dropped, nothing is copied. */
const CHUNK = 1024;

/** A queue's waiting messages, oldest first: pushing and taking the front are O(1). */
export class WaitingMessages {
  private chunks: Array<Array<StoredMessage | undefined>> = [[]];
  /** Index of the oldest message in the first chunk. */
  private front = 0;
  size = 0;

  push(message: StoredMessage): void {
    let last = this.chunks[this.chunks.length - 1];
    if (last.length === CHUNK) this.chunks.push((last = []));
    last.push(message);
    this.size++;
  }

  /** Takes the oldest message; only while `size > 0`. */
  shift(): StoredMessage {
    const chunk = this.chunks[0];
    const message = chunk[this.front] as StoredMessage;
    chunk[this.front++] = undefined;
    this.size--;
    if (this.front === CHUNK) {
      this.front = 0;
      this.chunks.shift();
      if (this.chunks.length === 0) this.chunks.push([]);
    }
    return message;
  }

  takeAll(): StoredMessage[] {
    const taken: StoredMessage[] = [];
    while (this.size > 0) taken.push(this.shift());
    return taken;
  }
}
