import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { childIds, s, valueOf, type CanvasSpec, type WhoAmI } from '../support/canvas-spec.js';
import type { CanvasWorkers } from '../support/canvas-workers.js';

/** A chord header split between the workers: [nest.double.s(1), py.add.s(1, 1), nest.double.s(3)]. */
const MIXED_HEADER: CanvasSpec[] = [s('nest.double', 1), s('py.add', 1, 1), s('nest.double', 3)];

/**
 * Canvases built with Celery's API in Python whose steps run as Nest batch tasks: chains, link and
 * link_error, chords, parent and root ids. Registered inside test/canvas.test.ts's suite, so they
 * run against the two workers it starts once.
 */
export function pythonCanvasesThroughNest(workers: CanvasWorkers): void {
  const { runCanvas, runsInNest, ranInNest } = workers;
  const { Double, Fail, Flaky } = workers.tasks;

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
}
