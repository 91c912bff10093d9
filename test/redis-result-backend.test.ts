import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { RedisResultBackend, ResultTimeoutError, TaskFailedError } from 'nestjs-batches';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0';
const EXPIRES = 60_000;

describe('Redis result backend, in Celery’s format', () => {
  let backend: RedisResultBackend;
  let redis: Redis;
  const ids: string[] = [];
  const newId = (): string => {
    const id = `test-${randomUUID()}`;
    ids.push(id);
    return id;
  };

  before(() => {
    backend = new RedisResultBackend(REDIS_URL, EXPIRES);
    redis = new Redis(REDIS_URL);
  });
  after(async () => {
    await redis.del(...ids.map((id) => `celery-task-meta-${id}`));
    await backend.close();
    await redis.quit();
  });

  const gets = async (): Promise<number> => Number(/cmdstat_get:calls=(\d+)/.exec(await redis.info('commandstats'))?.[1] ?? 0);
  const clients = async (): Promise<number> =>
    String(await redis.client('LIST'))
      .split('\n')
      .filter(Boolean).length;

  async function raw(id: string): Promise<Record<string, unknown>> {
    return JSON.parse((await redis.get(`celery-task-meta-${id}`)) ?? 'null') as Record<string, unknown>;
  }

  it('stores a SUCCESS as Celery does: key, JSON fields, expiry', async () => {
    const id = newId();
    await backend.markAsDone(id, { url: 'http://example.com', score: [1, 2.5, 'ü'] });
    const stored = await raw(id);
    assert.deepEqual(Object.keys(stored).toSorted(), ['children', 'date_done', 'result', 'status', 'task_id', 'traceback']);
    assert.equal(stored.status, 'SUCCESS');
    assert.deepEqual(stored.result, { url: 'http://example.com', score: [1, 2.5, 'ü'] });
    assert.equal(stored.traceback, null);
    assert.deepEqual(stored.children, []);
    assert.equal(stored.task_id, id);
    // Celery 5.2: naive UTC ISO 8601 with microseconds.
    assert.match(String(stored.date_done), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/);
    assert.ok(Math.abs(Date.parse(`${String(stored.date_done)}Z`) - Date.now()) < 60_000);
    const ttl = await redis.pttl(`celery-task-meta-${id}`);
    assert.ok(ttl > EXPIRES - 10_000 && ttl <= EXPIRES, `ttl ${ttl}`);
  });

  it('stores a FAILURE as {exc_type, exc_message, exc_module} with the stack as traceback', async () => {
    const id = newId();
    await backend.markAsFailure(id, new TypeError('bad type'));
    const stored = await raw(id);
    assert.equal(stored.status, 'FAILURE');
    assert.deepEqual(stored.result, { exc_type: 'TypeError', exc_message: ['bad type'], exc_module: 'builtins' });
    assert.match(String(stored.traceback), /TypeError: bad type/);
  });

  it('never overwrites a stored SUCCESS', async () => {
    const id = newId();
    await backend.markAsDone(id, 1);
    await backend.markAsFailure(id, new Error('late failure'));
    await backend.markAsRetry(id, new Error('late retry'));
    assert.equal((await raw(id)).status, 'SUCCESS');
    assert.equal(await backend.waitForResult(id, { timeout: 1_000 }), 1);
  });

  it('publishes each write on the channel named after the key', async () => {
    const id = newId();
    const subscriber = new Redis(REDIS_URL);
    await subscriber.subscribe(`celery-task-meta-${id}`);
    const message = new Promise<string>((resolve) => subscriber.once('message', (_channel: string, text: string) => resolve(text)));
    await backend.markAsDone(id, 'published');
    assert.equal((JSON.parse(await message) as { result: string }).result, 'published');
    await subscriber.quit();
  });

  it('waitForResult resolves from the publish when the result comes after the wait began', async () => {
    const id = newId();
    const waiting = backend.waitForResult(id, { timeout: 5_000 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    await backend.markAsDone(id, 'later');
    assert.equal(await waiting, 'later');
  });

  it('waitForResult reads a result stored before the wait began', async () => {
    const id = newId();
    await backend.markAsDone(id, 'earlier');
    assert.equal(await backend.waitForResult(id, { timeout: 1_000 }), 'earlier');
  });

  it('waitForResult rejects with the failure’s type and message, and times out on an unknown id', async () => {
    const id = newId();
    await backend.markAsFailure(id, new RangeError('too far'));
    await assert.rejects(
      backend.waitForResult(id),
      (error: unknown) => error instanceof TaskFailedError && error.excType === 'RangeError' && error.excMessage === 'too far',
    );
    await assert.rejects(backend.waitForResult(newId(), { timeout: 200 }), ResultTimeoutError);
  });

  it('serves many waiters over one subscriber connection, without polling', async () => {
    const connectionsBefore = await clients();
    const getsBefore = await gets();
    const waitIds = Array.from({ length: 50 }, newId);
    const waiting = Promise.all(waitIds.map((id) => backend.waitForResult(id, { timeout: 5_000 })));
    await new Promise((resolve) => setTimeout(resolve, 300));
    // One fallback read per waiter while waiting, no more: a poller would have read many times in 300 ms.
    assert.ok((await gets()) - getsBefore <= 50, `${(await gets()) - getsBefore} GETs while waiting`);
    assert.ok((await clients()) - connectionsBefore <= 1, 'at most one new (subscriber) connection');
    await Promise.all(waitIds.map((id, index) => backend.markAsDone(id, index)));
    assert.deepEqual(
      await waiting,
      waitIds.map((_, index) => index),
    );
  });
});
