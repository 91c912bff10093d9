import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { INestMicroservice } from '@nestjs/common';
import type { GetMessage } from 'amqplib';
import {
  BatchClient,
  encodeTaskMessage,
  NotRegistered,
  ResultBackend,
  TaskFailedError,
  type ExceptionInfo,
  type SimpleRequest,
} from 'nestjs-batches';
import { celeryMissing, PythonProcess, type PythonEvent } from './support/python.js';
import { AMQP_URL, queueCounts, rabbitSuite } from './support/rabbitmq.js';
import { waitFor } from './support/wait.js';
import { recorder, RecordingLogger, startWorker } from './support/worker-app.js';
import { REDIS_URL } from './support/redis-results.js';

const skip = celeryMissing();

/** What Celery 5.2's worker stores for a task it has no handler for (`on_unknown_task`). */
const notRegistered = (task: string): ExceptionInfo => ({
  exc_type: 'NotRegistered',
  exc_message: [task],
  exc_module: 'celery.exceptions',
});

/** read_meta.py for one id: what the backend holds for it and what Python raises for it. */
async function readMeta(id: string, queue: string): Promise<PythonEvent> {
  const [event] = await PythonProcess.run('read_meta.py', [JSON.stringify([id]), '15'], queue);
  return event;
}

/** A stored meta without what differs between any two tasks (checked here): its id and when it finished. */
function comparable(raw: unknown, id: string): Record<string, unknown> {
  const { date_done: dateDone, task_id: taskId, ...rest } = raw as Record<string, unknown>;
  assert.equal(taskId, id);
  assert.match(String(dateDone), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/);
  return rest;
}

/** Deliberately sets no `name`: it inherits 'Error', yet Celery would store the class's own name. */
class QuotaExceeded extends Error {}
class BadSku extends TypeError {}
class Named extends Error {
  override name = 'PaymentDeclined';
}

describe('unknown tasks and error class names (RabbitMQ + Redis)', () => {
  const suite = rabbitSuite();
  const queue = suite.queue('unknown');
  const dead = `${queue}.dead`;
  const logger = new RecordingLogger();
  let app: INestMicroservice;
  let results: ResultBackend;
  const Known = recorder('unknown.known', { flushEvery: 10, flushInterval: 100, queue });
  const Quota = recorder('unknown.quota', { flushEvery: 10, flushInterval: 100, queue, maxRetries: 0 }, (requests: SimpleRequest[]) => {
    throw new QuotaExceeded(`quota of ${requests.length} exceeded`);
  });
  /** Dead letters taken so far, by task id (else task name); the test connection acks them as it takes them. */
  const deadLetters = new Map<string, GetMessage>();

  async function deadLetterOf(id: string): Promise<GetMessage> {
    await waitFor(async () => {
      for (const message of await suite.rabbit.takeAll(dead))
        deadLetters.set(String(message.properties.headers?.id ?? message.properties.headers?.task), message);
      return deadLetters.has(id);
    }, `task ${id} in '${dead}'`);
    return deadLetters.get(id) as GetMessage;
  }

  async function nothingUnacked(): Promise<void> {
    await waitFor(async () => (await queueCounts(queue)).unacked === 0, `nothing unacked on '${queue}'`);
  }

  before(async () => {
    app = suite.closeAfter(await startWorker({ broker: AMQP_URL, resultBackend: REDIS_URL, defaultQueue: queue }, [Known, Quota], logger));
    results = app.get(ResultBackend);
  });

  it('a BatchClient task nobody handles fails with NotRegistered instead of staying PENDING, and is dead-lettered', async () => {
    const result = await app.get(BatchClient).applyAsync('nest.nobody', { args: [1], queue });
    await assert.rejects(result.get({ timeout: 10_000 }), (error: unknown) => {
      assert.ok(error instanceof TaskFailedError, String(error));
      assert.equal(error.excType, 'NotRegistered');
      assert.equal(error.excModule, 'celery.exceptions');
      assert.equal(error.excMessage, 'nest.nobody');
      assert.equal(error.traceback, null);
      return true;
    });
    const stored = await results.getResult(result.id);
    assert.equal(stored.status, 'FAILURE');
    assert.deepEqual(stored.result, notRegistered('nest.nobody'));
    const letter = await deadLetterOf(result.id);
    assert.match(
      String(letter.properties.headers?.['x-dead-letter-reason']),
      new RegExp(`unknown task 'nest\\.nobody': no @BatchHandler for it consumes queue '${queue.replaceAll('.', '\\.')}'`),
    );
    assert.equal(letter.properties.headers?.['x-original-queue'], queue);
    // One warning naming the task and the queue.
    const lines = logger.lines.filter((line) => line.includes(result.id));
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.ok(lines[0].includes(`'nest.nobody'`) && lines[0].includes(`'${queue}'`), lines[0]);
    await nothingUnacked();
  });

  it('stores the failure even when the message asks to ignore its result (as Celery does)', async () => {
    const id = await suite.rabbit.publishTask(queue, { task: 'nest.ignored', ignoreResult: true });
    await assert.rejects(results.waitForResult(id, { timeout: 10_000 }), { name: 'TaskFailedError', excType: 'NotRegistered' });
    await deadLetterOf(id);
  });

  it('an unknown task named in the headers fails as NotRegistered even when its body cannot be read', async () => {
    const id = randomUUID();
    const good = encodeTaskMessage({ task: 'nest.garbled', id });
    await suite.rabbit.publishRaw(queue, Buffer.from('{not json'), { ...good.properties, headers: { ...good.properties.headers } });
    await assert.rejects(results.waitForResult(id, { timeout: 10_000 }), { name: 'TaskFailedError', excType: 'NotRegistered' });
    assert.match(
      String((await deadLetterOf(id)).properties.headers?.['x-dead-letter-reason']),
      /unknown task 'nest\.garbled'.*not valid JSON/,
    );
  });

  it('a known task whose body cannot be read fails with the reason instead of staying PENDING', async () => {
    const id = randomUUID();
    const good = encodeTaskMessage({ task: 'unknown.known', id });
    await suite.rabbit.publishRaw(queue, Buffer.from('{not json'), { ...good.properties, headers: { ...good.properties.headers } });
    await assert.rejects(results.waitForResult(id, { timeout: 10_000 }), (error: unknown) => {
      assert.ok(error instanceof TaskFailedError, String(error));
      assert.equal(error.excType, 'InvalidMessageError');
      assert.match(error.excMessage, /not valid JSON/);
      return true;
    });
    assert.match(String((await deadLetterOf(id)).properties.headers?.['x-dead-letter-reason']), /not valid JSON/);
    assert.equal(app.get(Known).received, 0);
    await nothingUnacked();
  });

  it('a message without an id still only goes to the dead-letter queue, and the worker keeps running', async () => {
    const good = encodeTaskMessage({ task: 'nest.anonymous' });
    await suite.rabbit.publishRaw(queue, Buffer.from('{not json'), { ...good.properties, headers: { task: 'nest.anonymous' } });
    await suite.rabbit.publishTask(queue, { task: 'unknown.known', args: ['after'] });
    await app.get(Known).waitForRequests(1);
    assert.match(String((await deadLetterOf('nest.anonymous')).properties.headers?.['x-dead-letter-reason']), /not valid JSON/);
    assert.equal((await results.getResult('nest.anonymous')).status, 'PENDING');
    await nothingUnacked();
  });

  it('stores JS error classes under their own names', async () => {
    const cases: Array<[Error, string, string]> = [
      [new QuotaExceeded('q'), 'QuotaExceeded', 'nestjs_batches'],
      [new BadSku('sku'), 'BadSku', 'nestjs_batches'],
      [new Named('declined'), 'PaymentDeclined', 'nestjs_batches'],
      [new TypeError('t'), 'TypeError', 'builtins'],
      [new Error('e'), 'Error', 'nestjs_batches'],
      [new DOMException('aborted', 'AbortError'), 'AbortError', 'nestjs_batches'],
      [new NotRegistered('x.y'), 'NotRegistered', 'celery.exceptions'],
    ];
    for (const [error, type, module] of cases) {
      const id = randomUUID();
      await results.markAsFailure(id, error);
      const stored = await results.getResult(id);
      assert.deepEqual(
        stored.result,
        { exc_type: type, exc_message: [error instanceof NotRegistered ? 'x.y' : error.message], exc_module: module },
        type,
      );
    }
  });

  describe('with Python Celery', { skip }, () => {
    const pythonQueue = suite.queue('unknown-py');
    let worker: PythonProcess;

    before(async () => {
      worker = new PythonProcess('worker.py', [], pythonQueue);
      await worker.waitForEvent('ready');
    });
    after(() => worker?.stop());

    it("Python's send_task to an unknown task raises NotRegistered, stored exactly as Python Celery's own worker stores it", async () => {
      // The same unknown task, sent once to the Nest worker's queue and once to a Python worker's.
      const sent = await PythonProcess.run('producer.py', [JSON.stringify({ task: 'py.nobody', args: [7], timeout: 15 })], queue);
      const [reference] = await PythonProcess.run(
        'producer.py',
        [JSON.stringify({ task: 'py.nobody', args: [7], timeout: 15 })],
        pythonQueue,
      );
      const id = (sent[0].ids as string[])[0];
      // What Python's AsyncResult.get() raised, by class name and str().
      assert.deepEqual(
        sent.find((event) => event.event === 'error'),
        { event: 'error', id, exc_type: 'NotRegistered', message: "'py.nobody'" },
      );
      const referenceId = (reference.ids as string[])[0];

      const nest = await readMeta(id, queue);
      assert.equal(nest.exc_class, 'celery.exceptions.NotRegistered', JSON.stringify(nest));
      assert.equal(nest.is_not_registered, true);
      assert.deepEqual(nest.exc_args, ['py.nobody']);
      assert.equal(nest.message, "'py.nobody'");
      assert.equal(nest.status, 'FAILURE');
      assert.equal(nest.meta_result_class, 'celery.exceptions.NotRegistered');

      const python = await readMeta(referenceId, queue);
      assert.equal(python.exc_class, 'celery.exceptions.NotRegistered', JSON.stringify(python));
      assert.deepEqual(comparable(nest.raw, id), comparable(python.raw, referenceId));
      assert.deepEqual(comparable(nest.raw, id), { status: 'FAILURE', result: notRegistered('py.nobody'), traceback: null, children: [] });

      const letter = await deadLetterOf(id);
      assert.match(String(letter.properties.headers?.['x-dead-letter-reason']), /unknown task 'py\.nobody'/);
      assert.ok(
        logger.lines.some((line) => line.includes(`'py.nobody'`) && line.includes(`'${queue}'`)),
        'a log line names the task and the queue',
      );
      await nothingUnacked();
    });

    it('a handler throwing `class QuotaExceeded extends Error {}` fails in Python as QuotaExceeded, and in Nest too', async () => {
      const [sent] = await PythonProcess.run('producer.py', [JSON.stringify({ task: 'unknown.quota', args: [1], wait: false })], queue);
      const id = (sent.ids as string[])[0];
      const python = await readMeta(id, queue);
      assert.equal(python.status, 'FAILURE', JSON.stringify(python));
      // Celery rebuilds an exception class it cannot import under its stored name.
      assert.equal(python.exc_class, 'celery.exceptions.QuotaExceeded');
      assert.deepEqual(python.exc_args, ['quota of 1 exceeded']);
      assert.equal(python.meta_result_class, 'celery.exceptions.QuotaExceeded');
      assert.deepEqual((python.raw as { result: unknown }).result, {
        exc_type: 'QuotaExceeded',
        exc_message: ['quota of 1 exceeded'],
        exc_module: 'nestjs_batches',
      });

      const stored = await results.getResult(id);
      assert.equal(stored.status, 'FAILURE');
      assert.equal((stored.result as ExceptionInfo).exc_type, 'QuotaExceeded');
      await assert.rejects(results.waitForResult(id, { timeout: 1_000 }), { name: 'TaskFailedError', excType: 'QuotaExceeded' });
      // maxRetries 0: dead-lettered at once.
      await deadLetterOf(id);
      await nothingUnacked();
    });
  });
});
