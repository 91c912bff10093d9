import assert from 'node:assert/strict';
import { connect as connectTcp, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { AMQP_URL } from './rabbitmq.js';
import { type Pki } from './test-pki.js';

/** The machine's Redis, plain text: what a `rediss://` proxy pipes to. */
export const REDIS = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0');

/**
 * A TLS listener in front of a plain-text service (the machine's RabbitMQ and Redis listen without
 * TLS and are not reconfigured): terminates TLS, requires a client certificate signed by the test CA
 * (mutual TLS), and pipes each connection to the service. Records what each client presented.
 */
export class TlsProxy {
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
export function amqpsUrl(proxy: TlsProxy, host = 'localhost'): string {
  return throughProxy(AMQP_URL, 'amqps:', proxy, host);
}

/** `rediss://` to the proxy, with the test Redis's database (and password, if any). */
export function redissUrl(proxy: TlsProxy, host = 'localhost'): string {
  return throughProxy(REDIS.toString(), 'rediss:', proxy, host);
}

/** `url` with its TLS scheme, to the proxy at `host`. */
function throughProxy(url: string, protocol: string, proxy: TlsProxy, host: string): string {
  const proxied = new URL(url);
  proxied.protocol = protocol;
  proxied.hostname = host;
  proxied.port = String(proxy.port);
  return proxied.toString();
}
