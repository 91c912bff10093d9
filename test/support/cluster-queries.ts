/** What a test cluster reports: which node is which, where a queue lives and leads, where a client is connected. */
import type { ClusterNode } from './cluster-node.js';

/** The queries a fault-injection test asks of a cluster's nodes. */
export class ClusterQueries {
  constructor(readonly nodes: ClusterNode[]) {}

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
}
