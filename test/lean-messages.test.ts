import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { INestMicroservice } from '@nestjs/common';
import {
  BATCHES_BROKER,
  BATCHES_DEFAULTS,
  BatchClient,
  decodeTaskMessage,
  encodeTaskMessage,
  ResultBackend,
  TaskFailedError,
  type BatchesModuleOptions,
  type Broker,
  type SimpleRequest,
  type TaskSpec,
} from 'nestjs-batches';
import { celeryMissing, PythonProcess } from './support/python.js';
import { AMQP_URL, rabbitSuite } from './support/rabbitmq.js';
import { recorder, startWorker } from './support/worker-app.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0';
const skipPython = celeryMissing();
const MAX_BYTES = 1_000_000;

/** Celery 5.2's protocol-2 header table, in `celery.app.amqp.as_task_v2`'s order. */
const CELERY_HEADERS = [
  'lang',
  'task',
  'id',
  'shadow',
  'eta',
  'expires',
  'group',
  'group_index',
  'retries',
  'timelimit',
  'root_id',
  'parent_id',
  'argsrepr',
  'kwargsrepr',
  'origin',
  'ignore_result',
];

/** How Python's `datetime.isoformat()` writes an aware UTC instant, and so how Celery sends and reads it. */
function pythonIso(date: Date | null | undefined): string | undefined {
  return date?.toISOString().replace('Z', '000+00:00');
}

function nullHeaders(headers: Record<string, unknown> | undefined): string[] {
  return Object.entries(headers ?? {})
    .filter(([, value]) => value === null)
    .map(([name]) => name);
}

describe('the header table of lean and full messages', () => {
  const spec: TaskSpec = { task: 'lean.t', id: 'task-1', args: [1, 'a'], kwargs: { k: true } };

  it('lean (the default) is Celery’s table without its nulls', () => {
    const { properties } = encodeTaskMessage(spec);
    // Exact keys, values and order.
    assert.deepEqual(Object.entries(properties.headers ?? {}), [
      ['lang', 'js'],
      ['task', 'lean.t'],
      ['id', 'task-1'],
      ['retries', 0],
      ['root_id', 'task-1'],
      ['argsrepr', '[1,"a"]'],
      ['kwargsrepr', '{"k":true}'],
      ['origin', 'nestjs-batches'],
      ['ignore_result', false],
    ]);
    assert.deepEqual(encodeTaskMessage(spec, 'lean').properties.headers, properties.headers);
  });

  it('full is Celery’s complete table, nulls included', () => {
    const { properties } = encodeTaskMessage(spec, 'full');
    assert.deepEqual(Object.entries(properties.headers ?? {}), [
      ['lang', 'js'],
      ['task', 'lean.t'],
      ['id', 'task-1'],
      ['shadow', null],
      ['eta', null],
      ['expires', null],
      ['group', null],
      ['group_index', null],
      ['retries', 0],
      ['timelimit', [null, null]],
      ['root_id', 'task-1'],
      ['parent_id', null],
      ['argsrepr', '[1,"a"]'],
      ['kwargsrepr', '{"k":true}'],
      ['origin', 'nestjs-batches'],
      ['ignore_result', false],
    ]);
  });

  it('lean keeps every header that is set, in Celery’s order', () => {
    const eta = new Date('2030-01-01T00:00:00.373Z');
    const expires = new Date('2030-01-02T00:00:00Z');
    const full: TaskSpec = { ...spec, eta, expires, group: 'g-1', retries: 4, rootId: 'root-1', parentId: 'parent-1', ignoreResult: true };
    const { properties } = encodeTaskMessage(full);
    assert.deepEqual(Object.entries(properties.headers ?? {}), [
      ['lang', 'js'],
      ['task', 'lean.t'],
      ['id', 'task-1'],
      // As Python's isoformat() writes it: Celery 5.2 reads the fraction as microseconds.
      ['eta', '2030-01-01T00:00:00.373000+00:00'],
      ['expires', '2030-01-02T00:00:00.000000+00:00'],
      ['group', 'g-1'],
      ['retries', 4],
      ['root_id', 'root-1'],
      ['parent_id', 'parent-1'],
      ['argsrepr', '[1,"a"]'],
      ['kwargsrepr', '{"k":true}'],
      ['origin', 'nestjs-batches'],
      ['ignore_result', true],
    ]);
    // The same values as the full table's non-null entries.
    const fullHeaders = encodeTaskMessage(full, 'full').properties.headers ?? {};
    assert.deepEqual(nullHeaders(fullHeaders), ['shadow', 'group_index']);
    assert.deepEqual(fullHeaders.timelimit, [null, null]);
    for (const [name, value] of Object.entries(properties.headers ?? {})) assert.deepEqual(value, fullHeaders[name], name);
  });

  it('lean drops extra headers that are null and a timelimit that sets no limit, and keeps the rest', () => {
    const { properties } = encodeTaskMessage({
      ...spec,
      headers: { shadow: null, group_index: null, parent_id: null, timelimit: [null, null], custom: 'x', 'x-zero': 0 },
    });
    assert.deepEqual(nullHeaders(properties.headers), []);
    assert.equal('timelimit' in (properties.headers ?? {}), false);
    assert.equal(properties.headers?.custom, 'x');
    assert.equal(properties.headers?.['x-zero'], 0);
    const limited = encodeTaskMessage({ ...spec, headers: { timelimit: [30, null], shadow: 'alias', group_index: 0 } });
    assert.deepEqual(limited.properties.headers?.timelimit, [30, null]);
    assert.equal(limited.properties.headers?.shadow, 'alias');
    assert.equal(limited.properties.headers?.group_index, 0);
  });

  it('both formats have the same body and properties but for the headers', () => {
    const lean = encodeTaskMessage({ ...spec, priority: 3, replyTo: 'r' });
    const full = encodeTaskMessage({ ...spec, priority: 3, replyTo: 'r' }, 'full');
    assert.deepEqual(lean.body, full.body);
    assert.deepEqual({ ...lean.properties, headers: undefined }, { ...full.properties, headers: undefined });
  });

  it('decodes a lean and a full message to the same task: absent headers read as null ones', () => {
    for (const extra of [{}, { eta: new Date('2030-01-01T00:00:00Z'), group: 'g', parentId: 'p', rootId: 'r', retries: 2 }]) {
      const lean = encodeTaskMessage({ ...spec, ...extra });
      const full = encodeTaskMessage({ ...spec, ...extra }, 'full');
      const a = decodeTaskMessage(lean.body, lean.properties, MAX_BYTES);
      const b = decodeTaskMessage(full.body, full.properties, MAX_BYTES);
      assert.deepEqual({ ...a, headers: undefined }, { ...b, headers: undefined });
    }
    // Only the two required headers: every other field takes the value a null header gives it.
    const bare = decodeTaskMessage(Buffer.from('[[],{}]'), { contentType: 'application/json', headers: { task: 't', id: 'x' } }, MAX_BYTES);
    const nulls = decodeTaskMessage(
      Buffer.from('[[],{}]'),
      {
        contentType: 'application/json',
        headers: { task: 't', id: 'x', ...Object.fromEntries(CELERY_HEADERS.slice(3).map((name) => [name, null])) },
      },
      MAX_BYTES,
    );
    assert.deepEqual({ ...bare, headers: undefined }, { ...nulls, headers: undefined });
    assert.deepEqual(
      [bare.retries, bare.eta, bare.expires, bare.group, bare.rootId, bare.parentId, bare.ignoreResult],
      [0, null, null, null, null, null, false],
    );
  });

  it('the module publishes lean messages unless told otherwise, and refuses an unknown format naming the option', async () => {
    assert.equal(BATCHES_DEFAULTS.messageFormat, 'lean');
    await assert.rejects(
      startWorker({ messageFormat: 'compact' } as unknown as BatchesModuleOptions, []),
      /forRoot\(\): `messageFormat` must be 'lean' or 'full', got "compact"\. Use 'full' only/,
    );
  });
});

/** What a SimpleRequest says apart from its raw headers and id. */
function comparable(request: SimpleRequest): Record<string, unknown> {
  return {
    name: request.name,
    args: request.args,
    kwargs: request.kwargs,
    retries: request.retries,
    eta: request.eta?.toISOString(),
    expires: request.expires?.toISOString(),
    ignoreResult: request.ignoreResult,
    deliveryInfo: request.deliveryInfo,
  };
}

describe('the Nest worker reads lean and full messages alike', () => {
  const suite = rabbitSuite();

  it('a lean and a full message become the same SimpleRequest, headers aside', async () => {
    const queue = suite.queue('lean-read');
    const Handler = recorder('lean.read', { flushEvery: 2, flushInterval: 5_000, queue });
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue }, [Handler]);
    try {
      const spec: TaskSpec = {
        task: 'lean.read',
        args: [1, 'zwei', { drei: [3, null] }],
        kwargs: { url: 'http://example.com/ä' },
        retries: 2,
        eta: new Date(Date.now() - 1_000),
        expires: new Date(Date.now() + 60_000),
      };
      await suite.rabbit.declareCeleryQueue(queue);
      const leanId = await suite.rabbit.publishTask(queue, spec);
      const full = encodeTaskMessage(spec, 'full');
      await suite.rabbit.publishRaw(queue, full.body, full.properties);
      const handler = app.get(Handler);
      await handler.waitForRequests(2);
      const byId = new Map(handler.batches.flat().map((request) => [request.id, request]));
      const lean = byId.get(leanId) as SimpleRequest;
      const fromFull = byId.get(full.id) as SimpleRequest;
      assert.ok(lean && fromFull, 'both requests arrived');
      assert.deepEqual(comparable(lean), comparable(fromFull));
      assert.equal(lean.retries, 2);
      assert.equal(lean.expires?.toISOString(), spec.expires?.toISOString());
      assert.deepEqual(nullHeaders(lean.headers), []);
      assert.equal('timelimit' in lean.headers, false);
      assert.deepEqual(Object.keys(fromFull.headers), CELERY_HEADERS);
    } finally {
      await app.close();
    }
  });

  for (const messageFormat of ['lean', 'full'] as const) {
    it(`a retry of a full message is published ${messageFormat} when messageFormat is '${messageFormat}'`, async () => {
      const queue = suite.queue(`lean-retry-${messageFormat}`);
      const Handler = recorder(
        'lean.nest-retry',
        { flushEvery: 1, flushInterval: 50, queue, maxRetries: 2, retryDelay: 10 },
        (requests, self) => {
          if (self.batches.length === 1) throw new Error('the first try fails');
          return requests.map(() => 'ok');
        },
      );
      const options: BatchesModuleOptions = { broker: AMQP_URL, defaultQueue: queue };
      if (messageFormat === 'full') options.messageFormat = 'full';
      const app = await startWorker(options, [Handler]);
      try {
        // Python Celery's way: the full table.
        const sent = encodeTaskMessage({ task: 'lean.nest-retry', args: ['x'], group: 'g-retry', parentId: 'p-retry' }, 'full');
        await suite.rabbit.declareCeleryQueue(queue);
        await suite.rabbit.publishRaw(queue, sent.body, sent.properties);
        const handler = app.get(Handler);
        await handler.waitForRequests(2);
        const retried = handler.batches[1][0];
        assert.equal(retried.id, sent.id);
        assert.equal(retried.retries, 1);
        assert.deepEqual(retried.args, ['x']);
        assert.ok(retried.eta, 'a retry carries its eta');
        assert.equal(retried.headers.group, 'g-retry');
        assert.equal(retried.headers.parent_id, 'p-retry');
        assert.equal(retried.headers.root_id, sent.id);
        if (messageFormat === 'lean') {
          assert.deepEqual(nullHeaders(retried.headers), []);
          assert.equal('timelimit' in retried.headers, false);
        } else {
          assert.deepEqual(Object.keys(retried.headers), CELERY_HEADERS);
          assert.deepEqual(nullHeaders(retried.headers), ['shadow', 'expires', 'group_index']);
        }
      } finally {
        await app.close();
      }
    });
  }
});

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
