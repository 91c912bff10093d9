import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { Injectable, type INestMicroservice, type Type } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import {
  BatchClient,
  BatchesModule,
  BatchesServer,
  BatchHandler,
  type AmqpBroker,
  type BatchesStatus,
  type SimpleRequest,
} from 'nestjs-batches';
import { rabbitClusterMissing, startCluster, type ClusterNode, type RabbitCluster } from './support/rabbit-cluster.js';
import { waitFor } from './support/wait.js';
import { RecordingLogger } from './support/worker-app.js';

const skip = rabbitClusterMissing();
const QUEUE = 'cluster.stream';
const TASK = 'cluster.count';
/** Sends in flight at once: a steady stream the three nodes keep up with on two cores. */
const SEND_WINDOW = 8;
/** A send not confirmed within this is retried (with the same task id), and counted. */
const SEND_TIMEOUT = 10_000;
/** "Within seconds", with the margin a loaded 2-core machine needs. */
const RECOVERY_BOUND = 20_000;

/** Counts every request the worker's handler is given, by the id the stream sent it with. */
@Injectable()
class Counter {
  readonly seen = new Map<number, number>();
  /** Time of each handler call, with the highest id in it. */
  readonly calls: Array<{ at: number; maxId: number }> = [];
  deliveries = 0;

  @BatchHandler(TASK, { queue: QUEUE, flushEvery: 100, flushInterval: 200, ignoreResult: true })
  count(requests: SimpleRequest[]): void {
    let maxId = -1;
    for (const request of requests) {
      const id = request.args[0] as number;
      this.seen.set(id, (this.seen.get(id) ?? 0) + 1);
      maxId = Math.max(maxId, id);
    }
    this.deliveries += requests.length;
    this.calls.push({ at: Date.now(), maxId });
  }
}

/** A worker or producer app given every node's URL, as a user of a cluster configures it. */
class ClusterApp {
  /** Broker connections by time, with the node each went to. */
  readonly connects: Array<{ at: number; node?: ClusterNode }> = [];
  status: BatchesStatus = 'connecting';

  private constructor(readonly app: INestMicroservice) {}

  /** `logger`: Nest's logger is global, so the apps of one process share it. */
  static async start(
    cluster: RabbitCluster,
    hostname: string,
    urls: string[],
    providers: Type[],
    logger: RecordingLogger,
  ): Promise<ClusterApp> {
    const moduleRef = await Test.createTestingModule({
      imports: [
        BatchesModule.forRoot({
          broker: urls,
          hostname,
          defaultQueue: QUEUE,
          queues: { [QUEUE]: { type: 'quorum' } },
          waitForBroker: true,
          publishTimeout: SEND_TIMEOUT,
        }),
      ],
      providers,
    })
      .setLogger(logger)
      .compile();
    const app = moduleRef.createNestMicroservice({ strategy: moduleRef.get(BatchesServer) });
    const self = new ClusterApp(app);
    const server = app.get(BatchesServer);
    // Registered before listen(), so the first connection is seen too.
    server.on('connect', (url) => self.connects.push({ at: Date.now(), node: cluster.byPort(String(url)) }));
    server.status.subscribe((status) => (self.status = status));
    try {
      await app.listen();
      // The first connection may have come before the listener was registered: read it off the socket.
      await waitFor(() => self.status === 'connected', `${hostname} connected`);
      if (self.connects.length === 0) self.connects.push({ at: Date.now(), node: cluster.byPort(brokerPort(server)) });
    } catch (error) {
      await app.close();
      throw error;
    }
    return self;
  }

  /** The node of the app's current connection. */
  get node(): ClusterNode | undefined {
    return this.connects.at(-1)?.node;
  }

  close(): Promise<void> {
    return this.app.close();
  }
}

/** The broker port of the app's current connection (amqplib keeps its socket as `connection.stream`). */
function brokerPort(server: BatchesServer): number {
  const model = server.unwrap<AmqpBroker>().unwrap().connection as unknown as { connection: { stream: Socket } } | undefined;
  const port = model?.connection.stream.remotePort;
  assert.ok(port, 'the app is connected');
  return port;
}

/**
 * Sends ids 0, 1, 2, … through `BatchClient` with publisher confirms, a window at a time, until
 * stopped. A send that rejects is sent again with the same task id until it is confirmed.
 */
class Stream {
  next = 0;
  readonly confirmed = new Set<number>();
  /** Sends that rejected and were sent again. */
  retried = 0;
  /** Ids sent again after a rejection. */
  readonly retriedIds = new Set<number>();
  readonly errors = new Map<string, number>();
  private stopping = false;
  private running?: Promise<void>;

  constructor(private readonly client: BatchClient) {}

  /** Sends the first id alone: it declares the queue, on the node the client connected to. */
  async first(): Promise<void> {
    await this.send(this.next++);
  }

  start(): void {
    this.running = Promise.all(Array.from({ length: SEND_WINDOW }, () => this.lane())).then(() => undefined);
  }

  /** Stops sending new ids; resolves once every id sent so far is confirmed. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
  }

  private async lane(): Promise<void> {
    while (!this.stopping) await this.send(this.next++);
  }

  private async send(id: number): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.client.applyAsync(TASK, { args: [id], taskId: `cluster-${id}` });
        this.confirmed.add(id);
        return;
      } catch (error) {
        const name = error instanceof Error ? `${error.name}: ${error.message.slice(0, 120)}` : String(error);
        this.errors.set(name, (this.errors.get(name) ?? 0) + 1);
        if (attempt >= 10) throw new Error(`id ${id} was never confirmed after ${attempt} sends`, { cause: error });
        this.retried++;
        this.retriedIds.add(id);
        // A rejection that comes at once (no connection) is not retried in a tight loop.
        await delay(200);
      }
    }
  }
}

describe('a 3-node RabbitMQ cluster with a quorum queue, under node loss', { skip, timeout: 300_000 }, () => {
  let cluster: RabbitCluster | undefined;

  before(
    async () => {
      cluster = await startCluster({ nodes: 3 });
    },
    { timeout: 180_000 },
  );
  after(async () => {
    await cluster?.close();
  });

  it(
    'processes every confirmed send at least once while the consumer node and then the quorum leader go down, reconnecting by itself',
    { timeout: 240_000 },
    async (t) => {
      assert.ok(cluster);
      const [a, b, c] = cluster.nodes;
      const apps: ClusterApp[] = [];
      const logger = new RecordingLogger();
      let stream: Stream | undefined;
      try {
        // The producer declares the queue first, on c, so c holds the leader; the worker consumes through a.
        const producer = await ClusterApp.start(cluster, 'producer@cluster-test', [c.url, a.url, b.url], [], logger);
        apps.push(producer);
        stream = new Stream(producer.app.get(BatchClient));
        await stream.first();
        const worker = await ClusterApp.start(cluster, 'worker@cluster-test', [a.url, b.url, c.url], [Counter], logger);
        apps.push(worker);
        const counter = worker.app.get(Counter);
        const processed = (): number => counter.seen.size;
        stream.start();
        await waitFor(() => processed() >= 500, 'the stream flowing through the worker', 30_000);

        // 1. The node the worker is connected to crashes mid-stream.
        const consumerNode = worker.node;
        assert.ok(consumerNode, 'the worker reports the node it connected to');
        t.diagnostic(`fault 1: killing ${placement(worker, producer, await cluster.queueLeader(QUEUE))}`);
        const connectsBefore = worker.connects.length;
        const downAt = Date.now();
        await consumerNode.stop();
        await waitFor(() => worker.connects.length > connectsBefore, 'the worker to reconnect', RECOVERY_BOUND);
        const reconnected = worker.connects.at(-1) as { at: number; node?: ClusterNode };
        assert.ok(reconnected.node && reconnected.node !== consumerNode, `reconnected to a live node: ${reconnected.node?.name}`);
        await waitFor(() => counter.calls.some((call) => call.at > reconnected.at), 'a batch after the reconnect', RECOVERY_BOUND);
        const reconnectSeconds = (counter.calls.find((call) => call.at > reconnected.at)!.at - downAt) / 1000;
        t.diagnostic(
          `fault 1: ${consumerNode.name} killed; worker connected to ${reconnected.node.name} after ${((reconnected.at - downAt) / 1000).toFixed(2)} s, ` +
            `first batch after ${reconnectSeconds.toFixed(2)} s`,
        );
        await consumerNode.start();
        await waitFor(async () => (await cluster!.queueOnline(QUEUE)).length === 3, 'all three quorum members online', 60_000, 250);
        const beforeLeaderLoss = processed();
        await waitFor(() => processed() >= beforeLeaderLoss + 500, 'the stream flowing again', 30_000);

        // 2. The quorum leader crashes (two of three members stay: a majority).
        const leader = await cluster.queueLeader(QUEUE);
        assert.ok(leader, 'the queue has a leader');
        t.diagnostic(`fault 2: killing ${placement(worker, producer, leader)}`);
        const leaderDownAt = Date.now();
        const firstIdAfter = stream.next;
        await leader.stop();
        await waitFor(
          () => counter.calls.some((call) => call.maxId >= firstIdAfter),
          'requests sent after the leader loss to be processed',
          RECOVERY_BOUND,
        );
        const failoverSeconds = (counter.calls.find((call) => call.maxId >= firstIdAfter)!.at - leaderDownAt) / 1000;
        const newLeader = await leaderAfter(cluster, leader);
        t.diagnostic(
          `fault 2: leader ${leader.name} killed; new leader ${newLeader?.name}, worker on ${worker.node?.name}, producer on ${producer.node?.name}; ` +
            `requests sent after the loss processed after ${failoverSeconds.toFixed(2)} s`,
        );
        await leader.start();
        await waitFor(async () => (await cluster!.queueOnline(QUEUE)).length === 3, 'all three quorum members online', 60_000, 250);
        const afterRestart = processed();
        await waitFor(() => processed() >= afterRestart + 500, 'the stream flowing after the restart', 30_000);

        await stream.stop();
        const confirmed = stream.confirmed;
        await waitFor(() => [...confirmed].every((id) => counter.seen.has(id)), 'every confirmed id processed', 60_000, 100);
        await waitFor(
          async () => {
            const info = await cluster!.queueInfo(QUEUE, 'messages', 'messages_unacknowledged');
            return info?.messages === 0 && info.messages_unacknowledged === 0;
          },
          'the queue to drain with nothing unacked',
          30_000,
          250,
        );

        const lost = [...confirmed].filter((id) => !counter.seen.has(id));
        const duplicates = counter.deliveries - counter.seen.size;
        t.diagnostic(
          `cluster figures: sent=${stream.next} confirmed=${confirmed.size} send_retries=${stream.retried} processed=${counter.seen.size} ` +
            `lost=${lost.length} duplicates=${duplicates} reconnect_s=${reconnectSeconds.toFixed(2)} leader_failover_s=${failoverSeconds.toFixed(2)}`,
        );
        if (stream.errors.size > 0) {
          const twice = [...stream.retriedIds].filter((id) => (counter.seen.get(id) ?? 0) > 1).length;
          t.diagnostic(
            `send errors (each retried): ${JSON.stringify([...stream.errors])}; ${twice} of ${stream.retriedIds.size} retried ids were processed twice`,
          );
        }
        t.diagnostic(`warnings and errors logged: ${JSON.stringify(logger.lines.slice(0, 12))}`);

        assert.equal(confirmed.size, stream.next, 'every send was confirmed in the end');
        assert.deepEqual(lost, [], 'no confirmed send is lost');
        assert.ok(
          [...counter.seen.keys()].every((id) => id < stream!.next),
          'nothing processed that was not sent',
        );
        assert.ok(reconnectSeconds * 1000 < RECOVERY_BOUND && failoverSeconds * 1000 < RECOVERY_BOUND);
        for (const app of apps) assert.notEqual(app.status, 'failed', logger.errors.join('\n'));
        assert.deepEqual(
          logger.lines.filter((line) => /unknown delivery tag|PRECONDITION_FAILED/i.test(line)),
          [],
        );
      } finally {
        // Apps first: once they are closed, sends still in the stream fail at once instead of waiting out their timeouts.
        const stopped = stream?.stop().catch(() => undefined);
        for (const app of apps.toReversed()) await app.close().catch(() => undefined);
        await stopped;
      }
    },
  );
});

/** Where the worker, the producer and the queue's leader are, for the diagnostics. */
function placement(worker: ClusterApp, producer: ClusterApp, leader: ClusterNode | undefined): string {
  return `worker on ${worker.node?.name}, producer on ${producer.node?.name}, leader on ${leader?.name}`;
}

/** The leader the cluster elected once `old` went down. */
async function leaderAfter(cluster: RabbitCluster, old: ClusterNode): Promise<ClusterNode | undefined> {
  let leader: ClusterNode | undefined;
  await waitFor(
    async () => {
      leader = await cluster.queueLeader(QUEUE);
      return leader !== undefined && leader !== old;
    },
    'a new quorum leader',
    RECOVERY_BOUND,
    250,
  );
  return leader;
}
