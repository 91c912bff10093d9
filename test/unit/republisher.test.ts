import './support/no-network.js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryBroker } from '../../libs/batches/src/broker/memory.broker.js';
import { decodeTaskMessage } from '../../libs/batches/src/protocol/task-message-decode.js';
import { encodeTaskMessage } from '../../libs/batches/src/protocol/task-message-encode.js';
import { AckTrackers } from '../../libs/batches/src/transport/ack-tracker.js';
import { Republisher } from '../../libs/batches/src/transport/republisher.js';
import { Deliveries } from './support/fakes.js';

describe('Republisher: what a retry and a dead letter publish', () => {
  it('re-publishes a retry on its queue with retries + 1, due after retryDelay · 2^retries', async () => {
    const broker = new MemoryBroker();
    await broker.declareQueue('unit');
    const encoded = encodeTaskMessage({ task: 'unit.task', id: 'again', args: [7], retries: 2 });
    const message = decodeTaskMessage(encoded.body, encoded.properties, Number.MAX_SAFE_INTEGER);

    const before = Date.now();
    await new Republisher(broker).retry(message, 'unit', 100);
    const [published] = broker.drain('unit');
    const retried = decodeTaskMessage(published.body, published.properties, Number.MAX_SAFE_INTEGER);

    assert.equal(retried.id, 'again');
    assert.deepEqual(retried.args, [7]);
    assert.equal(retried.retries, 3);
    const delay = (retried.eta?.getTime() ?? 0) - before;
    assert.ok(delay >= 399 && delay < 400 + 1_000, `eta ${delay} ms ahead, expected 400 (100 · 2²)`);
    await broker.close();
  });

  it('dead-letters the original message to <queue>.dead with headers saying why', async () => {
    const broker = new MemoryBroker();
    await broker.declareDeadLetterQueue('unit.dead');
    const envelope = new Deliveries(new AckTrackers()).envelope({ task: 'unit.task', id: 'gone' });
    const delivery = envelope.delivery;
    assert.ok(delivery);

    await new Republisher(broker).deadLetter(delivery, 'unit', '3 retries exhausted: Error: boom');
    const [dead] = broker.drain('unit.dead');

    assert.deepEqual(dead.body, delivery.body);
    const headers = dead.properties.headers ?? {};
    assert.equal(headers['x-dead-letter-reason'], '3 retries exhausted: Error: boom');
    assert.equal(headers['x-original-queue'], 'unit');
    assert.equal(headers['x-original-routing-key'], 'unit');
    assert.equal(headers.id, 'gone');
    assert.ok(!Number.isNaN(Date.parse(String(headers['x-dead-lettered-at']))));
    await broker.close();
  });
});
