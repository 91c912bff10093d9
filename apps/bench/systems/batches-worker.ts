import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { AsyncMicroserviceOptions } from '@nestjs/microservices';
import { BATCHES_BROKER, BatchesModule, BatchesServer, BatchHandler, type Broker, type SimpleRequest } from 'nestjs-batches';
import { AMQP_URL, drainWith, MeasuredWindow, type Measurement, type RunOptions } from '../measurement.js';
import { observabilityOptions, observe } from '../observability.js';

export const batchesWorkerName = (flushEvery: number, format: string, results: boolean): string =>
  `nestjs-batches flushEvery ${flushEvery}${results ? ', results in Redis' : ''} [${format}]`;

/**
 * A nestjs-batches worker, prefetch derived by the library, with a no-op handler (`ignoreResult`,
 * like the Python peers' task) or, with `resultBackend`, a handler returning one value per request
 * that the worker stores there before acking. With `observability`, also events, metrics and/or
 * tracing (the backlog carries no `traceparent`, so batch spans have no links here).
 */
export async function batchesWorker({
  n,
  queue,
  flushEvery = 100,
  format = 'full',
  resultBackend,
  observability,
}: RunOptions): Promise<Measurement> {
  const observed = await observabilityOptions(observability);

  @Injectable()
  class Handler {
    @BatchHandler('bench.noop', { flushEvery, flushInterval: 100, queue, ignoreResult: !resultBackend })
    handle(requests: SimpleRequest[]): unknown[] | void {
      if (resultBackend) return requests.map((request) => request.args[0]);
    }
  }

  @Module({
    imports: [BatchesModule.forRoot({ broker: AMQP_URL, ...(resultBackend && { resultBackend }), ...observed })],
    providers: [Handler],
  })
  class BenchModule {}

  const app = await NestFactory.createMicroservice<AsyncMicroserviceOptions>(BenchModule, {
    inject: [BatchesServer],
    useFactory: (server: BatchesServer) => ({ strategy: server }),
    logger: ['error'],
  });
  const seen = observe(observability, app);
  // Timed from the first delivery to the ack of the last one (after its result is stored), like the other consumers.
  const window = new MeasuredWindow();
  let received = 0;
  let lastTag = 0;
  const watched = new WeakSet<object>();
  const broker = app.get<Broker>(BATCHES_BROKER);
  const consume = broker.consume.bind(broker);
  broker.consume = (name, options, onDelivery) =>
    consume(name, options, (delivery) => {
      window.begin();
      if (++received === n) lastTag = delivery.deliveryTag;
      const channel = delivery.channel;
      if (!watched.has(channel)) {
        watched.add(channel);
        const ack = channel.ack.bind(channel);
        channel.ack = (tag, multiple) => {
          ack(tag, multiple);
          if (lastTag !== 0 && (tag === lastTag || (multiple && tag > lastTag))) window.end();
        };
      }
      onDelivery(delivery);
    });
  const suffix = observability && observability !== 'off' ? `, ${observability}` : '';
  return drainWith(app, window, `${batchesWorkerName(flushEvery, format, Boolean(resultBackend))}${suffix}`, n, seen);
}
