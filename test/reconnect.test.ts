import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AMQP_URL, closeAllConnections, queueCounts, TestRabbit, uniqueQueue } from './support/rabbitmq.js';
import { waitFor } from './support/wait.js';
import { recorder, RecordingLogger, startWorker } from './support/worker-app.js';

describe('connection loss on RabbitMQ', () => {
  const queue = uniqueQueue('reconnect');
  let rabbit: TestRabbit;

  before(async () => {
    rabbit = await TestRabbit.connect();
  });
  after(async () => {
    // The forced close took the first test connection with it.
    const fresh = await TestRabbit.connect();
    await fresh.deleteQueues(queue, `${queue}.dead`);
    await fresh.close();
  });

  it('recovers by itself mid-stream: every message processed, no unknown delivery tag, timers still flush', async () => {
    const total = 2_000;
    await rabbit.declareCeleryQueue(queue);
    const ids: string[] = [];
    for (let i = 0; i < total; i++) ids.push(await rabbit.publishTask(queue, { task: 'reconnect.work', args: [i] }));
    // Past the first 300 requests, batches wait for the cut: rabbitmqctl takes longer to start than the
    // worker takes to drain 2,000 messages, so without the gate the cut could find nothing unacked.
    let cut!: () => void;
    const connectionCut = new Promise<void>((resolve) => (cut = resolve));
    const Work = recorder('reconnect.work', { flushEvery: 50, flushInterval: 200, queue }, (_requests, self) =>
      self.received > 300 ? connectionCut : undefined,
    );
    const logger = new RecordingLogger();
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue }, [Work], logger);
    try {
      const handler = app.get(Work);
      await handler.waitForRequests(300);
      assert.ok(handler.received < total, 'still streaming when the connection is cut');
      await closeAllConnections();
      cut();
      await waitFor(
        () => new Set(handler.batches.flat().map((request) => request.id)).size >= total,
        'every message at least once',
        60_000,
      );
      assert.deepEqual(new Set(handler.batches.flat().map((request) => request.id)), new Set(ids));
      await waitFor(
        async () => {
          const counts = await queueCounts(queue);
          return counts.ready === 0 && counts.unacked === 0;
        },
        'the queue to drain with nothing unacked',
        30_000,
      );
      assert.ok(
        handler.batches.some((batch) => batch.some((request) => request.deliveryInfo.redelivered)),
        'unacked messages were redelivered',
      );
      assert.ok(
        logger.lines.some((line) => /Lost the connection/.test(line)),
        'the loss was logged',
      );
      assert.deepEqual(
        logger.lines.filter((line) => /unknown delivery tag|PRECONDITION_FAILED/i.test(line)),
        [],
      );

      // Timers kept working across the reconnect: 3 messages, far from flushEvery 50, are flushed by interval
      // (in one window or, when they straddle a window's end, two).
      const publisher = await TestRabbit.connect();
      const late: string[] = [];
      for (let i = 0; i < 3; i++) late.push(await publisher.publishTask(queue, { task: 'reconnect.work', args: ['after', i] }));
      await publisher.close();
      await waitFor(
        () => late.every((id) => handler.batches.some((batch) => batch.some((request) => request.id === id))),
        'an interval flush of the 3 new messages',
      );
      const lateBatches = handler.batches.filter((batch) => batch.some((request) => late.includes(request.id)));
      assert.ok(
        lateBatches.every((batch) => batch.length <= 3),
        `flushed by interval, not by count: ${lateBatches.map((batch) => batch.length).join(', ')}`,
      );
    } finally {
      await app.close();
    }
  });
});
