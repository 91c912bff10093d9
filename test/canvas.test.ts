import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { INestMicroservice } from '@nestjs/common';
import { AsyncResult, BatchClient, ResultBackend, signature, TaskFailedError, type Signature } from 'nestjs-batches';
import { childIds, s, valueOf, type CanvasSpec, type WhoAmI } from './support/canvas-spec.js';
import { nestCanvasTasks, nestRuns, pythonCanvasRunner } from './support/canvas-workers.js';
import { celeryMissing, PythonProcess } from './support/python.js';
import { AMQP_URL, rabbitSuite } from './support/rabbitmq.js';
import { startWorker } from './support/worker-app.js';

/*
 * Celery canvas (chains, link / link_error, chords, groups) across a Python Celery worker and a
 * Nest batch worker. Python tasks `py.*` run in test/python/canvas_worker.py on `pyQueue`; Nest
 * tasks `nest.*` run here on `nestQueue`. Python routes `nest.*` to `nestQueue` with `task_routes`,
 * Nest routes `py.*` to `pyQueue` with `taskRoutes`, so whichever side sends the next step of a
 * canvas, it lands on the worker that has the task. Python canvases are built with Celery's own API
 * in test/python/canvas_client.py and every result is read there with `.get(timeout=...)`.
 */

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0';
const skip = celeryMissing();
/** Milliseconds Nest-side reads wait. */
const WAIT = 20_000;

/** A chord header split between the workers: [nest.double.s(1), py.add.s(1, 1), nest.double.s(3)]. */
const MIXED_HEADER: CanvasSpec[] = [s('nest.double', 1), s('py.add', 1, 1), s('nest.double', 3)];

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

  const { Double, Add, TSum, Fail, Flaky } = nestCanvasTasks(nestQueue);
  const runCanvas = pythonCanvasRunner({ pyQueue, nestQueue });
  const { runsInNest, ranInNest } = nestRuns(() => app);

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
      [Double, Add, TSum, Fail, Flaky],
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

  describe('Python chains through Nest batch tasks', () => {
    it('Nest first: nest.double.s(5) | py.add.s(100) → 110', async () => {
      const outcome = await runCanvas({ chain: [s('nest.double', 5), s('py.add', 100)] });
      // 5 * 2 = 10, then 10 + 100.
      assert.deepEqual(outcome.steps.map(valueOf), [10, 110]);
      assert.equal(valueOf(outcome), 110);
      // The Nest request carried the rest of its chain.
      const request = ranInNest(Double, outcome.steps[0].id);
      assert.deepEqual(
        request.chain.map((step) => [step.task, step.args]),
        [['py.add', [100]]],
      );
    });

    it('Nest in the middle: py.add.s(1, 2) | nest.double.s() | py.mul.s(10) → 60', async () => {
      const outcome = await runCanvas({ chain: [s('py.add', 1, 2), s('nest.double'), s('py.mul', 10)] });
      // 1 + 2 = 3, 3 * 2 = 6, 6 * 10 = 60.
      assert.deepEqual(outcome.steps.map(valueOf), [3, 6, 60]);
    });

    it('Nest last: py.add.s(1, 2) | nest.double.s() → 6', async () => {
      const outcome = await runCanvas({ chain: [s('py.add', 1, 2), s('nest.double')] });
      // (1 + 2) * 2.
      assert.deepEqual(outcome.steps.map(valueOf), [3, 6]);
    });

    it('Nest to Nest: nest.double.s(1) | nest.add.s(10) | nest.double.s() → 24', async () => {
      const outcome = await runCanvas({ chain: [s('nest.double', 1), s('nest.add', 10), s('nest.double')] });
      // 1 * 2 = 2, 2 + 10 = 12, 12 * 2 = 24.
      assert.deepEqual(outcome.steps.map(valueOf), [2, 12, 24]);
    });

    it('a Nest step that is retried keeps its chain: nest.flaky.s(4) | py.add.s(1) → 9', async () => {
      const outcome = await runCanvas({ chain: [s('nest.flaky', 4), s('py.add', 1)] });
      // 4 * 2 = 8 (on the retry), 8 + 1 = 9.
      assert.deepEqual(outcome.steps.map(valueOf), [8, 9]);
      assert.deepEqual(
        runsInNest(Flaky, outcome.steps[0].id).map((request) => [request.retries, request.chain.map((step) => step.task)]),
        [
          [0, ['py.add']],
          [1, ['py.add']],
        ],
      );
    });

    it('AsyncResult.children of a Nest chain step lists the step it sent', async () => {
      const outcome = await runCanvas({ chain: [s('nest.double', 7), s('py.add', 1)] });
      // 7 * 2 = 14, 14 + 1 = 15.
      assert.deepEqual(outcome.steps.map(valueOf), [14, 15]);
      assert.deepEqual(childIds(outcome.steps[0]), [outcome.steps[1].id]);
    });
  });

  describe('link and link_error on Nest batch tasks, from Python', () => {
    it('nest.double.apply_async((4,), link=py.identity.s()): the callback gets 8', async () => {
      const outcome = await runCanvas({ ...s('nest.double', 4), link: [s('py.identity')] });
      assert.equal(valueOf(outcome), 8);
      assert.equal(outcome.callbacks[0].task, 'py.identity');
      // 4 * 2, passed on by the identity callback.
      assert.equal(valueOf(outcome.callbacks[0]), 8);
      assert.deepEqual(
        ranInNest(Double, outcome.id).callbacks.map((callback) => callback.task),
        ['py.identity'],
      );
    });

    it("nest.fail.apply_async(('x',), link_error=py.record_error.s()): the errback runs with the failed task's id", async () => {
      const outcome = await runCanvas({ ...s('nest.fail', 'x'), link_error: [s('py.record_error')] });
      assert.equal(outcome.status, 'FAILURE');
      assert.ok(outcome.error, 'nest.fail raised in Python');
      assert.equal(valueOf(outcome.errbacks[0]), outcome.id);
      assert.equal(outcome.errback_key, outcome.id);
      assert.deepEqual(
        ranInNest(Fail, outcome.id).errbacks.map((errback) => errback.task),
        ['py.record_error'],
      );
    });
  });

  describe('Python chords with header tasks on both workers', () => {
    it('header [nest.double.s(1), py.add.s(1, 1), nest.double.s(3)], body py.tsum.s() → 10', async () => {
      const outcome = await runCanvas({ chord: MIXED_HEADER, body: s('py.tsum') });
      // Header results in header order: 1 * 2, 1 + 1, 3 * 2; the body sums them.
      assert.deepEqual(outcome.steps[0].results?.map(valueOf), [2, 2, 6]);
      assert.equal(valueOf(outcome), 10);
      // The Nest requests knew their chord: its group id, their place in it, its body.
      const groupId = outcome.steps[0].id;
      for (const index of [0, 2]) {
        const request = ranInNest(Double, outcome.steps[0].results?.[index].id ?? '');
        assert.deepEqual([request.group, request.groupIndex, request.chord?.task], [groupId, index, 'py.tsum']);
      }
    });

    it('the same header with body nest.tsum.s() → 10', async () => {
      const outcome = await runCanvas({ chord: MIXED_HEADER, body: s('nest.tsum') });
      assert.deepEqual(outcome.steps[0].results?.map(valueOf), [2, 2, 6]);
      // 2 + 2 + 6.
      assert.equal(valueOf(outcome), 10);
    });

    it('an all-Nest chord: header [nest.double.s(1), nest.double.s(2)], body nest.tsum.s() → 6', async () => {
      const outcome = await runCanvas({ chord: [s('nest.double', 1), s('nest.double', 2)], body: s('nest.tsum') });
      // 1 * 2 + 2 * 2.
      assert.deepEqual(outcome.steps[0].results?.map(valueOf), [2, 4]);
      assert.equal(valueOf(outcome), 6);
    });

    it('an all-Nest chord with a failing header task: the Nest worker fails the body with ChordError', async () => {
      // Both header tasks run on Nest, so Nest counts the last part and fails the body itself.
      const outcome = await runCanvas({ chord: [s('nest.double', 1), s('nest.fail', 'boom')], body: s('py.tsum') });
      const [doubled, failed] = outcome.steps[0].results ?? [];
      assert.equal(valueOf(doubled), 2);
      assert.equal(failed.status, 'FAILURE');
      assert.equal(outcome.status, 'FAILURE');
      assert.equal(outcome.error?.type, 'ChordError', JSON.stringify(outcome.error));
      assert.match(outcome.error?.message ?? '', new RegExp(`Dependency ${failed.id} raised`));
    });

    it('a failing Nest header task beside a Python one fails the body with ChordError in Python', async () => {
      const outcome = await runCanvas({ chord: [s('nest.fail', 'boom'), s('py.add', 1, 1)], body: s('py.tsum') });
      const [failed, added] = outcome.steps[0].results ?? [];
      assert.equal(failed.status, 'FAILURE');
      assert.equal(valueOf(added), 2);
      assert.equal(outcome.status, 'FAILURE');
      assert.equal(outcome.error?.type, 'ChordError', JSON.stringify(outcome.error));
      assert.match(outcome.error?.message ?? '', new RegExp(`Dependency ${failed.id} raised`));
    });
  });

  describe('parent and root ids of what the Nest worker sends', () => {
    it('py.add.s(1, 2) | nest.double.s() | py.whoami.s(): parent = the Nest step, root = the first step', async () => {
      const outcome = await runCanvas({ chain: [s('py.add', 1, 2), s('nest.double'), s('py.whoami')] });
      const [first, nest] = outcome.steps;
      const who = valueOf(outcome) as WhoAmI;
      // (1 + 2) * 2.
      assert.deepEqual(who.args, [6]);
      assert.equal(who.parent_id, nest.id);
      assert.equal(who.root_id, first.id);
      const request = ranInNest(Double, nest.id);
      assert.deepEqual([request.parentId, request.rootId], [first.id, first.id]);
    });

    it('nest.double.s(21) | py.whoami.s(): the Nest task, first of its chain, is parent and root', async () => {
      const outcome = await runCanvas({ chain: [s('nest.double', 21), s('py.whoami')] });
      const nest = outcome.steps[0];
      const who = valueOf(outcome) as WhoAmI;
      assert.deepEqual(who.args, [42]);
      assert.equal(who.parent_id, nest.id);
      assert.equal(who.root_id, nest.id);
    });

    it('a link callback of a Nest task has the Nest task as parent and root', async () => {
      const outcome = await runCanvas({ ...s('nest.double', 8), link: [s('py.whoami')] });
      const who = valueOf(outcome.callbacks[0]) as WhoAmI;
      assert.deepEqual(who.args, [16]);
      assert.equal(who.parent_id, outcome.id);
      assert.equal(who.root_id, outcome.id);
    });
  });

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
