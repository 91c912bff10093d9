import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { AsyncMicroserviceOptions } from '@nestjs/microservices';
import { BatchClient, BatchesModule, BatchesServer, BatchHandler, type SimpleRequest } from 'nestjs-batches';
import { AMQP_URL, usage, type Measurement, type RunOptions } from '../measurement.js';

const RATE = 200;
const INTERVAL = 100;
const SECONDS = 10;

export const LATENESS = `interval flush lateness (${RATE} msg/s, ${INTERVAL} ms)`;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** A trickle of 200 msg/s with flushInterval 100 ms: how late do interval flushes fire? */
export async function intervalLateness({ queue }: RunOptions): Promise<Measurement> {
  const flushes: number[] = [];

  @Injectable()
  class Trickle {
    @BatchHandler('bench.trickle', { flushEvery: 10_000, flushInterval: INTERVAL, queue })
    handle(_requests: SimpleRequest[]): void {
      flushes.push(performance.now());
    }
  }

  @Module({ imports: [BatchesModule.forRoot({ broker: AMQP_URL, defaultQueue: queue })], providers: [Trickle] })
  class TrickleModule {}

  const app = await NestFactory.createMicroservice<AsyncMicroserviceOptions>(TrickleModule, {
    inject: [BatchesServer],
    useFactory: (server: BatchesServer) => ({ strategy: server }),
    logger: ['error'],
  });
  await app.listen();
  const client = app.get(BatchClient);
  const cpu = process.cpuUsage();
  const started = performance.now();
  let sent = 0;
  // Paced by the clock, not by setInterval's own drift.
  while (performance.now() - started < SECONDS * 1000) {
    const due = Math.floor(((performance.now() - started) / 1000) * RATE);
    while (sent < due) void client.delay('bench.trickle', sent++);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const measured = usage(cpu);
  await app.close();
  // bufferTime opens the next window when one closes: each gap past the interval is that flush's lateness.
  const late = flushes
    .slice(2, -1)
    .map((at, i) => at - flushes[i + 1] - INTERVAL)
    .toSorted((a, b) => a - b);
  return {
    system: LATENESS,
    rate: sent / SECONDS,
    messages: sent,
    ...measured,
    extra: { p50Ms: percentile(late, 50), p99Ms: percentile(late, 99), maxMs: late.at(-1) ?? 0, flushes: late.length },
  };
}
