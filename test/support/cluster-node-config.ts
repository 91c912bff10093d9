/**
 * What sets a test cluster's nodes apart from the default node and from each other: the cluster's
 * own environment and Erlang cookie, and each node's name, ports, config files and directories.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';

/** What every node of one cluster and every `rabbitmqctl` call against it share. */
export interface ClusterSettings {
  readonly env: NodeJS.ProcessEnv;
  /** The directory holding `rabbitmq-server` and `rabbitmqctl`. */
  readonly scripts: string;
  /** How long one node may take to boot, ms. */
  readonly bootTimeout: number;
}

/** Where one node answers and keeps its files. */
export interface NodeLayout {
  /** Erlang node name, `<prefix>-<n>@localhost`. */
  readonly name: string;
  /** AMQP port on 127.0.0.1. */
  readonly port: number;
  /** Erlang distribution port. */
  readonly distPort: number;
  /** Its config, mnesia and log directory. */
  readonly dir: string;
}

/** Writes the cluster's own Erlang cookie and an empty rabbitmq-env.conf into its directory. */
export function writeClusterFiles(dir: string): void {
  writeFileSync(join(dir, '.erlang.cookie'), randomBytes(20).toString('hex').toUpperCase(), { mode: 0o400 });
  writeFileSync(join(dir, 'rabbitmq-env.conf'), '');
}

/** The environment of every node and `rabbitmqctl` call: none of the machine's RabbitMQ or Erlang settings. */
export function clusterEnv(dir: string): NodeJS.ProcessEnv {
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

/** `count` distinct TCP ports free on 127.0.0.1 now (the nodes bind them moments later). */
export async function freePorts(count: number): Promise<number[]> {
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

/** Creates the node's directory with its config file and an empty plugins file. */
export function writeNodeFiles(node: NodeLayout): void {
  mkdirSync(node.dir, { recursive: true });
  writeFileSync(join(node.dir, 'enabled_plugins'), '[].\n');
  writeFileSync(
    join(node.dir, 'rabbitmq.conf'),
    [`listeners.tcp.default = 127.0.0.1:${node.port}`, 'log.console = false', 'log.file.level = info', ''].join('\n'),
  );
}

/** The environment `rabbitmq-server` boots the node with: its name, ports and the files of its directory. */
export function nodeEnv(node: NodeLayout, env: NodeJS.ProcessEnv, pidFile: string): NodeJS.ProcessEnv {
  return {
    ...env,
    RABBITMQ_NODENAME: node.name,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(node.port),
    RABBITMQ_DIST_PORT: String(node.distPort),
    RABBITMQ_CONFIG_FILE: join(node.dir, 'rabbitmq.conf'),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(node.dir, 'advanced.config'),
    RABBITMQ_MNESIA_BASE: join(node.dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(node.dir, 'log'),
    // No plugins: the management and Prometheus listeners would clash with the default node's ports.
    RABBITMQ_ENABLED_PLUGINS_FILE: join(node.dir, 'enabled_plugins'),
    RABBITMQ_PID_FILE: pidFile,
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
  };
}
