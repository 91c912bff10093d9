/** A worker or producer Nest app of the quorum-queue cluster suite, given every node's URL and reporting which node it is on. */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import type { INestMicroservice, Type } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { BatchesModule, BatchesServer, type AmqpBroker, type BatchesStatus } from 'nestjs-batches';
import { QUEUE, SEND_TIMEOUT } from './cluster-stream.js';
import type { ClusterNode, RabbitCluster } from './rabbit-cluster.js';
import { waitFor } from './wait.js';
import type { RecordingLogger } from './worker-app.js';

/** A worker or producer app given every node's URL, as a user of a cluster configures it. */
export class ClusterApp {
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
