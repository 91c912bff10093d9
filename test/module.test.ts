import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { BatchClient, BatchesModule, BatchesServer, BatchHandler, type SimpleRequest } from 'nestjs-batches';
import { AMQP_URL, queueCounts, rabbitSuite } from './support/rabbitmq.js';
import { waitFor } from './support/wait.js';
import { recorder, startWorker } from './support/worker-app.js';

describe('wiring the module into an app', () => {
  const suite = rabbitSuite();

  it('runs in a hybrid app (HTTP + worker) and drains its buffers on app.close()', async () => {
    const queue = suite.queue('hybrid');
    const Handler = recorder('hybrid.task', { flushEvery: 100, flushInterval: 60_000, queue });
    @Module({ imports: [BatchesModule.forRoot({ broker: AMQP_URL, defaultQueue: queue })], providers: [Handler] })
    class HybridModule {}
    const app = await NestFactory.create(HybridModule, { logger: ['error'], abortOnError: false });
    app.connectMicroservice({ strategy: app.get(BatchesServer) });
    await app.startAllMicroservices();
    await app.init();
    const handler = app.get(Handler);
    for (let i = 0; i < 4; i++) await app.get(BatchClient).delay('hybrid.task', i);
    await waitFor(async () => (await queueCounts(queue)).unacked === 4, 'the 4 messages buffered');
    await app.close();
    assert.deepEqual(
      handler.batches.map((batch) => batch.length),
      [4],
    );
    assert.deepEqual(await queueCounts(queue), { ready: 0, unacked: 0 });
  });

  it('takes its options from forRootAsync({ imports, inject, useFactory })', async () => {
    const queue = suite.queue('async');
    const CONFIG = Symbol('config');
    @Module({ providers: [{ provide: CONFIG, useValue: { url: AMQP_URL, queue } }], exports: [CONFIG] })
    class ConfigModule {}
    const Handler = recorder('async.task', { flushEvery: 2, flushInterval: 100 });
    @Module({
      imports: [
        BatchesModule.forRootAsync({
          imports: [ConfigModule],
          inject: [CONFIG],
          useFactory: (config: { url: string; queue: string }) => ({ broker: config.url, defaultQueue: config.queue }),
        }),
      ],
      providers: [Handler],
    })
    class AsyncModule {}
    const worker = await NestFactory.createMicroservice(AsyncModule, {
      inject: [BatchesServer],
      useFactory: (server: BatchesServer) => ({ strategy: server }),
      logger: ['error'],
    });
    await worker.listen();
    try {
      const result = await worker.get(BatchClient).delay('async.task', 'x');
      await worker.get(Handler).waitForRequests(1);
      assert.equal(worker.get(Handler).batches[0][0].deliveryInfo.routingKey, queue);
      assert.equal(await result.get({ timeout: 5_000 }), null);
    } finally {
      await worker.close();
    }
  });

  it('finds @BatchHandler methods on controllers too', async () => {
    const seen: unknown[] = [];
    @Controller()
    class ClicksController {
      @BatchHandler('controller.task', { flushEvery: 1, flushInterval: 50 })
      handle(requests: SimpleRequest[]): void {
        seen.push(...requests.map((request) => request.args[0]));
      }
    }
    @Module({ imports: [BatchesModule.forRoot()], controllers: [ClicksController] })
    class ControllerModule {}
    const app = await NestFactory.createMicroservice(ControllerModule, {
      inject: [BatchesServer],
      useFactory: (server: BatchesServer) => ({ strategy: server }),
      logger: ['error'],
    });
    await app.listen();
    try {
      await app.get(BatchClient).delay('controller.task', 42);
      await waitFor(() => seen.length === 1, 'the controller handler');
      assert.deepEqual(seen, [42]);
    } finally {
      await app.close();
    }
  });

  it('fails over to the next broker URL of a list', async () => {
    const queue = suite.queue('failover');
    const Handler = recorder('failover.task', { flushEvery: 1, flushInterval: 50, queue });
    // Nothing listens on port 1: the connection manager moves on to the second URL.
    const app = await startWorker({ broker: ['amqp://guest:guest@127.0.0.1:1', AMQP_URL], defaultQueue: queue }, [Handler]);
    try {
      await app.get(BatchClient).delay('failover.task', 'ok');
      await app.get(Handler).waitForRequests(1, 20_000);
    } finally {
      await app.close();
    }
  });
});
