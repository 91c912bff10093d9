import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { AsyncMicroserviceOptions } from '@nestjs/microservices';
import { BatchesModule, BatchesServer, BatchHandler, type SimpleRequest } from 'nestjs-batches';
import { AMQP_URL, usage, type Measurement, type RunOptions } from '../measurement.js';

/** A nestjs-batches worker with a no-op handler, prefetch derived by the library. */
export async function batchesWorker({ n, queue, flushEvery = 100 }: RunOptions): Promise<Measurement> {
  let handled = 0;
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));

  @Injectable()
  class NoOp {
    @BatchHandler('bench.noop', { flushEvery, flushInterval: 100, queue })
    handle(requests: SimpleRequest[]): void {
      handled += requests.length;
      // The last batch is acked right after this returns; resolve after that turn.
      if (handled >= n) setImmediate(done);
    }
  }

  @Module({ imports: [BatchesModule.forRoot({ broker: AMQP_URL })], providers: [NoOp] })
  class BenchModule {}

  const app = await NestFactory.createMicroservice<AsyncMicroserviceOptions>(BenchModule, {
    inject: [BatchesServer],
    useFactory: (server: BatchesServer) => ({ strategy: server }),
    logger: ['error'],
  });
  const cpu = process.cpuUsage();
  const started = performance.now();
  await app.listen();
  await finished;
  const seconds = (performance.now() - started) / 1000;
  const measured = usage(cpu);
  await app.close();
  return { system: `nestjs-batches flushEvery ${flushEvery}`, rate: n / seconds, ...measured };
}
