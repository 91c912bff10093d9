import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { AsyncMicroserviceOptions } from '@nestjs/microservices';
import { BATCHES_BROKER, BatchesModule, BatchesServer, BatchHandler, type Broker, type SimpleRequest } from 'nestjs-batches';
import { AMQP_URL, drainWith, type Measurement, type RunOptions } from '../measurement.js';
import { observabilityOptions, observe } from '../observability.js';

/**
 * A nestjs-batches worker with a no-op handler, prefetch derived by the library; with
 * `observability`, also events, metrics and/or tracing (the backlog carries no `traceparent`, so
 * batch spans have no links here).
 */
export async function batchesWorker({ n, queue, flushEvery = 100, observability }: RunOptions): Promise<Measurement> {
  const observed = await observabilityOptions(observability);
  let handled = 0;
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));

  @Injectable()
  class NoOp {
    // Like the Python peers' task (ignore_result=True): no result store in the measurement.
    @BatchHandler('bench.noop', { flushEvery, flushInterval: 100, queue, ignoreResult: true })
    handle(requests: SimpleRequest[]): void {
      handled += requests.length;
      // The last batch is acked right after this returns; resolve after that turn.
      if (handled >= n) setImmediate(done);
    }
  }

  @Module({ imports: [BatchesModule.forRoot({ broker: AMQP_URL, ...observed })], providers: [NoOp] })
  class BenchModule {}

  const app = await NestFactory.createMicroservice<AsyncMicroserviceOptions>(BenchModule, {
    inject: [BatchesServer],
    useFactory: (server: BatchesServer) => ({ strategy: server }),
    logger: ['error'],
  });
  const seen = observe(observability, app);
  // Timed from the first delivery, like the other consumers: connecting is not consuming.
  let started = 0;
  const broker = app.get<Broker>(BATCHES_BROKER);
  const consume = broker.consume.bind(broker);
  broker.consume = (name, options, onDelivery) =>
    consume(name, options, (delivery) => {
      if (started === 0) started = performance.now();
      onDelivery(delivery);
    });
  const suffix = observability && observability !== 'off' ? `, ${observability}` : '';
  return drainWith(app, finished, () => started, `nestjs-batches flushEvery ${flushEvery}${suffix}`, n, seen);
}
