import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { INestMicroservice } from '@nestjs/common';
import { BATCHES_BROKER, BatchClient, encodeTaskMessage, ResultBackend, TaskFailedError, type Broker, type TaskSpec } from 'nestjs-batches';
import { CELERY_HEADERS, pythonIso } from './support/celery-headers.js';
import { celeryMissing, PythonProcess } from './support/python.js';
import { AMQP_URL, rabbitSuite } from './support/rabbitmq.js';
import { startWorker } from './support/worker-app.js';
import { REDIS_URL } from './support/redis-results.js';

const skipPython = celeryMissing();

/** What test/python/lean_worker.py's `lean.inspect` returns: the message as the Python worker read it. */
interface Inspected {
  id: string;
  retries: number;
  group: string | null;
  parent_id: string | null;
  root_id: string | null;
  eta: string | null;
  expires: string | null;
  ignore_result: boolean;
  args: unknown[];
  kwargs: Record<string, unknown>;
  ran_at: number;
  /** Which of Celery's 16 protocol-2 headers the message had. */
  headers: string[];
  /** Which of them were null. */
  nulls: string[];
}

describe('Python Celery 5.2 workers run lean messages', { skip: skipPython }, () => {
  let worker: PythonProcess;
  let app: INestMicroservice;
  let client: BatchClient;
  let results: ResultBackend;

  // Registered before the suite's own hooks, so the worker stops before its queue is deleted.
  before(async () => {
    worker = new PythonProcess('lean_worker.py', [], queue);
    await worker.waitForEvent('ready');
    app = await startWorker({ broker: AMQP_URL, resultBackend: REDIS_URL, defaultQueue: queue }, []);
    client = app.get(BatchClient);
    results = app.get(ResultBackend);
  });
  after(async () => {
    await app?.close();
    await worker?.stop();
  });
  const suite = rabbitSuite();
  const queue = suite.queue('lean-py');

  it('BatchClient’s lean message: args, kwargs, expires and ids as Python reads them', async () => {
    const args = [1, 2.5, 'zürich ✓ 東京', { nested: [1, null, true] }];
    const kwargs = { url: 'http://example.com/ä', n: -3 };
    const expires = new Date(Date.now() + 60_000);
    const sent = await client.applyAsync<Inspected>('lean.inspect', { args, kwargs, expires });
    const seen = await sent.get({ timeout: 20_000 });
    assert.equal(seen.id, sent.id);
    assert.deepEqual(seen.args, args);
    assert.deepEqual(seen.kwargs, kwargs);
    assert.equal(seen.retries, 0);
    assert.equal(seen.root_id, sent.id);
    assert.equal(seen.parent_id, null);
    assert.equal(seen.group, null);
    assert.equal(seen.eta, null);
    assert.equal(seen.expires, pythonIso(expires));
    assert.equal(seen.ignore_result, false);
    // It really was lean.
    assert.deepEqual(seen.headers, [
      'lang',
      'task',
      'id',
      'expires',
      'retries',
      'root_id',
      'argsrepr',
      'kwargsrepr',
      'origin',
      'ignore_result',
    ]);
    assert.deepEqual(seen.nulls, []);
  });

  it('BatchClient’s countdown: Python holds the lean message until its eta', async () => {
    const sentAt = Date.now();
    const sent = await client.applyAsync<Inspected>('lean.inspect', { args: ['later'], countdown: 1_500 });
    const seen = await sent.get({ timeout: 20_000 });
    assert.ok(seen.eta, 'eta arrived');
    const eta = Date.parse(seen.eta);
    assert.ok(eta >= sentAt + 1_500, `eta ${seen.eta} is the countdown from the send`);
    assert.ok(seen.ran_at * 1000 >= eta - 20, `ran at ${new Date(seen.ran_at * 1000).toISOString()}, not before its eta ${seen.eta}`);
    assert.deepEqual(seen.args, ['later']);
    assert.deepEqual(seen.nulls, []);
  });

  it('BatchClient’s already-expired lean message is revoked by Python, not run', async () => {
    const sent = await client.applyAsync<Inspected>('lean.inspect', { args: ['too late'], expires: new Date(Date.now() - 60_000) });
    const revoked = await worker.waitForEvent('revoked', 20_000);
    assert.deepEqual(revoked, { event: 'revoked', id: sent.id, expired: true });
    await assert.rejects(
      sent.get({ timeout: 20_000 }),
      (error: unknown) => error instanceof TaskFailedError && error.state === 'REVOKED' && error.excType === 'TaskRevokedError',
    );
  });

  for (const format of ['lean', 'full'] as const) {
    it(`retries, group, parent and root ids and eta of a ${format} message are honoured`, async () => {
      const spec: TaskSpec = {
        task: 'lean.inspect',
        args: [format],
        kwargs: { k: [1] },
        retries: 2,
        group: `group-${format}`,
        rootId: `root-${format}`,
        parentId: `parent-${format}`,
        eta: new Date(Date.now() + 300),
        expires: new Date(Date.now() + 60_000),
      };
      const encoded = encodeTaskMessage(spec, format);
      await suite.rabbit.publishRaw(queue, encoded.body, encoded.properties);
      const seen = await results.waitForResult<Inspected>(encoded.id, { timeout: 20_000 });
      assert.deepEqual(
        [seen.id, seen.retries, seen.group, seen.root_id, seen.parent_id, seen.eta, seen.expires, seen.args, seen.kwargs],
        [encoded.id, 2, spec.group, spec.rootId, spec.parentId, pythonIso(spec.eta), pythonIso(spec.expires), [format], { k: [1] }],
      );
      assert.ok(seen.ran_at * 1000 >= (spec.eta?.getTime() ?? 0) - 20, 'not run before its eta');
      if (format === 'lean') {
        assert.deepEqual(
          seen.headers,
          CELERY_HEADERS.filter((name) => !['shadow', 'group_index', 'timelimit'].includes(name)),
        );
        assert.deepEqual(seen.nulls, []);
      } else {
        assert.deepEqual(seen.headers, CELERY_HEADERS);
        assert.deepEqual(seen.nulls, ['shadow', 'group_index']);
      }
    });
  }

  it('integer headers of 128 and more reach Python as integers through the broker (retries, group_index, timelimit)', async () => {
    // amqplib would write them as AMQP shorts, which py-amqp reads as strings and kombu then fails on.
    const encoded = encodeTaskMessage({
      task: 'lean.inspect',
      args: ['big'],
      retries: 200,
      group: 'group-big',
      groupIndex: 1_000,
      headers: { timelimit: [300, 40_000] },
    });
    await app.get<Broker>(BATCHES_BROKER).publish({ exchange: '', routingKey: queue, body: encoded.body, properties: encoded.properties });
    const seen = await results.waitForResult<Inspected>(encoded.id, { timeout: 20_000 });
    assert.deepEqual([seen.id, seen.retries, seen.group, seen.args], [encoded.id, 200, 'group-big', ['big']]);
  });

  it('Python’s own Task.retry works on a lean message and counts from its retries header', async () => {
    // Retried once by Python itself.
    assert.equal(await (await client.delay('lean.retry', 1)).get({ timeout: 20_000 }), 1);
    // retries 3 of max_retries 3: one more retry exceeds the limit.
    const exhausted = encodeTaskMessage({ task: 'lean.retry', args: [5], retries: 3 });
    await suite.rabbit.publishRaw(queue, exhausted.body, exhausted.properties);
    await assert.rejects(
      results.waitForResult(exhausted.id, { timeout: 20_000 }),
      (error: unknown) => error instanceof TaskFailedError && error.excType === 'MaxRetriesExceededError',
    );
  });
});
