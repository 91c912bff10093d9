import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ResultBackend, type SimpleRequest } from 'nestjs-batches';
import { AMQP_URL, queueCounts, rabbitSuite } from './support/rabbitmq.js';
import { waitFor } from './support/wait.js';
import { recorder, startWorker } from './support/worker-app.js';

describe('late acknowledgement on RabbitMQ', () => {
  const suite = rabbitSuite();

  it('keeps messages unacked while buffered and while the handler runs; acks after it resolves', async () => {
    const queue = suite.queue('late');
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const Blocking = recorder('late.block', { flushEvery: 5, flushInterval: 60_000, queue }, () => released);
    const app = await startWorker({ broker: AMQP_URL }, [Blocking]);
    try {
      await suite.rabbit.declareCeleryQueue(queue);
      for (let i = 0; i < 8; i++) await suite.rabbit.publishTask(queue, { task: 'late.block', args: [i] });
      const handler = app.get(Blocking);
      await handler.waitForRequests(5);
      // 5 in the running batch, 3 buffered: all delivered, none acked.
      await waitFor(async () => (await queueCounts(queue)).unacked === 8, '8 unacked messages');
      assert.deepEqual(await queueCounts(queue), { ready: 0, unacked: 8 });
      release();
      // The running batch is acked; the 3 buffered stay unacked until their batch runs (at close).
      await waitFor(async () => (await queueCounts(queue)).unacked === 3, 'the finished batch to be acked');
    } finally {
      await app.close();
    }
    assert.deepEqual(await queueCounts(queue), { ready: 0, unacked: 0 });
  });

  it('retries a failing batch with retries + 1, then dead-letters it with the reason and marks FAILURE; the next batch still runs', async () => {
    const queue = suite.queue('retry');
    const seen: number[] = [];
    const Failing = recorder(
      'retry.fail',
      { flushEvery: 1, flushInterval: 50, queue, maxRetries: 2, retryDelay: 50 },
      (requests: SimpleRequest[]) => {
        seen.push(...requests.map((request) => request.retries));
        throw new Error('database is down');
      },
    );
    const Good = recorder('retry.good', { flushEvery: 3, flushInterval: 100, queue });
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue }, [Failing, Good]);
    try {
      await suite.rabbit.declareCeleryQueue(queue);
      const id = await suite.rabbit.publishTask(queue, { task: 'retry.fail', args: ['x'] });
      for (let i = 0; i < 3; i++) await suite.rabbit.publishTask(queue, { task: 'retry.good', args: [i] });
      await app.get(Good).waitForRequests(3);
      await waitFor(async () => (await queueCounts(`${queue}.dead`)).ready === 1, 'the dead letter');
      assert.deepEqual(seen, [0, 1, 2]);
      const [dead] = await suite.rabbit.takeAll(`${queue}.dead`);
      const headers = dead.properties.headers ?? {};
      assert.equal(headers.id, id);
      assert.match(String(headers['x-dead-letter-reason']), /2 retries exhausted: Error: database is down/);
      assert.equal(headers['x-original-queue'], queue);
      const result = await app.get(ResultBackend).getResult(id);
      assert.equal(result.status, 'FAILURE');
      assert.deepEqual(result.result, { exc_type: 'Error', exc_message: ['database is down'], exc_module: 'nestjs_batches' });
      await waitFor(async () => (await queueCounts(queue)).unacked === 0, 'every message acked');
    } finally {
      await app.close();
    }
  });

  it('a handler can send one request back for a retry while the rest of the batch succeeds', async () => {
    const queue = suite.queue('single');
    let results!: ResultBackend;
    const Picky = recorder(
      'single.picky',
      { flushEvery: 3, flushInterval: 100, queue, retryDelay: 20 },
      async (requests: SimpleRequest[]) => {
        for (const request of requests) {
          if (request.args[0] === 'flaky' && request.retries === 0) await results.markAsRetry(request.id, new Error('try again'));
        }
        return requests.map((request) => `${String(request.args[0])}@${request.retries}`);
      },
    );
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue }, [Picky]);
    results = app.get(ResultBackend);
    try {
      await suite.rabbit.declareCeleryQueue(queue);
      const ids = [];
      for (const arg of ['a', 'flaky', 'b']) ids.push(await suite.rabbit.publishTask(queue, { task: 'single.picky', args: [arg] }));
      assert.deepEqual(await Promise.all(ids.map((id) => results.waitForResult(id))), ['a@0', 'flaky@1', 'b@0']);
    } finally {
      await app.close();
    }
  });
});
