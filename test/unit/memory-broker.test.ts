import './support/no-network.js';
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { Delivery, QueueConsumer } from '../../libs/batches/src/broker/broker.interface.js';
import { MemoryBroker } from '../../libs/batches/src/broker/memory.broker.js';
import { waitFor } from './support/fakes.js';

const QUEUE = 'mem';

/** The memory broker's consumer is also the channel its deliveries came on; closing it is what a dead channel does. */
type ClosableConsumer = QueueConsumer & { closeChannel(): void };

/** Lets the broker's scheduled deliveries (one `setImmediate` turn) happen. */
const deliveryTurn = () => new Promise((resolve) => setImmediate(resolve));

describe('MemoryBroker', () => {
  let broker: MemoryBroker;

  beforeEach(async () => {
    broker = new MemoryBroker();
    await broker.declareQueue(QUEUE);
  });

  afterEach(() => broker.close());

  async function publish(...bodies: string[]): Promise<void> {
    for (const body of bodies) await broker.publish({ exchange: '', routingKey: QUEUE, body: Buffer.from(body), properties: {} });
  }

  async function subscribe(prefetch: number): Promise<{ consumer: ClosableConsumer; received: Delivery[]; bodies: () => string[] }> {
    const received: Delivery[] = [];
    const consumer = (await broker.consume(QUEUE, { prefetch }, (delivery) => received.push(delivery))) as ClosableConsumer;
    return { consumer, received, bodies: () => received.map((delivery) => delivery.body.toString()) };
  }

  it('hands a consumer no more unacked messages than its prefetch', async () => {
    const { received, bodies } = await subscribe(2);
    await publish('a', 'b', 'c', 'd', 'e');
    await waitFor(() => received.length === 2, 'two deliveries');
    await deliveryTurn();
    assert.deepEqual(bodies(), ['a', 'b']);
    assert.deepEqual(broker.stats(QUEUE), { ready: 3, unacked: 2 });
  });

  it('delivers the next message once an earlier one is acked (late ack frees the window)', async () => {
    const { received, bodies } = await subscribe(2);
    await publish('a', 'b', 'c');
    await waitFor(() => received.length === 2, 'two deliveries');
    received[1].channel.ack(received[1].deliveryTag, false);
    await waitFor(() => received.length === 3, 'the third delivery');
    assert.deepEqual(bodies(), ['a', 'b', 'c']);
    assert.deepEqual(broker.stats(QUEUE), { ready: 0, unacked: 2 });
  });

  it('acks every delivery up to a tag with one multiple-ack', async () => {
    const { received } = await subscribe(3);
    await publish('a', 'b', 'c', 'd', 'e');
    await waitFor(() => received.length === 3, 'three deliveries');
    assert.deepEqual(
      received.map((delivery) => delivery.deliveryTag),
      [1, 2, 3],
    );
    received[1].channel.ack(2, true);
    await waitFor(() => received.length === 5, 'two more deliveries');
    assert.deepEqual(broker.stats(QUEUE), { ready: 0, unacked: 3 });
    // Tags 1 and 2 are gone: acking them again is an error, as on RabbitMQ.
    assert.throws(() => received[0].channel.ack(1, false), /unknown delivery tag 1/);
  });

  it('requeues a closed consumer’s unacked messages at the front, marked redelivered', async () => {
    const first = await subscribe(2);
    await publish('a', 'b', 'c');
    await waitFor(() => first.received.length === 2, 'two deliveries to the first consumer');
    first.received[0].channel.ack(first.received[0].deliveryTag, false);
    await waitFor(() => first.received.length === 3, 'the third delivery');

    first.consumer.closeChannel();
    assert.equal(first.received[1].channel.open, false);
    const second = await subscribe(10);
    await waitFor(() => second.received.length === 2, 'the requeued messages');
    assert.deepEqual(second.bodies(), ['b', 'c']);
    assert.deepEqual(
      second.received.map((delivery) => delivery.redelivered),
      [true, true],
    );
    assert.equal(first.received[0].redelivered, false);
  });

  it('ignores an ack on a closed channel (its messages already went back to the queue)', async () => {
    const first = await subscribe(1);
    await publish('a');
    await waitFor(() => first.received.length === 1, 'a delivery');
    first.consumer.closeChannel();
    assert.doesNotThrow(() => first.received[0].channel.ack(first.received[0].deliveryTag, false));
    assert.deepEqual(broker.stats(QUEUE), { ready: 1, unacked: 0 });
  });

  it('on cancel(), first delivers what was already published, then delivers nothing more', async () => {
    const { consumer, bodies } = await subscribe(100);
    await publish('a', 'b', 'c');
    await consumer.cancel();
    assert.deepEqual(bodies(), ['a', 'b', 'c']);

    await publish('late');
    await deliveryTurn();
    assert.deepEqual(bodies(), ['a', 'b', 'c']);
    assert.deepEqual(broker.stats(QUEUE), { ready: 1, unacked: 3 });
  });

  it('keeps a cancelled consumer’s deliveries settleable', async () => {
    const { consumer, received } = await subscribe(10);
    await publish('a', 'b');
    await consumer.cancel();
    received[1].channel.ack(received[1].deliveryTag, true);
    assert.deepEqual(broker.stats(QUEUE), { ready: 0, unacked: 0 });
  });

  it('throws on an unknown delivery tag, as RabbitMQ closes the channel for one', async () => {
    const { received } = await subscribe(1);
    await publish('a');
    await waitFor(() => received.length === 1, 'a delivery');
    assert.throws(() => received[0].channel.ack(99, false), /memory broker: unknown delivery tag 99/);
  });

  it('applies a new prefetch to the deliveries that follow', async () => {
    const { consumer, received } = await subscribe(1);
    await publish('a', 'b', 'c');
    await waitFor(() => received.length === 1, 'one delivery');
    await consumer.setPrefetch(3);
    await waitFor(() => received.length === 3, 'the window widened to 3');
  });

  it('routes through a Celery-style direct exchange, and drops what is routed nowhere', async () => {
    await broker.declareQueue('billing', 'tasks');
    await broker.publish({ exchange: 'tasks', routingKey: 'billing', body: Buffer.from('x'), properties: {} });
    await broker.publish({ exchange: 'tasks', routingKey: 'nobody', body: Buffer.from('y'), properties: {} });
    await broker.publish({ exchange: '', routingKey: 'undeclared', body: Buffer.from('z'), properties: {} });
    assert.deepEqual(
      broker.drain('billing').map((message) => message.body.toString()),
      ['x'],
    );
    assert.deepEqual(broker.stats('undeclared'), { ready: 0, unacked: 0 });
  });
});
