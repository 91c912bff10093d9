import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Test } from '@nestjs/testing';
import { register, Registry } from 'prom-client';
import { BatchClient, BatchesConfigError, BatchesModule, type BatchesModuleOptions } from 'nestjs-batches';
import { expectMetrics, family, m, PREFIX, scrape, startMetricsApp } from './support/metrics-scrape.js';
import { AMQP_URL, rabbitSuite } from './support/rabbitmq.js';
import { gate } from './support/wait.js';
import { recorder, startWorker } from './support/worker-app.js';

describe('Prometheus metrics on RabbitMQ', () => {
  const registry = new Registry();
  const running: Array<{ close(): Promise<void> }> = [];
  // Registered before rabbitSuite()'s own after(), so the apps are closed before it deletes their queues.
  after(async () => {
    for (const app of running) await app.close().catch(() => undefined);
  });
  const suite = rabbitSuite();

  it('counts batches, sizes, durations, outcomes, acks and dead letters, and reads the gauges on each scrape', async () => {
    const queue = suite.queue('metrics');
    const SUM = 'metrics.sum';
    const FAIL = 'metrics.fail';
    const BLOCK = 'metrics.block';
    const blocked = gate();
    const providers = [
      recorder(SUM, { flushEvery: 3, flushInterval: 300 }, (requests) => requests.map((request) => request.args[0])),
      recorder(FAIL, { flushEvery: 1, maxRetries: 1, retryDelay: 50 }, () => {
        throw new Error('always fails');
      }),
      recorder(BLOCK, { flushEvery: 2, flushInterval: 60_000 }, () => blocked.wait),
    ];
    const { app, url } = await startMetricsApp(
      { broker: AMQP_URL, defaultQueue: queue, waitForBroker: true, metrics: { registry } },
      registry,
      providers,
    );
    running.push(app);
    const client = app.get(BatchClient);

    // Connected: 1 for the current status, 0 for the others.
    const first = await scrape(url);
    assert.deepEqual(family(first, 'broker_connection_state'), {
      [m('broker_connection_state', { status: 'connecting' })]: 0,
      [m('broker_connection_state', { status: 'connected' })]: 1,
      [m('broker_connection_state', { status: 'disconnected' })]: 0,
      [m('broker_connection_state', { status: 'failed' })]: 0,
    });

    // 4 requests: one batch of 3 flushed by count, one of 1 by the interval.
    for (let i = 1; i <= 4; i++) await client.delay(SUM, i);
    await expectMetrics(url, {
      [m('requests_received_total', { task: SUM })]: 4,
      [m('requests_total', { task: SUM, outcome: 'succeeded' })]: 4,
      [m('batches_total', { task: SUM, reason: 'count' })]: 1,
      [m('batches_total', { task: SUM, reason: 'interval' })]: 1,
      [m('batch_size_count', { task: SUM })]: 2,
      [m('batch_size_sum', { task: SUM })]: 4,
      [m('batch_size_bucket', { task: SUM, le: '1' })]: 1,
      [m('batch_size_bucket', { task: SUM, le: '2' })]: 1,
      [m('batch_size_bucket', { task: SUM, le: '5' })]: 2,
      [m('batch_duration_seconds_count', { task: SUM, outcome: 'completed' })]: 2,
    });

    // A request that always fails: run, retried once (received again), run, then dead-lettered.
    await client.delay(FAIL, 'x');
    await expectMetrics(url, {
      [m('requests_received_total', { task: FAIL })]: 2,
      [m('batches_total', { task: FAIL, reason: 'count' })]: 2,
      [m('batch_duration_seconds_count', { task: FAIL, outcome: 'failed' })]: 2,
      [m('requests_total', { task: FAIL, outcome: 'retried' })]: 1,
      [m('requests_total', { task: FAIL, outcome: 'failed' })]: 1,
      [m('requests_total', { task: FAIL, outcome: 'dead_lettered' })]: 1,
      [m('dead_letters_total', { queue })]: 1,
    });
    assert.equal((await suite.rabbit.takeAll(`${queue}.dead`)).length, 1);

    // Gauges: a batch of 2 held in its handler is in flight; a third request waits in the buffer.
    await client.delay(BLOCK, 1);
    await client.delay(BLOCK, 2);
    await expectMetrics(url, {
      [m('requests_in_flight', { task: BLOCK })]: 2,
      [m('requests_buffered', { task: BLOCK })]: 0,
    });
    await client.delay(BLOCK, 3);
    const held = await expectMetrics(url, {
      [m('requests_in_flight', { task: BLOCK })]: 2,
      [m('requests_buffered', { task: BLOCK })]: 1,
    });
    // Every handled task has a sample, 0 when it has nothing buffered or running.
    assert.deepEqual(family(held, 'requests_in_flight'), {
      [m('requests_in_flight', { task: BLOCK })]: 2,
      [m('requests_in_flight', { task: FAIL })]: 0,
      [m('requests_in_flight', { task: SUM })]: 0,
    });
    blocked.open();
    await client.delay(BLOCK, 4);
    const samples = await expectMetrics(url, {
      [m('requests_total', { task: BLOCK, outcome: 'succeeded' })]: 4,
      [m('batches_total', { task: BLOCK, reason: 'count' })]: 2,
      [m('requests_in_flight', { task: BLOCK })]: 0,
      [m('requests_buffered', { task: BLOCK })]: 0,
      // 4 + 4 succeeded, the failing message acked once after its retry was sent and once after its dead letter.
      [m('acks_total', { queue })]: 10,
    });

    // Exactly these outcomes, nothing else counted.
    assert.deepEqual(family(samples, 'requests_total'), {
      [m('requests_total', { task: SUM, outcome: 'succeeded' })]: 4,
      [m('requests_total', { task: BLOCK, outcome: 'succeeded' })]: 4,
      [m('requests_total', { task: FAIL, outcome: 'retried' })]: 1,
      [m('requests_total', { task: FAIL, outcome: 'failed' })]: 1,
      [m('requests_total', { task: FAIL, outcome: 'dead_lettered' })]: 1,
    });
    assert.deepEqual(family(samples, 'batches_total'), {
      [m('batches_total', { task: SUM, reason: 'count' })]: 1,
      [m('batches_total', { task: SUM, reason: 'interval' })]: 1,
      [m('batches_total', { task: FAIL, reason: 'count' })]: 2,
      [m('batches_total', { task: BLOCK, reason: 'count' })]: 2,
    });

    await app.close();
    running.pop();
    assert.equal(registry.getSingleMetric(`${PREFIX}requests_total`), undefined);
    assert.doesNotMatch(await registry.metrics(), /nestjs_batches_/);
  });

  it('counts requests held for their ETA, by queue, until they are due', async () => {
    const queue = suite.queue('metrics-held');
    const TASK = 'metrics.held';
    const { app, url } = await startMetricsApp(
      { broker: AMQP_URL, defaultQueue: queue, waitForBroker: true, metrics: { registry } },
      registry,
      [recorder(TASK, { flushEvery: 5, flushInterval: 100 })],
    );
    running.push(app);
    const client = app.get(BatchClient);
    for (let i = 0; i < 3; i++) await client.applyAsync(TASK, { args: [i], countdown: 60_000 });
    await client.applyAsync(TASK, { args: ['soon'], countdown: 300 });
    await expectMetrics(url, { [m('requests_held', { queue })]: 4 });
    await expectMetrics(url, {
      [m('requests_held', { queue })]: 3,
      [m('requests_total', { task: TASK, outcome: 'succeeded' })]: 1,
    });
    await app.close();
    running.pop();
  });

  it('registers again on the same registry once the first app has closed, counting from zero', async () => {
    const queue = suite.queue('metrics-again');
    const TASK = 'metrics.again';
    const { app, url } = await startMetricsApp(
      { broker: AMQP_URL, defaultQueue: queue, waitForBroker: true, metrics: { registry } },
      registry,
      [recorder(TASK, { flushEvery: 5, flushInterval: 200 })],
    );
    running.push(app);
    await app.get(BatchClient).delay(TASK, 1);
    const samples = await expectMetrics(url, {
      [m('requests_total', { task: TASK, outcome: 'succeeded' })]: 1,
      [m('batches_total', { task: TASK, reason: 'interval' })]: 1,
      [m('acks_total', { queue })]: 1,
      [m('broker_connection_state', { status: 'connected' })]: 1,
    });
    // Nothing carried over from the first app's tasks.
    assert.deepEqual(Object.keys(family(samples, 'requests_total')), [m('requests_total', { task: TASK, outcome: 'succeeded' })]);
    await app.close();
    running.pop();
    assert.equal(registry.getSingleMetric(`${PREFIX}batches_total`), undefined);
  });
});

describe('metrics option', () => {
  it('is off by default: nothing is registered', async () => {
    const app = await startWorker({}, [recorder('metrics.off', {})]);
    try {
      assert.doesNotMatch(await register.metrics(), /nestjs_batches_/);
    } finally {
      await app.close();
    }
  });

  it('`true` registers on prom-client’s default registry, with a custom prefix too, and unregisters on close', async () => {
    const app = await startWorker({ metrics: true }, [recorder('metrics.default', {})]);
    try {
      assert.ok(register.getSingleMetric(`${PREFIX}batches_total`));
      assert.match(await register.metrics(), /nestjs_batches_broker_connection_state\{status="connected"\} 1/);
    } finally {
      await app.close();
    }
    assert.equal(register.getSingleMetric(`${PREFIX}batches_total`), undefined);

    const custom = new Registry();
    const prefixed = await startWorker({ metrics: { registry: custom, prefix: 'worker_' } }, [recorder('metrics.prefixed', {})]);
    try {
      assert.match(await custom.metrics(), /^worker_requests_buffered\{task="metrics.prefixed"\} 0$/m);
    } finally {
      await prefixed.close();
    }
  });

  it('refuses a second running app on the same registry with a clear error, leaving the first one’s metrics', async () => {
    const shared = new Registry();
    const first = await startWorker({ metrics: { registry: shared } }, [recorder('metrics.first', {})]);
    try {
      await assert.rejects(startWorker({ metrics: { registry: shared } }, [recorder('metrics.second', {})]), (error: Error) => {
        assert.ok(error instanceof BatchesConfigError);
        assert.match(error.message, /already holds nestjs_batches_batches_total/);
        assert.match(error.message, /metrics\.prefix/);
        return true;
      });
      assert.ok(shared.getSingleMetric(`${PREFIX}batches_total`));
    } finally {
      await first.close();
    }
  });

  it('refuses invalid values, naming the option and the fix', async () => {
    const cases: Array<[unknown, RegExp]> = [
      ['yes', /`metrics` must be true, false or \{ registry\?, prefix\? \}/],
      [{ prefix: 'bad-prefix' }, /`metrics\.prefix` must be a Prometheus metric name prefix/],
      [{ registry: {} }, /`metrics\.registry` must be a prom-client Registry/],
      [{ registery: new Registry() }, /unknown field\(s\) registery/],
    ];
    for (const [metrics, message] of cases) {
      await assert.rejects(
        Test.createTestingModule({ imports: [BatchesModule.forRoot({ metrics } as BatchesModuleOptions)] }).compile(),
        (error: Error) => error instanceof BatchesConfigError && message.test(error.message),
      );
    }
  });
});
