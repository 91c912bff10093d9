import './support/no-network.js';
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { BatchHandlerOptions } from '../../libs/batches/src/batches.options.js';
import { BatchEvents } from '../../libs/batches/src/events/batch-events.js';
import type { SimpleRequest } from '../../libs/batches/src/simple-request.js';
import { AckTrackers } from '../../libs/batches/src/transport/ack-tracker.js';
import { RunningBatches } from '../../libs/batches/src/transport/batch-marks.js';
import { BatchRunner } from '../../libs/batches/src/transport/batch-runner.js';
import { Deliveries, FakeChannel, FakeRepublisher, handlerFor, RecordingLogger } from './support/fakes.js';
import { FlakyResultBackend } from './support/flaky-result-backend.js';

describe('BatchRunner: how a batch is settled', () => {
  let results: FlakyResultBackend;
  let acks: AckTrackers;
  let deliveries: Deliveries;
  let republisher: FakeRepublisher;
  let logger: RecordingLogger;

  beforeEach(() => {
    results = new FlakyResultBackend();
    acks = new AckTrackers();
    deliveries = new Deliveries(acks);
    republisher = new FakeRepublisher();
    logger = new RecordingLogger();
  });

  afterEach(() => results.close());

  function runnerFor(fn: (requests: SimpleRequest[]) => unknown, options: BatchHandlerOptions = {}) {
    const handler = handlerFor('unit.task', { maxRetries: 3, retryDelay: 10, ...options }, fn);
    const runner = new BatchRunner(handler, {
      results,
      batches: new RunningBatches(results),
      acks,
      logger,
      events: new BatchEvents(),
      republisher: republisher.asRepublisher(),
    });
    return { handler, runner };
  }

  async function stored(id: string): Promise<{ status: string; result: unknown }> {
    const { status, result } = await results.getResult(id);
    return { status, result };
  }

  it('stores an aligned array as each request’s SUCCESS value and acks the batch with one multiple-ack', async () => {
    const { runner } = runnerFor((requests) => requests.map((request) => (request.args[0] as number) * 10));
    await runner.run(deliveries.batch('unit.task', 3), 'count');
    assert.deepEqual(await stored('r-1'), { status: 'SUCCESS', result: 10 });
    assert.deepEqual(await stored('r-2'), { status: 'SUCCESS', result: 20 });
    assert.deepEqual(await stored('r-3'), { status: 'SUCCESS', result: 30 });
    assert.deepEqual(deliveries.channel.acks, [[3, true]]);
    assert.equal(acks.unacked(), 0);
    assert.deepEqual(republisher.retries, []);
  });

  it('stores a returned Map by request id, and null for the requests it leaves out', async () => {
    const { runner } = runnerFor(() => new Map<string, unknown>([['r-2', { ok: true }]]));
    await runner.run(deliveries.batch('unit.task', 3), 'count');
    assert.deepEqual(await stored('r-1'), { status: 'SUCCESS', result: null });
    assert.deepEqual(await stored('r-2'), { status: 'SUCCESS', result: { ok: true } });
    assert.deepEqual(await stored('r-3'), { status: 'SUCCESS', result: null });
    assert.deepEqual(deliveries.channel.acks, [[3, true]]);
  });

  it('stores SUCCESS null for every request when the handler returns nothing (never PENDING forever)', async () => {
    const { runner } = runnerFor(() => undefined);
    await runner.run(deliveries.batch('unit.task', 2), 'interval');
    assert.deepEqual(await stored('r-1'), { status: 'SUCCESS', result: null });
    assert.deepEqual(await stored('r-2'), { status: 'SUCCESS', result: null });
    assert.deepEqual(deliveries.channel.acks, [[2, true]]);
  });

  it('resolves every request with null when an array’s length does not match the batch', async () => {
    const { runner } = runnerFor(() => ['only one']);
    await runner.run(deliveries.batch('unit.task', 2), 'count');
    assert.deepEqual(await stored('r-1'), { status: 'SUCCESS', result: null });
    assert.deepEqual(await stored('r-2'), { status: 'SUCCESS', result: null });
  });

  it('keeps a FAILURE the handler marked, re-publishes a RETRY it marked, and resolves the rest from the return', async () => {
    const { runner } = runnerFor(async (requests) => {
      await results.markAsFailure(requests[0].id, new TypeError('bad input'));
      await results.markAsRetry(requests[1].id, new Error('try later'));
      return requests.map(() => 'done');
    });
    await runner.run(deliveries.batch('unit.task', 3), 'count');

    const failed = await results.getResult('r-1');
    assert.equal(failed.status, 'FAILURE');
    assert.deepEqual(failed.result, { exc_type: 'TypeError', exc_message: ['bad input'], exc_module: 'builtins' });
    assert.equal((await stored('r-2')).status, 'RETRY');
    assert.deepEqual(await stored('r-3'), { status: 'SUCCESS', result: 'done' });
    // Only the RETRY goes back to the queue, with the handler's retryDelay; the FAILURE is final.
    assert.deepEqual(republisher.retries, [{ id: 'r-2', retries: 0, queue: 'unit', retryDelay: 10 }]);
    assert.deepEqual(republisher.deadLetters, []);
    // All three settled: the retry is acked once its copy is published.
    assert.equal(acks.unacked(), 0);
    assert.deepEqual(deliveries.channel.acks, [[3, true]]);
  });

  it('retries every unmarked request of a batch whose handler throws, and keeps what it marked before throwing', async () => {
    const { runner } = runnerFor(async (requests) => {
      await results.markAsDone(requests[0].id, 'made it');
      throw new Error('downstream is down');
    });
    await runner.run(deliveries.batch('unit.task', 3), 'count');

    assert.deepEqual(await stored('r-1'), { status: 'SUCCESS', result: 'made it' });
    assert.deepEqual(
      republisher.retries.map(({ id, retries }) => ({ id, retries })),
      [
        { id: 'r-2', retries: 0 },
        { id: 'r-3', retries: 0 },
      ],
    );
    for (const id of ['r-2', 'r-3']) {
      const result = await results.getResult(id);
      assert.equal(result.status, 'RETRY');
      assert.deepEqual(result.result, { exc_type: 'Error', exc_message: ['downstream is down'], exc_module: 'nestjs_batches' });
    }
    assert.equal(acks.unacked(), 0);
    assert.match(
      logger.warnings.join('\n'),
      /UnitHandlers\.handle failed a batch of 2 'unit\.task' request\(s\): Error: downstream is down/,
    );
  });

  it('dead-letters and stores FAILURE once a request has spent maxRetries, and retries the others', async () => {
    const { runner } = runnerFor(
      () => {
        throw new Error('still down');
      },
      { maxRetries: 2 },
    );
    const spent = deliveries.envelope({ task: 'unit.task', id: 'spent', retries: 2 });
    const fresh = deliveries.envelope({ task: 'unit.task', id: 'fresh', retries: 1 });
    await runner.run([spent, fresh], 'count');

    assert.deepEqual(republisher.retries, [{ id: 'fresh', retries: 1, queue: 'unit', retryDelay: 10 }]);
    assert.deepEqual(republisher.deadLetters, [
      { deliveryTag: spent.delivery?.deliveryTag, queue: 'unit', reason: '2 retries exhausted: Error: still down' },
    ]);
    const failed = await results.getResult('spent');
    assert.equal(failed.status, 'FAILURE');
    assert.deepEqual(failed.result, { exc_type: 'Error', exc_message: ['still down'], exc_module: 'nestjs_batches' });
    assert.equal((await stored('fresh')).status, 'RETRY');
    assert.deepEqual(deliveries.channel.acks, [[2, true]]);
  });

  it('with maxRetries 0, dead-letters on the first failure', async () => {
    const { runner } = runnerFor(
      () => {
        throw new Error('no second chance');
      },
      { maxRetries: 0 },
    );
    await runner.run(deliveries.batch('unit.task', 1), 'count');
    assert.deepEqual(republisher.retries, []);
    assert.equal(republisher.deadLetters.length, 1);
    assert.equal((await stored('r-1')).status, 'FAILURE');
  });

  it('retries a batch whose results could not be stored instead of acking it as done', async () => {
    results.failWrites = new Error('result backend unreachable');
    const { runner } = runnerFor((requests) => requests.map(() => 'lost?'));
    await runner.run(deliveries.batch('unit.task', 3), 'count');

    assert.deepEqual(
      republisher.retries.map(({ id }) => id),
      ['r-1', 'r-2', 'r-3'],
    );
    assert.match(
      logger.errors.join('\n'),
      /Results of 'unit\.task' could not be stored, so the batch is retried: Error: result backend unreachable/,
    );
    // Acked only as retried (their copies are published), never as succeeded.
    results.failWrites = undefined;
    assert.equal((await stored('r-1')).status, 'PENDING');
    assert.equal(acks.unacked(), 0);
  });

  it('leaves a request unacked for the broker to redeliver when its retry cannot be published', async () => {
    republisher.failWith = new Error('broker gone');
    const { runner } = runnerFor(() => {
      throw new Error('boom');
    });
    await runner.run(deliveries.batch('unit.task', 2), 'count');

    assert.deepEqual(deliveries.channel.acks, []);
    assert.equal(acks.unacked(), 2);
    assert.match(logger.errors.join('\n'), /Could not retry task r-1; it stays unacked for redelivery: Error: broker gone/);
  });

  it('does not run requests whose channel has closed (the broker redelivers them), and runs the live ones', async () => {
    const closed = new FakeChannel();
    const { handler, runner } = runnerFor((requests) => requests.map(() => 'ran'));
    const dead = deliveries.envelope({ task: 'unit.task', id: 'dead' }, closed);
    const live = deliveries.envelope({ task: 'unit.task', id: 'live' });
    closed.open = false;

    await runner.run([dead, live], 'count');
    assert.deepEqual(
      handler.calls.map((batch) => batch.map((request) => request.id)),
      [['live']],
    );
    assert.deepEqual(await stored('dead'), { status: 'PENDING', result: null });
    assert.deepEqual(await stored('live'), { status: 'SUCCESS', result: 'ran' });
    assert.deepEqual(closed.acks, []);
  });

  it('does not call the handler at all when every request’s channel has closed', async () => {
    const { handler, runner } = runnerFor(() => undefined);
    const batch = deliveries.batch('unit.task', 2);
    deliveries.channel.open = false;
    assert.equal(await runner.run(batch, 'count'), undefined);
    assert.equal(handler.calls.length, 0);
    assert.deepEqual(deliveries.channel.acks, []);
  });

  it('acks one by one behind an earlier delivery still running, never past it', async () => {
    const { runner } = runnerFor(() => undefined);
    const [first, ...rest] = deliveries.batch('unit.task', 3);
    await runner.run(rest, 'count');
    assert.deepEqual(deliveries.channel.acks, [
      [2, false],
      [3, false],
    ]);
    await runner.run([first], 'count');
    // Once the oldest is settled too, one multiple-ack covers it (the later ones are skipped).
    assert.deepEqual(deliveries.channel.acks.at(-1), [1, true]);
    assert.equal(acks.unacked(), 0);
  });
});
