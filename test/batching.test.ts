import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { INestMicroservice } from '@nestjs/common';
import { BatchClient } from 'nestjs-batches';
import { AMQP_URL, rabbitSuite } from './support/rabbitmq.js';
import { recorder, startWorker, type Recorder } from './support/worker-app.js';

// The same batching contract on the embedded broker and on real RabbitMQ.
for (const broker of ['memory', 'amqp'] as const) {
  describe(`batching on ${broker}://`, () => {
    const suite = rabbitSuite();

    async function worker(
      flushEvery: number,
      flushInterval: number,
    ): Promise<{ app: INestMicroservice; handler: Recorder; client: BatchClient; queue: string }> {
      const queue = suite.queue('batching');
      const Handler = recorder('batching.add', { flushEvery, flushInterval, queue });
      const app = await startWorker({ broker: broker === 'amqp' ? AMQP_URL : 'memory://', defaultQueue: queue }, [Handler]);
      return { app, handler: app.get(Handler), client: app.get(BatchClient), queue };
    }

    it('flushes full batches by count and the rest by interval: 25 with flushEvery 10 → 10, 10, 5', async () => {
      const { app, handler, client } = await worker(10, 1_000);
      try {
        for (let i = 0; i < 25; i++) await client.delay('batching.add', i);
        await handler.waitForRequests(25);
        assert.deepEqual(
          handler.batches.map((batch) => batch.length),
          [10, 10, 5],
        );
        assert.deepEqual(
          handler.batches.flat().map((request) => request.args[0]),
          Array.from({ length: 25 }, (_, i) => i),
        );
      } finally {
        await app.close();
      }
    });

    it('flushes a partial batch when the interval passes, and never hands over an empty one', async () => {
      const { app, handler, client } = await worker(100, 200);
      try {
        const sent = Date.now();
        await client.delay('batching.add', 1);
        await client.delay('batching.add', 2);
        await handler.waitForRequests(2);
        // Several intervals pass with nothing buffered: no empty batch may reach the handler.
        await new Promise((resolve) => setTimeout(resolve, 700));
        assert.deepEqual(
          handler.batches.map((batch) => batch.length),
          [2],
        );
        assert.ok(Date.now() - sent < 5_000);
      } finally {
        await app.close();
      }
    });

    it('never hands over more than flushEvery requests under load', async () => {
      const { app, handler, client } = await worker(7, 50);
      try {
        await Promise.all(Array.from({ length: 200 }, (_, i) => client.delay('batching.add', i)));
        await handler.waitForRequests(200);
        assert.ok(
          handler.batches.every((batch) => batch.length >= 1 && batch.length <= 7),
          `sizes: ${handler.batches.map((b) => b.length).join(',')}`,
        );
        assert.equal(new Set(handler.batches.flat().map((request) => request.id)).size, 200);
      } finally {
        await app.close();
      }
    });
  });
}
