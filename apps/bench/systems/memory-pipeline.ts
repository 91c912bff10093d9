import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { AsyncMicroserviceOptions } from '@nestjs/microservices';
import {
  BATCHES_BROKER,
  BatchesModule,
  BatchesServer,
  BatchHandler,
  encodeTaskMessage,
  type MemoryBroker,
  type SimpleRequest,
} from 'nestjs-batches';
import { usage, type Measurement, type RunOptions } from '../measurement.js';
import { observabilityOptions, observe, PRODUCER_TRACEPARENT, tracesProducers } from '../observability.js';

/** Handled before the clock starts, so the figure is the warmed-up (JIT-compiled) pipeline a running worker has. */
const WARM_UP = 20_000;

/**
 * The in-process pipeline alone: memory:// broker, decode, buffer, no-op handler, ack. With
 * `observability` on, also events, metrics and/or tracing (see observability.ts); with tracing the
 * messages carry a producer's `traceparent`, as a traced `BatchClient` sends them, so every batch span
 * gets its links.
 */
export async function memoryPipeline({ n, flushEvery = 100, observability }: RunOptions): Promise<Measurement> {
  const total = n + WARM_UP;
  const observed = await observabilityOptions(observability);
  let handled = 0;
  let started = 0;
  let timed = n;
  let cpu = process.cpuUsage();
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));

  @Injectable()
  class NoOp {
    @BatchHandler('bench.noop', { flushEvery, flushInterval: 100, queue: 'bench', ignoreResult: true })
    handle(requests: SimpleRequest[]): void {
      handled += requests.length;
      // Batches can end past the warm-up (an interval flush makes a short one), so count what is left then.
      if (started === 0 && handled >= WARM_UP) {
        started = performance.now();
        cpu = process.cpuUsage();
        timed = total - handled;
      }
      if (handled >= total) setImmediate(done);
    }
  }

  @Module({ imports: [BatchesModule.forRoot({ broker: 'memory://', ...observed })], providers: [NoOp] })
  class MemoryBenchModule {}

  const app = await NestFactory.createMicroservice<AsyncMicroserviceOptions>(MemoryBenchModule, {
    inject: [BatchesServer],
    useFactory: (server: BatchesServer) => ({ strategy: server }),
    logger: ['error'],
  });
  const seen = observe(observability, app);
  const broker = app.get<MemoryBroker>(BATCHES_BROKER);
  await broker.declareQueue('bench');
  const headers = tracesProducers(observability) ? { traceparent: PRODUCER_TRACEPARENT } : undefined;
  for (let i = 0; i < total; i++) {
    const { body, properties } = encodeTaskMessage({ task: 'bench.noop', args: [i], headers }, 'full');
    await broker.publish({ exchange: 'bench', routingKey: 'bench', body, properties });
  }
  await app.listen();
  await finished;
  const seconds = (performance.now() - started) / 1000;
  const measured = usage(cpu);
  const extra = await seen();
  await app.close();
  const system = `memory:// pipeline flushEvery ${flushEvery}${observability && observability !== 'off' ? `, ${observability}` : ''}`;
  return { system, rate: timed / seconds, ...measured, ...(extra && { extra }) };
}
