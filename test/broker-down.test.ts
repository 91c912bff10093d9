import assert from 'node:assert/strict';
import { createServer, connect as connectTcp, type AddressInfo, type Server, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { Controller, Get, Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { firstValueFrom, filter } from 'rxjs';
import {
  BatchClient,
  BatchesModule,
  BatchesServer,
  BrokerFailedError,
  PublishTimeoutError,
  type BatchesModuleOptions,
  type BatchesStatus,
} from 'nestjs-batches';
import { AMQP_URL, queueCounts, rabbitSuite } from './support/rabbitmq.js';
import { waitFor } from './support/wait.js';
import { recorder, RecordingLogger, startWorker } from './support/worker-app.js';

const BROKER = new URL(AMQP_URL);

/** The broker URL with other credentials, vhost or port. */
function brokerUrl(change: { password?: string; vhost?: string; port?: number }): string {
  const url = new URL(AMQP_URL);
  if (change.password !== undefined) url.password = change.password;
  if (change.vhost !== undefined) url.pathname = `/${encodeURIComponent(change.vhost)}`;
  if (change.port !== undefined) url.port = String(change.port);
  return url.toString();
}

/**
 * A TCP port that refuses connections until `open()`, then forwards them to RabbitMQ: a broker
 * that is down at startup and comes up later, without touching the real one. Counts connections.
 */
class LateBroker {
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  connections = 0;

  private constructor(readonly port: number) {}

  static async reserve(): Promise<LateBroker> {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    return new LateBroker(port);
  }

  async open(): Promise<void> {
    this.server = createServer((client) => {
      this.connections++;
      const upstream = connectTcp(Number(BROKER.port || 5672), BROKER.hostname);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('error', () => undefined);
        socket.on('close', () => this.sockets.delete(socket));
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => this.server?.listen(this.port, '127.0.0.1', resolve));
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => (this.server ? this.server.close(resolve) : resolve(undefined)));
  }
}

@Controller()
class PingController {
  @Get('ping')
  ping(): string {
    return 'pong';
  }
}

async function hybridApp(options: BatchesModuleOptions, providers: Array<new (...args: never[]) => unknown>, logger: RecordingLogger) {
  @Module({ imports: [BatchesModule.forRoot(options)], controllers: [PingController], providers })
  class HybridModule {}
  const app = await NestFactory.create(HybridModule, { logger, abortOnError: false });
  app.connectMicroservice({ strategy: app.get(BatchesServer) });
  return app;
}

function statusOf(app: INestApplication, wanted: BatchesStatus): Promise<BatchesStatus> {
  return firstValueFrom(app.get(BatchesServer).status.pipe(filter((status) => status === wanted)));
}

describe('when RabbitMQ is down or refuses us', () => {
  const suite = rabbitSuite();

  it('a hybrid app serves HTTP while the broker is unreachable, and consumes once it answers', async () => {
    const late = await LateBroker.reserve();
    suite.closeAfter(late);
    const queue = suite.queue('late');
    const Handler = recorder('late.task', { flushEvery: 1, flushInterval: 100, queue });
    const app = await hybridApp({ broker: brokerUrl({ port: late.port }), defaultQueue: queue }, [Handler], new RecordingLogger());
    suite.closeAfter(app);
    await app.startAllMicroservices();
    await app.listen(0, '127.0.0.1');
    const response = await fetch(`${await app.getUrl()}/ping`);
    assert.equal(await response.text(), 'pong');
    assert.equal(await firstValueFrom(app.get(BatchesServer).status), 'connecting');

    const client = app.get(BatchClient);
    await assert.rejects(client.applyAsync('late.task', { args: [0], timeout: 300 }), (error: Error) => {
      assert.ok(error instanceof PublishTimeoutError, String(error));
      assert.match(error.message, /not confirmed within 300 ms.*publishTimeout/s);
      return true;
    });

    await late.open();
    await statusOf(app, 'connected');
    await client.delay('late.task', 1);
    await app.get(Handler).waitForRequests(1);
    assert.deepEqual(
      app
        .get(Handler)
        .batches.flat()
        .map((request) => request.args),
      [[1]],
      'the send that timed out is not delivered later',
    );
  });

  it('stops for good on a wrong password, with one error naming it, while the app stays up', async () => {
    const logger = new RecordingLogger();
    const Handler = recorder('refused.task', { queue: suite.queue('refused') });
    const proxy = await LateBroker.reserve();
    suite.closeAfter(proxy);
    await proxy.open();
    const app = await hybridApp({ broker: brokerUrl({ password: 'not-the-password', port: proxy.port }) }, [Handler], logger);
    suite.closeAfter(app);
    await app.startAllMicroservices();
    await app.listen(0, '127.0.0.1');
    await statusOf(app, 'failed');
    const errors = () => logger.errors.filter((line) => /ACCESS_REFUSED/.test(line));
    assert.equal(errors().length, 1, logger.lines.join('\n'));
    assert.match(errors()[0], /refused the login \(ACCESS_REFUSED\)\. Fix the user name or password in the `broker` URL/);
    assert.equal(await (await fetch(`${await app.getUrl()}/ping`)).text(), 'pong');
    await assert.rejects(app.get(BatchClient).delay('refused.task', 1), BrokerFailedError);
    // Three reconnect intervals: a worker that kept retrying would have connected again.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    assert.equal(proxy.connections, 1);
  });

  it('with waitForBroker, listen() rejects on a wrong password instead of retrying', async () => {
    const Handler = recorder('wait.task', { queue: suite.queue('wait') });
    await assert.rejects(
      startWorker({ broker: brokerUrl({ password: 'not-the-password' }), waitForBroker: true }, [Handler], new RecordingLogger()),
      (error: Error) => error instanceof BrokerFailedError && /ACCESS_REFUSED/.test(error.message),
    );
  });

  it('names a virtual host that does not exist', async () => {
    const Handler = recorder('vhost.task', { queue: suite.queue('vhost') });
    await assert.rejects(
      startWorker({ broker: brokerUrl({ vhost: 'no-such-vhost' }), waitForBroker: true }, [Handler], new RecordingLogger()),
      (error: Error) => error instanceof BrokerFailedError && /virtual host \(NOT_ALLOWED\)\. Fix the vhost/.test(error.message),
    );
  });

  it('names a TLS failure instead of retrying it (amqps:// to the plain AMQP port)', async () => {
    const Handler = recorder('tls.task', { queue: suite.queue('tls') });
    const url = new URL(AMQP_URL);
    url.protocol = 'amqps:';
    await assert.rejects(
      startWorker({ broker: url.toString(), waitForBroker: true }, [Handler], new RecordingLogger()),
      (error: Error) =>
        error instanceof BrokerFailedError &&
        /^TLS with RabbitMQ at .* failed \(ERR_SSL_.*The port does not speak TLS/s.test(error.message),
    );
  });

  it('stops with the difference and the fix when the queue exists with other arguments', async () => {
    const queue = suite.queue('conflict');
    await suite.rabbit.channel.assertQueue(queue, { durable: true, arguments: { 'x-max-priority': 10 } });
    const Handler = recorder('conflict.task', { queue });
    await assert.rejects(startWorker({ broker: AMQP_URL, waitForBroker: true }, [Handler], new RecordingLogger()), (error: Error) => {
      assert.ok(error instanceof BrokerFailedError, String(error));
      assert.match(error.message, new RegExp(`Queue '${queue.replace(/\./g, '\\.')}' exists on RabbitMQ with other properties`));
      assert.match(error.message, /x-max-priority/);
      assert.match(error.message, /rabbitmqctl delete_queue/);
      return true;
    });
    // Without waitForBroker the app starts and the worker reports the same, once.
    const logger = new RecordingLogger();
    const app = await hybridApp({ broker: AMQP_URL }, [recorder('conflict.task', { queue })], logger);
    suite.closeAfter(app);
    await app.startAllMicroservices();
    await statusOf(app, 'failed');
    assert.equal(logger.errors.filter((line) => line.includes('other properties')).length, 1, logger.lines.join('\n'));
  });
});

describe('shutdownTimeout', () => {
  const suite = rabbitSuite();

  it('bounds draining when results cannot be stored, and leaves the messages to RabbitMQ', async () => {
    const queue = suite.queue('wedged');
    const logger = new RecordingLogger();
    const Handler = recorder('wedged.task', { flushEvery: 5, flushInterval: 60_000, queue }, (requests) =>
      requests.map((request) => request.args[0]),
    );
    // Nothing listens on port 1: every result write waits for a Redis that never comes.
    const app = await startWorker(
      { broker: AMQP_URL, resultBackend: 'redis://127.0.0.1:1/0', defaultQueue: queue, shutdownTimeout: 1_000 },
      [Handler],
      logger,
    );
    for (let i = 0; i < 5; i++) await app.get(BatchClient).delay('wedged.task', i);
    await app.get(Handler).waitForRequests(5);
    await app.close();
    const timedOut = logger.errors.find((line) => line.includes('shutdownTimeout'));
    assert.ok(timedOut, logger.lines.join('\n'));
    assert.match(timedOut, /within shutdownTimeout \(1000 ms\): stopping with 5 message\(s\) unacked/);
    await waitFor(async () => (await queueCounts(queue)).ready === 5, 'the 5 messages back in the queue');
  });
});
