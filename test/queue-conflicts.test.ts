import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BatchesConfigError, BrokerFailedError, type QueueOptions } from 'nestjs-batches';
import { AMQP_URL, rabbitSuite } from './support/rabbitmq.js';
import { recorder, RecordingLogger, startWorker } from './support/worker-app.js';

const suite = rabbitSuite();

/** Starts a worker on `queue` declared as `declaration`, which RabbitMQ must refuse with an error matching `patterns`. */
async function refused(queue: string, declaration: QueueOptions | undefined, ...patterns: RegExp[]): Promise<void> {
  const Handler = recorder(`queues.conflict`, { queue });
  await assert.rejects(
    startWorker(
      { broker: AMQP_URL, waitForBroker: true, ...(declaration && { queues: { [queue]: declaration } }) },
      [Handler],
      new RecordingLogger(),
    ),
    (error: Error) => {
      assert.ok(error instanceof BrokerFailedError, String(error));
      assert.match(error.message, new RegExp(`^Queue '${escaped(queue)}' exists on RabbitMQ with other properties`));
      for (const pattern of patterns) assert.match(error.message, pattern);
      return true;
    },
  );
}

describe('conflicting declarations stop startup with the difference and the fix', () => {
  it('a quorum queue the worker declares classic', async () => {
    const queue = suite.queue('conflict-type');
    await suite.rabbit.channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await refused(
      queue,
      undefined,
      /it is a quorum queue, declared here as classic/,
      new RegExp(`Set \`queues\\['${escaped(queue)}'\\]\\.type\` in BatchesModule\\.forRoot\\(\\) to 'quorum'`),
      /task_queues/,
      /rabbitmqctl delete_queue/,
    );
  });

  it('a classic queue the worker declares quorum', async () => {
    const queue = suite.queue('conflict-classic');
    await suite.rabbit.channel.assertQueue(queue, { durable: true });
    await refused(queue, { type: 'quorum' }, /it is a classic queue, declared here as quorum/, /to 'classic' \(or leave it unset\)/);
  });

  it('another x-max-priority', async () => {
    const queue = suite.queue('conflict-priority');
    await suite.rabbit.channel.assertQueue(queue, { durable: true, arguments: { 'x-max-priority': 10 } });
    await refused(
      queue,
      { maxPriority: 5 },
      /its x-max-priority is 10, declared here as 5/,
      /\.maxPriority` in BatchesModule\.forRoot\(\) to 10/,
    );
  });

  it('an exchange of another type', async () => {
    const queue = suite.queue('conflict-exchange');
    await suite.rabbit.channel.assertExchange(queue, 'direct', { durable: true });
    await refused(
      queue,
      { exchangeType: 'topic' },
      new RegExp(`its exchange '${escaped(queue)}' is a direct exchange, declared here as topic`),
      /\.exchangeType` in BatchesModule\.forRoot\(\) to 'direct'/,
      /delete the exchange/,
    );
  });

  it('options that cannot work are refused before connecting', async () => {
    await assert.rejects(
      startWorker({ broker: AMQP_URL, queues: { q: { type: 'quorum', maxPriority: 5 } } }, []),
      (error: Error) => error instanceof BatchesConfigError && /`maxPriority` is for classic queues/.test(error.message),
    );
  });
});

function escaped(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
