import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type BatchesModuleOptions } from 'nestjs-batches';
import { BatchesConfigError } from '../libs/batches/src/options/option-checks.js';
import { resolveModuleOptions } from '../libs/batches/src/options/resolve-module-options.js';

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
