import assert from 'node:assert/strict';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { after, before, beforeEach, describe, it } from 'node:test';
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { BatchClient, BatchesConfigError, type SimpleRequest } from 'nestjs-batches';
import { AsyncLocalStorageContextManager } from './support/async-local-context.js';
import { exporter, inSpan, provider, spansNamed, waitForSpans } from './support/recorded-spans.js';
import { AMQP_URL, rabbitSuite } from './support/rabbitmq.js';
import { recorder, startWorker } from './support/worker-app.js';

describe('OpenTelemetry tracing', () => {
  const suite = rabbitSuite();
  before(() => {
    assert.ok(context.setGlobalContextManager(new AsyncLocalStorageContextManager()), 'a context manager was already registered');
    assert.ok(trace.setGlobalTracerProvider(provider), 'a tracer provider was already registered');
  });
  beforeEach(() => exporter.reset());
  after(() => {
    trace.disable();
    context.disable();
  });

  it('puts traceparent into each message and links the batch span to every producer', async () => {
    const queue = suite.queue('tracing');
    const inner: Array<string | undefined> = [];
    const Handler = recorder('tracing.links', { flushEvery: 3, flushInterval: 60_000, queue }, async () => {
      // User spans inside the handler nest under the batch span.
      await inSpan('user work', async (span) => inner.push(span.spanContext().spanId));
    });
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue, tracing: true }, [Handler]);
    suite.closeAfter(app);
    const client = app.get(BatchClient);
    const producer = await inSpan('producer', async (span) => {
      for (let i = 0; i < 3; i++) await client.delay('tracing.links', i);
      return span.spanContext();
    });

    const [batch] = await waitForSpans(`process ${queue}`, 1);
    const handled = app.get(Handler).batches.flat();
    assert.deepEqual(
      handled.map((request: SimpleRequest) => request.headers.traceparent),
      Array.from({ length: 3 }, () => `00-${producer.traceId}-${producer.spanId}-01`),
    );
    assert.equal(batch.kind, SpanKind.CONSUMER);
    // Its own trace (the worker has no caller), linked to the producer's span once per message.
    assert.equal(batch.parentSpanContext, undefined);
    assert.notEqual(batch.spanContext().traceId, producer.traceId);
    assert.deepEqual(
      batch.links.map((link) => [link.context.traceId, link.context.spanId, link.attributes?.['messaging.message.id']]),
      handled.map((request) => [producer.traceId, producer.spanId, request.id]),
    );
    assert.deepEqual(batch.attributes, {
      'messaging.system': 'rabbitmq',
      'messaging.operation.type': 'process',
      'messaging.operation.name': 'process',
      'messaging.destination.subscription.name': queue,
      'messaging.destination.name': queue,
      'messaging.rabbitmq.destination.routing_key': queue,
      'messaging.batch.message_count': 3,
      'nestjs_batches.task': 'tracing.links',
      'nestjs_batches.queue': queue,
      'nestjs_batches.flush_reason': 'count',
    });
    assert.equal(batch.status.code, SpanStatusCode.UNSET);
    const [user] = spansNamed('user work');
    assert.equal(user.parentSpanContext?.spanId, batch.spanContext().spanId);
    assert.equal(user.spanContext().traceId, batch.spanContext().traceId);
    assert.deepEqual(inner, [user.spanContext().spanId]);
  });

  it('ends the span with status error when the handler throws; the retry keeps the producer link', async () => {
    const queue = suite.queue('tracing-fail');
    let calls = 0;
    const Handler = recorder('tracing.fail', { flushEvery: 1, flushInterval: 60_000, queue, maxRetries: 1, retryDelay: 50 }, () => {
      calls += 1;
      if (calls === 1) throw new TypeError('first run fails');
    });
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue, tracing: true }, [Handler]);
    suite.closeAfter(app);
    const producer = await inSpan('producer', async (span) => {
      await app.get(BatchClient).delay('tracing.fail', 'x');
      return span.spanContext();
    });

    const [failed, retried] = await waitForSpans(`process ${queue}`, 2);
    assert.equal(failed.status.code, SpanStatusCode.ERROR);
    assert.equal(failed.status.message, 'first run fails');
    assert.equal(failed.attributes['error.type'], 'TypeError');
    assert.equal(failed.events.find((event) => event.name === 'exception')?.attributes?.['exception.type'], 'TypeError');
    assert.equal(retried.status.code, SpanStatusCode.UNSET);
    for (const span of [failed, retried]) {
      assert.deepEqual(
        span.links.map((link) => link.context.spanId),
        [producer.spanId],
      );
      assert.equal(span.attributes['messaging.batch.message_count'], 1);
    }
  });

  it('uses the tracer given as { tracer } and records an interval flush', async () => {
    const queue = suite.queue('tracing-own');
    const own = new InMemorySpanExporter();
    const ownProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(own)] });
    const Handler = recorder('tracing.own', { flushEvery: 10, flushInterval: 200, queue });
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue, tracing: { tracer: ownProvider.getTracer('my-worker') } }, [
      Handler,
    ]);
    suite.closeAfter(app);
    const producer = await inSpan('producer', async (span) => {
      await app.get(BatchClient).delay('tracing.own', 1);
      await app.get(BatchClient).delay('tracing.own', 2);
      return span.spanContext();
    });

    const [batch] = await waitForSpans(`process ${queue}`, 1, own);
    assert.equal(batch.instrumentationScope.name, 'my-worker');
    assert.equal(batch.attributes['nestjs_batches.flush_reason'], 'interval');
    assert.equal(batch.attributes['messaging.batch.message_count'], 2);
    assert.deepEqual(
      batch.links.map((link) => link.context.spanId),
      [producer.spanId, producer.spanId],
    );
    assert.deepEqual(spansNamed(`process ${queue}`), [], 'the global provider got the span too');
  });

  it('makes eager apply() batches children of the caller span', async () => {
    const Handler = recorder('tracing.eager', { flushEvery: 5, flushInterval: 60_000 });
    const app = await startWorker({ tracing: true }, [Handler]);
    suite.closeAfter(app);
    const caller = await inSpan('caller', async (span) => {
      await app.get(BatchClient).apply('tracing.eager', { args: [1] });
      return span.spanContext();
    });
    const [batch] = await waitForSpans('process celery', 1);
    assert.equal(batch.parentSpanContext?.spanId, caller.spanId);
    assert.equal(batch.attributes['messaging.system'], 'memory');
    assert.equal(batch.links.length, 0);
  });

  it('with tracing off, makes no span and sends no traceparent', async () => {
    const queue = suite.queue('tracing-off');
    const Handler = recorder('tracing.off', { flushEvery: 2, flushInterval: 60_000, queue });
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue }, [Handler]);
    suite.closeAfter(app);
    await inSpan('producer', async () => {
      await app.get(BatchClient).delay('tracing.off', 1);
      await app.get(BatchClient).delay('tracing.off', 2);
    });
    await app.get(Handler).waitForRequests(2);
    const headers = app
      .get(Handler)
      .batches.flat()
      .map((request) => request.headers);
    assert.equal(headers.length, 2);
    for (const each of headers) {
      assert.equal(each.traceparent, undefined);
      assert.equal(each.tracestate, undefined);
    }
    assert.deepEqual(
      exporter.getFinishedSpans().map((span) => span.name),
      ['producer'],
    );
  });

  it('refuses a tracing option that is not true, false or { tracer }', async () => {
    for (const tracing of ['yes', { tracer: {} }]) {
      await assert.rejects(
        startWorker({ tracing: tracing as never }, []),
        (error: Error) =>
          error instanceof BatchesConfigError &&
          /`tracing` must be true, false or \{ tracer \}/.test(error.message) &&
          /tracing: true/.test(error.message),
      );
    }
  });

  it('stops startup with the install line when @opentelemetry/api is missing', async () => {
    // The compiled library copied where no node_modules can be found: as in an app without the package.
    const dir = await mkdtemp(join(tmpdir(), 'no-otel-'));
    try {
      await cp(fileURLToPath(new URL('../libs/batches/src/', import.meta.url)), join(dir, 'lib'), { recursive: true });
      await writeFile(join(dir, 'package.json'), '{"type":"module"}');
      const options = (await import(pathToFileURL(join(dir, 'lib', 'options', 'resolve-module-options.js')).href)) as {
        resolveModuleOptions(options: object): { tracing?: unknown };
      };
      assert.equal(options.resolveModuleOptions({ tracing: false }).tracing, undefined);
      assert.throws(
        () => options.resolveModuleOptions({ tracing: true }),
        (error: Error) =>
          error.name === 'BatchesConfigError' &&
          error.message.includes('`tracing`') &&
          error.message.includes('Run `npm install @opentelemetry/api`'),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
