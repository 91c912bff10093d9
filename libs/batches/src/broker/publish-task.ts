import { PublishUnroutableError } from './broker-errors.js';
import type { Broker, MessageProperties, QueueDeclaration } from './broker.interface.js';

/**
 * Sends a task message to `queue` as Celery does: declares the queue (as `declaration` says, or
 * Celery's way) and publishes through its exchange with `mandatory`. When no queue took it (the
 * queue or its exchange was deleted since this connection declared them, or on a cluster its node
 * is down), RabbitMQ stored nothing: the queue is declared anew (waiting for its node, if need be)
 * and the message sent once more. `deadline` (epoch ms) bounds the whole send: past it, the
 * declaration or the publish rejects with `PublishTimeoutError`.
 */
export async function publishTask(
  broker: Broker,
  queue: string,
  declaration: QueueDeclaration | undefined,
  message: { body: Buffer; properties: MessageProperties },
  deadline?: number,
): Promise<void> {
  const left = (): number | undefined => (deadline === undefined ? undefined : Math.max(1, deadline - Date.now()));
  const send = async (fresh: boolean): Promise<void> => {
    // No timer once this connection has declared the queue: the usual case.
    await broker.declareQueue(queue, declaration, { fresh, timeout: left() });
    await broker.publish(
      {
        exchange: declaration?.exchange ?? queue,
        routingKey: declaration?.routingKey ?? queue,
        body: message.body,
        properties: message.properties,
      },
      { timeout: left(), mandatory: true },
    );
  };
  try {
    await send(false);
  } catch (error) {
    if (!(error instanceof PublishUnroutableError)) throw error;
    await send(true);
  }
}
