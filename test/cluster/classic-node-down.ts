import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { INestMicroservice } from '@nestjs/common';
import amqp from 'amqplib';
import { BatchClient, type SimpleRequest } from 'nestjs-batches';
import type { ClusterNode, RabbitCluster } from '../support/rabbit-cluster.js';
import { waitFor } from '../support/wait.js';
import { recorder, RecordingLogger, startWorker, type Recorder } from '../support/worker-app.js';

/**
 * Item 3 of issue 12: a node that is down must cost only the queues that live on it. Registered by
 * cluster.test.ts on the cluster it boots.
 */
export function classicQueuesWithANodeDown(booted: () => RabbitCluster): void {
  describe('classic queues: a node down never stalls a healthy queue', () => {
    let cluster: RabbitCluster;
    let n1: ClusterNode;
    let n2: ClusterNode;
    let n3: ClusterNode;

    before(() => {
      cluster = booted();
      [n1, n2, n3] = cluster.nodes;
    });

    /** Declares a durable classic queue from a connection to `node`, so that it lives there. */
    async function declareOn(node: ClusterNode, queue: string): Promise<void> {
      const connection = await amqp.connect(node.url);
      try {
        const channel = await connection.createChannel();
        await channel.assertQueue(queue, { durable: true });
      } finally {
        await connection.close();
      }
    }

    async function messages(queue: string): Promise<number> {
      const info = await cluster.queueInfo(queue, 'messages');
      return Number(info?.messages ?? -1);
    }

    function worker(
      broker: string[],
      queue: string,
      logger: RecordingLogger,
    ): Promise<{ app: INestMicroservice; handler: Recorder; client: BatchClient }> {
      // 'fail' requests throw and are dead-lettered at once (maxRetries 0); one request per batch, so nothing else fails with them.
      const Handler = recorder('cluster.work', { queue, flushEvery: 1, flushInterval: 50, maxRetries: 0 }, (requests: SimpleRequest[]) => {
        if (requests.some((request) => request.args[0] === 'fail')) throw new Error('this batch fails');
      });
      return startWorker({ broker, defaultQueue: queue, waitForBroker: true, publishTimeout: 5_000 }, [Handler], logger).then((app) => ({
        app,
        handler: app.get(Handler),
        client: app.get(BatchClient),
      }));
    }

    it("the dead-letter queue's node goes down: the task queue is consumed on, startup names the unreachable queue, no dead letter is lost", async () => {
      const queue = 'cluster.main';
      // The task queue lives on n2; the first worker connects to n1 first, so `<queue>.dead` lives on n1.
      await declareOn(n2, queue);
      const firstLog = new RecordingLogger();
      const first = await worker([n1.url, n2.url, n3.url], queue, firstLog);
      let second: Awaited<ReturnType<typeof worker>> | undefined;
      try {
        assert.equal((await cluster.queueHome(`${queue}.dead`))?.name, n1.name, 'the dead-letter queue lives on n1');
        await first.client.delay('cluster.work', 'before');
        await first.handler.waitForRequests(1);

        await n1.stop();
        const stopped = Date.now();
        // Sent through the same worker: its publisher reconnects to n2 or n3 and the task queue is consumed again.
        await first.client.delay('cluster.work', 'while n1 is down');
        await first.handler.waitForRequests(2, 30_000);
        const reconnectSeconds = (Date.now() - stopped) / 1000;

        // A failing request cannot be dead-lettered while n1 is down (RabbitMQ nacks the publish): it stays unacked, not lost.
        await first.client.delay('cluster.work', 'fail');
        await waitFor(
          () => firstLog.errors.some((line) => /Could not dead-letter task/.test(line)),
          'the failed dead-letter publish logged',
        );

        // A worker starting now cannot declare `<queue>.dead`: it says so, by name, and consumes the task queue anyway.
        await first.app.close(); // its unacked 'fail' request goes back to the queue
        const secondLog = new RecordingLogger();
        second = await worker([n2.url, n3.url], queue, secondLog);
        assert.ok(
          secondLog.lines.some((line) => line.includes(`Queue '${queue}.dead' is unreachable: home node '${n1.name}'`)),
          `a warning names the unreachable queue and its node:\n${secondLog.lines.join('\n')}`,
        );
        await second.client.delay('cluster.work', 'on the second worker');
        await waitFor(
          () => second!.handler.batches.flat().some((request) => request.args[0] === 'on the second worker'),
          'the second worker consumes',
        );

        await n1.start();
        // Redelivered 'fail' is dead-lettered once `<queue>.dead` is back (the second worker declares it again meanwhile).
        await waitFor(async () => (await messages(`${queue}.dead`)) === 1, `one message on ${queue}.dead`, 60_000, 500);
        assert.ok(reconnectSeconds < 30);
        console.log(`classic-node-down figures: consumed_again_after_s=${reconnectSeconds.toFixed(1)}`);
      } finally {
        await first.app.close().catch(() => undefined);
        await second?.app.close();
      }
    });

    it('a task queue whose node goes down is consumed again when the node is back, while the other queue is consumed throughout', async () => {
      const onN3 = 'cluster.on-n3';
      const onN2 = 'cluster.on-n2';
      await declareOn(n3, onN3);
      await declareOn(n2, onN2);
      const logger = new RecordingLogger();
      const A = recorder('cluster.a', { queue: onN3, flushEvery: 10, flushInterval: 50 });
      const B = recorder('cluster.b', { queue: onN2, flushEvery: 10, flushInterval: 50 });
      const app = await startWorker(
        { broker: [n2.url], waitForBroker: true, publishTimeout: 5_000, taskRoutes: { 'cluster.a': onN3, 'cluster.b': onN2 } },
        [A, B],
        logger,
      );
      try {
        const [a, b, client] = [app.get(A), app.get(B), app.get(BatchClient)];
        await client.delay('cluster.a', 1);
        await a.waitForRequests(1);
        // Acked before the node goes: a request RabbitMQ never saw acked may be delivered again (at least once), which is not what this tests.
        await waitFor(
          async () => Number((await cluster.queueInfo(onN3, 'messages'))?.messages) === 0,
          `request 1 acked on ${onN3}`,
          15_000,
          100,
        );

        await n3.stop();
        await waitFor(
          () => logger.lines.some((line) => line.includes(`RabbitMQ cancelled the consumer of '${onN3}'`)),
          'the consumer of the queue on n3 cancelled',
        );
        await client.delay('cluster.b', 1);
        await b.waitForRequests(1);

        await n3.start();
        await client.delay('cluster.a', 2);
        await a.waitForRequests(2, 30_000);
        await client.delay('cluster.b', 2);
        await b.waitForRequests(2);
        assert.deepEqual(
          a.batches.flat().map((request) => request.args[0]),
          [1, 2],
        );
      } finally {
        await app.close();
      }
    });
  });
}
