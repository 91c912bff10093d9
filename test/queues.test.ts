import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import type { INestMicroservice } from '@nestjs/common';
import { BatchClient, encodeTaskMessage, type QueueOptions, type SimpleRequest } from 'nestjs-batches';
import { celeryMissing, PythonProcess } from './support/python.js';
import { AMQP_URL, queueCounts, rabbitSuite } from './support/rabbitmq.js';
import { waitFor } from './support/wait.js';
import { recorder, startWorker } from './support/worker-app.js';
import { REDIS_URL } from './support/redis-results.js';

const suite = rabbitSuite();
const run = promisify(execFile);

/** A queue's type as RabbitMQ reports it. */
async function queueType(queue: string): Promise<string | undefined> {
  const { stdout } = await run('rabbitmqctl', ['list_queues', '-q', '--formatter', 'json', 'name', 'type']);
  return (JSON.parse(stdout) as Array<{ name: string; type: string }>).find((row) => row.name === queue)?.type;
}

/** Starts a worker over `providers` and resolves with its app once it consumes. */
function worker(queue: string, declaration: QueueOptions | undefined, providers: Parameters<typeof startWorker>[1]) {
  return startWorker(
    { broker: AMQP_URL, defaultQueue: queue, waitForBroker: true, ...(declaration && { queues: { [queue]: declaration } }) },
    providers,
  );
}

describe('prefetch: requests held for an ETA never eat the window full batches need', () => {
  for (const type of ['classic', 'quorum'] as const) {
    it(
      `${type} queue: 30 held with a prefetch of 20, while 30 immediate requests arrive in full batches of 10`,
      { timeout: 60_000 },
      async () => {
        const queue = suite.queue(`prefetch-${type}`);
        const handled: Array<{ ids: string[]; at: number }> = [];
        const Handler = recorder('queues.prefetch', { queue, prefetch: 20, flushEvery: 10, flushInterval: 60_000 }, (requests) => {
          handled.push({ ids: requests.map((request) => String(request.args[0])), at: Date.now() });
        });
        const app = await worker(queue, { type }, [Handler]);
        try {
          const client = app.get(BatchClient);
          const eta = new Date(Date.now() + 3_000);
          for (let i = 0; i < 30; i++) await client.applyAsync('queues.prefetch', { args: [`held-${i}`], eta });
          for (let i = 0; i < 30; i++) await client.delay('queues.prefetch', `now-${i}`);

          // flushInterval is a minute: only full batches flush, so these arrive only if the window had room.
          await waitFor(() => handled.length >= 3, 'three batches of immediate requests', 10_000);
          const first = handled.slice(0, 3);
          assert.ok(
            first.every((batch) => batch.at < eta.getTime()),
            `the immediate batches ran before the eta, while the 30 were held (${first.map((b) => eta.getTime() - b.at).join(', ')} ms early)`,
          );
          assert.deepEqual(
            first.map((batch) => batch.ids.length),
            [10, 10, 10],
          );
          assert.ok(
            first.every((batch) => batch.ids.every((id) => id.startsWith('now-'))),
            JSON.stringify(first.map((b) => b.ids)),
          );

          await waitFor(() => handled.length >= 6, 'the held requests once due', 15_000);
          const later = handled.slice(3);
          assert.deepEqual(
            later.map((batch) => batch.ids.length),
            [10, 10, 10],
          );
          assert.ok(later.every((batch) => batch.at >= eta.getTime() && batch.ids.every((id) => id.startsWith('held-'))));
          const ids = handled.flatMap((batch) => batch.ids);
          assert.equal(ids.length, 60);
          assert.equal(new Set(ids).size, 60, 'each request ran once');
          await waitFor(async () => (await queueCounts(queue)).unacked === 0, 'every message acked');
        } finally {
          await app.close();
        }
      },
    );
  }
});

describe('queue declarations', () => {
  it('declares a quorum queue, and its dead-letter queue as quorum too', { timeout: 60_000 }, async () => {
    const queue = suite.queue('quorum');
    const Handler = recorder('queues.quorum', { queue, flushEvery: 5, flushInterval: 100 }, (requests) => requests.map(() => 'ok'));
    const app = await worker(queue, { type: 'quorum' }, [Handler]);
    try {
      assert.equal(await queueType(queue), 'quorum');
      assert.equal(await queueType(`${queue}.dead`), 'quorum');
      for (let i = 0; i < 5; i++) await app.get(BatchClient).delay('queues.quorum', i);
      await app.get(Handler).waitForRequests(5);
    } finally {
      await app.close();
    }
  });

  it('honours priorities with maxPriority: queued high-priority requests arrive first', { timeout: 60_000 }, async () => {
    const queue = suite.queue('priority');
    const declaration: QueueOptions = { maxPriority: 10 };
    // Sent while nothing consumes, by a client-only app that declares the queue with x-max-priority.
    const producer = await worker(queue, declaration, []);
    try {
      const client = producer.get(BatchClient);
      for (let i = 0; i < 10; i++) await client.applyAsync('queues.priority', { args: [`low-${i}`], priority: 1 });
      for (let i = 0; i < 10; i++) await client.applyAsync('queues.priority', { args: [`high-${i}`], priority: 9 });
    } finally {
      await producer.close();
    }
    await waitFor(async () => (await queueCounts(queue)).ready === 20, 'the 20 requests queued');
    const Handler = recorder('queues.priority', { queue, flushEvery: 10, prefetch: 10, flushInterval: 60_000 });
    const app = await worker(queue, declaration, [Handler]);
    try {
      const handler = app.get(Handler);
      await handler.waitForRequests(20);
      const [first, second] = handler.batches.map((batch) => batch.map((request) => String(request.args[0])));
      assert.ok(
        first.every((id) => id.startsWith('high-')),
        `the first batch holds the high-priority requests: ${first.join(', ')}`,
      );
      assert.ok(second.every((id) => id.startsWith('low-')));
      assert.equal(handler.batches[0][0].deliveryInfo.priority, 9);
    } finally {
      await app.close();
    }
  });

  it('binds the queue to the exchange, type and keys it is given, and the client sends through them', { timeout: 60_000 }, async () => {
    const queue = suite.queue('exchange');
    const exchange = `${queue}.topic`;
    const declaration: QueueOptions = { exchange, exchangeType: 'topic', routingKey: 'billing.invoice', bindings: ['refunds.#'] };
    const Handler = recorder('queues.exchange', { queue, flushEvery: 2, flushInterval: 100 });
    const app = await worker(queue, declaration, [Handler]);
    try {
      await app.get(BatchClient).delay('queues.exchange', 'sent by the client');
      // A Celery producer routing with another key bound to the queue reaches it too.
      const { body, properties } = encodeTaskMessage({ task: 'queues.exchange', args: ['routed by refunds.eu'] });
      suite.rabbit.channel.publish(exchange, 'refunds.eu', body, properties);
      await suite.rabbit.channel.waitForConfirms();
      const handler = app.get(Handler);
      await handler.waitForRequests(2);
      assert.deepEqual(
        handler.batches
          .flat()
          .map((request) => String(request.args[0]))
          .toSorted(),
        ['routed by refunds.eu', 'sent by the client'],
      );
    } finally {
      await app.close();
      await suite.rabbit.channel.deleteExchange(exchange);
    }
  });
});

describe('a Python Celery worker shares a quorum queue', { skip: celeryMissing() }, () => {
  it(
    'with task_queues = [Queue(name, Exchange(name), routing_key=name, queue_arguments={"x-queue-type": "quorum"})]',
    { timeout: 90_000 },
    async () => {
      const queue = suite.queue('py-quorum');
      // Python first: it declares the queue; the Nest worker's declaration must match it.
      const python = new PythonProcess('quorum_worker.py', [], queue);
      let app: INestMicroservice | undefined;
      try {
        await python.waitForEvent('ready', 60_000);
        assert.equal(await queueType(queue), 'quorum');
        const Handler = recorder('queues.shared', { queue, flushEvery: 5, prefetch: 5, flushInterval: 100 }, (requests: SimpleRequest[]) =>
          requests.map((request) => ({ by: 'nest', value: request.args[0] })),
        );
        app = await startWorker(
          { broker: AMQP_URL, resultBackend: REDIS_URL, defaultQueue: queue, waitForBroker: true, queues: { [queue]: { type: 'quorum' } } },
          [Handler],
        );
        const client = app.get(BatchClient);
        const sent = [];
        for (let i = 0; i < 40; i++) sent.push(await client.delay('queues.shared', i));
        const results = (await Promise.all(sent.map((result) => result.get({ timeout: 30_000 })))) as Array<{ by: string; value: number }>;
        assert.deepEqual(
          results.map((result) => result.value),
          [...Array(40).keys()],
        );
        const by = new Set(results.map((result) => result.by));
        assert.deepEqual([...by].toSorted(), ['nest', 'python'], 'both workers took requests from the queue');
      } finally {
        await app?.close();
        await python.stop();
      }
    },
  );
});
