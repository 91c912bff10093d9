import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Controller, Get, Module, type INestApplication, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import {
  BatchClient,
  BatchesConfigError,
  BatchesHealthIndicator,
  BatchesModule,
  BatchesServer,
  ResultBackend,
  type BatchesHealthDetails,
  type BatchesModuleOptions,
} from 'nestjs-batches';
import { AMQP_URL, rabbitSuite } from './support/rabbitmq.js';
import { ServiceProxy } from './support/service-proxy.js';
import { waitFor } from './support/wait.js';
import { recorder, RecordingLogger } from './support/worker-app.js';
import { REDIS_URL } from './support/redis-results.js';

@Controller()
class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly batches: BatchesHealthIndicator,
  ) {}

  @Get('health')
  @HealthCheck()
  check() {
    return this.health.check([() => this.batches.isHealthy()]);
  }
}

interface HealthResponse {
  code: number;
  body: { status: string; error: Record<string, BatchesHealthDetails>; details: Record<string, BatchesHealthDetails> };
  batches: BatchesHealthDetails;
}

/** A hybrid app (HTTP + the batches worker) with Terminus and a `/health` route, as a user builds it. */
async function hybridApp(
  options: BatchesModuleOptions,
  providers: Type[],
): Promise<{ app: INestApplication; health(): Promise<HealthResponse> }> {
  @Module({
    imports: [BatchesModule.forRoot(options), TerminusModule.forRoot({ logger: false })],
    controllers: [HealthController],
    providers,
  })
  class HealthAppModule {}
  const app = await NestFactory.create(HealthAppModule, { logger: new RecordingLogger(), abortOnError: false });
  app.connectMicroservice({ strategy: app.get(BatchesServer) });
  await app.startAllMicroservices();
  await app.listen(0, '127.0.0.1');
  const url = `${await app.getUrl()}/health`;
  return {
    app,
    async health() {
      const response = await fetch(url);
      const body = (await response.json()) as HealthResponse['body'];
      return { code: response.status, body, batches: body.details.batches };
    },
  };
}

/** Polls `/health` until it answers `code` (bounded), and returns that answer. */
async function healthBecomes(health: () => Promise<HealthResponse>, code: number, what: string): Promise<HealthResponse> {
  let last: HealthResponse | undefined;
  await waitFor(
    async () => {
      last = await health();
      return last.code === code;
    },
    `${what} (last answer: ${JSON.stringify(last?.body)})`,
    20_000,
    100,
  );
  return last as HealthResponse;
}

describe('BatchesHealthIndicator with Terminus', () => {
  const suite = rabbitSuite();

  async function proxiedApp(prefix: string) {
    const rabbit = await ServiceProxy.start(AMQP_URL, 5672);
    const redis = await ServiceProxy.start(REDIS_URL, 6379);
    suite.closeAfter(rabbit);
    suite.closeAfter(redis);
    const queue = suite.queue(prefix);
    const task = `${prefix}.task`;
    const Handler = recorder(task, { flushEvery: 1, flushInterval: 100, queue }, (requests) => requests.map((request) => request.args[0]));
    const { app, health } = await hybridApp({ broker: rabbit.url(), resultBackend: redis.url(), defaultQueue: queue }, [Handler]);
    suite.closeAfter(app);
    return { app, health, rabbit, redis, queue, task };
  }

  it('is up on RabbitMQ and Redis, down naming the broker while RabbitMQ is gone, and up again once it is back', async () => {
    const { app, health, rabbit, queue, task } = await proxiedApp('health.broker');
    const up = await healthBecomes(health, 200, 'healthy on RabbitMQ and Redis');
    assert.equal(up.body.status, 'ok');
    assert.equal(up.batches.status, 'up');
    assert.equal(up.batches.broker.status, 'connected');
    assert.deepEqual(up.batches.queues, { [queue]: 'consuming' });
    assert.deepEqual(up.batches.resultBackend, { status: 'up' });
    assert.equal(up.batches.worker.status, 'ok');
    assert.equal(up.batches.message, undefined);
    // The worker really works behind the proxies.
    assert.equal(
      await app
        .get(BatchClient)
        .delay(task, 7)
        .then((result) => result.get({ timeout: 10_000 })),
      7,
    );

    await rabbit.close();
    const down = await healthBecomes(health, 503, 'unhealthy once RabbitMQ is gone');
    assert.equal(down.body.status, 'error');
    assert.equal(down.body.error.batches.status, 'down');
    assert.match(down.batches.broker.status, /^(disconnected|connecting)$/);
    assert.match(down.batches.message ?? '', new RegExp(`broker amqp://guest:\\*\\*\\*@127\\.0\\.0\\.1:${rabbit.port} is disconnected`));
    assert.match(down.batches.message ?? '', new RegExp(`queue '${queue.replace(/\./g, '\\.')}' is not consumed`));
    assert.equal(down.batches.queues?.[queue], 'not consumed');
    assert.deepEqual(down.batches.resultBackend, { status: 'up' }, 'Redis is still there');

    await rabbit.open();
    const back = await healthBecomes(health, 200, 'healthy again once RabbitMQ is back');
    assert.deepEqual(back.batches.queues, { [queue]: 'consuming' });
    assert.equal(
      await app
        .get(BatchClient)
        .delay(task, 8)
        .then((result) => result.get({ timeout: 10_000 })),
      8,
    );
  });

  it('is down naming the result backend while Redis is gone, and up again once it is back', async () => {
    const { health, redis } = await proxiedApp('health.redis');
    await healthBecomes(health, 200, 'healthy on RabbitMQ and Redis');

    await redis.close();
    const down = await healthBecomes(health, 503, 'unhealthy once Redis is gone');
    assert.equal(down.batches.resultBackend.status, 'down');
    assert.match(down.batches.resultBackend.error ?? '', /Redis/);
    assert.match(down.batches.message ?? '', /^result backend: Redis /);
    assert.equal(down.batches.broker.status, 'connected', 'RabbitMQ is still there');

    await redis.open();
    await healthBecomes(health, 200, 'healthy again once Redis is back');
  });
});

describe('BatchesHealthIndicator: a wedged worker', () => {
  it('is down naming the task while requests run and no batch finishes for healthWedgedAfter, up once one finishes', async () => {
    let release: (() => void) | undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    const Handler = recorder('health.slow', { flushEvery: 1, flushInterval: 50 }, () => released);
    // memory://: the broker part is always up, so only the worker can make it unhealthy.
    const { app, health } = await hybridApp({ healthWedgedAfter: 300 }, [Handler]);
    try {
      const idle = await healthBecomes(health, 200, 'healthy while idle');
      assert.deepEqual(idle.batches.broker, { status: 'connected', url: 'memory://' });
      assert.equal(idle.batches.queues, undefined);
      assert.equal(idle.batches.worker.wedgedAfterMs, 300);

      await app.get(BatchClient).delay('health.slow', 1);
      await app.get(Handler).waitForRequests(1);
      const wedged = await healthBecomes(health, 503, 'unhealthy while the handler hangs');
      assert.equal(wedged.batches.worker.status, 'wedged');
      assert.deepEqual(wedged.batches.worker.tasks, ['health.slow']);
      assert.equal(wedged.batches.worker.running, 1);
      assert.ok((wedged.batches.worker.stalledForMs ?? 0) > 300);
      assert.match(
        wedged.batches.message ?? '',
        /^worker wedged: 0 buffered and 1 running request\(s\) of 'health\.slow', no batch finished for \d+ ms \(healthWedgedAfter 300 ms\)$/,
      );

      release?.();
      const recovered = await healthBecomes(health, 200, 'healthy once the batch finished');
      assert.equal(recovered.batches.worker.status, 'ok');
      assert.notEqual(recovered.batches.worker.lastBatchFinishedAt, null);
    } finally {
      release?.();
      await app.close();
    }
  });

  it('derives healthWedgedAfter from flushInterval when unset, and refuses a bad one', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [BatchesModule.forRoot()],
      providers: [recorder('health.derived', { flushInterval: 120_000 })],
    }).compile();
    try {
      assert.equal(moduleRef.get(BatchesHealthIndicator).wedgedAfter(), 600_000);
      // The memory result backend always answers.
      await moduleRef.get(ResultBackend).ping();
    } finally {
      await moduleRef.close();
    }
    await assert.rejects(
      Test.createTestingModule({ imports: [BatchesModule.forRoot({ healthWedgedAfter: 0 })] }).compile(),
      (error: Error) => error instanceof BatchesConfigError && /`healthWedgedAfter` must be a positive integer/.test(error.message),
    );
  });
});
