import { createServer, connect as connectTcp, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of a real service (the idea of broker-down.test.ts's LateBroker): `close()`
 * stops listening and destroys every open socket, so to the app the service is gone; `open()` on the
 * same port brings it back. This is how the health tests "stop" RabbitMQ and Redis without disturbing
 * anything else that uses the machine's services.
 */
export class ServiceProxy {
  private server?: Server;
  private readonly sockets = new Set<Socket>();

  private constructor(
    readonly port: number,
    private readonly target: URL,
    private readonly defaultPort: number,
  ) {}

  static async start(target: string, defaultPort: number): Promise<ServiceProxy> {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    const proxy = new ServiceProxy(port, new URL(target), defaultPort);
    await proxy.open();
    return proxy;
  }

  /** The service's URL with the proxy's host and port. */
  url(): string {
    const url = new URL(this.target);
    url.hostname = '127.0.0.1';
    url.port = String(this.port);
    return url.toString();
  }

  async open(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connectTcp(Number(this.target.port || this.defaultPort), this.target.hostname);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('error', () => undefined);
        socket.on('close', () => {
          this.sockets.delete(socket);
          // Either side gone: the other goes too, as with a real service.
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.server = server;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    if (server) await new Promise((resolve) => server.close(resolve));
  }
}
