import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Options } from 'amqplib';
import { encodeTaskMessage, type SimpleRequest } from 'nestjs-batches';
import { AMQP_URL, queueCounts, rabbitSuite } from './support/rabbitmq.js';
import { waitFor } from './support/wait.js';
import { recorder, RecordingLogger, startWorker } from './support/worker-app.js';

const SEED = 20261127;
const MESSAGES = 2_000;
const MAX_BYTES = 4_096;
const TASK = 'fuzz.task';

/** mulberry32: a small seeded PRNG, so a failing run can be replayed. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

interface Fuzzed {
  body: Buffer;
  properties: Options.Publish;
  /** The id a valid message carries; undefined when the message must be dead-lettered. */
  valid?: string;
}

/** Builds one message of a random kind: valid, random bytes, random JSON, odd header types, oversize. */
function fuzzed(random: () => number, index: number): Fuzzed {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
  const bytes = (length: number): Buffer => Buffer.from(Array.from({ length }, () => Math.floor(random() * 256)));
  const text = (length: number): string => Array.from({ length }, () => String.fromCharCode(Math.floor(random() * 0x2fff))).join('');
  const json = (depth = 0): unknown =>
    depth > 2
      ? pick([null, true, random() * 1e6, text(8)])
      : pick([
          () => null,
          () => random(),
          () => text(12),
          () => [json(depth + 1), json(depth + 1)],
          () => ({ [text(4)]: json(depth + 1) }),
        ])();
  const id = `fuzz-${index}`;
  const valid = encodeTaskMessage({ task: TASK, id, args: [index, text(10)], kwargs: { nested: json() } });
  switch (pick(['valid', 'valid', 'bytes', 'json', 'headers', 'oversize', 'utf8'] as const)) {
    case 'valid':
      return { body: valid.body, properties: valid.properties as Options.Publish, valid: id };
    case 'bytes':
      return { body: bytes(1 + Math.floor(random() * 512)), properties: valid.properties as Options.Publish };
    case 'json':
      // Valid JSON of the wrong shape (an object, not [args, kwargs, embed]).
      return { body: Buffer.from(JSON.stringify({ random: json() })), properties: valid.properties as Options.Publish };
    case 'headers': {
      // A header of a type or value no decoder may accept (a string task is valid but unknown: dead-lettered too).
      const header = pick(['task', 'id', 'retries', 'eta', 'expires'] as const);
      const odd = pick([
        true,
        [1, 'a'],
        { deep: text(5) },
        bytes(16),
        ...(header === 'retries' ? [-1, 3.5] : ['']),
        ...(header === 'id' || header === 'retries' ? [] : [text(300)]),
        ...(header === 'task' || header === 'id' ? [42] : []),
      ]);
      return {
        body: valid.body,
        properties: { ...valid.properties, headers: { ...valid.properties.headers, [header]: odd } } as Options.Publish,
      };
    }
    case 'oversize':
      return { body: Buffer.alloc(MAX_BYTES + 1, 0x20), properties: valid.properties as Options.Publish };
    case 'utf8':
      return {
        body: Buffer.concat([Buffer.from('[["'), bytes(8).map((b) => b | 0x80), Buffer.from('"],{},{}]')]),
        properties: valid.properties as Options.Publish,
      };
  }
}

describe('fuzzed input on RabbitMQ', () => {
  const suite = rabbitSuite();

  it(`processes each valid message once and dead-letters each invalid one once with a printable reason (${MESSAGES} messages, seed ${SEED})`, async () => {
    const queue = suite.queue('fuzz');
    const Handler = recorder(TASK, { flushEvery: 50, flushInterval: 50, queue });
    const app = await startWorker(
      { broker: AMQP_URL, defaultQueue: queue, maxMessageBytes: MAX_BYTES, waitForBroker: true },
      [Handler],
      new RecordingLogger(),
    );
    try {
      const random = prng(SEED);
      const messages = Array.from({ length: MESSAGES }, (_, index) => fuzzed(random, index));
      // One valid message whose args are ones a handler would get only if the dispatcher kept going.
      const rssBefore = process.memoryUsage().rss;
      for (const message of messages) suite.rabbit.channel.sendToQueue(queue, message.body, message.properties);
      await suite.rabbit.channel.waitForConfirms();

      const validIds = messages.flatMap((message) => (message.valid ? [message.valid] : []));
      const invalid = MESSAGES - validIds.length;
      const handler = app.get(Handler);
      await handler.waitForRequests(validIds.length, 60_000);
      const letters: Array<{ reason: unknown; body: Buffer }> = [];
      await waitFor(
        async () => {
          for (const message of await suite.rabbit.takeAll(`${queue}.dead`)) {
            letters.push({ reason: message.properties.headers?.['x-dead-letter-reason'], body: message.content });
          }
          return letters.length >= invalid;
        },
        `${invalid} dead letters`,
        60_000,
      ).catch(async (error: unknown) => {
        const reasons = new Map<string, number>();
        for (const { reason } of letters) reasons.set(String(reason).slice(0, 40), (reasons.get(String(reason).slice(0, 40)) ?? 0) + 1);
        throw new Error(
          `${String(error)}: ${letters.length} letters, ${handler.received} handled of ${validIds.length}, queue ${JSON.stringify(await queueCounts(queue))}, reasons ${JSON.stringify([...reasons])}`,
        );
      });
      await waitFor(async () => (await queueCounts(queue)).unacked === 0, 'nothing left unacked', 30_000);

      const seen = handler.batches.flat().map((request: SimpleRequest) => request.id);
      assert.equal(seen.length, new Set(seen).size, 'no valid message ran twice');
      assert.deepEqual(seen.toSorted(), validIds.toSorted(), 'every valid message ran');
      assert.equal(letters.length, invalid, 'each invalid message dead-lettered once');
      for (const { reason } of letters) {
        assert.equal(typeof reason, 'string');
        assert.match(reason as string, /^[\x20-\x7e]{1,300}$/, `reason not short and printable: ${JSON.stringify(reason)}`);
      }
      // No reason quotes the body it came with (V8's JSON errors do, unless the worker strips them).
      for (const { reason, body } of letters) {
        const snippet = body.subarray(0, 12).toString('latin1');
        if (snippet.length === 12 && /^[\x20-\x7e]+$/.test(snippet)) assert.ok(!(reason as string).includes(snippet), String(reason));
      }
      // The worker is still up: one more valid message runs.
      const after = encodeTaskMessage({ task: TASK, id: 'fuzz-after' });
      await suite.rabbit.publishRaw(queue, after.body, after.properties as Options.Publish);
      await handler.waitForRequests(validIds.length + 1);
      const grownMb = (process.memoryUsage().rss - rssBefore) / 1024 / 1024;
      assert.ok(grownMb < 150, `RSS grew ${grownMb.toFixed(0)} MB over ${MESSAGES} messages`);
    } finally {
      await app.close();
    }
  });
});
