import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BATCHES_BROKER, BatchClient, encodeTaskMessage, type MemoryBroker, type MessageProperties } from 'nestjs-batches';
import { AMQP_URL, queueCounts, TestRabbit, uniqueQueue } from './support/rabbitmq.js';
import { waitFor } from './support/wait.js';
import { recorder, startWorker } from './support/worker-app.js';

const v2 = (task: string, args: unknown[] = []) => encodeTaskMessage({ task, args });

/** Each kind of bad input, and the reason its dead letter must give. */
function badMessages(): Array<{ label: string; body: Buffer; properties: MessageProperties; reason: RegExp }> {
  const good = v2('bad.valid', ['x']);
  return [
    { label: 'not JSON', body: Buffer.from('{not json'), properties: good.properties, reason: /not valid JSON/ },
    {
      label: 'pickle',
      body: Buffer.from('\x80\x04\x95pickle'),
      properties: { ...good.properties, contentType: 'application/x-python-serialize' },
      reason: /application\/x-python-serialize.*refused/,
    },
    {
      label: 'yaml',
      body: Buffer.from('- 1\n'),
      properties: { ...good.properties, contentType: 'application/x-yaml' },
      reason: /application\/x-yaml.*refused/,
    },
    {
      label: 'no task header',
      body: Buffer.from('[[],{},{}]'),
      properties: { contentType: 'application/json', contentEncoding: 'utf-8', headers: { id: 'x' } },
      reason: /no `task` header/,
    },
    { label: 'v2 body not an array', body: Buffer.from('{"a":1}'), properties: good.properties, reason: /must be a JSON array/ },
    {
      // Valid JSON around a lone 0xff: decoded loosely it would reach the handler as U+FFFD.
      label: 'invalid UTF-8',
      body: Buffer.concat([Buffer.from('[["'), Buffer.from([0xff]), Buffer.from('"],{},{}]')]),
      properties: good.properties,
      reason: /body is not valid UTF-8/,
    },
    { label: 'args not an array', body: Buffer.from('[1,{},{}]'), properties: good.properties, reason: /args must be a JSON array/ },
    { label: 'unknown task', body: v2('bad.nobody').body, properties: v2('bad.nobody').properties, reason: /unknown task 'bad\.nobody'/ },
    {
      label: 'oversize',
      body: v2('bad.valid', ['y'.repeat(5_000)]).body,
      properties: v2('bad.valid').properties,
      reason: /exceeds maxMessageBytes/,
    },
  ];
}

describe('bad input on RabbitMQ', () => {
  let rabbit: TestRabbit;
  const queue = uniqueQueue('bad');

  before(async () => {
    rabbit = await TestRabbit.connect();
  });
  after(async () => {
    await rabbit.deleteQueues(queue, `${queue}.dead`);
    await rabbit.close();
  });

  it('dead-letters each kind with its reason, processes the valid messages around them, keeps running', async () => {
    const Valid = recorder('bad.valid', { flushEvery: 100, flushInterval: 100, queue });
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue, maxMessageBytes: 2_000 }, [Valid]);
    try {
      await rabbit.declareCeleryQueue(queue);
      const bad = badMessages();
      for (const [index, message] of bad.entries()) {
        await rabbit.publishTask(queue, { task: 'bad.valid', args: [index] });
        await rabbit.publishRaw(queue, message.body, message.properties);
      }
      await rabbit.publishTask(queue, { task: 'bad.valid', args: [bad.length] });
      const handler = app.get(Valid);
      await handler.waitForRequests(bad.length + 1);
      await waitFor(async () => (await queueCounts(`${queue}.dead`)).ready === bad.length, `${bad.length} dead letters`);
      const dead = await rabbit.takeAll(`${queue}.dead`);
      const reasons = dead.map((message) => String(message.properties.headers?.['x-dead-letter-reason']));
      for (const message of bad)
        assert.ok(
          reasons.some((reason) => message.reason.test(reason)),
          `${message.label}: no reason matches ${message.reason} in ${reasons.join(' | ')}`,
        );
      // The pickle body went to the dead letter queue byte for byte, never parsed.
      assert.ok(dead.some((message) => message.content.equals(bad[1].body)));
      assert.deepEqual(
        handler.batches
          .flat()
          .map((request) => request.args[0])
          .toSorted((a, b) => Number(a) - Number(b)),
        Array.from({ length: bad.length + 1 }, (_, i) => i),
      );
      // Still consuming.
      await app.get(BatchClient).delay('bad.valid', 'after');
      await handler.waitForRequests(bad.length + 2);
      await waitFor(async () => (await queueCounts(queue)).unacked === 0, 'nothing unacked');
    } finally {
      await app.close();
    }
    assert.deepEqual(await queueCounts(queue), { ready: 0, unacked: 0 });
  });
});

describe('bad input on memory://', () => {
  it('dead-letters an unknown task and a non-JSON body, and runs the valid ones', async () => {
    const Valid = recorder('bad.valid', { flushEvery: 10, flushInterval: 50, queue: 'mem' });
    const app = await startWorker({ defaultQueue: 'mem' }, [Valid]);
    try {
      const broker = app.get<MemoryBroker>(BATCHES_BROKER);
      const good = v2('bad.valid', [1]);
      await broker.publish({ exchange: '', routingKey: 'mem', body: Buffer.from('nope'), properties: good.properties });
      await broker.publish({ exchange: '', routingKey: 'mem', body: v2('bad.nobody').body, properties: v2('bad.nobody').properties });
      await broker.publish({ exchange: '', routingKey: 'mem', body: good.body, properties: good.properties });
      await app.get(Valid).waitForRequests(1);
      await waitFor(() => broker.stats('mem.dead').ready === 2, 'two dead letters');
      const reasons = broker.drain('mem.dead').map((message) => String(message.properties.headers?.['x-dead-letter-reason']));
      assert.match(reasons.join('|'), /not valid JSON/);
      assert.match(reasons.join('|'), /unknown task 'bad\.nobody'/);
      await waitFor(() => broker.stats('mem').unacked === 0, 'nothing unacked');
    } finally {
      await app.close();
    }
  });
});
