import amqplib, { type Channel } from 'amqplib';
import { encodeTaskMessage, type MessageProperties } from 'nestjs-batches';
import { AMQP_URL } from './measurement.js';

/**
 * What a backlog holds: Celery task messages with Python Celery's full protocol-2 header table
 * (`full`) or our lean one (`lean`), Nest's own envelope (`nest`), or Nest's envelope carrying
 * Celery's full header table (`nest-celery-headers`: the broker's work per message is the same as
 * for `full`).
 */
export type MessageFormat = 'full' | 'lean' | 'nest' | 'nest-celery-headers';

/** Message `i` of a backlog in `format`; `id` is the task id (random when unset). */
export function backlogMessage(format: MessageFormat, i: number, id?: string): { body: Buffer; properties: MessageProperties } {
  if (format === 'full' || format === 'lean') return encodeTaskMessage({ task: 'bench.noop', args: [i], id }, format);
  // Nest's RMQ transport reads its own envelope, not Celery's.
  const headers =
    format === 'nest-celery-headers' ? encodeTaskMessage({ task: 'bench.noop', args: [i] }, 'full').properties.headers : undefined;
  return {
    body: Buffer.from(JSON.stringify({ pattern: 'bench.noop', data: [i] })),
    properties: { deliveryMode: 2, contentType: 'application/json', headers },
  };
}

/** Declares `queue` as Celery does (durable, bound with its own name to the direct exchange of that name) and empties it. */
export async function declareBacklogQueue(channel: Channel, queue: string): Promise<void> {
  await channel.assertExchange(queue, 'direct', { durable: true });
  await channel.assertQueue(queue, { durable: true });
  await channel.bindQueue(queue, queue, queue);
  await channel.purgeQueue(queue);
}

/** A task id of `prefix` (`xxxxxxxx-xxxx-xxxx-xxxx`) and `i`: UUID-shaped, like the random ones. */
export const taskId = (prefix: string, i: number): string => `${prefix}-${i.toString(16).padStart(12, '0')}`;

export async function deleteQueue(queue: string): Promise<void> {
  const connection = await amqplib.connect(AMQP_URL);
  const channel = await connection.createChannel();
  // The worker declared the dead-letter queue beside it.
  for (const name of [queue, `${queue}.dead`]) await channel.deleteQueue(name);
  await channel.deleteExchange(queue);
  await connection.close();
}
