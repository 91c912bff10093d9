import './support/no-network.js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BatchEvent } from '../../libs/batches/src/events/batch-events.js';
import { MonitorWindow, type MonitorPrivacy } from '../../libs/batches/src/monitor/monitor-window.js';
import type { SimpleRequest } from '../../libs/batches/src/simple-request.js';

const TASK = 'unit.monitor';
const QUEUE = 'q';
const HIDDEN: MonitorPrivacy = { showArguments: false, showResults: false };

function request(id: string, args: unknown[] = []): SimpleRequest {
  return { id, name: TASK, args, kwargs: { who: 'someone' } } as unknown as SimpleRequest;
}

function flushed(size: number, reason: 'count' | 'interval' | 'idle', oldestWaitMs: number): BatchEvent {
  return { type: 'batch.flushed', task: TASK, queue: QUEUE, at: 0, size, reason, oldestWaitMs };
}

function handled(durationMs: number, failed = false): BatchEvent {
  return failed
    ? { type: 'batch.failed', task: TASK, queue: QUEUE, at: 0, size: 1, durationMs, error: new Error('x') }
    : { type: 'batch.completed', task: TASK, queue: QUEUE, at: 0, size: 1, durationMs };
}

describe('MonitorWindow: what the monitor page counts', () => {
  it('rates, means and maxima cover the ticks in the window; older ticks leave it; totals stay', () => {
    // 3 ticks of 1 s.
    const window = new MonitorWindow(3, 1_000, HIDDEN);
    window.add([flushed(10, 'count', 40), handled(5)]);
    window.add([flushed(4, 'interval', 1_000), handled(15)]);
    let figures = window.task(TASK);
    assert.equal(window.windowMs, 2_000);
    assert.equal(figures.batchesPerSecond, 1);
    assert.equal(figures.requestsPerSecond, 7);
    assert.deepEqual(figures.batchSize, { mean: 7, max: 10 });
    assert.deepEqual(figures.oldestWaitMs, { mean: 520, max: 1_000 });
    assert.deepEqual(figures.handlerMs, { mean: 10, max: 15 });

    // Three quiet ticks: the two busy ones leave the window; totals and reasons remain.
    window.add([]);
    window.add([]);
    window.add([]);
    figures = window.task(TASK);
    assert.equal(window.windowMs, 3_000);
    assert.equal(figures.batchesPerSecond, 0);
    assert.equal(figures.batchSize, null);
    assert.equal(figures.handlerMs, null);
    assert.deepEqual(figures.totals, { batches: 2, requests: 14, failedBatches: 0, retried: 0, failed: 0, deadLettered: 0 });
    assert.deepEqual(figures.flushReasons, { count: 1, interval: 1 });
  });

  it('counts failed batches, retries, final failures and dead letters; an unreadable dead letter counts on its queue only', () => {
    const window = new MonitorWindow(10, 1_000, HIDDEN);
    const failing = request('r1', ['secret']);
    window.add([
      handled(3, true),
      { type: 'request.retried', task: TASK, queue: QUEUE, at: 0, request: failing, error: new Error('once') },
      { type: 'request.failed', task: TASK, queue: QUEUE, at: 0, request: failing, error: new Error('twice'), runtimeMs: 3 },
      { type: 'request.deadLettered', task: TASK, queue: QUEUE, at: 0, id: 'r1', request: failing, reason: 'retries exhausted: secret' },
      { type: 'request.deadLettered', task: '', queue: QUEUE, at: 0, id: null, request: null, reason: 'not JSON' },
    ]);
    assert.deepEqual(window.task(TASK).totals, { batches: 0, requests: 0, failedBatches: 1, retried: 1, failed: 1, deadLettered: 1 });
    assert.deepEqual(window.task('').totals.deadLettered, 0);
    // The reason may quote a handler's error: shown only with showResults.
    assert.deepEqual(window.queue(QUEUE), { deadLetters: 2 });
    assert.equal(window.task(TASK).recent, undefined);
  });

  it('keeps the latest 5 settled requests, newest first, with only what was opted in, cut at 200 characters', () => {
    const argumentsOnly = new MonitorWindow(10, 1_000, { showArguments: true, showResults: false });
    const resultsOnly = new MonitorWindow(10, 1_000, { showArguments: false, showResults: true });
    const events: BatchEvent[] = Array.from({ length: 7 }, (_, i) => ({
      type: 'request.succeeded',
      task: TASK,
      queue: QUEUE,
      at: i,
      request: request(`r${i}`, ['x'.repeat(300)]),
      result: { n: i },
      runtimeMs: 1,
    }));
    for (const window of [argumentsOnly, resultsOnly]) {
      assert.ok(events.every((event) => window.wants(event)));
      window.add(events);
    }
    const withArguments = argumentsOnly.task(TASK).recent ?? [];
    assert.deepEqual(
      withArguments.map(({ id }) => id),
      ['r6', 'r5', 'r4', 'r3', 'r2'],
    );
    assert.equal(withArguments[0].args?.length, 200);
    assert.match(withArguments[0].args ?? '', /^\["x+…$/);
    assert.equal(withArguments[0].kwargs, '{"who":"someone"}');
    assert.equal(withArguments[0].outcome, undefined);
    const withResults = resultsOnly.task(TASK).recent ?? [];
    assert.deepEqual(withResults[0], { id: 'r6', state: 'SUCCESS', at: 6, outcome: '{"n":6}' });
    // Hidden: per-request successes are not even buffered.
    assert.equal(new MonitorWindow(10, 1_000, HIDDEN).wants(events[0]), false);
  });

  it("shows a stored FAILURE's Celery exception info as `Type: message`", () => {
    const window = new MonitorWindow(10, 1_000, { showArguments: false, showResults: true });
    const error = { exc_type: 'RangeError', exc_message: ['no such thing'], exc_module: 'builtins' };
    window.add([{ type: 'request.failed', task: TASK, queue: QUEUE, at: 0, request: request('r1'), error, runtimeMs: 1 }]);
    assert.equal(window.task(TASK).recent?.[0].outcome, 'RangeError: no such thing');
  });
});
