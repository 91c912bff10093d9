import './support/no-network.js';
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { Delivery, QueueConsumer } from '../../libs/batches/src/broker/broker.interface.js';
import { MemoryBroker } from '../../libs/batches/src/broker/memory.broker.js';
import { BatchEvents, type BatchEvent } from '../../libs/batches/src/events/batch-events.js';
import { encodeTaskMessage, type TaskSpec } from '../../libs/batches/src/protocol/task-message-encode.js';
import { MemoryResultBackend } from '../../libs/batches/src/results/memory.result-backend.js';
import { AckTrackers } from '../../libs/batches/src/transport/ack-tracker.js';
import type { BatchPipeline } from '../../libs/batches/src/transport/batch-pipeline.js';
import type { Envelope } from '../../libs/batches/src/transport/envelope.js';
import { QueueDispatcher } from '../../libs/batches/src/transport/queue-dispatcher.js';
import { Republisher } from '../../libs/batches/src/transport/republisher.js';
import { handlerFor, RecordingLogger, waitFor } from './support/fakes.js';

const QUEUE = 'eta';
const TASK = 'unit.eta';

/** Stands in for the task's buffer: records what the queue worker dispatches, and when. */
class RecordingPipeline {
  readonly handler = handlerFor(TASK, { queue: QUEUE }, () => undefined);
  readonly pushed: Array<{ envelope: Envelope; at: number }> = [];

  push(envelope: Envelope): void {
    this.pushed.push({ envelope, at: Date.now() });
  }

  get ids(): string[] {
    return this.pushed.map(({ envelope }) => envelope.request.id);
  }
}

describe('QueueDispatcher: the ETA hold', () => {
  let broker: MemoryBroker;
  let results: MemoryResultBackend;
  let acks: AckTrackers;
  let events: BatchEvents;
  let pipeline: RecordingPipeline;
  let prefetches: number[];
  let worker: QueueDispatcher | undefined;

  beforeEach(() => {
    broker = new MemoryBroker();
    results = new MemoryResultBackend();
    acks = new AckTrackers();
    events = new BatchEvents();
    pipeline = new RecordingPipeline();
    prefetches = [];
    // Every prefetch change the worker asks of its consumer (basic.qos on RabbitMQ).
    const consume = broker.consume.bind(broker);
    broker.consume = async (queue: string, options: { prefetch: number }, onDelivery: (delivery: Delivery) => void) => {
      const consumer: QueueConsumer = await consume(queue, options, onDelivery);
      const setPrefetch = consumer.setPrefetch.bind(consumer);
      consumer.setPrefetch = (prefetch) => {
        prefetches.push(prefetch);
        return setPrefetch(prefetch);
      };
      return consumer;
    };
  });

  afterEach(async () => {
    await worker?.stop();
    worker = undefined;
    await broker.close();
    await results.close();
  });

  async function start(prefetch: number): Promise<QueueDispatcher> {
    const pipelines = new Map([[TASK, pipeline as unknown as BatchPipeline]]);
    worker = new QueueDispatcher(QUEUE, prefetch, pipelines, {
      broker,
      results,
      acks,
      republisher: new Republisher(broker),
      logger: new RecordingLogger(),
      events,
      hostname: 'unit@test',
      maxMessageBytes: 1_000_000,
    });
    await worker.start();
    return worker;
  }

  async function publish(spec: Partial<TaskSpec> & { id: string }): Promise<void> {
    const { body, properties } = encodeTaskMessage({ task: TASK, ...spec });
    await broker.publish({ exchange: '', routingKey: QUEUE, body, properties });
  }

  it('holds a request whose eta is in the future, unacked, and dispatches it once it is due', async () => {
    await start(10);
    const eta = new Date(Date.now() + 40);
    await publish({ id: 'later', eta });
    await publish({ id: 'now' });

    await waitFor(() => pipeline.ids.includes('now'), 'the request without an eta');
    assert.deepEqual(pipeline.ids, ['now'], 'the request with a future eta is not dispatched yet');
    assert.deepEqual(broker.stats(QUEUE), { ready: 0, unacked: 2 }, 'held, not acked');

    await waitFor(() => pipeline.ids.includes('later'), 'the held request');
    const later = pipeline.pushed.find(({ envelope }) => envelope.request.id === 'later');
    assert.ok(later && later.at >= eta.getTime(), 'dispatched no earlier than its eta');
    assert.equal(later.envelope.request.eta?.getTime(), eta.getTime());
    assert.equal(broker.stats(QUEUE).unacked, 2, 'dispatched to its buffer, still unacked until its batch settles');
  });

  it('dispatches at once a request whose eta has already passed', async () => {
    await start(10);
    await publish({ id: 'overdue', eta: new Date(Date.now() - 1_000) });
    await waitFor(() => pipeline.ids.includes('overdue'), 'the overdue request');
    assert.deepEqual(prefetches, [], 'nothing held, so the prefetch is left alone');
  });

  it('widens the consumer’s prefetch by the number held, and narrows it back once they are due', async () => {
    await start(5);
    const eta = new Date(Date.now() + 50);
    for (const id of ['h1', 'h2', 'h3']) await publish({ id, eta });

    await waitFor(() => prefetches.includes(5 + 3), 'the prefetch widened to 5 + 3');
    const widening = prefetches.slice(0, prefetches.indexOf(8) + 1);
    assert.ok(
      widening.every((prefetch) => prefetch > 5 && prefetch <= 8),
      `widened, never narrowed, on the way to 8: ${prefetches.join(', ')}`,
    );
    await waitFor(() => pipeline.pushed.length === 3, 'the held requests');
    await waitFor(() => prefetches.at(-1) === 5, 'the prefetch back to 5');
  });

  it('keeps the window open for due requests while held ones fill the base prefetch', async () => {
    await start(2);
    const eta = new Date(Date.now() + 1_000);
    await publish({ id: 'held-1', eta });
    await publish({ id: 'held-2', eta });
    await publish({ id: 'due-1' });
    await publish({ id: 'due-2' });

    // With a prefetch of 2 and both slots held, these could only arrive because the window widened.
    await waitFor(() => pipeline.pushed.length === 2, 'the due requests behind the held ones');
    assert.deepEqual(pipeline.ids, ['due-1', 'due-2']);
    assert.ok(Date.now() < eta.getTime(), 'the held requests are not due yet');
  });

  it('stores REVOKED and acks a request whose expires has passed, without dispatching it', async () => {
    const seen: BatchEvent[] = [];
    const subscription = events.events$.subscribe((event) => seen.push(event));
    await start(10);
    await publish({ id: 'stale', expires: new Date(Date.now() - 1_000) });

    await waitFor(async () => (await results.getResult('stale')).status === 'REVOKED', 'REVOKED stored');
    const result = await results.getResult('stale');
    assert.deepEqual((result.result as { exc_type: string }).exc_type, 'TaskRevokedError');
    await waitFor(() => broker.stats(QUEUE).unacked === 0, 'the expired request acked');
    assert.deepEqual(pipeline.pushed, []);
    assert.ok(seen.some((event) => event.type === 'request.expired' && event.request.id === 'stale'));
    subscription.unsubscribe();
  });

  it('revokes a held request that expires before its eta comes', async () => {
    await start(10);
    const now = Date.now();
    await publish({ id: 'too-late', eta: new Date(now + 40), expires: new Date(now + 10) });

    await waitFor(async () => (await results.getResult('too-late')).status === 'REVOKED', 'REVOKED stored when due');
    await waitFor(() => broker.stats(QUEUE).unacked === 0, 'the expired request acked');
    assert.deepEqual(pipeline.pushed, []);
  });

  it('leaves held requests unacked on stop, for the broker to hand out again', async () => {
    const stopping = await start(10);
    await publish({ id: 'held', eta: new Date(Date.now() + 30) });
    await waitFor(() => broker.stats(QUEUE).unacked === 1, 'the held request delivered');
    await stopping.stop();
    worker = undefined;

    // Proving that nothing happens needs the eta to pass: wait until it has, with a margin.
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.deepEqual(pipeline.pushed, [], 'not dispatched after stop, even once due');
    assert.equal(broker.stats(QUEUE).unacked, 1);
  });
});
