import amqplib, { type Channel } from 'amqplib';
import { encodeTaskMessage, type MessageProperties } from 'nestjs-batches';
import { AMQP_URL } from './measurement.js';

/**
 * Backlogs of Celery task bodies: with Python Celery's full protocol-2 header table (`full`), our
 * lean one (`lean`), or the lean message's properties with no `headers` at all (`no-headers`: no
 * worker can run it, it only measures the broker's floor for a persistent message).
 */
export type CeleryBacklogFormat = 'full' | 'lean' | 'no-headers';

/**
 * What a backlog holds: Celery task bodies (`CeleryBacklogFormat`), Nest's own envelope (`nest`),
 * or Nest's envelope carrying Celery's full header table (`nest-celery-headers`: the broker's work
 * per message is the same as for `full`).
 */
export type MessageFormat = CeleryBacklogFormat | 'nest' | 'nest-celery-headers';

export const isCeleryBacklog = (format: MessageFormat): format is CeleryBacklogFormat =>
  format === 'full' || format === 'lean' || format === 'no-headers';

/** How a row names the format in its brackets (`[no headers]`, like the Nest row's). */
export const formatLabel = (format: MessageFormat): string => (format === 'no-headers' ? 'no headers' : format);

/** Message `i` of a backlog in `format`; `id` is the task id (random when unset). */
export function backlogMessage(format: MessageFormat, i: number, id?: string): { body: Buffer; properties: MessageProperties } {
  if (format === 'full' || format === 'lean') return encodeTaskMessage({ task: 'bench.noop', args: [i], id }, format);
  if (format === 'no-headers') {
    // The lean message less its header table (amqplib sends no headers field when it is undefined, not even an empty table).
    const { body, properties } = encodeTaskMessage({ task: 'bench.noop', args: [i], id }, 'lean');
    return { body, properties: { ...properties, headers: undefined } };
  }
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
