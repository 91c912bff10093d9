import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import type { INestMicroservice } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { BatchClient, BatchesConfigError, BatchesModule, ResultBackend, WorkerActivity, type SimpleRequest } from 'nestjs-batches';
import { assertFields, COMMON_FIELDS, EventReceiver, WORKER_FIELDS, type CeleryEvent } from './support/celery-event-receiver.js';
import { celeryMissing, PythonProcess } from './support/python.js';
import { AMQP_URL, rabbitSuite } from './support/rabbitmq.js';
import { recorder, startWorker } from './support/worker-app.js';

const skip = celeryMissing();

class QuotaExceeded extends Error {}

describe('Celery events of a Nest worker, read by a Python app.events.Receiver', { skip }, () => {
  const suite = rabbitSuite();
  const receivers: EventReceiver[] = [];
  after(async () => {
    await Promise.all(receivers.map((each) => each.stop()));
  });

  async function receiver(hostname: string, queue: string): Promise<EventReceiver> {
    const each = new EventReceiver(hostname, queue);
    receivers.push(each);
    await each.ready();
    return each;
  }

  it('sends worker-online, heartbeats, task events for a batch and a failure, and worker-offline (sendEvents: true)', async () => {
    const queue = suite.queue('events.on');
    const hostname = `ev-${randomUUID().slice(0, 8)}@nest-test`;
    const python = await receiver(hostname, queue);
    const Adder = recorder('ev.add', { flushEvery: 3, flushInterval: 60_000, queue }, (requests: SimpleRequest[]) =>
      requests.map((request) => ({ sum: (request.args[0] as number) + (request.args[1] as number) })),
    );
    let results: ResultBackend | undefined;
    const Quota = recorder('ev.quota', { flushEvery: 1, flushInterval: 50, queue }, async (requests: SimpleRequest[]) => {
      for (const request of requests) await results?.markAsFailure(request.id, new QuotaExceeded(`over quota: ${String(request.args[0])}`));
    });
    // Always throws: retried once, then failed for good and dead-lettered.
    const Boom = recorder('ev.boom', { flushEvery: 1, flushInterval: 50, queue, maxRetries: 1, retryDelay: 50 }, () => {
      throw new RangeError('boom');
    });
    const app: INestMicroservice = await startWorker({ broker: AMQP_URL, defaultQueue: queue, hostname, sendEvents: true }, [
      Adder,
      Quota,
      Boom,
    ]);
    results = app.get(ResultBackend);
    let closed = false;
    try {
      const [online] = await python.waitFor('worker-online');
      assertFields(online, WORKER_FIELDS);
      assert.equal(online.hostname, hostname);
      assert.equal(online.pid, process.pid);
      assert.equal(online.freq, 2);
      assert.equal(online.sw_ident, 'nestjs-batches');
      assert.equal(typeof online.sw_ver, 'string');
      assert.equal(online.sw_sys, 'Linux');
      assert.equal((online.loadavg as number[]).length, 3);
      assert.equal(typeof online.clock, 'number');
      assert.ok(Math.abs((online.timestamp as number) - Date.now() / 1000) < 60, 'timestamp is Unix seconds');

      const [heartbeat] = await python.waitFor('worker-heartbeat', 1, undefined, 6_000);
      assertFields(heartbeat, WORKER_FIELDS);
      assert.ok((heartbeat.clock as number) > (online.clock as number), 'the Lamport clock moves forward');
      const alive = python.process.events.find((event) => event.event === 'worker' && event.alive === true);
      assert.ok(alive, 'State sees the worker alive after its heartbeat');

      // A batch of three.
      const client = app.get(BatchClient);
      const sent = await Promise.all([1, 2, 3].map((n) => client.applyAsync('ev.add', { args: [n, 10], kwargs: { tag: `n${n}` } })));
      const ids = sent.map((result) => result.id);
      const succeeded = await python.waitFor('task-succeeded', 3);
      assert.deepEqual(succeeded.map((body) => body.uuid).toSorted(), ids.toSorted());
      const received = python.of('task-received');
      const started = python.of('task-started');
      assert.deepEqual(received.map((body) => body.uuid).toSorted(), ids.toSorted());
      assert.deepEqual(started.map((body) => body.uuid).toSorted(), ids.toSorted());
      const first = received.find((body) => body.uuid === ids[0]) as CeleryEvent;
      assertFields(first, [...COMMON_FIELDS, 'uuid', 'name', 'args', 'kwargs', 'root_id', 'parent_id', 'retries', 'eta', 'expires']);
      assert.equal(first.name, 'ev.add');
      assert.equal(first.args, '[1,10]');
      assert.equal(first.kwargs, '{"tag":"n1"}');
      assert.equal(first.root_id, ids[0]);
      assert.equal(first.parent_id, null);
      assert.equal(first.retries, 0);
      assert.equal(first.eta, null);
      for (const body of succeeded) {
        assert.equal(typeof body.runtime, 'number');
        assert.ok((body.runtime as number) >= 0 && (body.runtime as number) < 30, `runtime in seconds: ${String(body.runtime)}`);
      }
      assert.equal(succeeded.find((body) => body.uuid === ids[1])?.result, "{'sum': 12}");
      // Each request: received, then started, then succeeded (one Lamport clock orders them).
      for (const id of ids) {
        const clock = (type: string) => python.of(type, id)[0].clock as number;
        assert.ok(clock('task-received') < clock('task-started') && clock('task-started') < clock('task-succeeded'));
      }

      // A failure marked with a custom error class.
      const failing = await client.applyAsync('ev.quota', { args: ['acme'] });
      const [failed] = await python.waitFor('task-failed', 1, failing.id);
      assertFields(failed, [...COMMON_FIELDS, 'uuid', 'exception', 'traceback']);
      assert.equal(failed.exception, "QuotaExceeded('over quota: acme')");

      // A throwing handler: task-retried, then (retries spent) task-failed with its stack and task-rejected (dead-lettered).
      const boom = await client.applyAsync('ev.boom', { args: [] });
      const [rejected] = await python.waitFor('task-rejected', 1, boom.id);
      assert.equal(rejected.requeue, false);
      const [retried] = python.of('task-retried', boom.id);
      assertFields(retried, [...COMMON_FIELDS, 'uuid', 'exception', 'traceback']);
      assert.equal(retried.exception, "RangeError('boom')");
      const [boomFailed] = python.of('task-failed', boom.id);
      assert.equal(boomFailed.exception, "RangeError('boom')");
      assert.match(boomFailed.traceback as string, /RangeError: boom\n\s+at /);
      assert.equal(python.of('task-received', boom.id).length, 2, 'received again with its retry');
      assert.deepEqual(
        python.of('task-received', boom.id).map((body) => body.retries),
        [0, 1],
      );

      // Revoked from Python before it arrives, and expired on arrival: task-revoked only, as Celery's strategy sends it.
      const revokedId = randomUUID();
      await PythonProcess.run('control.py', [JSON.stringify({ destination: [hostname], timeout: 3, revoke: [revokedId] })], queue);
      await suite.rabbit.publishTask(queue, { id: revokedId, task: 'ev.add', args: [0, 0] });
      const expiredId = await suite.rabbit.publishTask(queue, { task: 'ev.add', args: [0, 0], expires: new Date(Date.now() - 1_000) });
      const [revoked] = await python.waitFor('task-revoked', 1, revokedId);
      assertFields(revoked, [...COMMON_FIELDS, 'uuid', 'terminated', 'signum', 'expired']);
      assert.deepEqual([revoked.terminated, revoked.signum, revoked.expired], [false, null, false]);
      const [expired] = await python.waitFor('task-revoked', 1, expiredId);
      assert.equal(expired.expired, true);
      assert.equal(python.of('task-received', revokedId).length + python.of('task-received', expiredId).length, 0);

      await app.close();
      closed = true;
      const [offline] = await python.waitFor('worker-offline');
      assertFields(offline, WORKER_FIELDS);

      // What `celery events` / Flower make of them: app.events.State().
      const state = await python.state();
      const worker = state.worker as Record<string, unknown>;
      assert.equal(worker.known, true);
      assert.equal(worker.alive, false, 'offline after worker-offline');
      assert.equal(worker.sw_ident, 'nestjs-batches');
      assert.equal(worker.processed, 6);
      const tasks = state.tasks as Record<string, Record<string, unknown>>;
      for (const id of ids) {
        assert.equal(tasks[id].state, 'SUCCESS');
        assert.equal(tasks[id].name, 'ev.add');
        assert.equal(tasks[id].worker, hostname);
        assert.equal(typeof tasks[id].runtime, 'number');
      }
      assert.equal(tasks[ids[2]].result, "{'sum': 13}");
      assert.equal(tasks[failing.id].state, 'FAILURE');
      assert.equal(tasks[failing.id].exception, "QuotaExceeded('over quota: acme')");
      assert.equal(tasks[revokedId].state, 'REVOKED');
      assert.equal(tasks[expiredId].state, 'REVOKED');
      assert.equal(tasks[boom.id].state, 'FAILURE', 'task-rejected after task-failed keeps FAILURE, as for a Python worker');
    } finally {
      if (!closed) await app.close();
    }
  });

  it('sends nothing while off, and follows enable_events / disable_events from Python at runtime', async () => {
    const queue = suite.queue('events.remote');
    const hostname = `ev-${randomUUID().slice(0, 8)}@nest-test`;
    const python = await receiver(hostname, queue);
    const Echo = recorder('ev.echo', { flushEvery: 10, flushInterval: 50, queue }, (requests: SimpleRequest[]) =>
      requests.map((request) => request.args[0]),
    );
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue, hostname }, [Echo]);
    let closed = false;
    try {
      const client = app.get(BatchClient);
      const before = await client.applyAsync('ev.echo', { args: ['before'] });
      assert.equal(await before.get({ timeout: 10_000 }), 'before');
      assert.equal(app.get(WorkerActivity).eventsEnabled, false);

      const control = (command: string) =>
        PythonProcess.run('control.py', [JSON.stringify({ destination: [hostname], timeout: 3, broadcast: [{ command }] })], queue);
      const [enabled] = await control('enable_events');
      assert.deepEqual(enabled.reply, [{ [hostname]: { ok: 'task events enabled' } }]);
      await python.waitFor('worker-online');

      const during = await client.applyAsync('ev.echo', { args: ['during'] });
      const [succeeded] = await python.waitFor('task-succeeded', 1, during.id);
      assert.equal(succeeded.result, "'during'");
      assert.equal(python.of('task-received', during.id)[0].args, '["during"]');
      assert.equal(python.of('task-started', during.id).length, 1);

      const [disabled] = await control('disable_events');
      assert.deepEqual(disabled.reply, [{ [hostname]: { ok: 'task events disabled' } }]);
      const afterwards = await client.applyAsync('ev.echo', { args: ['after'] });
      assert.equal(await afterwards.get({ timeout: 10_000 }), 'after');

      await app.close();
      closed = true;
      // The node's events reach the receiver in order: once worker-offline is in, nothing else is on its way.
      await python.waitFor('worker-offline');
      const types = python.bodies.map((body) => body.type);
      assert.equal(types[0], 'worker-online', `nothing before enable_events: ${types.join(', ')}`);
      assert.equal(
        python.bodies.filter((body) => body.uuid === before.id || body.uuid === afterwards.id).length,
        0,
        'no task events while disabled',
      );
    } finally {
      if (!closed) await app.close();
    }
  });
});

describe('sendEvents option', () => {
  it('refuses a value that is not a boolean', async () => {
    await assert.rejects(
      Test.createTestingModule({ imports: [BatchesModule.forRoot({ sendEvents: 'yes' as unknown as boolean })] }).compile(),
      (error: unknown) => error instanceof BatchesConfigError && /sendEvents/.test(error.message),
    );
  });

  it('is a no-op on the in-process broker', async () => {
    const Echo = recorder('ev.memory', { flushEvery: 1, flushInterval: 50 }, (requests: SimpleRequest[]) => requests.map(() => 'ok'));
    const app = await startWorker({ sendEvents: true }, [Echo]);
    try {
      assert.equal(app.get(WorkerActivity).eventsEnabled, true);
      const result = await app.get(BatchClient).applyAsync('ev.memory', { args: [1] });
      assert.equal(await result.get({ timeout: 5_000 }), 'ok');
    } finally {
      await app.close();
    }
  });
});
