import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { INestMicroservice } from '@nestjs/common';
import {
  BatchClient,
  MemoryResultBackend,
  ResultBackend,
  ResultTimeoutError,
  TaskFailedError,
  type BatchesModuleOptions,
  type SimpleRequest,
} from 'nestjs-batches';
import { AMQP_URL, TestRabbit, uniqueQueue } from './support/rabbitmq.js';
import { recorder, startWorker } from './support/worker-app.js';
import { REDIS_URL } from './support/redis-results.js';

function numbers(request: SimpleRequest): number[] {
  return [...request.args, ...Object.values(request.kwargs)].map(Number);
}

// celery-batches' own result tests, against real RabbitMQ + Redis and on the embedded broker.
const setups: Array<{ name: string; options: BatchesModuleOptions }> = [
  { name: 'amqp:// + redis://', options: { broker: AMQP_URL, resultBackend: REDIS_URL } },
  { name: 'memory:// + memory://', options: {} },
];

for (const setup of setups) {
  describe(`results on ${setup.name}`, () => {
    let app: INestMicroservice;
    let client: BatchClient;
    let results: ResultBackend;
    let rabbit: TestRabbit | undefined;
    const queue = uniqueQueue('results');

    const Sum = recorder('results.cumadd', { flushEvery: 2, flushInterval: 300, queue }, async (requests) => {
      const sum = requests.flatMap(numbers).reduce((a, b) => a + b, 0);
      for (const request of requests) await results.markAsDone(request.id, sum);
    });
    let total = 0;
    const Running = recorder('results.running_total', { flushEvery: 2, flushInterval: 300, queue }, async (requests) => {
      for (const request of requests) {
        total += numbers(request)[0];
        await results.markAsDone(request.id, total);
      }
    });
    const Returning = recorder('results.double', { flushEvery: 3, flushInterval: 200, queue }, (requests) =>
      requests.map((request) => numbers(request)[0] * 2),
    );
    const ByMap = recorder(
      'results.by_id',
      { flushEvery: 3, flushInterval: 200, queue },
      (requests) => new Map(requests.map((request) => [request.id, `id:${request.id}`])),
    );
    const Failing = recorder('results.fail', { flushEvery: 5, flushInterval: 100, queue, maxRetries: 1, retryDelay: 50 }, () => {
      throw new RangeError('out of range');
    });
    const Partial = recorder('results.partial', { flushEvery: 2, flushInterval: 200, queue, maxRetries: 0 }, async (requests) => {
      await results.markAsDone(requests[0].id, 'first is fine');
      throw new TypeError('second is not');
    });

    before(async () => {
      app = await startWorker({ ...setup.options, defaultQueue: queue }, [Sum, Running, Returning, ByMap, Failing, Partial]);
      client = app.get(BatchClient);
      results = app.get(ResultBackend);
      if (setup.options.broker) rabbit = await TestRabbit.connect();
    });

    after(async () => {
      await app.close();
      await rabbit?.deleteQueues(queue, `${queue}.dead`);
      await rabbit?.close();
    });

    for (const [label, first, second, expected] of [
      ['args 1 and 3', { args: [1] }, { args: [3] }, 4],
      ['args (1, 2) and (3, 4)', { args: [1, 2] }, { args: [3, 4] }, 10],
      ['kwargs {a:1,b:2} and {a:3,b:4}', { kwargs: { a: 1, b: 2 } }, { kwargs: { a: 3, b: 4 } }, 10],
    ] as const) {
      it(`marks each request of a batch with the batch's sum: ${label} → ${expected} and ${expected}`, async () => {
        const a = await client.applyAsync('results.cumadd', first);
        const b = await client.applyAsync('results.cumadd', second);
        assert.deepEqual(await Promise.all([a.get({ timeout: 10_000 }), b.get({ timeout: 10_000 })]), [expected, expected]);
      });
    }

    it('marks a running total: 1 and 3 for args 1 and 2 sent in order', async () => {
      const a = await client.delay('results.running_total', 1);
      const b = await client.delay('results.running_total', 2);
      assert.deepEqual(await Promise.all([a.get(), b.get()]), [1, 3]);
    });

    it('resolves unmarked requests from an array aligned with the requests', async () => {
      const sent = await Promise.all([5, 6, 7].map((n) => client.delay('results.double', n)));
      assert.deepEqual(await Promise.all(sent.map((result) => result.get())), [10, 12, 14]);
      assert.equal(await sent[0].status(), 'SUCCESS');
    });

    it('resolves unmarked requests from a Map keyed by request id', async () => {
      const sent = await Promise.all([1, 2].map((n) => client.delay('results.by_id', n)));
      assert.deepEqual(
        await Promise.all(sent.map((result) => result.get())),
        sent.map((result) => `id:${result.id}`),
      );
    });

    it('marks requests of a failing batch FAILURE once retries are spent, and waitForResult rejects with type and message', async () => {
      const sent = await client.delay('results.fail', 1);
      await assert.rejects(sent.get({ timeout: 10_000 }), (error: unknown) => {
        assert.ok(error instanceof TaskFailedError);
        assert.equal(error.excType, 'RangeError');
        assert.equal(error.excMessage, 'out of range');
        return true;
      });
      assert.equal((await results.getResult(sent.id)).status, 'FAILURE');
    });

    it('keeps what the handler marked when the batch then throws', async () => {
      const first = await client.delay('results.partial', 1);
      const second = await client.delay('results.partial', 2);
      assert.equal(await first.get(), 'first is fine');
      await assert.rejects(second.get(), /TypeError: second is not/);
    });

    it('send() emits the result; emit() completes once the broker has the message', async () => {
      const { firstValueFrom, lastValueFrom } = await import('rxjs');
      assert.equal(await firstValueFrom(client.send('results.double', 21)), 42);
      assert.equal(await lastValueFrom(client.emit('results.double', 1), { defaultValue: 'completed' }), undefined);
    });

    it('waitForResult on an unknown id times out with a clear error', async () => {
      const started = Date.now();
      await assert.rejects(results.waitForResult('no-such-task', { timeout: 300 }), (error: unknown) => {
        assert.ok(error instanceof ResultTimeoutError);
        assert.match(error.message, /no-such-task.*300 ms.*PENDING/);
        return true;
      });
      assert.ok(Date.now() - started >= 290);
    });
  });
}

describe('in-memory result backend lifecycle', () => {
  it('close() rejects pending waiters with a clear error, and later waits at once', async () => {
    const backend = new MemoryResultBackend(60_000);
    const waiting = assert.rejects(
      backend.waitForResult('pending-task', { timeout: 60_000 }),
      /in-memory result backend was closed while waiting for the result of task pending-task/,
    );
    await backend.close();
    await waiting;
    await assert.rejects(backend.waitForResult('pending-task'), /closed while waiting/);
  });
});
