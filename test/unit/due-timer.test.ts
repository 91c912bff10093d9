import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DueTimer, MAX_TIMER_MS } from '../../libs/batches/src/transport/due-timer.js';

describe('DueTimer', () => {
  it('waits the full length of a wait longer than Node timers hold (2^31 − 1 ms), in steps', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
    const due = 60 * 24 * 3_600_000; // 60 days ahead
    let fired = 0;
    const timer = new DueTimer(due, () => fired++);
    t.mock.timers.tick(MAX_TIMER_MS);
    assert.equal(fired, 0, 'still waiting after one full timer');
    t.mock.timers.tick(MAX_TIMER_MS);
    assert.equal(fired, 0, 'still waiting after two');
    t.mock.timers.tick(due - 2 * MAX_TIMER_MS - 1);
    assert.equal(fired, 0, 'not a millisecond early');
    t.mock.timers.tick(1);
    assert.equal(fired, 1);
    timer.cancel(); // a fired timer cancels as a no-op
  });

  it('fires a short or past due time once, and not at all once cancelled', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000 });
    let fired = 0;
    const timers = [new DueTimer(1_050, () => fired++), new DueTimer(10, () => fired++) /* already due */];
    const cancelled = new DueTimer(1_050, () => fired++);
    cancelled.cancel();
    t.mock.timers.tick(50);
    assert.equal(fired, 2);
    assert.equal(timers.length, 2);
  });
});
