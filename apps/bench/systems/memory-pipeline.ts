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
import { MeasuredWindow, type Measurement, type RunOptions } from '../measurement.js';
import { observabilityOptions, observe, PRODUCER_TRACEPARENT, tracesProducers } from '../observability.js';

/** Handled before the clock starts (1,000 batches of 100: per-batch code compiles too), so the figure is the warmed-up pipeline a running worker has. */
export const WARM_UP = 100_000;

/** Message `i` of the in-process runs: a Celery task as Python sends it (full header table). */
export const memoryMessage = (i: number, headers?: Record<string, unknown>) =>
  encodeTaskMessage({ task: 'bench.noop', args: [i], headers }, 'full');

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
  let timed = 0;
  const window = new MeasuredWindow();

  @Injectable()
  class NoOp {
    @BatchHandler('bench.noop', { flushEvery, flushInterval: 100, queue: 'bench', ignoreResult: true })
    handle(requests: SimpleRequest[]): void {
      handled += requests.length;
      // Batches can end past the warm-up (an interval flush makes a short one), so count what is left then.
      if (timed === 0 && handled >= WARM_UP) {
        window.begin();
        timed = total - handled;
      }
      // The last batch is acked right after this returns; the window closes after that turn.
      if (handled >= total) setImmediate(() => window.end());
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
    const { body, properties } = memoryMessage(i, headers);
    await broker.publish({ exchange: 'bench', routingKey: 'bench', body, properties });
  }
  await app.listen();
  await window.ended;
  const extra = await seen();
  await app.close();
  const system = `memory:// pipeline flushEvery ${flushEvery}${observability && observability !== 'off' ? `, ${observability}` : ''}`;
  return window.measurement(system, timed, extra);
}
