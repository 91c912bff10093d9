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
 *
 * Where the parts live: rabbitmq-scripts.ts finds the scripts; cluster-node-config.ts holds each
 * node's name, ports, files and environment; cluster-node.ts starts and stops one node;
 * cluster-queries.ts answers where queues, leaders and connections are; this file boots, joins and
 * tears down the cluster as a whole.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clusterEnv, freePorts, writeClusterFiles, writeNodeFiles } from './cluster-node-config.js';
import { ClusterNode } from './cluster-node.js';
import { ClusterQueries } from './cluster-queries.js';
import { rabbitClusterMissing, scriptsDir } from './rabbitmq-scripts.js';

export { ClusterNode, type StopMode } from './cluster-node.js';
export { rabbitClusterMissing } from './rabbitmq-scripts.js';

export interface ClusterOptions {
  /** Nodes in the cluster (default 3). */
  nodes?: number;
  /** How long one node may take to boot, ms (default 90 s: three nodes booting at once on 2 cores are slow). */
  bootTimeout?: number;
}

/** A started cluster: its nodes and the queries a fault-injection test needs (ClusterQueries), and its teardown. */
export class RabbitCluster extends ClusterQueries {
  private readonly exitHook = (): void => this.killAll();
  private closed = false;

  constructor(
    nodes: ClusterNode[],
    /** The temporary directory holding every node's files. */
    readonly dir: string,
  ) {
    super(nodes);
    process.once('exit', this.exitHook);
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
  writeClusterFiles(dir);
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
