import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { INestMicroservice } from '@nestjs/common';
import { AsyncResult, BatchClient, ResultBackend, signature, TaskFailedError, type Signature } from 'nestjs-batches';
import { pythonCanvasesThroughNest } from './canvas/python-canvases-through-nest.js';
import { childIds, s, valueOf, type WhoAmI } from './support/canvas-spec.js';
import { nestCanvasTasks, nestRuns, pythonCanvasRunner } from './support/canvas-workers.js';
import { celeryMissing, PythonProcess } from './support/python.js';
import { AMQP_URL, rabbitSuite } from './support/rabbitmq.js';
import { startWorker } from './support/worker-app.js';
import { REDIS_URL } from './support/redis-results.js';

/*
 * Celery canvas (chains, link / link_error, chords, groups) across a Python Celery worker and a
 * Nest batch worker. Python tasks `py.*` run in test/python/canvas_worker.py on `pyQueue`; Nest
 * tasks `nest.*` run here on `nestQueue`. Python routes `nest.*` to `nestQueue` with `task_routes`,
 * Nest routes `py.*` to `pyQueue` with `taskRoutes`, so whichever side sends the next step of a
 * canvas, it lands on the worker that has the task. Python canvases are built with Celery's own API
 * in test/python/canvas_client.py and every result is read there with `.get(timeout=...)`.
 * Python's canvases through Nest tasks are in test/canvas/python-canvases-through-nest.ts, registered
 * below so they share both workers.
 */

const skip = celeryMissing();
/** Milliseconds Nest-side reads wait. */
const WAIT = 20_000;

describe('Celery canvas across a Python Celery worker and a Nest batch worker', { skip, timeout: 600_000 }, () => {
  let python: PythonProcess | undefined;
  let app: INestMicroservice | undefined;
  // Registered before rabbitSuite()'s own after(), so both workers are gone before it deletes the
  // queues (a Celery worker whose queue is deleted under it declares it again).
  after(async () => {
    await app?.close();
    await python?.stop();
  });
  const suite = rabbitSuite();
  const pyQueue = suite.queue('canvas.py');
  const nestQueue = suite.queue('canvas.nest');
  let client: BatchClient;
  let results: ResultBackend;

  const tasks = nestCanvasTasks(nestQueue);
  const runCanvas = pythonCanvasRunner({ pyQueue, nestQueue });

  before(async () => {
    python = new PythonProcess('canvas_worker.py', [nestQueue], pyQueue);
    await python.waitForEvent('ready');
    app = await startWorker(
      {
        broker: AMQP_URL,
        resultBackend: REDIS_URL,
        defaultQueue: nestQueue,
        taskRoutes: { 'py.*': pyQueue },
        waitForBroker: true,
      },
      [tasks.Double, tasks.Add, tasks.TSum, tasks.Fail, tasks.Flaky],
    );
    client = app.get(BatchClient);
    results = app.get(ResultBackend);
  });

  describe('the Python harness on its own (what the Nest cases expect, shown by Celery)', () => {
    it('the Python harness runs a pure-Python chord', async () => {
      const [chained, chorded] = await Promise.all([
        // (1 + 2) * 10
        runCanvas({ chain: [s('py.add', 1, 2), s('py.mul', 10)] }),
        // (1 + 1) + (2 + 2)
        runCanvas({ chord: [s('py.add', 1, 1), s('py.add', 2, 2)], body: s('py.tsum') }),
      ]);
      assert.equal(valueOf(chained), 30);
      assert.deepEqual(chained.steps.map(valueOf), [3, 30]);
      assert.deepEqual(childIds(chained.steps[0]), [chained.steps[1].id]);
      assert.equal(valueOf(chorded), 6);
      assert.deepEqual(chorded.steps[0].results?.map(valueOf), [2, 4]);
    });

    it('the Python harness: link gets the result, a single-argument link_error gets the failed id', async () => {
      const [linked, failed] = await Promise.all([
        runCanvas({ ...s('py.add', 4, 4), link: [s('py.identity')] }),
        runCanvas({ ...s('py.fail', 'x'), link_error: [s('py.record_error')] }),
      ]);
      assert.equal(valueOf(linked.callbacks[0]), 8);
      assert.equal(failed.error?.type, 'ValueError');
      assert.equal(valueOf(failed.errbacks[0]), failed.id);
      assert.equal(failed.errback_key, failed.id);
    });

    it('the Python harness: a chain step sees parent_id = the step before, root_id = the first step', async () => {
      const outcome = await runCanvas({ chain: [s('py.add', 1, 2), s('py.identity'), s('py.whoami')] });
      const who = valueOf(outcome) as WhoAmI;
      assert.deepEqual(who.args, [3]);
      assert.equal(who.parent_id, outcome.steps[1].id);
      assert.equal(who.root_id, outcome.steps[0].id);
    });

    it('the Python harness: a failed header task fails the chord body with ChordError', async () => {
      const outcome = await runCanvas({ chord: [s('py.fail', 'boom'), s('py.add', 1, 1)], body: s('py.tsum') });
      const failedHeader = outcome.steps[0].results?.[0];
      assert.equal(outcome.error?.type, 'ChordError');
      assert.match(outcome.error?.message ?? '', new RegExp(`Dependency ${failedHeader?.id} raised`));
    });
  });

  pythonCanvasesThroughNest({ runCanvas, ...nestRuns(() => app), tasks });

  describe('Nest BatchClient canvas, run by both workers', () => {
    it("chain([signature('py.add', { args: [1, 2] }), signature('nest.double')]) → 6", async () => {
      const steps: Signature[] = [signature('py.add', { args: [1, 2] }), signature('nest.double')];
      const result = await client.chain(steps);
      // (1 + 2) * 2.
      assert.equal(await result.get({ timeout: WAIT }), 6);
    });

    it('chain with a Python task between Nest tasks → 10', async () => {
      const result = await client.chain([
        signature('nest.double', { args: [2] }),
        signature('py.add', { args: [1] }),
        signature('nest.double'),
      ]);
      // 2 * 2 = 4, 4 + 1 = 5, 5 * 2 = 10.
      assert.equal(await result.get({ timeout: WAIT }), 10);
    });

    it("group([signature('nest.double', { args: [1] }), signature('py.add', { args: [2, 3] })]).get() → [2, 5]", async () => {
      const grouped = await client.group([signature('nest.double', { args: [1] }), signature('py.add', { args: [2, 3] })]);
      assert.equal(typeof grouped.id, 'string');
      assert.equal(grouped.results.length, 2);
      // [1 * 2, 2 + 3], in the group's order.
      assert.deepEqual(await grouped.get({ timeout: WAIT }), [2, 5]);
    });

    it("applyAsync('nest.double', { args: [4], link: py.identity }): the callback gets 8", async () => {
      const callbackId = randomUUID();
      const sent = await client.applyAsync('nest.double', {
        args: [4],
        link: signature('py.identity', { options: { task_id: callbackId } }),
      });
      assert.equal(await sent.get({ timeout: WAIT }), 8);
      // 4 * 2, passed on by the identity callback under the id frozen into its signature.
      assert.equal(await new AsyncResult(callbackId, results).get({ timeout: WAIT }), 8);
    });

    it("applyAsync('nest.fail', { linkError: py.record_error }): the errback gets the failed task's id", async () => {
      const errbackId = randomUUID();
      const sent = await client.applyAsync('nest.fail', {
        args: ['x'],
        linkError: signature('py.record_error', { options: { task_id: errbackId } }),
      });
      await assert.rejects(sent.get({ timeout: WAIT }), TaskFailedError);
      assert.equal(await new AsyncResult(errbackId, results).get({ timeout: WAIT }), sent.id);
    });
  });
});
