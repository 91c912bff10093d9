import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeTaskMessage, type BatchesModuleOptions, type SimpleRequest, type TaskSpec } from 'nestjs-batches';
import { CELERY_HEADERS, nullHeaders } from './support/celery-headers.js';
import { AMQP_URL, rabbitSuite } from './support/rabbitmq.js';
import { recorder, startWorker } from './support/worker-app.js';

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
