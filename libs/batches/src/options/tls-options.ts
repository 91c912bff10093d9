import { isIP } from 'node:net';
import type { BatchesTlsOptions } from '../batches.options.js';
import { BatchesConfigError, booleanOption, describeValue, scheme } from './option-checks.js';

const TLS_KEYS = ['ca', 'cert', 'key', 'passphrase', 'servername', 'rejectUnauthorized'];

/** The password of a URL as `***`, for messages. */
function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}

/** Validates `brokerTls` / `resultBackendTls`: TLS URLs only, known keys, PEM contents, cert with key. */
export function tlsOptions(
  where: string,
  option: string,
  value: unknown,
  urlOption: string,
  urls: string[],
  tlsScheme: 'amqps:' | 'rediss:',
): BatchesTlsOptions {
  const keys = TLS_KEYS.join(', ');
  if (typeof value !== 'object' || value === null || Array.isArray(value) || Buffer.isBuffer(value)) {
    throw new BatchesConfigError(
      `${where}: \`${option}\` must be an object with some of ${keys}, got ${Buffer.isBuffer(value) ? 'a Buffer' : describeValue(value)}. ` +
        `Put the PEM contents in its fields, e.g. \`${option}: { ca: readFileSync('ca.pem') }\`.`,
    );
  }
  const unknown = Object.keys(value).find((key) => !TLS_KEYS.includes(key));
  if (unknown !== undefined) {
    throw new BatchesConfigError(`${where}: \`${option}.${unknown}\` is not a TLS option. Use ${keys}.`);
  }
  const plain = urls.find((url) => scheme(url) !== tlsScheme);
  if (plain !== undefined) {
    throw new BatchesConfigError(
      `${where}: \`${option}\` is set but \`${urlOption}\` ${JSON.stringify(redactUrl(plain))} does not use TLS. ` +
        `Use a '${tlsScheme}//' URL (the ${tlsScheme === 'amqps:' ? 'RabbitMQ TLS listener, port 5671 by default' : 'Redis TLS port'}), or remove \`${option}\`.`,
    );
  }
  const tls = value as Record<string, unknown>;
  const resolved: BatchesTlsOptions = {};
  if (tls.ca !== undefined) {
    const cas = Array.isArray(tls.ca) ? tls.ca : [tls.ca];
    cas.forEach((ca) => pem(where, `${option}.ca`, ca, 'CERTIFICATE-----', 'the CA certificate'));
    resolved.ca = tls.ca as BatchesTlsOptions['ca'];
  }
  if (tls.cert !== undefined) resolved.cert = pem(where, `${option}.cert`, tls.cert, 'CERTIFICATE-----', 'the client certificate');
  if (tls.key !== undefined)
    resolved.key = pem(where, `${option}.key`, tls.key, 'PRIVATE KEY-----', "the client certificate's private key");
  if ((resolved.cert === undefined) !== (resolved.key === undefined)) {
    const [given, missing] = resolved.cert === undefined ? ['key', 'cert'] : ['cert', 'key'];
    throw new BatchesConfigError(
      `${where}: \`${option}.${given}\` is set without \`${option}.${missing}\`. A client certificate needs both: \`cert\` and its private \`key\`.`,
    );
  }
  if (tls.passphrase !== undefined) {
    if (typeof tls.passphrase !== 'string') {
      throw new BatchesConfigError(`${where}: \`${option}.passphrase\` must be a string, got ${describeValue(tls.passphrase)}.`);
    }
    if (resolved.key === undefined) {
      throw new BatchesConfigError(
        `${where}: \`${option}.passphrase\` decrypts \`${option}.key\`, which is not set. Give the key, or remove the passphrase.`,
      );
    }
    resolved.passphrase = tls.passphrase;
  }
  if (tls.servername !== undefined) {
    if (typeof tls.servername !== 'string' || tls.servername.length === 0 || isIP(tls.servername) !== 0) {
      throw new BatchesConfigError(
        `${where}: \`${option}.servername\` must be the host name on the server's certificate, got ${describeValue(tls.servername)}. ` +
          'An IP address cannot be sent as SNI: put it in the URL instead.',
      );
    }
    resolved.servername = tls.servername;
  }
  if (tls.rejectUnauthorized !== undefined)
    resolved.rejectUnauthorized = booleanOption(where, `${option}.rejectUnauthorized`, tls.rejectUnauthorized);
  return resolved;
}

/** Checks that `value` holds PEM text of the expected kind (not a file path, not the other half of the pair). */
function pem(where: string, option: string, value: unknown, marker: string, what: string): string | Buffer {
  if (typeof value !== 'string' && !Buffer.isBuffer(value)) {
    throw new BatchesConfigError(
      `${where}: \`${option}\` must be PEM text as a string or Buffer, got ${describeValue(value)}. Pass ${what}, e.g. readFileSync('${what.includes('key') ? 'client.key' : 'ca.pem'}').`,
    );
  }
  const text = typeof value === 'string' ? value : value.toString('latin1');
  if (!text.includes('-----BEGIN ') || !text.includes(marker)) {
    const hint = text.includes('-----BEGIN ')
      ? `it holds PEM of another kind (no '${marker.replace(/-+$/, '')}'); check that cert, key and ca are not swapped`
      : `it is not PEM${text.length < 256 && !/\n/.test(text) ? ' (a file path?)' : ''}; pass the file's contents, e.g. readFileSync(path), not its path`;
    throw new BatchesConfigError(`${where}: \`${option}\` must be ${what} in PEM format, but ${hint}.`);
  }
  return value;
}
