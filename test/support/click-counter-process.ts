import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AMQP_URL } from './rabbitmq.js';
import { waitFor } from './wait.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

/** The click-counter example, run as a user runs it (`node dist/apps/click-counter/main.js`), as a hybrid app on RabbitMQ. */
export class ClickCounterProcess {
  output = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;

  constructor(queue: string) {
    this.child = spawn(process.execPath, [join(ROOT, 'dist/apps/click-counter/main.js')], {
      cwd: ROOT,
      env: { ...process.env, BROKER_URL: AMQP_URL, QUEUE: queue, HTTP_PORT: '0', CLICKS: '0', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    for (const stream of [this.child.stdout, this.child.stderr]) stream?.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /** The page's URL, once the app prints it. */
  async monitorUrl(): Promise<string> {
    await waitFor(() => /monitor: (\S+)/.test(this.output), `the example to start (output: ${this.output.slice(-2_000)})`, 30_000);
    return (/monitor: (\S+)/.exec(this.output) as RegExpExecArray)[1].replace('localhost', '127.0.0.1');
  }

  /** SIGTERM (a graceful close), and SIGKILL if it has not exited `within` ms later. Resolves with how it exited. */
  async stop(within = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; killed: boolean }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const late = Symbol('late');
    let timer: NodeJS.Timeout | undefined;
    const exit = await Promise.race([this.exited, new Promise<typeof late>((resolve) => (timer = setTimeout(resolve, within, late)))]);
    clearTimeout(timer);
    if (exit !== late) return { ...exit, killed: false };
    this.child.kill('SIGKILL');
    return { ...(await this.exited), killed: true };
  }
}
