import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { RedisResultBackend } from '../libs/batches/src/results/redis.result-backend.js';
import { ResultTimeoutError, TaskFailedError, type TaskMeta } from '../libs/batches/src/results/task-result.js';
import { REDIS_URL, RedisInspector, resultKey } from './support/redis-results.js';
import { waitFor } from './support/wait.js';

const EXPIRES = 60_000;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('Redis result backend, in Celery’s format', () => {
  // A connection name of our own picks this backend's connections out of CLIENT LIST.
  const name = `results-test-${randomUUID().slice(0, 8)}`;
  let backend: RedisResultBackend;
  let redis: RedisInspector;

  before(() => {
    backend = new RedisResultBackend(`${REDIS_URL}?connectionName=${name}`, EXPIRES);
    redis = new RedisInspector(REDIS_URL);
  });
  after(async () => {
    await redis.deleteResults();
    await backend.close();
    await redis.quit();
  });

  it('stores a SUCCESS under Celery’s key with exactly Celery’s fields, in its order, with an expiry', async () => {
    const id = redis.newTaskId();
    await backend.markAsDone(id, { url: 'http://example.com', score: [1, 2.5, 'ü'] });
    const stored = await redis.stored(id);
    assert.deepEqual(Object.keys(stored), ['status', 'result', 'traceback', 'children', 'date_done', 'task_id']);
    assert.equal(stored.status, 'SUCCESS');
    assert.deepEqual(stored.result, { url: 'http://example.com', score: [1, 2.5, 'ü'] });
    assert.equal(stored.traceback, null);
    assert.deepEqual(stored.children, []);
    assert.equal(stored.task_id, id);
    // Celery 5.2: datetime.utcnow().isoformat(), naive UTC with microseconds.
    assert.match(String(stored.date_done), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/);
    assert.ok(Math.abs(Date.parse(`${String(stored.date_done)}Z`) - Date.now()) < 60_000);
    const ttl = await redis.pttl(resultKey(id));
    assert.ok(ttl > EXPIRES - 10_000 && ttl <= EXPIRES, `ttl ${ttl}`);
  });

  it('stores an undefined result as null, since Celery’s value always has `result`', async () => {
    const id = redis.newTaskId();
    await backend.markAsDone(id, undefined);
    const stored = await redis.stored(id);
    assert.ok('result' in stored);
    assert.equal(stored.result, null);
  });

  it('stores a FAILURE as {exc_type, exc_message, exc_module} with the stack as traceback', async () => {
    const id = redis.newTaskId();
    await backend.markAsFailure(id, new TypeError('bad type'));
    const stored = await redis.stored(id);
    assert.deepEqual(Object.keys(stored), ['status', 'result', 'traceback', 'children', 'date_done', 'task_id']);
    assert.equal(stored.status, 'FAILURE');
    assert.deepEqual(stored.result, { exc_type: 'TypeError', exc_message: ['bad type'], exc_module: 'builtins' });
    assert.match(String(stored.traceback), /TypeError: bad type/);
    assert.match(String(stored.date_done), /^\d{4}-\d\d-\d\dT/);
    assert.ok((await redis.pttl(resultKey(id))) > 0);
  });

  it('never overwrites a stored SUCCESS, but a SUCCESS replaces an earlier FAILURE', async () => {
    const id = redis.newTaskId();
    await backend.markAsDone(id, 1);
    await backend.markAsFailure(id, new Error('late failure'));
    await backend.markAsRetry(id, new Error('late retry'));
    assert.deepEqual([(await redis.stored(id)).status, (await redis.stored(id)).result], ['SUCCESS', 1]);

    const retried = redis.newTaskId();
    await backend.markAsFailure(retried, new Error('first try'));
    await backend.markAsDone(retried, 2);
    assert.deepEqual([(await redis.stored(retried)).status, (await redis.stored(retried)).result], ['SUCCESS', 2]);
  });

  it('publishes each write on the channel named after the key', async () => {
    const id = redis.newTaskId();
    const subscriber = new Redis(REDIS_URL);
    await subscriber.subscribe(resultKey(id));
    const message = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('nothing was published')), 2_000);
      subscriber.once('message', (_channel: string, text: string) => {
        clearTimeout(timer);
        resolve(text);
      });
    });
    await backend.markAsDone(id, 'published');
    assert.deepEqual(JSON.parse(await message), await redis.stored(id));
    await subscriber.quit();
  });

  it('stores a batch of results with one Redis command, in Celery’s format, never overwriting a SUCCESS', async () => {
    const ids = Array.from({ length: 50 }, () => redis.newTaskId());
    await redis.set(resultKey(ids[0]), JSON.stringify({ status: 'SUCCESS', result: 'first', task_id: ids[0] }));
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
    assert.equal(sent.filter((command) => command !== 'script').length, 1, sent.join(', '));
    assert.equal((await redis.stored(ids[0])).result, 'first', 'a stored SUCCESS stands');
    assert.deepEqual(await redis.stored(ids[49]), {
      status: 'SUCCESS',
      result: 49,
      traceback: null,
      children: [],
      date_done: '2026-11-27T00:00:00.000000',
      task_id: ids[49],
    });
    const ttl = await redis.pttl(resultKey(ids[49]));
    assert.ok(ttl > 0 && ttl <= EXPIRES, String(ttl));
  });

  it('getResult reads the stored result, and PENDING for an unknown id', async () => {
    const id = redis.newTaskId();
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
    const id = redis.newTaskId();
    const waiting = backend.waitForResult(id, { timeout: 5_000 });
    await waitFor(async () => (await redis.subscribers(id)) === 1, 'the backend to subscribe', 5_000);
    await backend.markAsDone(id, 'later');
    assert.equal(await waiting, 'later');
    await waitFor(async () => (await redis.subscribers(id)) === 0, 'the backend to unsubscribe', 5_000);
  });

  it('waitForResult reads a result stored before the wait began', async () => {
    const id = redis.newTaskId();
    await backend.markAsDone(id, 'earlier');
    assert.equal(await backend.waitForResult(id, { timeout: 1_000 }), 'earlier');
  });

  it('waitForResult ignores RETRY and STARTED and resolves on the SUCCESS that follows', async () => {
    const id = redis.newTaskId();
    await backend.markAsRetry(id, new Error('flaky'));
    const waiting = backend.waitForResult(id, { timeout: 5_000 });
    await waitFor(async () => (await redis.subscribers(id)) === 1, 'the backend to subscribe', 5_000);
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
    await redis.publish(resultKey(id), JSON.stringify(started));
    await backend.markAsDone(id, 'finally');
    assert.equal(await waiting, 'finally');
  });

  it('waitForResult rejects with the failure’s type and message, and REVOKED as revoked', async () => {
    const id = redis.newTaskId();
    const rejected = assert.rejects(backend.waitForResult(id, { timeout: 5_000 }), (error: unknown) => {
      assert.ok(error instanceof TaskFailedError);
      assert.deepEqual([error.excType, error.excMessage, error.state], ['RangeError', 'too far', 'FAILURE']);
      return true;
    });
    await waitFor(async () => (await redis.subscribers(id)) === 1, 'the backend to subscribe', 5_000);
    await backend.markAsFailure(id, new RangeError('too far'));
    await rejected;

    const revoked = redis.newTaskId();
    await backend.markAsRevoked(revoked, 'expired');
    await assert.rejects(backend.waitForResult(revoked, { timeout: 1_000 }), (error: unknown) => {
      assert.ok(error instanceof TaskFailedError);
      assert.deepEqual([error.excType, error.state], ['TaskRevokedError', 'REVOKED']);
      return true;
    });
  });

  it('waitForResult times out on an unknown id with ResultTimeoutError, and unsubscribes', async () => {
    const id = redis.newTaskId();
    await assert.rejects(backend.waitForResult(id, { timeout: 200 }), (error: unknown) => {
      assert.ok(error instanceof ResultTimeoutError);
      assert.equal(error.lastStatus, 'PENDING');
      assert.match(error.message, new RegExp(`No result for task ${id} within 200 ms`));
      return true;
    });
    await waitFor(async () => (await redis.subscribers(id)) === 0, 'the backend to unsubscribe', 5_000);
  });

  it('serves many waiters over one subscriber connection, reading each once instead of polling', async () => {
    const waitIds = Array.from({ length: 50 }, () => redis.newTaskId());
    const readsBefore = await redis.readCommands();
    const waiting = Promise.all(waitIds.map((id) => backend.waitForResult(id, { timeout: 10_000 })));
    await waitFor(async () => (await redis.subscribers(waitIds[49])) === 1, 'the backend to subscribe', 5_000);
    await sleep(1_000);
    // One fallback read per waiter; a poller would read hundreds of times in a second. The margin is for other clients.
    const reads = (await redis.readCommands()) - readsBefore;
    assert.ok(reads <= 50 + 25, `${reads} reads while 50 waiters waited`);
    const connections = await redis.connectionsNamed(name);
    assert.equal(connections.length, 2, `the backend's connections:\n${connections.join('\n')}`);
    assert.equal(connections.filter((line) => / sub=50 /.test(line)).length, 1, 'one connection subscribed to all 50 channels');
    await Promise.all(waitIds.map((id, index) => backend.markAsDone(id, index)));
    assert.deepEqual(
      await waiting,
      waitIds.map((_, index) => index),
    );
  });

  it('still resolves when the result is published while the subscriber connection is down', async () => {
    const id = redis.newTaskId();
    const waiting = backend.waitForResult(id, { timeout: 8_000 });
    await waitFor(async () => (await redis.subscribers(id)) === 1, 'the backend to subscribe', 5_000);
    const subscriber = (await redis.connectionsNamed(name)).find((line) => / flags=P /.test(line));
    const clientId = /\bid=(\d+)/.exec(subscriber ?? '')?.[1];
    assert.ok(clientId, 'found the subscriber connection');
    await redis.client('KILL', 'ID', clientId);
    // ioredis waits before reconnecting, so this publish reaches no one.
    await backend.markAsDone(id, 'published while down');
    assert.equal(await waiting, 'published while down');
  });
});
