import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect as connectTcp, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
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
import { BatchesConfigError } from '../libs/batches/src/options/option-checks.js';
import { resolveModuleOptions } from '../libs/batches/src/options/resolve-module-options.js';
import { AMQP_URL, rabbitSuite } from './support/rabbitmq.js';
import { waitFor } from './support/wait.js';
import { recorder, RecordingLogger } from './support/worker-app.js';

const run = promisify(execFile);
const AMQP = new URL(AMQP_URL);
const REDIS = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0');

/** PEM files of a test PKI: a CA, a server certificate for localhost, a client certificate, and an unrelated CA. */
interface Pki {
  ca: Buffer;
  serverCert: Buffer;
  serverKey: Buffer;
  clientCert: Buffer;
  /** The client key, encrypted with `clientPassphrase`. */
  clientKey: Buffer;
  clientPassphrase: string;
  /** A CA that signed nothing here: trusting it alone must fail. */
  otherCa: Buffer;
}

/** Why the suite is skipped: no openssl on this machine. */
const openssl = await run('openssl', ['version'], { timeout: 5_000 }).then(
  ({ stdout }) => ({ skip: false as const, version: stdout.trim() }),
  (error: Error) => ({ skip: `openssl is not available (${error.message}); it generates the test CA` }),
);

async function makePki(dir: string): Promise<Pki> {
  const ssl = (...args: string[]) => run('openssl', args, { cwd: dir, timeout: 15_000 });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const caExt = ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'];
  await ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=nestjs-batches test CA', ...caExt);
  await ssl('req', '-x509', ...ec, '-keyout', 'other-ca.key', '-out', 'other-ca.pem', '-days', '2', '-subj', '/CN=unrelated CA', ...caExt);
  const sign = async (name: string, subject: string, extensions: string): Promise<void> => {
    await writeFile(join(dir, `${name}.ext`), extensions);
    await ssl('req', '-new', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject);
    await ssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-set_serial',
      String(Date.now()),
      '-days',
      '2',
      '-out',
      `${name}.pem`,
      '-extfile',
      `${name}.ext`,
    );
  };
  await sign('server', '/CN=localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  await sign('client', '/CN=nestjs-batches-client', 'extendedKeyUsage=clientAuth\n');
  const clientPassphrase = 'client-key-secret';
  await ssl('pkey', '-in', 'client.key', '-aes256', '-passout', `pass:${clientPassphrase}`, '-out', 'client.enc.key');
  const read = (file: string) => readFile(join(dir, file));
  return {
    ca: await read('ca.pem'),
    serverCert: await read('server.pem'),
    serverKey: await read('server.key'),
    clientCert: await read('client.pem'),
    clientKey: await read('client.enc.key'),
    clientPassphrase,
    otherCa: await read('other-ca.pem'),
  };
}

/**
 * A TLS listener in front of a plain-text service (the machine's RabbitMQ and Redis listen without
 * TLS and are not reconfigured): terminates TLS, requires a client certificate signed by the test CA
 * (mutual TLS), and pipes each connection to the service. Records what each client presented.
 */
class TlsProxy {
  /** TCP connections accepted, before any handshake: counts connection attempts. */
  attempts = 0;
  /** SNI host names clients sent (a client that sends none adds nothing). */
  readonly servernames: string[] = [];
  /** Subject CN of each accepted client certificate. */
  readonly clients: string[] = [];
  /** Handshakes the proxy refused (no or untrusted client certificate). */
  readonly refused: Error[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly server: TlsServer;
  port = 0;

  private constructor(pki: Pki, upstream: URL, defaultPort: number) {
    this.server = createTlsServer({
      key: pki.serverKey,
      cert: pki.serverCert,
      ca: pki.ca,
      requestCert: true,
      rejectUnauthorized: true,
      // Called for each client hello with SNI, before the handshake can fail: records the name, keeps the certificate.
      SNICallback: (servername, done) => {
        this.servernames.push(servername);
        done(null, undefined);
      },
    });
    this.server.on('connection', (socket: Socket) => {
      this.attempts++;
      this.track(socket);
    });
    this.server.on('tlsClientError', (error: Error) => this.refused.push(error));
    this.server.on('secureConnection', (client: TLSSocket) => {
      this.clients.push(String(client.getPeerCertificate().subject?.CN));
      const service = connectTcp(Number(upstream.port || defaultPort), upstream.hostname);
      this.track(client);
      this.track(service);
      client.pipe(service).pipe(client);
    });
  }

  static async start(pki: Pki, upstream: URL, defaultPort: number): Promise<TlsProxy> {
    const proxy = new TlsProxy(pki, upstream, defaultPort);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    const address = proxy.server.address();
    assert.ok(address && typeof address === 'object');
    proxy.port = address.port;
    return proxy;
  }

  private track(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => this.sockets.delete(socket));
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** `amqps://` to the proxy, with the test broker's credentials and vhost. */
function amqpsUrl(proxy: TlsProxy, host = 'localhost'): string {
  const url = new URL(AMQP_URL);
  url.protocol = 'amqps:';
  url.hostname = host;
  url.port = String(proxy.port);
  return url.toString();
}

/** `rediss://` to the proxy, with the test Redis's database (and password, if any). */
function redissUrl(proxy: TlsProxy, host = 'localhost'): string {
  const url = new URL(REDIS);
  url.protocol = 'rediss:';
  url.hostname = host;
  url.port = String(proxy.port);
  return url.toString();
}

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

/** Asserts that resolving `options` throws a BatchesConfigError matching every pattern. */
const refuses = (options: Record<string, unknown>, ...patterns: RegExp[]) =>
  assert.throws(
    () => resolveModuleOptions(options as BatchesModuleOptions),
    (error: unknown) => {
      assert.ok(error instanceof BatchesConfigError, String(error));
      for (const pattern of patterns) assert.match(error.message, pattern);
      return true;
    },
  );

describe('TLS options, validated at startup', () => {
  const ca = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
  const key = '-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n';

  it('takes strings and Buffers for amqps:// and rediss://, keeping only TLS keys', () => {
    const resolved = resolveModuleOptions({
      broker: ['amqps://a:5671', 'amqps://b:5671'],
      brokerTls: { ca: [ca, Buffer.from(ca)], cert: Buffer.from(ca), key, passphrase: 'p', servername: 'rabbit', rejectUnauthorized: true },
      resultBackend: 'rediss://redis:6380/0',
      resultBackendTls: { ca: Buffer.from(ca), rejectUnauthorized: false },
    });
    assert.deepEqual(Object.keys(resolved.brokerTls ?? {}).toSorted(), [
      'ca',
      'cert',
      'key',
      'passphrase',
      'rejectUnauthorized',
      'servername',
    ]);
    assert.equal(resolved.resultBackendTls?.rejectUnauthorized, false);
    assert.equal(resolveModuleOptions({ broker: 'amqps://a' }).brokerTls, undefined, 'absent when unset');
  });

  it('refuses TLS options for a URL that does not use TLS, naming the scheme to use', () => {
    refuses(
      { broker: 'amqp://guest:secret@rabbit:5672', brokerTls: { ca } },
      /`brokerTls` is set but `broker` "amqp:\/\/guest:\*\*\*@rabbit:5672" does not use TLS/,
      /Use a 'amqps:\/\/' URL/,
    );
    refuses({ broker: ['amqps://a', 'amqp://b'], brokerTls: { ca } }, /"amqp:\/\/b" does not use TLS/);
    refuses({ brokerTls: { ca } }, /`broker` "memory:\/\/" does not use TLS/);
    refuses(
      { resultBackend: 'redis://127.0.0.1:6379/0', resultBackendTls: { ca } },
      /`resultBackendTls` is set but `resultBackend`/,
      /'rediss:\/\/'/,
    );
  });

  it('names the field and the fix for paths, swapped or half client certificates, and unknown keys', () => {
    refuses({ broker: 'amqps://a', brokerTls: { ca: '/etc/ssl/ca.pem' } }, /`brokerTls\.ca`.*not PEM \(a file path\?\).*readFileSync/);
    refuses({ broker: 'amqps://a', brokerTls: { cert: key, key } }, /`brokerTls\.cert`.*another kind.*swapped/);
    refuses({ broker: 'amqps://a', brokerTls: { cert: ca } }, /`brokerTls\.cert` is set without `brokerTls\.key`/);
    refuses({ broker: 'amqps://a', brokerTls: { passphrase: 'p' } }, /`brokerTls\.passphrase` decrypts `brokerTls\.key`, which is not set/);
    refuses({ broker: 'amqps://a', brokerTls: { servername: '127.0.0.1' } }, /`brokerTls\.servername`.*IP address cannot be sent as SNI/);
    refuses({ broker: 'amqps://a', brokerTls: { rejectUnauthorised: false } }, /`brokerTls\.rejectUnauthorised` is not a TLS option/);
    refuses({ broker: 'amqps://a', brokerTls: { rejectUnauthorized: 'no' } }, /`brokerTls\.rejectUnauthorized` must be true or false/);
    refuses({ broker: 'amqps://a', brokerTls: Buffer.from(ca) }, /`brokerTls` must be an object.*got a Buffer/);
    refuses({ resultBackend: 'rediss://r', resultBackendTls: { ca: 42 } }, /`resultBackendTls\.ca` must be PEM text/);
  });
});

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
