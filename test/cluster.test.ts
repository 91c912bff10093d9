import { after, before, describe } from 'node:test';
import { classicQueuesWithANodeDown } from './cluster/classic-node-down.js';
import { quorumQueueUnderNodeLoss } from './cluster/quorum-node-loss.js';
import { rabbitClusterMissing, startCluster, type RabbitCluster } from './support/rabbit-cluster.js';

/*
 * Workers on a 3-node RabbitMQ cluster the suite boots beside the default node (its own names,
 * ports and directories): a quorum queue under node loss, then classic queues whose node goes
 * down. One cluster serves both: each restarts the nodes it stops, and their queues differ.
 */
describe('a 3-node RabbitMQ cluster', { skip: rabbitClusterMissing() }, () => {
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

  const booted = (): RabbitCluster => {
    if (!cluster) throw new Error('the cluster boots in before()');
    return cluster;
  };
  quorumQueueUnderNodeLoss(booted);
  classicQueuesWithANodeDown(booted);
});
