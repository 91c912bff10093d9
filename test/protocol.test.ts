import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { decodeTaskMessage, encodeTaskMessage, InvalidMessageError } from 'nestjs-batches';
import { AMQP_URL, TestRabbit, uniqueQueue } from './support/rabbitmq.js';
import { recorder, startWorker } from './support/worker-app.js';

describe('a message from our publisher, through RabbitMQ, as a SimpleRequest', () => {
  const queue = uniqueQueue('protocol');
  after(async () => {
    const rabbit = await TestRabbit.connect();
    await rabbit.deleteQueues(queue, `${queue}.dead`);
    await rabbit.close();
  });

  it('carries args, kwargs, id, retries, eta, expires, headers and delivery info', async () => {
    const Handler = recorder('protocol.check', { flushEvery: 1, flushInterval: 100, queue });
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue, hostname: 'worker-1@test' }, [Handler]);
    const rabbit = await TestRabbit.connect();
    try {
      await rabbit.declareCeleryQueue(queue);
      const expires = new Date(Date.now() + 60_000);
      const args = [1, 'zwei', { drei: [3, null] }, '東京'];
      const kwargs = { url: 'http://example.com/ä', nested: { ok: true } };
      const id = await rabbit.publishTask(queue, { task: 'protocol.check', args, kwargs, retries: 2, expires, priority: 3 });
      const handler = app.get(Handler);
      await handler.waitForRequests(1);
      const [request] = handler.batches[0];
      assert.equal(request.id, id);
      assert.equal(request.name, 'protocol.check');
      assert.deepEqual(request.args, args);
      assert.deepEqual(request.kwargs, kwargs);
      assert.equal(request.retries, 2);
      assert.equal(request.eta, null);
      assert.equal(request.expires?.toISOString(), expires.toISOString());
      assert.equal(request.correlationId, id);
      assert.equal(request.hostname, 'worker-1@test');
      assert.equal(request.ignoreResult, false);
      assert.deepEqual(request.deliveryInfo, { exchange: '', routingKey: queue, redelivered: false, priority: 3, isEager: false });
      assert.equal(request.headers.lang, 'js');
      assert.equal(request.headers.task, 'protocol.check');
      assert.equal(request.headers.root_id, id);
      assert.equal(request.headers.argsrepr, JSON.stringify(args));
      // Lean by default: no null-valued headers, no `timelimit` without limits.
      assert.equal('timelimit' in request.headers, false);
      assert.deepEqual(
        Object.entries(request.headers).filter(([, value]) => value === null),
        [],
      );
    } finally {
      await rabbit.close();
      await app.close();
    }
  });
});

describe('decoding', () => {
  const json = { contentType: 'application/json', contentEncoding: 'utf-8' };

  it('reads protocol v1 bodies', () => {
    const body = Buffer.from(
      JSON.stringify({
        task: 'v1.task',
        id: 'abc',
        args: [1, 2],
        kwargs: { a: 1 },
        retries: 1,
        eta: '2030-01-01T00:00:00+00:00',
        expires: null,
        utc: true,
        taskset: 'g1',
      }),
    );
    const message = decodeTaskMessage(body, { ...json, headers: {} }, 1_000_000);
    assert.equal(message.protocol, 1);
    assert.equal(message.task, 'v1.task');
    assert.equal(message.id, 'abc');
    assert.deepEqual(message.args, [1, 2]);
    assert.deepEqual(message.kwargs, { a: 1 });
    assert.equal(message.retries, 1);
    assert.equal(message.eta?.toISOString(), '2030-01-01T00:00:00.000Z');
    assert.equal(message.group, 'g1');
  });

  it('round-trips what it encodes', () => {
    const encoded = encodeTaskMessage({ task: 't', args: [1], kwargs: { k: 'v' }, ignoreResult: true });
    const message = decodeTaskMessage(encoded.body, encoded.properties, 1_000_000);
    assert.deepEqual(
      [message.protocol, message.task, message.id, message.args, message.kwargs, message.ignoreResult],
      [2, 't', encoded.id, [1], { k: 'v' }, true],
    );
  });

  describe('bodies ending in Celery’s default embed, which the decoder skips', () => {
    const headers = { ...json, headers: { task: 't', id: 'x' } };
    const embed = { callbacks: null, errbacks: null, chain: null, chord: null };

    it('reads args and kwargs from our compact body and from Python’s spaced one', () => {
      const args = [1, 'a,{"callbacks":null}]', { nested: [null] }];
      const kwargs = { k: ['v', 2] };
      for (const body of [
        JSON.stringify([args, kwargs, embed]),
        // Python's json.dumps default separators.
        JSON.stringify([args, kwargs, embed], null, 1)
          .replace(/\n\s*/g, ' ')
          .replace(/\[ /g, '[')
          .replace(/ \]/g, ']')
          .replace(/\{ /g, '{')
          .replace(/ \}/g, '}'),
      ]) {
        assert.ok(body.endsWith('"chord": null}]') || body.endsWith('"chord":null}]'), body);
        const message = decodeTaskMessage(Buffer.from(body), headers, 1_000_000);
        assert.deepEqual([message.args, message.kwargs], [args, kwargs]);
      }
    });

    it('decodes a body whose embed stands in the kwargs place as the full parse does', () => {
      const message = decodeTaskMessage(Buffer.from(JSON.stringify([[1], embed])), headers, 1_000_000);
      assert.deepEqual([message.args, message.kwargs], [[1], embed]);
    });

    it('refuses invalid JSON that ends in the embed', () => {
      const body = `[[1],{,${JSON.stringify(embed)}]`;
      assert.throws(() => decodeTaskMessage(Buffer.from(body), headers, 1_000_000), /body is not valid JSON/);
    });
  });

  for (const [label, body, properties, reason] of [
    ['a bad eta', '[[],{},{}]', { ...json, headers: { task: 't', id: 'x', eta: 'tomorrow' } }, /eta must be an ISO 8601 date/],
    ['kwargs not an object', '[[],[],{}]', { ...json, headers: { task: 't', id: 'x' } }, /kwargs must be a JSON object/],
    ['no id', '[[],{},{}]', { ...json, headers: { task: 't' } }, /id header missing/],
    [
      'a latin-1 encoding',
      '[[],{},{}]',
      { ...json, contentEncoding: 'latin-1', headers: { task: 't', id: 'x' } },
      /content encoding "latin-1" refused/,
    ],
    ['no content type', '[[],{},{}]', { headers: { task: 't', id: 'x' } }, /content type null refused/],
  ] as const) {
    it(`refuses ${label}`, () => {
      assert.throws(
        () => decodeTaskMessage(Buffer.from(body), properties, 1_000_000),
        (error: unknown) => error instanceof InvalidMessageError && reason.test(error.message),
      );
    });
  }
});
