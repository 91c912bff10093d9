import './support/no-network.js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Ring } from '../../libs/batches/src/ring.js';

const contents = (ring: Ring<number>): Array<number | undefined> => Array.from({ length: ring.length }, (_, offset) => ring.at(offset));

describe('Ring', () => {
  it('keeps arrival order across wrap-arounds and growth', () => {
    const ring = new Ring<number>();
    const expected: number[] = [];
    // Shift some while pushing, so the front wraps before the ring doubles (64 → 128 → 256).
    for (let i = 0; i < 200; i++) {
      ring.push(i);
      expected.push(i);
      if (i % 3 === 0) assert.equal(ring.shift(), expected.shift());
    }
    assert.deepEqual(contents(ring), expected);
  });

  it('a cleared slot still counts until it is shifted out, and shifts out as undefined', () => {
    const ring = new Ring<number>();
    for (let i = 0; i < 5; i++) ring.push(i);
    ring.clear(0);
    ring.clear(2);
    assert.deepEqual(contents(ring), [undefined, 1, undefined, 3, 4]);
    assert.equal(ring.shift(), undefined);
    assert.equal(ring.shift(), 1);
    assert.equal(ring.length, 3);
  });
});
