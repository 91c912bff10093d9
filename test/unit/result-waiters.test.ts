import './support/no-network.js';
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { MemoryResultBackend } from '../../libs/batches/src/results/memory.result-backend.js';
import { ResultTimeoutError, TaskFailedError } from '../../libs/batches/src/results/task-result.js';

/** Lets pending promise callbacks run, so a wait is listening before the write it waits for. */
const settleTurn = () => new Promise((resolve) => setImmediate(resolve));

describe('waitForResult (result waiters)', () => {
  let results: MemoryResultBackend;

  beforeEach(() => {
    results = new MemoryResultBackend();
  });

  afterEach(() => results.close());

  it('resolves with the SUCCESS value written while waiting', async () => {
    const waiting = results.waitForResult<{ sum: number }>('t1', { timeout: 1_000 });
    await settleTurn();
    await results.markAsDone('t1', { sum: 3 });
    assert.deepEqual(await waiting, { sum: 3 });
  });

  it('resolves with a SUCCESS value stored before the wait began', async () => {
    await results.markAsDone('t2', 'already');
    assert.equal(await results.waitForResult('t2', { timeout: 1_000 }), 'already');
  });

  it('resolves every waiter of the same task', async () => {
    const first = results.waitForResult('t3', { timeout: 1_000 });
    const second = results.waitForResult('t3', { timeout: 1_000 });
    await settleTurn();
    await results.markAsDone('t3', 42);
    assert.deepEqual(await Promise.all([first, second]), [42, 42]);
  });

  it('keeps waiting through RETRY, and resolves on the SUCCESS after it', async () => {
    const waiting = results.waitForResult('t4', { timeout: 1_000 });
    await settleTurn();
    await results.markAsRetry('t4', new Error('once more'));
    await settleTurn();
    await results.markAsDone('t4', 'second time');
    assert.equal(await waiting, 'second time');
  });

  it('rejects with TaskFailedError, carrying the exception’s type and message, on FAILURE', async () => {
    const waiting = results.waitForResult('t5', { timeout: 1_000 });
    await settleTurn();
    await results.markAsFailure('t5', new RangeError('out of range'));
    await assert.rejects(waiting, (error: unknown) => {
      assert.ok(error instanceof TaskFailedError);
      assert.equal(error.taskId, 't5');
      assert.equal(error.excType, 'RangeError');
      assert.equal(error.excMessage, 'out of range');
      assert.equal(error.state, 'FAILURE');
      return true;
    });
  });

  it('rejects with TaskFailedError in state REVOKED when the task was revoked', async () => {
    const waiting = results.waitForResult('t6', { timeout: 1_000 });
    await settleTurn();
    await results.markAsRevoked('t6', 'expired at 2020-01-01T00:00:00.000Z');
    await assert.rejects(waiting, (error: unknown) => {
      assert.ok(error instanceof TaskFailedError);
      assert.equal(error.state, 'REVOKED');
      assert.equal(error.excType, 'TaskRevokedError');
      assert.match(error.message, /Task t6 was revoked/);
      return true;
    });
  });

  it('rejects with ResultTimeoutError after the timeout, naming the last state seen', async () => {
    const started = Date.now();
    const waiting = results.waitForResult('t7', { timeout: 30 });
    await settleTurn();
    await results.markAsRetry('t7', new Error('not yet'));
    await assert.rejects(waiting, (error: unknown) => {
      assert.ok(error instanceof ResultTimeoutError);
      assert.equal(error.taskId, 't7');
      assert.equal(error.timeout, 30);
      assert.equal(error.lastStatus, 'RETRY');
      return true;
    });
    assert.ok(Date.now() - started >= 29, 'not before the timeout');
  });

  it('rejects pending waits, and later ones, once the backend is closed', async () => {
    const waiting = results.waitForResult('t8', { timeout: 1_000 });
    await settleTurn();
    await results.close();
    await assert.rejects(waiting, /in-memory result backend was closed while waiting for the result of task t8/);
    await assert.rejects(results.waitForResult('t9'), /closed while waiting for the result of task t9/);
  });
});
