import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Injectable } from '@nestjs/common';
import { BatchClient, BatchesMonitorModule, BatchHandler, ResultBackend, type SimpleRequest } from 'nestjs-batches';
import { startApp } from './support/monitored-app.js';
import { rabbitSuite } from './support/rabbitmq.js';
import { SnapshotStream, taskOf } from './support/snapshot-stream.js';
import { gate } from './support/wait.js';
import { recorder } from './support/worker-app.js';

// The same suite as monitor.test.ts, split by seam: what the monitor's stream shows, and when it shows arguments and results.
describe('BatchesMonitorModule over HTTP, on RabbitMQ', () => {
  const suite = rabbitSuite();

  it('streams per-task rates, sizes, flush reasons, waits, handler times, gauges and dead letters, and no argument', async () => {
    const queue = suite.queue('monitor.stream');
    const SUM = 'monitor.sum';
    const BLOCK = 'monitor.block';
    const FAIL = 'monitor.fail';
    const blocked = gate();
    const { app, url } = await startApp(
      { defaultQueue: queue },
      [BatchesMonitorModule.forRoot({ refreshInterval: 200 })],
      [
        recorder(SUM, { flushEvery: 3, flushInterval: 300 }, (requests) => requests.map(() => 'private-result')),
        recorder(BLOCK, { flushEvery: 2, flushInterval: 60_000 }, () => blocked.wait),
        recorder(FAIL, { flushEvery: 1, maxRetries: 0 }, () => {
          throw new Error('private-error');
        }),
      ],
    );
    suite.closeAfter(app);
    const client = app.get(BatchClient);
    const stream = await SnapshotStream.open(`${url}/batches/events`);
    suite.closeAfter(stream);

    // The first snapshot comes at once: every handler, nothing counted yet.
    const first = await stream.until('the first snapshot', () => true, 5_000);
    assert.deepEqual(
      first.tasks.map(({ task, queue: on, flushEvery, flushInterval, concurrency }) => ({
        task,
        on,
        flushEvery,
        flushInterval,
        concurrency,
      })),
      [
        { task: BLOCK, on: queue, flushEvery: 2, flushInterval: 60_000, concurrency: 1 },
        { task: FAIL, on: queue, flushEvery: 1, flushInterval: 30_000, concurrency: 1 },
        { task: SUM, on: queue, flushEvery: 3, flushInterval: 300, concurrency: 1 },
      ],
    );
    assert.equal(first.broker, 'connected');
    assert.deepEqual(taskOf(first, SUM).totals, { batches: 0, requests: 0, failedBatches: 0, retried: 0, failed: 0, deadLettered: 0 });

    // 4 requests: a batch of 3 by count, one of 1 by the interval.
    for (let i = 1; i <= 4; i++) await client.delay(SUM, `private-arg-${i}`);
    const summed = await stream.until('both SUM batches', (snapshot) => taskOf(snapshot, SUM).totals.batches === 2);
    const sum = taskOf(summed, SUM);
    assert.deepEqual(sum.flushReasons, { count: 1, interval: 1 });
    assert.equal(sum.totals.requests, 4);
    assert.deepEqual(sum.batchSize, { mean: 2, max: 3 });
    assert.ok(sum.batchesPerSecond > 0 && sum.requestsPerSecond > sum.batchesPerSecond, JSON.stringify(sum));
    assert.ok(sum.oldestWaitMs && sum.oldestWaitMs.max >= 0 && sum.oldestWaitMs.max < 300 + 2_000, JSON.stringify(sum.oldestWaitMs));
    assert.ok(sum.handlerMs && sum.handlerMs.max >= sum.handlerMs.mean, JSON.stringify(sum.handlerMs));
    assert.equal(sum.recent, undefined);

    // Gauges: a batch of 2 held in its handler is in flight, a third request waits in the buffer,
    // and one due in a minute is held on the queue.
    await client.delay(BLOCK, 1);
    await client.delay(BLOCK, 2);
    await client.delay(BLOCK, 3);
    await client.applyAsync(SUM, { args: ['private-arg-later'], countdown: 60_000 });
    const busy = await stream.until('2 in flight, 1 buffered, 1 held', (snapshot) => {
      const block = taskOf(snapshot, BLOCK);
      return block.inFlight === 2 && block.buffered === 1 && snapshot.queues[0].held === 1;
    });
    assert.deepEqual(busy.queues, [{ queue, tasks: [BLOCK, FAIL, SUM], held: 1, deadLetters: 0 }]);
    blocked.open();
    await client.delay(BLOCK, 4);
    await stream.until('BLOCK drained', (snapshot) => {
      const block = taskOf(snapshot, BLOCK);
      return block.totals.requests === 4 && block.inFlight === 0 && block.buffered === 0;
    });

    // A request that always fails: its batch fails, the request is failed and dead-lettered.
    await client.delay(FAIL, 'private-arg-fail');
    const failed = await stream.until('the dead letter', (snapshot) => snapshot.queues[0].deadLetters === 1);
    assert.deepEqual(taskOf(failed, FAIL).totals, { batches: 1, requests: 1, failedBatches: 1, retried: 0, failed: 1, deadLettered: 1 });
    assert.equal(failed.queues[0].lastDeadLetterReason, undefined);
    assert.equal((await suite.rabbit.takeAll(`${queue}.dead`)).length, 1);

    // Rates are over the last 10 s at most (less while counting has just begun).
    assert.ok(failed.windowMs > 0 && failed.windowMs <= 10_000, String(failed.windowMs));

    // Task names and numbers only: no argument, result or error text ever went out.
    assert.doesNotMatch(stream.text, /private-/);
  });

  it('shows the latest requests with their arguments and results only when opted in (forRootAsync)', async () => {
    const queue = suite.queue('monitor.optin');
    const TASK = 'monitor.optin';
    const BROKEN = 'monitor.broken';

    @Injectable()
    class Lookups {
      constructor(private readonly results: ResultBackend) {}

      @BatchHandler(TASK, { flushEvery: 2 })
      async look(requests: SimpleRequest[]): Promise<void> {
        for (const request of requests) {
          if (request.args[0] === 'bad') await this.results.markAsFailure(request.id, new RangeError('no such thing'), request);
          else await this.results.markAsDone(request.id, `done ${String(request.args[0])}`, request);
        }
      }

      @BatchHandler(BROKEN, { flushEvery: 1, maxRetries: 0 })
      broken(): never {
        throw new Error('the lookup service is down');
      }
    }

    const { app, url } = await startApp(
      { defaultQueue: queue },
      [
        BatchesMonitorModule.forRootAsync({
          path: 'admin/batches',
          useFactory: async () => ({ showArguments: true, showResults: true, refreshInterval: 200 }),
        }),
      ],
      [Lookups],
    );
    suite.closeAfter(app);
    const stream = await SnapshotStream.open(`${url}/admin/batches/events`);
    suite.closeAfter(stream);
    const client = app.get(BatchClient);
    await client.applyAsync(TASK, { args: ['good'], kwargs: { tenant: 7 }, taskId: 'optin-good' });
    await client.applyAsync(TASK, { args: ['bad'], taskId: 'optin-bad' });
    const shown = await stream.until('both samples', (snapshot) => (taskOf(snapshot, TASK).recent ?? []).length === 2);
    const recent = (taskOf(shown, TASK).recent ?? []).toSorted((a, b) => a.id.localeCompare(b.id));
    assert.deepEqual(
      recent.map(({ id, state, args, kwargs, outcome }) => ({ id, state, args, kwargs, outcome })),
      [
        { id: 'optin-bad', state: 'FAILURE', args: '["bad"]', kwargs: '{}', outcome: 'RangeError: no such thing' },
        { id: 'optin-good', state: 'SUCCESS', args: '["good"]', kwargs: '{"tenant":7}', outcome: '"done good"' },
      ],
    );
    assert.ok(shown.showArguments && shown.showResults);

    await client.delay(BROKEN, 'x');
    const dead = await stream.until('the dead letter', (snapshot) => snapshot.queues[0].deadLetters === 1);
    assert.match(dead.queues[0].lastDeadLetterReason ?? '', /the lookup service is down/);
    assert.equal(taskOf(dead, BROKEN).recent?.[0]?.outcome, 'Error: the lookup service is down');
    await suite.rabbit.takeAll(`${queue}.dead`);
  });
});
