import './support/no-network.js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RevokedIds } from '../../libs/batches/src/control/revoked-ids.js';

describe('RevokedIds', () => {
  it("keeps at most maxSize ids, each for its expiry, like Celery's LimitedSet", () => {
    let now = 0;
    const ids = new RevokedIds(3, 1_000, () => now);
    ids.add('a', 'b', 'c', 'd');
    assert.deepEqual(ids.list(), ['b', 'c', 'd']);
    assert.equal(ids.has('a'), false);
    now = 600;
    ids.add('b'); // revoked again: its expiry restarts
    now = 1_100;
    assert.deepEqual(ids.list(), ['b']);
    assert.equal(ids.has('c'), false);
    assert.equal(ids.has('b'), true);
    now = 1_700;
    assert.equal(ids.has('b'), false);
    assert.equal(ids.size, 0);
  });
});
