import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type INestMicroservice, type Provider } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Redis } from 'ioredis';
import {
  BatchClient,
  BatchesModule,
  BatchesServer,
  BrokerFailedError,
  RedisResultBackend,
  type BatchesModuleOptions,
  type BatchesTlsOptions,
} from 'nestjs-batches';
import { AMQP_URL, rabbitSuite } from './support/rabbitmq.js';
import { makePki, openssl, type Pki } from './support/test-pki.js';
import { amqpsUrl, REDIS, redissUrl, TlsProxy } from './support/tls-proxy.js';
import { waitFor } from './support/wait.js';
import { recorder, RecordingLogger } from './support/worker-app.js';

const AMQP = new URL(AMQP_URL);

/** A worker as a user starts one; closed again when listen() rejects, so nothing is left connecting. */
async function startWorker(options: BatchesModuleOptions, providers: Provider[], logger: RecordingLogger): Promise<INestMicroservice> {
  const moduleRef = await Test.createTestingModule({ imports: [BatchesModule.forRoot(options)], providers })
    .setLogger(logger)
    .compile();
  const app = moduleRef.createNestMicroservice({ strategy: moduleRef.get(BatchesServer) });
  try {
    await app.listen();
  } catch (error) {
    await app.close().catch(() => undefined);
    throw error;
  }
  return app;
}

/** The one `BrokerFailedError` a worker started with `waitForBroker` rejects with. */
async function brokerFailure(options: BatchesModuleOptions, queue: string): Promise<{ error: BrokerFailedError; logger: RecordingLogger }> {
  const logger = new RecordingLogger();
  const Handler = recorder('tls.refused', { queue });
  let failure: unknown;
  await startWorker({ waitForBroker: true, defaultQueue: queue, ...options }, [Handler], logger).then(
    (app) => app.close(),
    (error: unknown) => (failure = error),
  );
  assert.ok(failure instanceof BrokerFailedError, `expected a BrokerFailedError, got ${String(failure)}`);
  return { error: failure, logger };
}

describe('TLS to RabbitMQ and Redis (amqps://, rediss://) through TLS proxies', { skip: openssl.skip }, () => {
  const suite = rabbitSuite();
  let dir: string;
  let pki: Pki;
  let rabbit: TlsProxy;
  let redisProxy: TlsProxy;
  let redis: Redis;
  const resultKeys: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nestjs-batches-tls-'));
    pki = await makePki(dir);
    rabbit = await TlsProxy.start(pki, AMQP, 5672);
    redisProxy = await TlsProxy.start(pki, REDIS, 6379);
    redis = new Redis(REDIS.toString());
  });
  after(async () => {
    if (resultKeys.length > 0) await redis?.del(...resultKeys);
    redis?.disconnect();
    await rabbit?.close();
    await redisProxy?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Mutual TLS as a client of the test CA: trusts it, presents the client certificate. */
  const mutualTls = (extra: BatchesTlsOptions = {}): BatchesTlsOptions => ({
    ca: pki.ca,
    cert: pki.clientCert,
    key: pki.clientKey,
    passphrase: pki.clientPassphrase,
    ...extra,
  });

  it('consumes over amqps:// and stores and reads results over rediss://, with mutual TLS on both', async () => {
    const queue = suite.queue('tls');
    const Handler = recorder('tls.double', { queue, flushEvery: 3, flushInterval: 200 }, (requests) =>
      requests.map((request) => Number(request.args[0]) * 2),
    );
    const brokerAttempts = rabbit.attempts;
    const app = await startWorker(
      {
        broker: amqpsUrl(rabbit),
        brokerTls: mutualTls(),
        // An IP in the URL, the certificate's DNS name as servername: SNI and verification use it.
        resultBackend: redissUrl(redisProxy, '127.0.0.1'),
        resultBackendTls: mutualTls({ servername: 'localhost' }),
        defaultQueue: queue,
        waitForBroker: true,
      },
      [Handler],
      new RecordingLogger(),
    );
    suite.closeAfter(app);
    const client = app.get(BatchClient);
    const sent = await Promise.all([1, 2, 3].map((n) => client.delay<number>('tls.double', n)));
    resultKeys.push(...sent.map((result) => `celery-task-meta-${result.id}`));
    assert.deepEqual(await Promise.all(sent.map((result) => result.get({ timeout: 10_000 }))), [2, 4, 6]);
    assert.equal(app.get(Handler).received, 3);

    // The results are in the machine's Redis, in Celery's format, written through the TLS proxy.
    const stored = JSON.parse((await redis.get(`celery-task-meta-${sent[0].id}`)) ?? 'null') as { status: string; result: unknown };
    assert.deepEqual({ status: stored.status, result: stored.result }, { status: 'SUCCESS', result: 2 });
    assert.ok(rabbit.attempts > brokerAttempts, 'the worker reached RabbitMQ through the TLS proxy');
    assert.ok(rabbit.clients.includes('nestjs-batches-client'), `RabbitMQ side saw client certificates ${rabbit.clients.join(', ')}`);
    assert.ok(redisProxy.clients.length >= 1 && redisProxy.clients.every((cn) => cn === 'nestjs-batches-client'));
    assert.ok(redisProxy.servernames.length >= 1 && redisProxy.servernames.every((name) => name === 'localhost'), 'SNI from `servername`');
    await app.close();
  });

  it('a wrong CA fails once with a BrokerFailedError naming TLS, and is not retried', async () => {
    const attempts = rabbit.attempts;
    const { error, logger } = await brokerFailure(
      { broker: amqpsUrl(rabbit), brokerTls: mutualTls({ ca: pki.otherCa }) },
      suite.queue('tls-wrong-ca'),
    );
    assert.match(
      error.message,
      /^TLS with RabbitMQ at amqps:\/\/guest:\*\*\*@localhost:\d+.* failed \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN)/,
    );
    assert.match(error.message, /not trusted: set `brokerTls\.ca`/);
    assert.equal(logger.errors.filter((line) => line.startsWith('TLS with RabbitMQ')).length, 1, logger.lines.join('\n'));
    assert.equal(rabbit.attempts - attempts, 1);
    // An observation window, not a synchronisation: a retrying worker (reconnectTimeInSeconds 1)
    // would have connected twice more by now.
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    assert.equal(rabbit.attempts - attempts, 1, 'no reconnect after a TLS failure');
  });

  it('without the client certificate the proxy requires, fails clearly', async () => {
    const refused = rabbit.refused.length;
    const { error } = await brokerFailure({ broker: amqpsUrl(rabbit), brokerTls: { ca: pki.ca } }, suite.queue('tls-no-cert'));
    assert.match(error.message, /^TLS with RabbitMQ at .* failed \(ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED/);
    assert.match(error.message, /set `brokerTls\.cert` and `brokerTls\.key`/);
    await waitFor(() => rabbit.refused.length > refused, 'the proxy to report the refused handshake', 5_000);
    assert.match(rabbit.refused.at(-1)?.message ?? '', /peer did not return a certificate/);
  });

  it('honours servername: sent as SNI and checked against the certificate instead of the URL host', async () => {
    // The URL names an IP; with servername the certificate's DNS name is sent and verified.
    const queue = suite.queue('tls-sni');
    const seen = rabbit.servernames.length;
    const app = await startWorker(
      {
        broker: amqpsUrl(rabbit, '127.0.0.1'),
        brokerTls: mutualTls({ servername: 'localhost' }),
        defaultQueue: queue,
        waitForBroker: true,
      },
      [recorder('tls.sni', { queue })],
      new RecordingLogger(),
    );
    suite.closeAfter(app);
    assert.deepEqual([...new Set(rabbit.servernames.slice(seen))], ['localhost']);
    await app.close();

    // A servername the certificate does not cover fails verification, although the URL's host matches it.
    const { error } = await brokerFailure(
      { broker: amqpsUrl(rabbit), brokerTls: mutualTls({ servername: 'rabbit.invalid' }) },
      suite.queue('tls-sni-wrong'),
    );
    assert.match(error.message, /^TLS with RabbitMQ at .* failed \(ERR_TLS_CERT_ALTNAME_INVALID: .*rabbit\.invalid/);
    assert.match(error.message, /set `brokerTls\.servername`/);
    assert.ok(rabbit.servernames.includes('rabbit.invalid'), 'the wrong servername was sent as SNI');
  });

  it('RedisResultBackend takes TLS as a third argument, and refuses it for redis://', async () => {
    const backend = new RedisResultBackend(redissUrl(redisProxy), 60_000, { tls: mutualTls() });
    suite.closeAfter(backend);
    await waitFor(
      () =>
        backend.ping().then(
          () => true,
          () => false,
        ),
      'the rediss:// backend to answer PING',
      10_000,
    );
    assert.throws(() => new RedisResultBackend(REDIS.toString(), 60_000, { tls: { ca: pki.ca } }), /TLS options need a 'rediss:\/\/' URL/);
  });
});
