import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** PEM files of a test PKI: a CA, a server certificate for localhost, a client certificate, and an unrelated CA. */
export interface Pki {
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
export const openssl = await run('openssl', ['version'], { timeout: 5_000 }).then(
  ({ stdout }) => ({ skip: false as const, version: stdout.trim() }),
  (error: Error) => ({ skip: `openssl is not available (${error.message}); it generates the test CA` }),
);

export async function makePki(dir: string): Promise<Pki> {
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
