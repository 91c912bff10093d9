import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { INestMicroservice } from '@nestjs/common';
import { BatchClient, ResultBackend, TaskFailedError, type SimpleRequest } from 'nestjs-batches';
import { celeryMissing, PythonProcess, type PythonEvent } from './support/python.js';
import { AMQP_URL, TestRabbit, uniqueQueue } from './support/rabbitmq.js';
import { waitFor } from './support/wait.js';
import { recorder, startWorker } from './support/worker-app.js';
import { REDIS_URL } from './support/redis-results.js';

const skip = celeryMissing();
const queues: string[] = [];

after(async () => {
  if (skip) return;
  const rabbit = await TestRabbit.connect();
  await rabbit.deleteQueues(...queues.flatMap((queue) => [queue, `${queue}.dead`]));
  await rabbit.close();
});

function newQueue(name: string): string {
  const queue = uniqueQueue(name);
  queues.push(queue);
  return queue;
}

function resultsOf(events: PythonEvent[]): PythonEvent[] {
  return events.filter((event) => event.event === 'result' || event.event === 'error');
}

describe('Python Celery → Nest batch worker', { skip }, () => {
  const queue = newQueue('py2nest');
  let app: INestMicroservice;
  let results: ResultBackend;
  // Echoes what arrived, so Python sees exactly what Nest decoded.
  const Echo = recorder('interop.echo', { flushEvery: 10, flushInterval: 200, queue }, (requests: SimpleRequest[]) =>
    requests.map((request) => ({ args: request.args, kwargs: request.kwargs, retries: request.retries, batch: requests.length })),
  );
  const Failing = recorder('interop.fail', { flushEvery: 10, flushInterval: 200, queue }, async (requests: SimpleRequest[]) => {
    for (const request of requests) await results.markAsFailure(request.id, new TypeError(`bad input: ${String(request.args[0])}`));
  });

  before(async () => {
    app = await startWorker({ broker: AMQP_URL, resultBackend: REDIS_URL, defaultQueue: queue }, [Echo, Failing]);
    results = app.get(ResultBackend);
  });
  after(() => app.close());

  it('receives send_task args and kwargs (numbers, strings, nested objects, unicode) and Python reads the results', async () => {
    const args = [1, 2.5, 'zürich ✓ 東京', { nested: { list: [1, null, true] } }];
    const kwargs = { url: 'http://example.com/ä', n: -3 };
    const events = await PythonProcess.run('producer.py', [JSON.stringify({ task: 'interop.echo', args, kwargs })], queue);
    const [result] = resultsOf(events);
    assert.equal(result.event, 'result', JSON.stringify(result));
    assert.equal(result.status, 'SUCCESS');
    assert.deepEqual(result.result, { args, kwargs, retries: 0, batch: 1 });
  });

  it('reads protocol v1 messages (task_protocol=1)', async () => {
    const events = await PythonProcess.run(
      'producer.py',
      [JSON.stringify({ task: 'interop.echo', args: ['v1'], kwargs: { k: 'v' }, protocol: 1 })],
      queue,
    );
    assert.deepEqual(resultsOf(events)[0].result, { args: ['v1'], kwargs: { k: 'v' }, retries: 0, batch: 1 });
  });

  it('holds a countdown task until due', async () => {
    const started = Date.now();
    const events = await PythonProcess.run('producer.py', [JSON.stringify({ task: 'interop.echo', args: ['later'], countdown: 2 })], queue);
    assert.deepEqual((resultsOf(events)[0].result as { args: unknown[] }).args, ['later']);
    assert.ok(Date.now() - started >= 1_900, `ran after its countdown (${Date.now() - started} ms)`);
  });

  it('raises a failure marked in Nest in Python with the exception type and message', async () => {
    const events = await PythonProcess.run('producer.py', [JSON.stringify({ task: 'interop.fail', args: ['x'] })], queue);
    const [error] = resultsOf(events);
    assert.equal(error.event, 'error');
    assert.equal(error.exc_type, 'TypeError');
    assert.equal(error.message, 'bad input: x');
  });
});

describe('Python Celery backlog → Nest in full batches', { skip }, () => {
  it('1,000 tasks published before the worker starts arrive as ten batches of 100, every result readable in Python', async () => {
    const queue = newQueue('backlog');
    const sent = await PythonProcess.run(
      'producer.py',
      [JSON.stringify({ task: 'interop.square', args: [], count: 1000, wait: false })],
      queue,
    );
    const ids = sent[0].ids as string[];
    assert.equal(ids.length, 1000);
    const Square = recorder('interop.square', { flushEvery: 100, flushInterval: 5_000, queue }, (requests: SimpleRequest[]) =>
      requests.map((request) => Number(request.args[0]) ** 2),
    );
    const app = await startWorker({ broker: AMQP_URL, resultBackend: REDIS_URL, defaultQueue: queue }, [Square]);
    try {
      const handler = app.get(Square);
      await handler.waitForRequests(1000, 30_000);
      assert.deepEqual(
        handler.batches.map((batch) => batch.length),
        Array(10).fill(100),
      );
      const read = resultsOf(await PythonProcess.run('results.py', [JSON.stringify(ids)], queue));
      assert.deepEqual(
        read.map((event) => event.result),
        Array.from({ length: 1000 }, (_, i) => i * i),
      );
    } finally {
      await app.close();
    }
  });
});

describe('Nest BatchClient → Python Celery worker', { skip }, () => {
  const queue = newQueue('nest2py');
  let worker: PythonProcess;
  let app: INestMicroservice;
  let client: BatchClient;

  before(async () => {
    worker = new PythonProcess('worker.py', [], queue);
    await worker.waitForEvent('ready');
    app = await startWorker({ broker: AMQP_URL, resultBackend: REDIS_URL, defaultQueue: queue }, []);
    client = app.get(BatchClient);
  });
  after(async () => {
    await app.close();
    await worker.stop();
  });

  it('delay() runs a plain Python task and get() returns its result', async () => {
    assert.equal(await (await client.delay('add', 2, 3)).get({ timeout: 20_000 }), 5);
    assert.equal(await (await client.applyAsync('add', { args: [0.5, 0.25] })).get({ timeout: 20_000 }), 0.75);
  });

  it('applyAsync() round-trips nested objects and unicode through Python', async () => {
    const value = { name: 'zürich ✓ 東京', list: [1, 'two', { three: [3] }], flag: false, none: null };
    assert.deepEqual(await (await client.applyAsync('echo', { kwargs: { value } })).get({ timeout: 20_000 }), value);
  });

  it('a Python exception arrives as a TaskFailedError with its type and message', async () => {
    const result = await client.delay('fail', 'bad thing');
    await assert.rejects(result.get({ timeout: 20_000 }), (error: unknown) => {
      assert.ok(error instanceof TaskFailedError);
      assert.equal(error.excType, 'ValueError');
      assert.equal(error.excMessage, 'bad thing');
      assert.equal(error.excModule, 'builtins');
      assert.match(error.traceback ?? '', /ValueError: bad thing/);
      return true;
    });
  });
});

describe('a Python and a Nest worker on one queue', { skip }, () => {
  for (const order of ['python first', 'nest first'] as const) {
    it(`both start without a declaration conflict (${order})`, async () => {
      const queue = newQueue('shared');
      const Echo = recorder('interop.shared', { flushEvery: 5, flushInterval: 100, queue });
      let app: INestMicroservice | undefined;
      const python = new PythonProcess('worker.py', [], queue);
      try {
        if (order === 'nest first') app = await startWorker({ broker: AMQP_URL, resultBackend: REDIS_URL, defaultQueue: queue }, [Echo]);
        await python.waitForEvent('ready');
        app ??= await startWorker({ broker: AMQP_URL, resultBackend: REDIS_URL, defaultQueue: queue }, [Echo]);
        // Both consumers attached to the one queue: neither declaration was refused (a mismatch closes the channel).
        // The Nest worker connects in the background, so wait for its consumer rather than read the count once.
        const rabbit = await TestRabbit.connect();
        try {
          await waitFor(async () => (await rabbit.channel.checkQueue(queue)).consumerCount === 2, 'two consumers on the queue');
        } finally {
          await rabbit.close();
        }
      } finally {
        await app?.close();
        await python.stop();
      }
    });
  }
});
