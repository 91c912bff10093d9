import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { RedisResultBackend } from '../libs/batches/src/results/redis.result-backend.js';
import { REDIS_URL, resultKey } from './support/redis-results.js';

const EXPIRES = 60_000;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const activeTimers = (): number => process.getActiveResourcesInfo().filter((resource) => resource === 'Timeout').length;

describe('Redis result backend lifecycle', () => {
  it('stores right after construction', async () => {
    const backend = new RedisResultBackend(REDIS_URL, EXPIRES);
    const id = `test-${randomUUID()}`;
    await backend.markAsDone(id, 'first command');
    assert.equal((await backend.getResult(id)).result, 'first command');
    const redis = new Redis(REDIS_URL);
    await redis.del(resultKey(id));
    await redis.quit();
    await backend.close();
  });

  it('close() rejects pending waiters with a clear error and leaves no timer behind', async () => {
    const backend = new RedisResultBackend(REDIS_URL, EXPIRES);
    const timersBefore = activeTimers();
    const ids = [`test-${randomUUID()}`, `test-${randomUUID()}`];
    const rejected = ids.map((id) =>
      assert.rejects(backend.waitForResult(id, { timeout: 60_000 }), new RegExp(`closed while waiting for the result of task ${id}`)),
    );
    await sleep(100);
    await backend.close();
    await Promise.all(rejected);
    await assert.rejects(backend.waitForResult(ids[0]), /closed/);
    assert.equal(activeTimers(), timersBefore);
  });

  it('neither crashes nor hangs when Redis is unreachable: writes fail on close()', async () => {
    const backend = new RedisResultBackend('redis://127.0.0.1:1/0', EXPIRES);
    const store = assert.rejects(backend.markAsDone('unreachable', 1), /Connection is closed/);
    const wait = assert.rejects(backend.waitForResult('unreachable', { timeout: 60_000 }), /closed while waiting/);
    await sleep(300);
    await backend.close();
    await Promise.all([store, wait]);
  });

  it('refuses an expiry that Redis cannot take', () => {
    assert.throws(() => new RedisResultBackend(REDIS_URL, 0), /resultExpires/);
    assert.throws(() => new RedisResultBackend(REDIS_URL, 1.5), /resultExpires/);
  });
});
