import amqplib from 'amqplib';
import { encodeTaskMessage } from 'nestjs-batches';
import { AMQP_URL } from './measurement.js';

/** `nest-celery-headers`: Nest's envelope carrying Celery's header table, so the broker's work per message is the same. */
export type MessageFormat = 'celery' | 'nest' | 'nest-celery-headers';

/**
 * Empties `queue` (declared as Celery declares it) and fills it with `n` small persistent task
 * messages before any consumer starts, so every system drains the same backlog.
 */
export async function prepareBacklog(queue: string, n: number, format: MessageFormat = 'celery'): Promise<void> {
  const connection = await amqplib.connect(AMQP_URL);
  const channel = await connection.createConfirmChannel();
  await channel.assertExchange(queue, 'direct', { durable: true });
  await channel.assertQueue(queue, { durable: true });
  await channel.bindQueue(queue, queue, queue);
  await channel.purgeQueue(queue);
  for (let i = 0; i < n; i++) {
    if (format === 'celery') {
      const { body, properties } = encodeTaskMessage({ task: 'bench.noop', args: [i] }, 'full');
      channel.sendToQueue(queue, body, properties);
    } else {
      // Nest's RMQ transport reads its own envelope, not Celery's.
      const headers =
        format === 'nest-celery-headers' ? encodeTaskMessage({ task: 'bench.noop', args: [i] }, 'full').properties.headers : undefined;
      channel.sendToQueue(queue, Buffer.from(JSON.stringify({ pattern: 'bench.noop', data: [i] })), {
        deliveryMode: 2,
        contentType: 'application/json',
        headers,
      });
    }
    if (i % 1000 === 999) await channel.waitForConfirms();
  }
  await channel.waitForConfirms();
  await connection.close();
}

export async function deleteQueue(queue: string): Promise<void> {
  const connection = await amqplib.connect(AMQP_URL);
  const channel = await connection.createChannel();
  // The worker declared the dead-letter queue beside it.
  for (const name of [queue, `${queue}.dead`]) await channel.deleteQueue(name);
  await channel.deleteExchange(queue);
  await connection.close();
}
