import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Injectable, type INestMicroservice } from '@nestjs/common';
import { BatchClient, BatchEvents, OnBatchEvent, type BatchEvent, type BatchEventType, type BatchFlushedEvent } from 'nestjs-batches';
import { AMQP_URL, rabbitSuite } from './support/rabbitmq.js';
import { waitFor } from './support/wait.js';
import { recorder, RecordingLogger, startWorker } from './support/worker-app.js';

/** Collects the worker's events from `events$`. */
function collect(app: INestMicroservice): {
  events: BatchEvent[];
  of<T extends BatchEventType>(type: T): Extract<BatchEvent, { type: T }>[];
} {
  const events: BatchEvent[] = [];
  const subscription = app.get(BatchEvents).events$.subscribe((event) => events.push(event));
  after(() => subscription.unsubscribe());
  return { events, of: (type) => events.filter((event) => event.type === type) as never };
}

describe('worker events on RabbitMQ', () => {
  const suite = rabbitSuite();

  it('reports received, flushed (count, interval, shutdown), started, completed and succeeded, in order', async () => {
    const queue = suite.queue('events');
    const Doubler = recorder('events.double', { flushEvery: 3, flushInterval: 300, queue }, (requests) =>
      requests.map((request) => (request.args[0] as number) * 2),
    );
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue }, [Doubler]);
    const { events, of } = collect(app);
    const client = app.get(BatchClient);
    for (let i = 0; i < 4; i++) await client.delay('events.double', i);
    await waitFor(() => of('request.succeeded').length === 4, 'four succeeded events');

    assert.deepEqual(
      of('request.received').map((event) => event.request.args),
      [[0], [1], [2], [3]],
    );
    const flushed = of('batch.flushed');
    assert.deepEqual(
      flushed.map(({ size, reason, task, queue: q }) => ({ size, reason, task, queue: q })),
      [
        { size: 3, reason: 'count', task: 'events.double', queue },
        { size: 1, reason: 'interval', task: 'events.double', queue },
      ],
    );
    // The lone request waited for the interval (300 ms) in its buffer, give or take a timer's slack.
    assert.ok(flushed[1].oldestWaitMs >= 200 && flushed[1].oldestWaitMs < 5_000, String(flushed[1].oldestWaitMs));
    assert.deepEqual(
      of('request.succeeded').map((event) => [event.request.args[0], event.result]),
      [
        [0, 0],
        [1, 2],
        [2, 4],
        [3, 6],
      ],
    );
    assert.deepEqual(
      of('batch.completed').map((event) => event.size),
      [3, 1],
    );
    // Per batch: flushed, then started, then each request's outcome, then completed.
    const firstBatch = events.filter((event) => event.type !== 'request.received').slice(0, 6);
    assert.deepEqual(
      firstBatch.map((event) => event.type),
      ['batch.flushed', 'batch.started', 'request.succeeded', 'request.succeeded', 'request.succeeded', 'batch.completed'],
    );

    await client.delay('events.double', 10);
    await waitFor(() => of('request.received').length === 5, 'the fifth request received');
    await app.close();
    assert.deepEqual(
      of('batch.flushed').map((event) => event.reason),
      ['count', 'interval', 'shutdown'],
    );
  });

  it('reports a failing batch, its retries, the final failure and the dead letter', async () => {
    const queue = suite.queue('events-fail');
    const Failing = recorder('events.fail', { flushEvery: 1, flushInterval: 100, queue, maxRetries: 1, retryDelay: 10 }, () => {
      throw new RangeError('no capacity');
    });
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue }, [Failing]);
    suite.closeAfter(app);
    const { of } = collect(app);
    const { id } = await app.get(BatchClient).delay('events.fail', 1);
    await waitFor(() => of('request.deadLettered').length === 1, 'the dead letter');
    assert.deepEqual(
      of('batch.failed').map((event) => (event.error as Error).message),
      ['no capacity', 'no capacity'],
    );
    assert.deepEqual(
      of('request.retried').map((event) => event.request.retries),
      [0],
    );
    const [failed] = of('request.failed');
    assert.equal(failed.request.id, id);
    assert.equal(failed.request.retries, 1);
    assert.match(of('request.deadLettered')[0].reason, /1 retries exhausted: RangeError: no capacity/);
  });

  it('reports expired requests and messages dead-lettered on arrival', async () => {
    const queue = suite.queue('events-expired');
    const Handler = recorder('events.known', { flushEvery: 10, flushInterval: 100, queue });
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue }, [Handler], new RecordingLogger());
    suite.closeAfter(app);
    const { of } = collect(app);
    const client = app.get(BatchClient);
    const expired = await client.applyAsync('events.known', { expires: new Date(Date.now() - 1_000) });
    const unknown = await client.delay('events.nobody');
    await waitFor(() => of('request.expired').length === 1 && of('request.deadLettered').length === 1, 'expired and dead-lettered');
    assert.equal(of('request.expired')[0].request.id, expired.id);
    assert.equal(of('request.deadLettered')[0].id, unknown.id);
    assert.match(of('request.deadLettered')[0].reason, /unknown task 'events\.nobody'/);
  });
});

describe('@OnBatchEvent', () => {
  const suite = rabbitSuite();

  it('calls decorated provider methods with their events; a listener that throws disturbs nothing', async () => {
    const queue = suite.queue('on-event');
    @Injectable()
    class FlushWatcher {
      readonly flushed: BatchFlushedEvent[] = [];

      @OnBatchEvent('batch.flushed')
      onFlush(event: BatchFlushedEvent): void {
        this.flushed.push(event);
      }

      @OnBatchEvent('batch.completed')
      broken(): never {
        throw new Error('listener bug');
      }
    }
    const Handler = recorder('on-event.task', { flushEvery: 2, flushInterval: 60_000, queue });
    const logger = new RecordingLogger();
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue }, [Handler, FlushWatcher], logger);
    for (let i = 0; i < 4; i++) await app.get(BatchClient).delay('on-event.task', i);
    await app.get(Handler).waitForRequests(4);
    await waitFor(() => app.get(FlushWatcher).flushed.length === 2, 'two flushed events');
    assert.deepEqual(
      app.get(FlushWatcher).flushed.map((event) => [event.size, event.reason]),
      [
        [2, 'count'],
        [2, 'count'],
      ],
    );
    await waitFor(() => logger.errors.filter((line) => line.includes('FlushWatcher.broken failed')).length === 2, 'two listener errors');
    await app.close();
  });
});
