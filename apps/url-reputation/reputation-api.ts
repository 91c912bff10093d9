import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Reputation {
  trustworthiness: number;
  childSafety: number;
}

/**
 * A stand-in for a Web-of-Trust style reputation API (there is no internet here): one GET
 * answers for many hosts at once, `/reputation?hosts=a.com/b.org/`. Scores are a hash of the host.
 */
export class ReputationApi {
  calls = 0;
  private server?: Server;

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (url.pathname !== '/reputation') {
        res.writeHead(404).end();
        return;
      }
      this.calls++;
      const hosts = (url.searchParams.get('hosts') ?? '').split('/').filter(Boolean);
      const body = Object.fromEntries(hosts.map((host) => [host, score(host)]));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/reputation`;
  }

  async stop(): Promise<void> {
    await new Promise((resolve) => this.server?.close(resolve));
  }
}

function score(host: string): Reputation {
  const digest = createHash('sha256').update(host).digest();
  return { trustworthiness: digest[0] % 101, childSafety: digest[1] % 101 };
}
