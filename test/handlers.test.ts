import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Injectable } from '@nestjs/common';
import { BatchClient, BatchesConfigError, BatchHandler } from 'nestjs-batches';
import { AMQP_URL, rabbitSuite } from './support/rabbitmq.js';
import { recorder, startWorker } from './support/worker-app.js';

describe('several handlers under load on RabbitMQ', () => {
  const suite = rabbitSuite();

  async function backlog(tasks: Array<{ task: string; queue: string }>, perTask: number): Promise<void> {
    for (const { queue } of tasks) await suite.rabbit.declareCeleryQueue(queue);
    // Interleaved, so neither task can fill its batches from a run of its own messages.
    for (let i = 0; i < perTask; i++) for (const { task, queue } of tasks) await suite.rabbit.publishTask(queue, { task, args: [i] });
  }

  it('two handlers sharing one queue both reach only full batches (no starvation)', async () => {
    const queue = suite.queue('shared');
    await backlog(
      [
        { task: 'shared.a', queue },
        { task: 'shared.b', queue },
      ],
      500,
    );
    const A = recorder('shared.a', { flushEvery: 50, flushInterval: 60_000, queue });
    const B = recorder('shared.b', { flushEvery: 50, flushInterval: 60_000, queue });
    const app = await startWorker({ broker: AMQP_URL }, [A, B]);
    try {
      await app.get(A).waitForRequests(500);
      await app.get(B).waitForRequests(500);
      assert.deepEqual(
        app.get(A).batches.map((batch) => batch.length),
        Array(10).fill(50),
      );
      assert.deepEqual(
        app.get(B).batches.map((batch) => batch.length),
        Array(10).fill(50),
      );
    } finally {
      await app.close();
    }
  });

  it('handlers on separate queues each reach full batches', async () => {
    const [q1, q2] = [suite.queue('sep1'), suite.queue('sep2')];
    await backlog(
      [
        { task: 'sep.a', queue: q1 },
        { task: 'sep.b', queue: q2 },
      ],
      300,
    );
    const A = recorder('sep.a', { flushEvery: 100, flushInterval: 60_000, queue: q1 });
    const B = recorder('sep.b', { flushEvery: 30, flushInterval: 60_000, queue: q2 });
    const app = await startWorker({ broker: AMQP_URL }, [A, B]);
    try {
      await app.get(A).waitForRequests(300);
      await app.get(B).waitForRequests(300);
      assert.deepEqual(
        app.get(A).batches.map((batch) => batch.length),
        [100, 100, 100],
      );
      assert.deepEqual(
        app.get(B).batches.map((batch) => batch.length),
        Array(10).fill(30),
      );
    } finally {
      await app.close();
    }
  });
});

describe('startup errors name the option and the fix', () => {
  it('refuses two handlers for one task name, naming both methods', async () => {
    @Injectable()
    class First {
      @BatchHandler('dup.task')
      handle(): void {}
    }
    @Injectable()
    class Second {
      @BatchHandler('dup.task')
      run(): void {}
    }
    await assert.rejects(startWorker({}, [First, Second]), (error: unknown) => {
      assert.ok(error instanceof BatchesConfigError);
      assert.match(error.message, /'dup\.task'.*First\.handle.*Second\.run/);
      return true;
    });
  });

  it('refuses a prefetch below flushEvery', async () => {
    await assert.rejects(
      startWorker({}, [recorder('bad.prefetch', { flushEvery: 100, prefetch: 10 })]),
      /`prefetch` 10 is below `flushEvery` 100.*Raise prefetch to at least 100/,
    );
  });

  it('refuses a negative flushEvery', async () => {
    await assert.rejects(startWorker({}, [recorder('bad.flush', { flushEvery: -1 })]), /`flushEvery` must be a positive integer, got -1/);
    await assert.rejects(startWorker({ flushEvery: 0 }, []), /forRoot\(\): `flushEvery` must be a positive integer, got 0/);
  });

  it('refuses an unknown broker scheme', async () => {
    await assert.rejects(
      startWorker({ broker: 'kafka://localhost' }, []),
      /`broker` "kafka:\/\/localhost" has an unknown scheme\. Use 'memory:\/\/' or an 'amqp:\/\/'/,
    );
    await assert.rejects(startWorker({ resultBackend: 'mongodb://x' }, []), /`resultBackend` .* unknown scheme/);
  });
});

describe('concurrency', () => {
  it('runs at most `concurrency` batches of a handler at once, started in order', async () => {
    let running = 0;
    let peak = 0;
    const started: number[] = [];
    const Concurrent = recorder(
      'concurrent.task',
      { flushEvery: 5, flushInterval: 60_000, concurrency: 2, queue: 'concurrent' },
      async (requests) => {
        started.push(Number(requests[0].args[0]));
        peak = Math.max(peak, ++running);
        await new Promise((resolve) => setTimeout(resolve, 100));
        running--;
      },
    );
    const app = await startWorker({ defaultQueue: 'concurrent' }, [Concurrent]);
    try {
      const client = app.get(BatchClient);
      for (let i = 0; i < 30; i++) await client.delay('concurrent.task', i);
      await app.get(Concurrent).waitForRequests(30);
      assert.equal(peak, 2);
      assert.deepEqual(started, [0, 5, 10, 15, 20, 25]);
    } finally {
      await app.close();
    }
  });
});
