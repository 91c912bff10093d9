import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { INestMicroservice } from '@nestjs/common';
import { BatchClient, BatchEvents, type BatchFlushedEvent, type BatchHandlerOptions, type SimpleRequest } from 'nestjs-batches';
import { AMQP_URL, rabbitSuite } from './support/rabbitmq.js';
import { waitFor, gate } from './support/wait.js';
import { recorder, startWorker, type Recorder } from './support/worker-app.js';

const suite = rabbitSuite();

interface Worker {
  app: INestMicroservice;
  handler: Recorder;
  client: BatchClient;
  flushes: BatchFlushedEvent[];
  received: () => number;
}

async function worker(task: string, options: BatchHandlerOptions, behaviour?: (requests: SimpleRequest[]) => unknown): Promise<Worker> {
  const queue = suite.queue('flush');
  const Handler = recorder(task, { queue, ...options }, behaviour);
  const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue, waitForBroker: true }, [Handler]);
  const flushes: BatchFlushedEvent[] = [];
  let received = 0;
  app.get(BatchEvents).events$.subscribe((event) => {
    if (event.type === 'batch.flushed') flushes.push(event);
    if (event.type === 'request.received') received++;
  });
  return { app, handler: app.get(Handler), client: app.get(BatchClient), flushes, received: () => received };
}

describe("flush: 'adaptive' on RabbitMQ", () => {
  it('hands a lone request to an idle handler at once, long before flushInterval', async () => {
    const { app, handler, client, flushes } = await worker('adaptive.lone', { flush: 'adaptive', flushEvery: 100, flushInterval: 120_000 });
    try {
      await client.delay('adaptive.lone', 1);
      // Fixed flushing would hold it for up to 120 s; the test gives it a twelfth of that.
      await handler.waitForRequests(1, 10_000);
      assert.deepEqual(
        handler.batches.map((batch) => batch.length),
        [1],
      );
      assert.deepEqual(
        flushes.map((flush) => flush.reason),
        ['idle'],
      );
    } finally {
      await app.close();
    }
  });

  it('while the handler is busy, buffers up to flushEvery, then hands the rest over when it is idle again', async () => {
    const busy = gate();
    let calls = 0;
    const { app, handler, client, flushes, received } = await worker(
      'adaptive.busy',
      { flush: 'adaptive', flushEvery: 100, flushInterval: 120_000 },
      async () => {
        if (calls++ === 0) await busy.wait;
      },
    );
    try {
      await client.delay('adaptive.busy', 0);
      await handler.waitForRequests(1);
      // The handler is now busy (concurrency 1) until the gate opens.
      await Promise.all(Array.from({ length: 250 }, (_, i) => client.delay('adaptive.busy', i + 1)));
      await waitFor(() => received() === 251, '251 requests received');
      await waitFor(() => flushes.length === 3, 'two full batches flushed by count while busy');
      assert.equal(handler.batches.length, 1, 'nothing else ran while the handler was busy');
      busy.open();
      await handler.waitForRequests(251);
      assert.deepEqual(
        handler.batches.map((batch) => batch.length),
        [1, 100, 100, 50],
      );
      assert.deepEqual(
        flushes.map((flush) => flush.reason),
        ['idle', 'count', 'count', 'idle'],
      );
      assert.deepEqual(
        handler.batches.flat().map((request) => request.args[0]),
        Array.from({ length: 251 }, (_, i) => i),
      );
    } finally {
      busy.open();
      await app.close();
    }
  });

  it('flushInterval still bounds the wait while the handler stays busy', async () => {
    const busy = gate();
    let calls = 0;
    const { app, handler, client, flushes } = await worker(
      'adaptive.bounded',
      { flush: 'adaptive', flushEvery: 100, flushInterval: 300, concurrency: 1 },
      async () => {
        if (calls++ === 0) await busy.wait;
      },
    );
    try {
      await client.delay('adaptive.bounded', 0);
      await handler.waitForRequests(1);
      await client.delay('adaptive.bounded', 1);
      await waitFor(() => flushes.length === 2, 'the second request flushed by interval while the handler is busy');
      assert.equal(flushes[1].reason, 'interval');
      busy.open();
      await handler.waitForRequests(2);
    } finally {
      busy.open();
      await app.close();
    }
  });

  it('drains what is buffered on close', async () => {
    const busy = gate();
    let calls = 0;
    const { app, handler, client, received } = await worker(
      'adaptive.drain',
      { flush: 'adaptive', flushEvery: 100, flushInterval: 120_000 },
      async () => {
        if (calls++ === 0) await busy.wait;
      },
    );
    await client.delay('adaptive.drain', 0);
    await handler.waitForRequests(1);
    await Promise.all(Array.from({ length: 30 }, (_, i) => client.delay('adaptive.drain', i + 1)));
    await waitFor(() => received() === 31, '31 requests received');
    const closed = app.close();
    busy.open();
    await closed;
    assert.equal(handler.received, 31);
  });
});

const tenantOf = (request: SimpleRequest): string => String(request.kwargs.tenant);

describe('groupBy on RabbitMQ', () => {
  it('never mixes keys in a batch: 20 tenants interleaved, each flushed by count', async () => {
    const { app, handler, client, flushes } = await worker('grouped.insert', {
      groupBy: tenantOf,
      flushEvery: 25,
      flushInterval: 120_000,
      maxGroups: 20,
    });
    try {
      const sends = [];
      for (let i = 0; i < 1_000; i++) sends.push(client.applyAsync('grouped.insert', { kwargs: { tenant: `t${i % 20}`, seq: i } }));
      await Promise.all(sends);
      await handler.waitForRequests(1_000, 30_000);
      for (const batch of handler.batches) {
        assert.equal(new Set(batch.map(tenantOf)).size, 1, `a batch mixed tenants: ${batch.map(tenantOf).join(',')}`);
        assert.equal(batch.length, 25);
      }
      assert.ok(flushes.every((flush) => flush.reason === 'count'));
      assert.equal(new Set(handler.batches.flat().map((request) => request.id)).size, 1_000);
      // Within a tenant, requests keep their order.
      for (let tenant = 0; tenant < 20; tenant++) {
        const seqs = handler.batches
          .flat()
          .filter((request) => tenantOf(request) === `t${tenant}`)
          .map((request) => request.kwargs.seq as number);
        assert.deepEqual(
          seqs,
          seqs.toSorted((a, b) => a - b),
        );
      }
    } finally {
      await app.close();
    }
  });

  it('keys never starve each other: 40 tenants × 100 with flushEvery 100 all flush by count (the window holds a buffer per key)', async () => {
    // Without groupBy in the derivation the window would be 1,000: 40 partial buffers of 25 would fill it and
    // nothing would flush before the two-minute interval.
    const { app, handler, client, flushes } = await worker('grouped.wide', {
      groupBy: tenantOf,
      flushEvery: 100,
      flushInterval: 120_000,
      maxGroups: 40,
    });
    try {
      const sends = [];
      for (let i = 0; i < 4_000; i++) sends.push(client.applyAsync('grouped.wide', { kwargs: { tenant: `t${i % 40}`, seq: i } }));
      await Promise.all(sends);
      await handler.waitForRequests(4_000, 60_000);
      assert.equal(handler.batches.length, 40);
      assert.ok(flushes.every((flush) => flush.reason === 'count'));
    } finally {
      await app.close();
    }
  });

  it('bounds the live keys: with maxGroups 3, a fourth key flushes the oldest buffer, and every request still runs once', async () => {
    const { app, handler, client, flushes } = await worker('grouped.bounded', {
      groupBy: tenantOf,
      flushEvery: 50,
      flushInterval: 120_000,
      maxGroups: 3,
    });
    try {
      for (let i = 0; i < 40; i++) await client.applyAsync('grouped.bounded', { kwargs: { tenant: `t${i % 5}`, seq: i } });
      await waitFor(() => handler.received >= 37, 'all but the last three buffers flushed');
      const closed = app.close();
      await closed;
      assert.equal(handler.received, 40);
      assert.equal(new Set(handler.batches.flat().map((request) => request.id)).size, 40);
      for (const batch of handler.batches) assert.equal(new Set(batch.map(tenantOf)).size, 1);
      assert.ok(flushes.some((flush) => flush.reason === 'evicted'));
      assert.deepEqual(flushes.filter((flush) => flush.reason === 'shutdown').length <= 3, true);
    } finally {
      await app.close().catch(() => undefined);
    }
  });

  it('adaptive and grouped: an idle handler takes the oldest key first', async () => {
    const { app, handler, client } = await worker('grouped.adaptive', {
      groupBy: tenantOf,
      flush: 'adaptive',
      flushEvery: 100,
      flushInterval: 120_000,
    });
    try {
      await client.applyAsync('grouped.adaptive', { kwargs: { tenant: 'a', seq: 0 } });
      await handler.waitForRequests(1, 10_000);
      await client.applyAsync('grouped.adaptive', { kwargs: { tenant: 'b', seq: 1 } });
      await handler.waitForRequests(2, 10_000);
      assert.deepEqual(
        handler.batches.map((batch) => batch.map(tenantOf)),
        [['a'], ['b']],
      );
    } finally {
      await app.close();
    }
  });
});
