import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { BatchClient, EagerResult, ResultBackend, signature, TaskFailedError, UnknownTaskError } from 'nestjs-batches';
import { AMQP_URL, closeAllConnections, queueCounts, TestRabbit, uniqueQueue } from './support/rabbitmq.js';
import { waitFor } from './support/wait.js';
import { recorder, startWorker } from './support/worker-app.js';
import { REDIS_URL } from './support/redis-results.js';

const queues: string[] = [];

after(async () => {
  // A fresh connection: the forced connection loss below closes every earlier one.
  const connection = await TestRabbit.connect();
  await connection.deleteQueues(...queues.flatMap((queue) => [queue, `${queue}.dead`]));
  await connection.close();
});

const Identity = (queue?: string) =>
  recorder('client.identity', { flushEvery: 10, flushInterval: 100, queue }, (requests) => requests.map((request) => request.args[0]));

describe('eager runs', () => {
  it('apply() runs the handler in-process as a batch of one, with no broker', async () => {
    const app = await startWorker({}, [Identity()]);
    try {
      const result = await app.get(BatchClient).apply('client.identity', { args: [1] });
      assert.ok(result instanceof EagerResult);
      assert.equal(result.state, 'SUCCESS');
      assert.equal(await result.get(), 1);
    } finally {
      await app.close();
    }
  });

  it('apply() takes the value from a returned Map, a mark, or null when the handler returns nothing', async () => {
    const ByMap = recorder('client.by_map', {}, (requests) => new Map(requests.map((request) => [request.id, `map:${request.id}`])));
    let results!: ResultBackend;
    const Marking = recorder('client.marking', {}, async (requests) => {
      await results.markAsDone(requests[0].id, 'marked');
      return ['ignored: the mark wins'];
    });
    const Void = recorder('client.void', {});
    const app = await startWorker({}, [ByMap, Marking, Void]);
    results = app.get(ResultBackend);
    try {
      const client = app.get(BatchClient);
      const byMap = await client.apply('client.by_map', { taskId: 'eager-map' });
      assert.deepEqual([byMap.state, await byMap.get()], ['SUCCESS', 'map:eager-map']);
      const marked = await client.apply('client.marking');
      assert.deepEqual([marked.state, await marked.get()], ['SUCCESS', 'marked']);
      const nothing = await client.apply('client.void');
      assert.deepEqual([nothing.state, await nothing.get()], ['SUCCESS', null]);
    } finally {
      await app.close();
    }
  });

  it('apply() reports a failing handler as a FAILURE of that request', async () => {
    const Failing = recorder('client.failing', {}, () => {
      throw new Error('nope');
    });
    const app = await startWorker({}, [Failing]);
    try {
      const result = await app.get(BatchClient).apply('client.failing', { args: [1] });
      assert.equal(result.state, 'FAILURE');
      await assert.rejects(result.get(), (error: unknown) => error instanceof TaskFailedError && error.excMessage === 'nope');
      await assert.rejects(app.get(BatchClient).apply('client.missing'), UnknownTaskError);
    } finally {
      await app.close();
    }
  });

  it('eager mode makes delay() run at once', async () => {
    const app = await startWorker({ eager: true, broker: AMQP_URL }, [Identity()]);
    try {
      const result = await app.get(BatchClient).delay('client.identity', 1);
      // Already done when delay() resolves: no broker round trip, no waiting.
      assert.equal(await result.status(), 'SUCCESS');
      assert.equal(await result.get({ timeout: 1 }), 1);
    } finally {
      await app.close();
    }
  });
});

describe('flushing on RabbitMQ', () => {
  it('restarts the count after an interval flush', async () => {
    const queue = uniqueQueue('restart');
    queues.push(queue);
    const Pairs = recorder('client.pairs', { flushEvery: 2, flushInterval: 300, queue });
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue }, [Pairs]);
    try {
      const handler = app.get(Pairs);
      const client = app.get(BatchClient);
      await client.delay('client.pairs', 1);
      await handler.waitForRequests(1);
      assert.deepEqual(
        handler.batches.map((batch) => batch.length),
        [1],
      );
      // One more message is a buffer of one, not a full pair: only the next interval flushes it.
      await client.delay('client.pairs', 2);
      await handler.waitForRequests(2);
      assert.deepEqual(
        handler.batches.map((batch) => batch.length),
        [1, 1],
      );
    } finally {
      await app.close();
    }
  });
});

describe('countdown and ETA on RabbitMQ + Redis', () => {
  it('holds a countdown request until due without holding back one sent now', async () => {
    const queue = uniqueQueue('eta');
    queues.push(queue);
    const app = await startWorker({ broker: AMQP_URL, resultBackend: REDIS_URL, defaultQueue: queue }, [Identity(queue)]);
    try {
      const client = app.get(BatchClient);
      const started = Date.now();
      const later = await client.applyAsync('client.identity', { args: ['later'], countdown: 3_000 });
      const now = await client.applyAsync('client.identity', { args: ['now'] });
      assert.equal(await now.get({ timeout: 5_000 }), 'now');
      assert.ok(Date.now() - started < 2_500, 'the request sent now ran while the countdown one waited');
      assert.equal(await later.status(), 'PENDING');
      // Held, not acked: the delayed message stays unacked on the broker until it runs.
      assert.equal((await queueCounts(queue)).unacked, 1);
      assert.equal(await later.get({ timeout: 10_000 }), 'later');
      assert.ok(Date.now() - started >= 2_900, `ran after its countdown (${Date.now() - started} ms)`);
      await waitFor(async () => (await queueCounts(queue)).unacked === 0, 'the delayed message to be acked');
    } finally {
      await app.close();
    }
  });

  it('marks a request whose expires has passed REVOKED instead of running it', async () => {
    const queue = uniqueQueue('expires');
    queues.push(queue);
    const Handler = Identity(queue);
    const app = await startWorker({ broker: AMQP_URL, resultBackend: REDIS_URL, defaultQueue: queue }, [Handler]);
    try {
      const client = app.get(BatchClient);
      const expired = await client.applyAsync('client.identity', { args: ['stale'], expires: new Date(Date.now() - 1_000) });
      await assert.rejects(
        expired.get({ timeout: 5_000 }),
        (error: unknown) => error instanceof TaskFailedError && error.state === 'REVOKED',
      );
      assert.equal((await app.get(ResultBackend).getResult(expired.id)).status, 'REVOKED');
      assert.equal(app.get(Handler).received, 0);
    } finally {
      await app.close();
    }
  });
});

describe('publishing through a connection loss', () => {
  it('keeps every message when the connection is force-closed between publishes', async () => {
    const queue = uniqueQueue('publish');
    queues.push(queue);
    // A client-only app: no handler consumes, so every published message must be in the queue.
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue }, []);
    try {
      const client = app.get(BatchClient);
      for (let i = 0; i < 50; i++) await client.delay('client.publish', i);
      await closeAllConnections();
      for (let i = 50; i < 100; i++) await client.delay('client.publish', i);
      await waitFor(async () => (await queueCounts(queue)).ready >= 100, '100 messages in the queue');
      const reconnected = await TestRabbit.connect();
      const messages = await reconnected.takeAll(queue);
      await reconnected.close();
      const received = new Set(messages.map((message) => (JSON.parse(message.content.toString()) as [number[]])[0][0]));
      assert.equal(received.size, 100);
    } finally {
      await app.close();
    }
  });
});

describe('sends RabbitMQ could not route', () => {
  it('an exchange deleted after this connection declared it is declared anew, and publishing goes on on a new channel', async () => {
    const queue = uniqueQueue('client.exchange-deleted');
    queues.push(queue);
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue, waitForBroker: true, publishTimeout: 10_000 }, []);
    const rabbit = await TestRabbit.connect();
    try {
      const client = app.get(BatchClient);
      await client.delay('client.anything', 1);
      // Someone deletes the exchange: the next publish to it makes RabbitMQ close the publishing channel (404 NOT_FOUND).
      await rabbit.channel.deleteExchange(queue);
      // Sends in flight with it go on a new channel; the one that closed it declares the exchange again.
      const started = Date.now();
      await Promise.all([2, 3, 4].map((value) => client.delay('client.anything', value)));
      assert.ok(Date.now() - started < 5_000, `sent within ${Date.now() - started} ms, not after the publish timeout`);
      await client.delay('client.anything', 5);
      const values = (await rabbit.takeAll(queue)).map((message) => (JSON.parse(message.content.toString()) as unknown[][])[0][0]);
      assert.deepEqual(
        values.toSorted((a, b) => Number(a) - Number(b)),
        [1, 2, 3, 4, 5],
      );
    } finally {
      await rabbit.close();
      await app.close();
    }
  });

  /**
   * Sends `1` with `send`, deletes the queue (and so its binding) from outside, sends `2`: kombu's
   * declaration cache would now drop every send silently; the second must reach the queue declared anew.
   */
  async function sendAfterQueueDeleted(name: string, send: (client: BatchClient, value: number) => Promise<unknown>): Promise<void> {
    const queue = uniqueQueue(name);
    queues.push(queue);
    // No worker consumes it: the test reads the queue itself.
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue, waitForBroker: true }, []);
    const rabbit = await TestRabbit.connect();
    try {
      const client = app.get(BatchClient);
      await send(client, 1);
      assert.equal((await queueCounts(queue)).ready, 1);
      await rabbit.channel.deleteQueue(queue);
      await send(client, 2);
      const messages = await rabbit.takeAll(queue);
      assert.equal(messages.length, 1, 'the second send reached the re-declared queue');
      assert.deepEqual((JSON.parse(messages[0].content.toString()) as unknown[])[0], [2]);
    } finally {
      await rabbit.close();
      await app.close();
    }
  }

  it('a queue deleted after this connection declared it is declared anew and the task delivered, not dropped', async () => {
    await sendAfterQueueDeleted('client.deleted', (client, value) => client.delay('client.anything', value));
  });

  it('a canvas send (chain) to a deleted queue is declared anew and delivered too', async () => {
    // The chain's first task goes through the canvas sender, which a worker also uses for callbacks and chain steps.
    await sendAfterQueueDeleted('client.canvas-deleted', (client, value) =>
      client.chain([signature('client.first', { args: [value] }), signature('client.second')]),
    );
  });
});
