/**
 * A RabbitMQ cluster of its own for a test suite, beside (never touching) the default node.
 *
 * ```ts
 * const skip = rabbitClusterMissing();
 * describe('…', { skip }, () => {
 *   let cluster: RabbitCluster;
 *   before(async () => (cluster = await startCluster({ nodes: 3 })));
 *   after(() => cluster?.close());
 *   it('…', async () => {
 *     const [a, b, c] = cluster.nodes;            // a.name 'nbt-1a2b3c-1@localhost', a.url 'amqp://guest:guest@127.0.0.1:<port>'
 *     startWorker({ broker: cluster.urls, … });   // every node's URL, for failover
 *     const leader = await cluster.queueLeader(queue);   // a quorum queue's leader; queueHome(queue): a classic queue's node
 *     await leader.stop();                        // SIGKILL: the node crashes ('app': rabbitmqctl stop_app)
 *     await leader.start();                       // boots again and rejoins the cluster
 *     await cluster.queueOnline(queue);           // the quorum members up again
 *   });
 * });
 * ```
 *
 * `rabbitClusterMissing()` gives the reason to skip when `rabbitmq-server` / `rabbitmqctl` are not
 * installed (they are looked for in /usr/lib/rabbitmq/bin, PATH and the sbin directories, or only
 * in `RABBITMQ_SCRIPTS` when that is set). Booting three nodes and joining them takes about 20 s
 * on two cores; a killed node boots again in about 7 s.
 *
 * Each node runs the real scripts with its own name, AMQP port, distribution port, config file,
 * mnesia and log directories and an empty plugins file (so no management or Prometheus port clashes
 * with the default node's), all in one temporary directory. The cluster's Erlang cookie is its own
 * (HOME is that directory), so neither the nodes nor the `rabbitmqctl` calls made here can reach
 * the default node. Nodes run in a process group of their own: stopping one kills exactly its
 * processes, and `close()` (or the test process exiting) kills every node it started and removes
 * the directory. (The nodes register with the machine's epmd; one is started, and left running,
 * only when none runs.)
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Debian's /usr/sbin scripts re-run themselves as the rabbitmq user (dropping HOME, so our cookie); these do not. */
const REAL_SCRIPTS = '/usr/lib/rabbitmq/bin';
const SBIN = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** The directory holding `rabbitmq-server` and `rabbitmqctl` (only `RABBITMQ_SCRIPTS` when set), or undefined. */
function scriptsDir(): string | undefined {
  const candidates =
    process.env.RABBITMQ_SCRIPTS !== undefined
      ? [process.env.RABBITMQ_SCRIPTS]
      : [REAL_SCRIPTS, ...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...SBIN];
  return candidates.find((dir) => ['rabbitmq-server', 'rabbitmqctl'].every((script) => executable(join(dir, script))));
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Why a cluster cannot be started here, or undefined when it can. */
export function rabbitClusterMissing(): string | undefined {
  if (scriptsDir()) return undefined;
  return 'rabbitmq-server and rabbitmqctl are not installed (apt-get install rabbitmq-server; .ci/run does this), so no cluster can be started';
}

export interface ClusterOptions {
  /** Nodes in the cluster (default 3). */
  nodes?: number;
  /** How long one node may take to boot, ms (default 90 s: three nodes booting at once on 2 cores are slow). */
  bootTimeout?: number;
}

/** How a node goes down: `'kill'` SIGKILLs its VM (a crash: sockets reset, no goodbye); `'app'` is `rabbitmqctl stop_app` (a clean stop, the VM stays up). */
export type StopMode = 'kill' | 'app';

/** One node of the cluster. */
export class ClusterNode {
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
    private readonly cluster: { readonly env: NodeJS.ProcessEnv; readonly scripts: string; readonly bootTimeout: number },
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
      env: this.nodeEnv(pidFile),
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

  private nodeEnv(pidFile: string): NodeJS.ProcessEnv {
    return {
      ...this.cluster.env,
      RABBITMQ_NODENAME: this.name,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(this.port),
      RABBITMQ_DIST_PORT: String(this.distPort),
      RABBITMQ_CONFIG_FILE: join(this.dir, 'rabbitmq.conf'),
      RABBITMQ_ADVANCED_CONFIG_FILE: join(this.dir, 'advanced.config'),
      RABBITMQ_MNESIA_BASE: join(this.dir, 'mnesia'),
      RABBITMQ_LOG_BASE: join(this.dir, 'log'),
      // No plugins: the management and Prometheus listeners would clash with the default node's ports.
      RABBITMQ_ENABLED_PLUGINS_FILE: join(this.dir, 'enabled_plugins'),
      RABBITMQ_PID_FILE: pidFile,
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    };
  }

  private logTail(): string {
    return tail(this.logFile) || tail(join(this.dir, 'stdout.log'));
  }
}

/** The last lines of a file, or '' when there is none. */
function tail(file: string, lines = 20): string {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n') : '';
}

/** A started cluster: its nodes, and the queries a fault-injection test needs. */
export class RabbitCluster {
  private readonly exitHook = (): void => this.killAll();
  private closed = false;

  constructor(
    readonly nodes: ClusterNode[],
    /** The temporary directory holding every node's files. */
    readonly dir: string,
  ) {
    process.once('exit', this.exitHook);
  }

  /** Every node's AMQP URL, in node order: what a client given the whole cluster is handed. */
  get urls(): string[] {
    return this.nodes.map((node) => node.url);
  }

  /** The nodes serving AMQP now. */
  running(): ClusterNode[] {
    return this.nodes.filter((node) => node.running);
  }

  /** The node of an Erlang node name (`rabbit@…` names of other clusters give undefined). */
  byName(name: string): ClusterNode | undefined {
    return this.nodes.find((node) => node.name === name);
  }

  /** The node listening on an AMQP port, or serving a URL (`amqp://…:<port>`). */
  byPort(portOrUrl: number | string): ClusterNode | undefined {
    const port = typeof portOrUrl === 'number' ? portOrUrl : Number(new URL(portOrUrl).port);
    return this.nodes.find((node) => node.port === port);
  }

  /** Runs `rabbitmqctl` against the first running node (cluster-wide listings answer from any node). */
  async ctl(...args: string[]): Promise<string> {
    const node = this.running()[0];
    if (!node) throw new Error('no node of the cluster is running');
    return node.ctl(...args);
  }

  /** `rabbitmqctl list_queues` of `queue` with the given info items (`leader`, `members`, `online`, `messages`, …). */
  async queueInfo(queue: string, ...items: string[]): Promise<Record<string, unknown> | undefined> {
    const rows = JSON.parse(await this.ctl('list_queues', '-q', '--formatter', 'json', 'name', ...items)) as Array<Record<string, unknown>>;
    return rows.find((row) => row.name === queue);
  }

  /** The node holding the quorum queue's leader, as the cluster reports it (undefined during an election). */
  async queueLeader(queue: string): Promise<ClusterNode | undefined> {
    const info = await this.queueInfo(queue, 'leader');
    const leader = typeof info?.leader === 'string' ? this.byName(info.leader) : undefined;
    return leader?.running ? leader : undefined;
  }

  /**
   * The running node a queue's process lives on (`list_queues --local` of each node): a classic
   * queue's home node, a quorum queue's leader. Undefined while that node is down.
   */
  async queueHome(queue: string): Promise<ClusterNode | undefined> {
    for (const node of this.running()) {
      const rows = JSON.parse(await node.ctl('list_queues', '-q', '--local', '--formatter', 'json', 'name')) as Array<{ name: string }>;
      if (rows.some((row) => row.name === queue)) return node;
    }
    return undefined;
  }

  /** The nodes whose member of the quorum queue is up. */
  async queueOnline(queue: string): Promise<ClusterNode[]> {
    const info = await this.queueInfo(queue, 'online');
    const online = Array.isArray(info?.online) ? (info.online as string[]) : [];
    return this.nodes.filter((node) => online.includes(node.name));
  }

  /**
   * The node a client connection is on, found by the client socket's local port (the broker's
   * `peer_port`), e.g. `socket.localPort` of an amqplib connection.
   */
  async connectionNode(clientPort: number): Promise<ClusterNode | undefined> {
    const rows = JSON.parse(await this.ctl('list_connections', '-q', '--formatter', 'json', 'peer_port', 'port')) as Array<{
      peer_port: number;
      port: number;
    }>;
    const row = rows.find((each) => each.peer_port === clientPort);
    return row ? this.byPort(row.port) : undefined;
  }

  /** Kills every node, removes the directory. Safe to call twice, and after a failed test. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.nodes.map((node) => node.stop('kill').catch(() => node.killNow())));
    rmSync(this.dir, { recursive: true, force: true });
    process.off('exit', this.exitHook);
  }

  /** Synchronous teardown for a test process that exits without `close()`. */
  private killAll(): void {
    for (const node of this.nodes) node.killNow();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** `count` distinct TCP ports free on 127.0.0.1 now (the nodes bind them moments later). */
async function freePorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  // All held open at once, so the system hands out distinct ones.
  await Promise.all(
    servers.map(
      (server) =>
        new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(0, '127.0.0.1', resolve);
        }),
    ),
  );
  const ports = servers.map((server) => (server.address() as AddressInfo).port);
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

/** The environment of every node and `rabbitmqctl` call: none of the machine's RabbitMQ or Erlang settings. */
function clusterEnv(dir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^(RABBITMQ_|ERL_)/.test(key) && !['HOME', 'CONF_ENV_FILE'].includes(key)) env[key] = value;
  }
  return {
    ...env,
    // Holds the cluster's own .erlang.cookie.
    HOME: dir,
    // Replaces /etc/rabbitmq/rabbitmq-env.conf, whose NODENAME is the default node's.
    RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
    ERL_EPMD_ADDRESS: '127.0.0.1',
  };
}

/**
 * Starts `nodes` RabbitMQ nodes named `nbt-<random>-<n>@localhost`, boots them at once, joins
 * every other node to the first (`stop_app`, `join_cluster`, `start_app`) and resolves once all
 * run as one cluster. On a failure everything started is torn down before it rejects.
 */
export async function startCluster(options: ClusterOptions = {}): Promise<RabbitCluster> {
  const scripts = scriptsDir();
  if (!scripts) throw new Error(rabbitClusterMissing());
  const count = options.nodes ?? 3;
  const bootTimeout = options.bootTimeout ?? 90_000;
  const dir = mkdtempSync(join(tmpdir(), 'nestjs-batches-cluster-'));
  const prefix = `nbt-${randomBytes(3).toString('hex')}`;
  writeFileSync(join(dir, '.erlang.cookie'), randomBytes(20).toString('hex').toUpperCase(), { mode: 0o400 });
  writeFileSync(join(dir, 'rabbitmq-env.conf'), '');
  const shared = { env: clusterEnv(dir), scripts, bootTimeout };
  const ports = await freePorts(2 * count);
  const nodes = Array.from({ length: count }, (_, index) => {
    const node = new ClusterNode(
      `${prefix}-${index + 1}@localhost`,
      ports[2 * index],
      ports[2 * index + 1],
      join(dir, `node-${index + 1}`),
      shared,
    );
    writeNodeFiles(node);
    return node;
  });
  const cluster = new RabbitCluster(nodes, dir);
  try {
    await Promise.all(nodes.map((node) => node.start()));
    const [first, ...others] = nodes;
    for (const node of others) {
      await node.ctl('stop_app');
      await node.ctl('join_cluster', first.name);
      await node.ctl('start_app');
      await node.ctl('await_startup', '--timeout', String(bootTimeout / 1000));
    }
    const status = JSON.parse(await first.ctl('cluster_status', '--formatter', 'json')) as { running_nodes: string[] };
    if (status.running_nodes.length !== count) {
      throw new Error(`the cluster runs ${status.running_nodes.length} of ${count} nodes: ${status.running_nodes.join(', ')}`);
    }
    return cluster;
  } catch (error) {
    await cluster.close();
    throw error;
  }
}

function writeNodeFiles(node: ClusterNode): void {
  mkdirSync(node.dir, { recursive: true });
  writeFileSync(join(node.dir, 'enabled_plugins'), '[].\n');
  writeFileSync(
    join(node.dir, 'rabbitmq.conf'),
    [`listeners.tcp.default = 127.0.0.1:${node.port}`, 'log.console = false', 'log.file.level = info', ''].join('\n'),
  );
}
