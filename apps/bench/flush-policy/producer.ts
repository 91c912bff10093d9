import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Redis } from 'ioredis';
import { setTimeout as sleep } from 'node:timers/promises';
import { BATCHES_BROKER, BatchClient, BatchesModule, type Broker } from 'nestjs-batches';
import { AMQP_URL } from '../measurement.js';
import { now, REDIS_URL, TASK, type ChildMessage, type ParentMessage, type ProducerReport, type RunSpec } from './scenario.js';
import { percentile, poissonArrivals } from './stats.js';

/** Gives up waiting for results after this long without a new one (a stalled worker). */
const STALL_MS = 15_000;

/**
 * The open-loop producer of one run, in a process of its own: sends at Poisson arrival times
 * whatever the worker does (its send time in kwargs), and watches Redis for each result: the
 * backend publishes every stored result on the key's channel, as Celery's does, so the time a
 * result is seen there is the time a client waiting on it (`AsyncResult.get()`) would learn of it.
 */
const spec = JSON.parse(process.argv[2]) as RunSpec;
const send = (message: ChildMessage): void => void process.send?.(message);

@Module({ imports: [BatchesModule.forRoot({ broker: AMQP_URL, defaultQueue: spec.queue })] })
class ProducerModule {}

async function offerLoad(client: BatchClient, subscriber: Redis): Promise<ProducerReport> {
  const arrivals = poissonArrivals(spec.rate, spec.durationMs, spec.seed);
  const sentAt = new Float64Array(arrivals.length);
  const storedAt = new Float64Array(arrivals.length).fill(Number.NaN);
  const prefix = `celery-task-meta-${spec.runTag}-`;
  let stored = 0;
  let lastStored = now();
  subscriber.on('pmessage', (_pattern: string, channel: string) => {
    const index = Number(channel.slice(prefix.length));
    if (!Number.isNaN(storedAt[index])) return;
    storedAt[index] = now();
    lastStored = storedAt[index];
    stored++;
  });

  let publishFailures = 0;
  const unconfirmed = new Uint8Array(arrivals.length);
  const confirmations: Array<Promise<unknown>> = [];
  const start = now();
  for (let next = 0; next < arrivals.length;) {
    // Paced by the clock: everything due is sent, however late the timer fired.
    const elapsed = now() - start;
    for (; next < arrivals.length && arrivals[next] <= elapsed; next++) {
      sentAt[next] = now();
      const index = next;
      confirmations.push(
        client.applyAsync(TASK, { kwargs: { sentAt: sentAt[index] }, taskId: `${spec.runTag}-${index}` }).catch((error: unknown) => {
          // Perhaps sent all the same (a confirm that timed out): its result, if any, still counts.
          if (publishFailures++ === 0) console.error(`producer: publish failed: ${String(error)}`);
          unconfirmed[index] = 1;
        }),
      );
    }
    if (next < arrivals.length) await sleep(Math.max(0, arrivals[next] - (now() - start)));
  }
  await Promise.all(confirmations);
  while (stored < arrivals.length - publishFailures && now() - lastStored < STALL_MS) await sleep(10);

  const window = { from: start + spec.warmupMs, to: start + spec.durationMs - spec.cooldownMs };
  const seconds = (window.to - window.from) / 1000;
  const latencies: number[] = [];
  let offered = 0;
  let completed = 0;
  let missing = 0;
  sentAt.forEach((at, index) => {
    if (Number.isNaN(storedAt[index]) && !unconfirmed[index]) missing++;
    if (at >= window.from && at < window.to) {
      offered++;
      if (!Number.isNaN(storedAt[index])) latencies.push(storedAt[index] - at);
    }
    if (storedAt[index] >= window.from && storedAt[index] < window.to) completed++;
  });
  latencies.sort((a, b) => a - b);
  const late = arrivals.map((at, index) => sentAt[index] - start - at).toSorted((a, b) => a - b);
  return {
    sent: arrivals.length,
    offeredRate: offered / seconds,
    storedP50Ms: percentile(latencies, 50),
    storedP99Ms: percentile(latencies, 99),
    throughput: completed / seconds,
    missing,
    publishFailures,
    sendLateP99Ms: percentile(late, 99),
    window,
  };
}

try {
  const app = await NestFactory.createApplicationContext(ProducerModule, { logger: ['error', 'warn'] });
  const subscriber = new Redis(REDIS_URL);
  await subscriber.psubscribe(`celery-task-meta-${spec.runTag}-*`);
  // Connected before the clock starts, so the first arrivals are not held back by a handshake.
  await app.get<Broker>(BATCHES_BROKER).ready();
  process.once('message', (message: ParentMessage) => {
    if (message.type !== 'go') return;
    void offerLoad(app.get(BatchClient), subscriber).then(async (report) => {
      subscriber.disconnect();
      await app.close();
      send({ type: 'producer-report', report });
      process.disconnect();
    });
  });
  send({ type: 'ready' });
} catch (error) {
  send({ type: 'error', message: `producer: ${String(error)}` });
  process.exitCode = 1;
  process.disconnect();
}
