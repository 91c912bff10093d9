import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Subject } from 'rxjs';
import { batchBuffers, type BatchBuffersOptions, type Flush } from '../../libs/batches/src/transport/batch-buffers.js';
import type { Envelope } from '../../libs/batches/src/transport/envelope.js';

/** An envelope whose request carries only what groupBy reads. */
function envelope(key: string, seq: number): Envelope {
  return { request: { kwargs: { key, seq } }, queue: 'q' } as unknown as Envelope;
}

function harness(options: BatchBuffersOptions) {
  const input = new Subject<Envelope>();
  const flushes: Array<{ keys: string[]; seqs: number[]; reason: Flush['reason'] }> = [];
  let completed = false;
  input.pipe(batchBuffers(options)).subscribe({
    next: ({ batch, reason }) =>
      flushes.push({
        keys: [...new Set(batch.map((e) => String(e.request.kwargs.key)))],
        seqs: batch.map((e) => e.request.kwargs.seq as number),
        reason,
      }),
    complete: () => (completed = true),
  });
  return { input, flushes, completed: () => completed };
}

const byKey = (request: { kwargs: Record<string, unknown> }) => String(request.kwargs.key);

/** Throws for the key 'bad'. */
function throwingGroupBy(request: { kwargs: Record<string, unknown> }): string {
  if (request.kwargs.key === 'bad') throw new Error('no tenant');
  return byKey(request);
}

describe('batchBuffers', () => {
  it("with groupBy, each key's interval counts from its own first request", (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'setImmediate'] });
    const { input, flushes } = harness({ flushEvery: 10, flushInterval: 100, groupBy: byKey, maxGroups: 8 });
    input.next(envelope('a', 0));
    t.mock.timers.tick(60);
    input.next(envelope('b', 1));
    input.next(envelope('a', 2));
    t.mock.timers.tick(40);
    assert.deepEqual(flushes, [{ keys: ['a'], seqs: [0, 2], reason: 'interval' }]);
    t.mock.timers.tick(59);
    assert.equal(flushes.length, 1, "b's interval has 1 ms left");
    t.mock.timers.tick(1);
    assert.deepEqual(flushes[1], { keys: ['b'], seqs: [1], reason: 'interval' });
  });

  it('flushes a key at flushEvery, and the oldest buffer when a new key exceeds maxGroups', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'setImmediate'] });
    const { input, flushes, completed } = harness({ flushEvery: 3, flushInterval: 1_000, groupBy: byKey, maxGroups: 2 });
    input.next(envelope('a', 0));
    input.next(envelope('b', 1));
    input.next(envelope('a', 2));
    input.next(envelope('a', 3));
    assert.deepEqual(flushes, [{ keys: ['a'], seqs: [0, 2, 3], reason: 'count' }]);
    input.next(envelope('c', 4)); // a's buffer was flushed: b and c are the two live keys
    input.next(envelope('d', 5)); // a third: b, the oldest, makes room
    assert.deepEqual(flushes[1], { keys: ['b'], seqs: [1], reason: 'evicted' });
    input.complete();
    assert.deepEqual(flushes.slice(2), [
      { keys: ['c'], seqs: [4], reason: 'shutdown' },
      { keys: ['d'], seqs: [5], reason: 'shutdown' },
    ]);
    assert.ok(completed());
  });

  it('adaptive: an idle handler gets the buffer after coalesceMs; a busy one only at count, interval or release', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'setImmediate'] });
    const released = new Subject<void>();
    const load = { inFlight: 0, concurrency: 1, released$: released };
    const { input, flushes } = harness({ flushEvery: 3, flushInterval: 1_000, adaptive: { load, coalesceMs: 5 } });
    input.next(envelope('x', 0));
    t.mock.timers.tick(4);
    input.next(envelope('x', 1));
    assert.equal(flushes.length, 0, 'still coalescing');
    t.mock.timers.tick(1);
    assert.deepEqual(flushes, [{ keys: ['x'], seqs: [0, 1], reason: 'idle' }]);
    load.inFlight = 1; // the handler runs it
    for (let seq = 2; seq < 6; seq++) input.next(envelope('x', seq));
    t.mock.timers.tick(500);
    assert.deepEqual(flushes[1], { keys: ['x'], seqs: [2, 3, 4], reason: 'count' });
    assert.equal(flushes.length, 2, 'busy: the partial buffer waits');
    load.inFlight = 0;
    released.next();
    assert.deepEqual(flushes[2], { keys: ['x'], seqs: [5], reason: 'idle' });
  });

  it('a throwing groupBy loses nothing: the request is batched under the empty key', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'setImmediate'] });
    const { input, flushes } = harness({ flushEvery: 2, flushInterval: 1_000, groupBy: throwingGroupBy, maxGroups: 4 });
    input.next(envelope('bad', 0));
    input.next(envelope('bad', 1));
    assert.deepEqual(flushes, [{ keys: ['bad'], seqs: [0, 1], reason: 'count' }]);
  });
});
