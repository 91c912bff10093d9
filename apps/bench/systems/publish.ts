import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import amqplib from 'amqplib';
import { BATCHES_BROKER, BatchClient, BatchesModule, type Broker } from 'nestjs-batches';
import { backlogMessage, declareBacklogQueue, formatLabel, taskId } from '../backlog.js';
import { AMQP_URL, usage, type Measurement, type RunOptions } from '../measurement.js';

const WINDOW = 1000;

/**
 * Raw amqplib on a confirm channel, windows of 1000 publishes then waitForConfirms, through the
 * queue's exchange as Celery sends: how every backlog of the bench is filled, so each backlog of a
 * Celery format is also a measurement of raw publishing.
 */
export async function rawPublish({ n, queue, backlog: format = 'full', idPrefix }: RunOptions): Promise<Measurement> {
  const connection = await amqplib.connect(AMQP_URL);
  const channel = await connection.createConfirmChannel();
  await declareBacklogQueue(channel, queue);
  const cpu = process.cpuUsage();
  const started = performance.now();
  for (let i = 0; i < n; i++) {
    const { body, properties } = backlogMessage(format, i, idPrefix === undefined ? undefined : taskId(idPrefix, i));
    channel.publish(queue, queue, body, properties);
    if (i % WINDOW === WINDOW - 1) await channel.waitForConfirms();
  }
  await channel.waitForConfirms();
  const seconds = (performance.now() - started) / 1000;
  const measured = usage(cpu);
  await connection.close();
  return { system: `publish: raw amqplib confirm channel [${formatLabel(format)}]`, rate: n / seconds, messages: n, ...measured };
}

/** BatchClient.delay in `format`, the same windows of 1000 in flight, each resolved by its broker confirm. */
export async function clientPublish({ n, queue, format = 'lean' }: RunOptions): Promise<Measurement> {
  // `hostname` as encodeTaskMessage's default origin, so the messages are those of the raw publisher's backlog.
  @Module({
    imports: [BatchesModule.forRoot({ broker: AMQP_URL, defaultQueue: queue, messageFormat: format, hostname: 'nestjs-batches' })],
  })
  class PublishModule {}
  const app = await NestFactory.createApplicationContext(PublishModule, { logger: ['error'] });
  const client = app.get(BatchClient);
  // Connected and declared before the clock starts, without a message that would join the backlog.
  const broker = app.get<Broker>(BATCHES_BROKER);
  await broker.ready();
  await broker.declareQueue(queue);
  const cpu = process.cpuUsage();
  const started = performance.now();
  for (let sent = 0; sent < n; sent += WINDOW) {
    const window = Math.min(WINDOW, n - sent);
    await Promise.all(Array.from({ length: window }, (_, i) => client.delay('bench.noop', sent + i)));
  }
  const seconds = (performance.now() - started) / 1000;
  const measured = usage(cpu);
  await app.close();
  return { system: `publish: BatchClient.delay [${format}]`, rate: n / seconds, messages: n, ...measured };
}
