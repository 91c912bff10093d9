import { PublishUnroutableError } from '../broker/broker-errors.js';
import { deadLetterQueue, type Broker, type Delivery } from '../broker/broker.interface.js';
import type { TaskMessage } from '../protocol/task-message-decode.js';
import { encodeRetry, type MessageFormat } from '../protocol/task-message-encode.js';

/** The longest dead-letter reason kept; reasons can quote producer-chosen names. */
const MAX_REASON_LENGTH = 300;

/** A reason as a header or a log line may carry it: printable ASCII, bounded length. */
export function printable(reason: string): string {
  const text = reason.replace(/[^\x20-\x7e]/g, '?');
  return text.length > MAX_REASON_LENGTH ? `${text.slice(0, MAX_REASON_LENGTH - 3)}...` : text;
}

/** Publishes what must come back later (retries) or never (dead letters); the caller acks after. */
export class Republisher {
  constructor(
    private readonly broker: Broker,
    /** How retries write their headers (the module's `messageFormat`). */
    private readonly format: MessageFormat = 'lean',
  ) {}

  /** Due after `retryDelay · 2^retries` ms, with `retries` + 1, on the queue it came from. */
  retry(message: TaskMessage, queue: string, retryDelay: number): Promise<void> {
    const eta = new Date(Date.now() + retryDelay * 2 ** message.retries);
    const encoded = encodeRetry(message, eta, this.format);
    return this.broker.publish(
      { exchange: '', routingKey: queue, body: encoded.body, properties: encoded.properties },
      { mandatory: true },
    );
  }

  /**
   * When `error` says no queue took the message (`PublishUnroutableError`: its node is down) and its
   * delivery's channel is still open: publishes it again every 1–5 s until a queue takes it (true),
   * the channel closes (false: RabbitMQ redelivers it), or it fails otherwise (false). The caller
   * holds the delivery unacked meanwhile. Undefined when `error` is not one to wait out.
   */
  heldUntilRoutable(error: unknown, publish: () => Promise<void>, delivery: Delivery): Promise<boolean> | undefined {
    if (!(error instanceof PublishUnroutableError) || !delivery.channel.open) return undefined;
    return this.untilRoutable(publish, delivery);
  }

  private async untilRoutable(publish: () => Promise<void>, delivery: Delivery): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(1_000 * attempt, 5_000)).unref());
      if (!delivery.channel.open) return false;
      try {
        await publish();
        return true;
      } catch (error) {
        if (!(error instanceof PublishUnroutableError)) return false;
      }
    }
  }

  /** The original message, unchanged but for headers saying why, on `<queue>.dead`. */
  deadLetter(delivery: Delivery, queue: string, reason: string): Promise<void> {
    return this.broker.publish(
      {
        exchange: '',
        routingKey: deadLetterQueue(queue),
        body: delivery.body,
        properties: {
          ...delivery.properties,
          headers: {
            ...delivery.properties.headers,
            'x-dead-letter-reason': printable(reason),
            'x-original-queue': queue,
            'x-original-routing-key': delivery.routingKey,
            'x-dead-lettered-at': new Date().toISOString(),
          },
        },
      },
      { mandatory: true },
    );
  }
}
