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
import { drainWith, type Measurement, type RunOptions } from '../measurement.js';

/** The in-process pipeline alone: memory:// broker, decode, buffer, no-op handler, ack. */
export async function memoryPipeline({ n, flushEvery = 100 }: RunOptions): Promise<Measurement> {
  let handled = 0;
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));

  @Injectable()
  class NoOp {
    @BatchHandler('bench.noop', { flushEvery, flushInterval: 100, queue: 'bench', ignoreResult: true })
    handle(requests: SimpleRequest[]): void {
      handled += requests.length;
      if (handled >= n) setImmediate(done);
    }
  }

  @Module({ imports: [BatchesModule.forRoot({ broker: 'memory://' })], providers: [NoOp] })
  class MemoryBenchModule {}

  const app = await NestFactory.createMicroservice<AsyncMicroserviceOptions>(MemoryBenchModule, {
    inject: [BatchesServer],
    useFactory: (server: BatchesServer) => ({ strategy: server }),
    logger: ['error'],
  });
  const broker = app.get<MemoryBroker>(BATCHES_BROKER);
  await broker.declareQueue('bench');
  for (let i = 0; i < n; i++) {
    const { body, properties } = encodeTaskMessage({ task: 'bench.noop', args: [i] });
    await broker.publish({ exchange: 'bench', routingKey: 'bench', body, properties });
  }
  // In-process, the first delivery follows listen() at once.
  const started = performance.now();
  return drainWith(app, finished, () => started, `memory:// pipeline flushEvery ${flushEvery}`, n);
}
