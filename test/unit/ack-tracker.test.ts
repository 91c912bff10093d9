import './support/no-network.js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AckTracker } from '../../libs/batches/src/transport/ack-tracker.js';

function channel(): { open: boolean; acks: Array<[number, boolean]>; ack(tag: number, multiple: boolean): void } {
  return {
    open: true,
    acks: [],
    ack(tag, multiple) {
      this.acks.push([tag, multiple]);
    },
  };
}

describe('AckTracker', () => {
  it('acks a batch that is the whole unacked prefix with one multiple-ack', () => {
    const ch = channel();
    const tracker = new AckTracker(ch);
    for (let tag = 1; tag <= 100; tag++) tracker.received(tag);
    tracker.ack(Array.from({ length: 100 }, (_, i) => i + 1));
    assert.deepEqual(ch.acks, [[100, true]]);
    assert.equal(tracker.pending, 0);
  });

  it('never acks past an unsettled delivery: a later batch is acked one by one', () => {
    const ch = channel();
    const tracker = new AckTracker(ch);
    for (let tag = 1; tag <= 6; tag++) tracker.received(tag);
    tracker.ack([4, 5, 6]);
    assert.deepEqual(ch.acks, [
      [4, false],
      [5, false],
      [6, false],
    ]);
    tracker.ack([1, 2, 3]);
    assert.deepEqual(ch.acks.slice(3), [[3, true]]);
    assert.equal(tracker.pending, 0);
  });

  it("acks interleaved handlers without covering the other handler's deliveries", () => {
    const ch = channel();
    const tracker = new AckTracker(ch);
    for (let tag = 1; tag <= 6; tag++) tracker.received(tag);
    tracker.ack([1, 3, 5]);
    assert.deepEqual(ch.acks, [
      [1, true],
      [3, false],
      [5, false],
    ]);
    tracker.ack([2, 4, 6]);
    assert.deepEqual(ch.acks.slice(3), [[6, true]]);
  });

  it('keeps acking right over many prefetch windows, with tags that skip numbers', () => {
    const ch = channel();
    const tracker = new AckTracker(ch);
    // Tags rise but not by one: the tracker must find them by search, and compact as windows pass.
    const tags = Array.from({ length: 10_000 }, (_, i) => 3 * i + 7);
    for (const tag of tags.slice(0, 1_000)) tracker.received(tag);
    for (let start = 0; start < tags.length; start += 100) {
      const next = tags.slice(start + 1_000, start + 1_100);
      for (const tag of next) tracker.received(tag);
      // Each window's second half settles before its first half.
      tracker.ack(tags.slice(start + 50, start + 100));
      tracker.ack(tags.slice(start, start + 50));
    }
    // The second half is acked one by one; the first half's multiple-ack then ends at its own last tag.
    const multiple = ch.acks.filter(([, isMultiple]) => isMultiple).map(([tag]) => tag);
    assert.deepEqual(
      multiple,
      Array.from({ length: 100 }, (_, window) => tags[window * 100 + 49]),
    );
    assert.equal(ch.acks.filter(([, isMultiple]) => !isMultiple).length, 100 * 50);
    assert.equal(tracker.pending, 0);
  });

  it('acks nothing on a closed channel: the broker redelivers those', () => {
    const ch = channel();
    const tracker = new AckTracker(ch);
    tracker.received(1);
    ch.open = false;
    tracker.ack([1]);
    assert.deepEqual(ch.acks, []);
  });
});
