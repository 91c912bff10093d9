import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BatchClient } from 'nestjs-batches';
import { ClusterApp } from '../support/cluster-app.js';
import { Counter, QUEUE, Stream } from '../support/cluster-stream.js';
import type { ClusterNode, RabbitCluster } from '../support/rabbit-cluster.js';
import { waitFor } from '../support/wait.js';
import { RecordingLogger } from '../support/worker-app.js';

/** "Within seconds", with the margin a loaded 2-core machine needs. */
const RECOVERY_BOUND = 20_000;

/** Registered by cluster.test.ts on the cluster it boots. */
export function quorumQueueUnderNodeLoss(booted: () => RabbitCluster): void {
  describe('a quorum queue under node loss', { timeout: 300_000 }, () => {
    it(
      'processes every confirmed send at least once while the consumer node and then the quorum leader go down, reconnecting by itself',
      { timeout: 240_000 },
      async (t) => {
        const cluster = booted();
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
}

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
