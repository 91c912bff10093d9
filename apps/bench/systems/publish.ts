import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import amqplib from 'amqplib';
import { BatchClient, BatchesModule, encodeTaskMessage } from 'nestjs-batches';
import { AMQP_URL, usage, type Measurement, type RunOptions } from '../measurement.js';

const WINDOW = 1000;

/** Raw amqplib on a confirm channel: windows of 1000 publishes, then waitForConfirms. */
export async function rawPublish({ n, queue }: RunOptions): Promise<Measurement> {
  const connection = await amqplib.connect(AMQP_URL);
  const channel = await connection.createConfirmChannel();
  await channel.assertExchange(queue, 'direct', { durable: true });
  await channel.assertQueue(queue, { durable: true });
  await channel.bindQueue(queue, queue, queue);
  const cpu = process.cpuUsage();
  const started = performance.now();
  for (let i = 0; i < n; i++) {
    const { body, properties } = encodeTaskMessage({ task: 'bench.noop', args: [i] }, 'full');
    channel.publish(queue, queue, body, properties);
    if (i % WINDOW === WINDOW - 1) await channel.waitForConfirms();
  }
  await channel.waitForConfirms();
  const seconds = (performance.now() - started) / 1000;
  const measured = usage(cpu);
  await connection.close();
  return { system: 'publish: raw amqplib confirm channel', rate: n / seconds, ...measured };
}

/** BatchClient.delay, the same windows of 1000 in flight, each resolved by its broker confirm. */
export async function clientPublish({ n, queue }: RunOptions): Promise<Measurement> {
  @Module({ imports: [BatchesModule.forRoot({ broker: AMQP_URL, defaultQueue: queue })] })
  class PublishModule {}
  const app = await NestFactory.createApplicationContext(PublishModule, { logger: ['error'] });
  const client = app.get(BatchClient);
  await client.delay('bench.warmup'); // connects and declares the queue
  const cpu = process.cpuUsage();
  const started = performance.now();
  for (let sent = 0; sent < n; sent += WINDOW) {
    const window = Math.min(WINDOW, n - sent);
    await Promise.all(Array.from({ length: window }, (_, i) => client.delay('bench.noop', sent + i)));
  }
  const seconds = (performance.now() - started) / 1000;
  const measured = usage(cpu);
  await app.close();
  return { system: 'publish: BatchClient.delay', rate: n / seconds, ...measured };
}
