import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { RedisResultBackend } from '../libs/batches/src/results/redis.result-backend.js';
import { ResultTimeoutError, TaskFailedError, type TaskMeta } from '../libs/batches/src/results/task-result.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0';
const EXPIRES = 60_000;
const key = (id: string): string => `celery-task-meta-${id}`;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const activeTimers = (): number => process.getActiveResourcesInfo().filter((resource) => resource === 'Timeout').length;

async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  for (const deadline = Date.now() + 5_000; !(await condition()); await sleep(20)) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
  }
}

describe('Redis result backend, in Celery’s format', () => {
  // A connection name of our own picks this backend's connections out of CLIENT LIST.
  const name = `results-test-${randomUUID().slice(0, 8)}`;
  let backend: RedisResultBackend;
  let redis: Redis;
  const ids: string[] = [];
  const newId = (): string => {
    const id = `test-${randomUUID()}`;
    ids.push(id);
    return id;
  };

  before(() => {
    backend = new RedisResultBackend(`${REDIS_URL}?connectionName=${name}`, EXPIRES);
    redis = new Redis(REDIS_URL);
  });
  after(async () => {
    await redis.del(...ids.map(key));
    await backend.close();
    await redis.quit();
  });

  async function raw(id: string): Promise<Record<string, unknown>> {
    return JSON.parse((await redis.get(key(id))) ?? 'null') as Record<string, unknown>;
  }
  async function ourConnections(): Promise<string[]> {
    const list = String(await redis.client('LIST'));
    return list.split('\n').filter((line) => line.includes(` name=${name} `));
  }
  async function subscribers(id: string): Promise<number> {
    const [, count] = (await redis.pubsub('NUMSUB', key(id))) as [string, number];
    return Number(count);
  }
  async function readCommands(): Promise<number> {
    const stats = await redis.info('commandstats');
    return ['get', 'mget', 'exists'].reduce(
      (sum, command) => sum + Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(stats)?.[1] ?? 0),
      0,
    );
  }

  it('stores a SUCCESS under Celery’s key with exactly Celery’s fields, in its order, with an expiry', async () => {
    const id = newId();
    await backend.markAsDone(id, { url: 'http://example.com', score: [1, 2.5, 'ü'] });
    const stored = await raw(id);
    assert.deepEqual(Object.keys(stored), ['status', 'result', 'traceback', 'children', 'date_done', 'task_id']);
    assert.equal(stored.status, 'SUCCESS');
    assert.deepEqual(stored.result, { url: 'http://example.com', score: [1, 2.5, 'ü'] });
    assert.equal(stored.traceback, null);
    assert.deepEqual(stored.children, []);
    assert.equal(stored.task_id, id);
    // Celery 5.2: datetime.utcnow().isoformat(), naive UTC with microseconds.
    assert.match(String(stored.date_done), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/);
    assert.ok(Math.abs(Date.parse(`${String(stored.date_done)}Z`) - Date.now()) < 60_000);
    const ttl = await redis.pttl(key(id));
    assert.ok(ttl > EXPIRES - 10_000 && ttl <= EXPIRES, `ttl ${ttl}`);
  });

  it('stores an undefined result as null, since Celery’s value always has `result`', async () => {
    const id = newId();
    await backend.markAsDone(id, undefined);
    const stored = await raw(id);
    assert.ok('result' in stored);
    assert.equal(stored.result, null);
  });

  it('stores a FAILURE as {exc_type, exc_message, exc_module} with the stack as traceback', async () => {
    const id = newId();
    await backend.markAsFailure(id, new TypeError('bad type'));
    const stored = await raw(id);
    assert.deepEqual(Object.keys(stored), ['status', 'result', 'traceback', 'children', 'date_done', 'task_id']);
    assert.equal(stored.status, 'FAILURE');
    assert.deepEqual(stored.result, { exc_type: 'TypeError', exc_message: ['bad type'], exc_module: 'builtins' });
    assert.match(String(stored.traceback), /TypeError: bad type/);
    assert.match(String(stored.date_done), /^\d{4}-\d\d-\d\dT/);
    assert.ok((await redis.pttl(key(id))) > 0);
  });

  it('never overwrites a stored SUCCESS, but a SUCCESS replaces an earlier FAILURE', async () => {
    const id = newId();
    await backend.markAsDone(id, 1);
    await backend.markAsFailure(id, new Error('late failure'));
    await backend.markAsRetry(id, new Error('late retry'));
    assert.deepEqual([(await raw(id)).status, (await raw(id)).result], ['SUCCESS', 1]);

    const retried = newId();
    await backend.markAsFailure(retried, new Error('first try'));
    await backend.markAsDone(retried, 2);
    assert.deepEqual([(await raw(retried)).status, (await raw(retried)).result], ['SUCCESS', 2]);
  });

  it('publishes each write on the channel named after the key', async () => {
    const id = newId();
    const subscriber = new Redis(REDIS_URL);
    await subscriber.subscribe(key(id));
    const message = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('nothing was published')), 2_000);
      subscriber.once('message', (_channel: string, text: string) => {
        clearTimeout(timer);
        resolve(text);
      });
    });
    await backend.markAsDone(id, 'published');
    assert.deepEqual(JSON.parse(await message), await raw(id));
    await subscriber.quit();
  });

  it('stores a batch of results with one Redis command, in Celery’s format, never overwriting a SUCCESS', async () => {
    const ids = Array.from({ length: 50 }, () => newId());
    await redis.set(key(ids[0]), JSON.stringify({ status: 'SUCCESS', result: 'first', task_id: ids[0] }));
    const internals = backend as unknown as { client: Redis; storeMany(metas: TaskMeta[]): Promise<void> };
    const sent: string[] = [];
    const sendCommand = internals.client.sendCommand.bind(internals.client);
    internals.client.sendCommand = ((command: { name: string }) => {
      sent.push(command.name);
      return sendCommand(command as never);
    }) as typeof internals.client.sendCommand;
    try {
      await internals.storeMany(
        ids.map((id, index) => ({
          status: 'SUCCESS',
          result: index,
          traceback: null,
          children: [],
          date_done: '2026-11-27T00:00:00.000000',
          task_id: id,
        })),
      );
    } finally {
      internals.client.sendCommand = sendCommand;
    }
    assert.equal(sent.filter((name) => name !== 'script').length, 1, sent.join(', '));
    assert.equal((await raw(ids[0])).result, 'first', 'a stored SUCCESS stands');
    assert.deepEqual(await raw(ids[49]), {
      status: 'SUCCESS',
      result: 49,
      traceback: null,
      children: [],
      date_done: '2026-11-27T00:00:00.000000',
      task_id: ids[49],
    });
    const ttl = await redis.pttl(key(ids[49]));
    assert.ok(ttl > 0 && ttl <= EXPIRES, String(ttl));
  });

  it('getResult reads the stored result, and PENDING for an unknown id', async () => {
    const id = newId();
    await backend.markAsDone(id, [1, 'é']);
    const result = await backend.getResult(id);
    assert.equal(result.status, 'SUCCESS');
    assert.deepEqual(result.result, [1, 'é']);
    assert.ok(result.dateDone instanceof Date && Math.abs(result.dateDone.getTime() - Date.now()) < 60_000);
    assert.deepEqual(await backend.getResult('no-such-task'), {
      taskId: 'no-such-task',
      status: 'PENDING',
      result: null,
      traceback: null,
      dateDone: null,
    });
  });

  it('waitForResult resolves from the publish when the result is stored after the wait began', async () => {
    const id = newId();
    const waiting = backend.waitForResult(id, { timeout: 5_000 });
    await until(async () => (await subscribers(id)) === 1, 'the backend subscribed');
    await backend.markAsDone(id, 'later');
    assert.equal(await waiting, 'later');
    await until(async () => (await subscribers(id)) === 0, 'the backend unsubscribed');
  });

  it('waitForResult reads a result stored before the wait began', async () => {
    const id = newId();
    await backend.markAsDone(id, 'earlier');
    assert.equal(await backend.waitForResult(id, { timeout: 1_000 }), 'earlier');
  });

  it('waitForResult ignores RETRY and STARTED and resolves on the SUCCESS that follows', async () => {
    const id = newId();
    await backend.markAsRetry(id, new Error('flaky'));
    const waiting = backend.waitForResult(id, { timeout: 5_000 });
    await until(async () => (await subscribers(id)) === 1, 'the backend subscribed');
    await backend.markAsRetry(id, new Error('flaky again'));
    // STARTED as a Python worker with task_track_started writes it.
    const started = {
      status: 'STARTED',
      result: { pid: 1, hostname: 'py@host' },
      traceback: null,
      children: [],
      date_done: null,
      task_id: id,
    };
    await redis.publish(key(id), JSON.stringify(started));
    await backend.markAsDone(id, 'finally');
    assert.equal(await waiting, 'finally');
  });

  it('waitForResult rejects with the failure’s type and message, and REVOKED as revoked', async () => {
    const id = newId();
    const rejected = assert.rejects(backend.waitForResult(id, { timeout: 5_000 }), (error: unknown) => {
      assert.ok(error instanceof TaskFailedError);
      assert.deepEqual([error.excType, error.excMessage, error.state], ['RangeError', 'too far', 'FAILURE']);
      return true;
    });
    await until(async () => (await subscribers(id)) === 1, 'the backend subscribed');
    await backend.markAsFailure(id, new RangeError('too far'));
    await rejected;

    const revoked = newId();
    await backend.markAsRevoked(revoked, 'expired');
    await assert.rejects(backend.waitForResult(revoked, { timeout: 1_000 }), (error: unknown) => {
      assert.ok(error instanceof TaskFailedError);
      assert.deepEqual([error.excType, error.state], ['TaskRevokedError', 'REVOKED']);
      return true;
    });
  });

  it('waitForResult times out on an unknown id with ResultTimeoutError, and unsubscribes', async () => {
    const id = newId();
    await assert.rejects(backend.waitForResult(id, { timeout: 200 }), (error: unknown) => {
      assert.ok(error instanceof ResultTimeoutError);
      assert.equal(error.lastStatus, 'PENDING');
      assert.match(error.message, new RegExp(`No result for task ${id} within 200 ms`));
      return true;
    });
    await until(async () => (await subscribers(id)) === 0, 'the backend unsubscribed');
  });

  it('serves many waiters over one subscriber connection, reading each once instead of polling', async () => {
    const waitIds = Array.from({ length: 50 }, newId);
    const readsBefore = await readCommands();
    const waiting = Promise.all(waitIds.map((id) => backend.waitForResult(id, { timeout: 10_000 })));
    await until(async () => (await subscribers(waitIds[49])) === 1, 'the backend subscribed');
    await sleep(1_000);
    // One fallback read per waiter; a poller would read hundreds of times in a second. The margin is for other clients.
    const reads = (await readCommands()) - readsBefore;
    assert.ok(reads <= 50 + 25, `${reads} reads while 50 waiters waited`);
    const connections = await ourConnections();
    assert.equal(connections.length, 2, `the backend's connections:\n${connections.join('\n')}`);
    assert.equal(connections.filter((line) => / sub=50 /.test(line)).length, 1, 'one connection subscribed to all 50 channels');
    await Promise.all(waitIds.map((id, index) => backend.markAsDone(id, index)));
    assert.deepEqual(
      await waiting,
      waitIds.map((_, index) => index),
    );
  });

  it('still resolves when the result is published while the subscriber connection is down', async () => {
    const id = newId();
    const waiting = backend.waitForResult(id, { timeout: 8_000 });
    await until(async () => (await subscribers(id)) === 1, 'the backend subscribed');
    const subscriber = (await ourConnections()).find((line) => / flags=P /.test(line));
    const clientId = /\bid=(\d+)/.exec(subscriber ?? '')?.[1];
    assert.ok(clientId, 'found the subscriber connection');
    await redis.client('KILL', 'ID', clientId);
    // ioredis waits before reconnecting, so this publish reaches no one.
    await backend.markAsDone(id, 'published while down');
    assert.equal(await waiting, 'published while down');
  });
});

describe('Redis result backend lifecycle', () => {
  it('stores right after construction', async () => {
    const backend = new RedisResultBackend(REDIS_URL, EXPIRES);
    const id = `test-${randomUUID()}`;
    await backend.markAsDone(id, 'first command');
    assert.equal((await backend.getResult(id)).result, 'first command');
    const redis = new Redis(REDIS_URL);
    await redis.del(key(id));
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
