import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BATCHES_DEFAULTS, decodeTaskMessage, encodeTaskMessage, type BatchesModuleOptions, type TaskSpec } from 'nestjs-batches';
import { CELERY_HEADERS, nullHeaders } from './support/celery-headers.js';
import { startWorker } from './support/worker-app.js';

const MAX_BYTES = 1_000_000;

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
