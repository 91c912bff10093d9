/** One node of a test cluster: booting it, stopping it (a crash or a clean stop) and `rabbitmqctl` against it. */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { nodeEnv, type ClusterSettings, type NodeLayout } from './cluster-node-config.js';

const run = promisify(execFile);

/** How a node goes down: `'kill'` SIGKILLs its VM (a crash: sockets reset, no goodbye); `'app'` is `rabbitmqctl stop_app` (a clean stop, the VM stays up). */
export type StopMode = 'kill' | 'app';

/** One node of the cluster. */
export class ClusterNode implements NodeLayout {
  /** Its AMQP URL (guest/guest over 127.0.0.1, which RabbitMQ allows the guest user). */
  readonly url: string;
  private process?: ChildProcess;
  private exited?: Promise<void>;
  private appStopped = false;

  constructor(
    /** Erlang node name, `<prefix>-<n>@localhost`. */
    readonly name: string,
    /** AMQP port on 127.0.0.1. */
    readonly port: number,
    /** Erlang distribution port. */
    readonly distPort: number,
    /** Its config, mnesia and log directory. */
    readonly dir: string,
    private readonly cluster: ClusterSettings,
  ) {
    this.url = `amqp://guest:guest@127.0.0.1:${port}`;
  }

  /** True while the node serves AMQP: booted and not stopped by `stop()`. */
  get running(): boolean {
    return this.process !== undefined && !this.appStopped;
  }

  /** Its log file, for diagnostics. */
  get logFile(): string {
    return join(this.dir, 'log', `${this.name}.log`);
  }

  /** Runs `rabbitmqctl -n <this node> …args` and returns its stdout. */
  async ctl(...args: string[]): Promise<string> {
    const { stdout } = await run(join(this.cluster.scripts, 'rabbitmqctl'), ['-n', this.name, ...args], {
      env: this.cluster.env,
      timeout: 120_000,
    });
    return stdout;
  }

  /** Boots the VM (first start, or after a kill) or starts the app again (after `stop('app')`); resolves once it serves AMQP. */
  async start(): Promise<void> {
    if (this.appStopped) {
      await this.ctl('start_app');
      await this.ctl('await_startup', '--timeout', String(this.cluster.bootTimeout / 1000));
      this.appStopped = false;
      return;
    }
    if (this.process) return;
    const pidFile = join(this.dir, 'node.pid');
    rmSync(pidFile, { force: true });
    const output = openSync(join(this.dir, 'stdout.log'), 'a');
    // A process group of its own, so that killing it takes exactly the script and its VM.
    const child = spawn(join(this.cluster.scripts, 'rabbitmq-server'), [], {
      env: nodeEnv(this, this.cluster.env, pidFile),
      cwd: this.dir,
      detached: true,
      stdio: ['ignore', output, output],
    });
    closeSync(output);
    this.process = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    void this.exited.then(() => {
      if (this.process === child) this.process = undefined;
    });
    const died = this.exited.then(() => {
      throw new Error(`RabbitMQ node ${this.name} exited while booting; see ${this.logFile}:\n${this.logTail()}`);
    });
    // `rabbitmqctl wait` waits for the pid file, then for the app to start in that process.
    const booted = this.ctl('wait', '--timeout', String(this.cluster.bootTimeout / 1000), pidFile);
    try {
      await Promise.race([booted, died]);
    } catch (error) {
      await this.kill();
      throw error;
    } finally {
      died.catch(() => undefined);
      booted.catch(() => undefined);
    }
  }

  /** Takes the node down (`'kill'` by default: a crash). Resolves once it is down. */
  async stop(mode: StopMode = 'kill'): Promise<void> {
    if (mode === 'app') {
      await this.ctl('stop_app');
      this.appStopped = true;
      return;
    }
    await this.kill();
  }

  /** SIGKILLs the node's process group, synchronously (for the exit hook too). */
  killNow(): void {
    const pid = this.process?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }

  private async kill(): Promise<void> {
    this.killNow();
    await this.exited;
    this.process = undefined;
    this.appStopped = false;
  }

  private logTail(): string {
    return tail(this.logFile) || tail(join(this.dir, 'stdout.log'));
  }
}

/** The last lines of a file, or '' when there is none. */
function tail(file: string, lines = 20): string {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n') : '';
}
