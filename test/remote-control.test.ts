import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { before, describe, it } from 'node:test';
import type { INestMicroservice } from '@nestjs/common';
import { ResultBackend, RevokedIds, WorkerActivity, type SimpleRequest } from 'nestjs-batches';
import { celeryMissing, PYTHON, PythonProcess } from './support/python.js';
import { pythonRemoteControl, type Info } from './support/python-remote-control.js';
import { AMQP_URL, rabbitSuite } from './support/rabbitmq.js';
import { recorder, startWorker, type Recorder } from './support/worker-app.js';
import { waitFor } from './support/wait.js';

const run = promisify(execFile);
const SCRIPTS = fileURLToPath(new URL('../../test/python/', import.meta.url));
const skip = celeryMissing();

describe('Celery remote control (pidbox) of a Nest worker, from Python', { skip }, () => {
  const suite = rabbitSuite();
  const hostname = `rc-${randomUUID().slice(0, 8)}@nest-test`;
  const buffered = suite.queue('rc.buffered');
  const quick = suite.queue('rc.quick');
  let app: INestMicroservice;
  let results: ResultBackend;
  let release: (() => void) | undefined;
  const blocked = new Promise<void>((resolve) => (release = resolve));

  // Requests sit in this buffer: nothing flushes it before the app closes.
  const Buffered = recorder('rc.buffered', { flushEvery: 100, flushInterval: 600_000, queue: buffered });
  // Flushes at two: a revoked request in the buffer is skipped when its batch starts.
  const Pair = recorder('rc.pair', { flushEvery: 2, flushInterval: 600_000, queue: buffered });
  const Quick = recorder('rc.quick', { flushEvery: 10, flushInterval: 50, queue: quick });
  // Holds its batch until the test releases it, so it shows as active.
  const Blocking = recorder('rc.block', { flushEvery: 1, flushInterval: 50, queue: quick }, () => blocked);

  const { control, inspect, inspectUntil } = pythonRemoteControl(hostname, buffered);

  function recorded(type: unknown): Recorder {
    return app.get(type as never) as Recorder;
  }

  async function stateOf(id: string): Promise<string> {
    return (await results.getResult(id)).status;
  }

  before(async () => {
    app = await startWorker({ broker: AMQP_URL, hostname, defaultQueue: quick, waitForBroker: true }, [Buffered, Pair, Quick, Blocking]);
    results = app.get(ResultBackend);
    // A blocked batch would hold the close: released first.
    suite.closeAfter({
      close: async () => {
        release?.();
        await app.close();
      },
    });
  });

  it('answers inspect ping by its hostname, only when it is a destination', async () => {
    assert.deepEqual(await inspect('ping'), { ok: 'pong' });
    const [other] = await PythonProcess.run(
      'control.py',
      [JSON.stringify({ destination: [`nobody-${hostname}`], timeout: 0.5, inspect: ['ping'] })],
      buffered,
    );
    assert.equal(other.reply, null);
  });

  it('is listed by `celery -A celery_app inspect ping -d <hostname>`', async () => {
    const { stdout } = await run(PYTHON, ['-m', 'celery', '-A', 'celery_app', 'inspect', 'ping', '-d', hostname, '-t', '3'], {
      cwd: SCRIPTS,
      env: { ...process.env, CELERY_QUEUE: buffered },
    });
    assert.match(stdout, new RegExp(`${hostname.replace(/[.@-]/g, '\\$&')}: OK\\s+pong`));
    assert.match(stdout, /1 node online/);
  });

  it('inspect registered lists its task names, sorted', async () => {
    assert.deepEqual(await inspect('registered'), ['rc.block', 'rc.buffered', 'rc.pair', 'rc.quick']);
  });

  it('inspect stats has the keys Celery tools read', async () => {
    const stats = (await inspect('stats')) as Info;
    for (const key of ['total', 'pid', 'clock', 'uptime', 'pool', 'broker', 'prefetch_count', 'rusage']) assert.ok(key in stats, key);
    assert.equal(stats.pid, process.pid);
    assert.equal(typeof stats.clock, 'string');
    assert.equal(typeof stats.uptime, 'number');
    const pool = stats.pool as Info;
    assert.equal(pool['max-concurrency'], 4);
    assert.deepEqual(pool.processes, [process.pid]);
    const broker = stats.broker as Info;
    assert.equal(broker.hostname, '127.0.0.1');
    assert.equal(broker.transport, 'amqp');
    assert.ok(!JSON.stringify(broker).includes('guest:guest'), 'no password in stats');
    assert.equal(typeof stats.prefetch_count, 'number');
    assert.equal(typeof (stats.rusage as Info).maxrss, 'number');
  });

  it("inspect active_queues lists the consumed queues in kombu's Queue.as_dict() format", async () => {
    const queues = (await inspect('active_queues')) as Info[];
    assert.deepEqual(queues.map((queue) => queue.name).toSorted(), [buffered, quick].toSorted());
    const [kombu] = await PythonProcess.run('kombu_queue.py', [buffered], buffered);
    assert.deepEqual(
      queues.find((queue) => queue.name === buffered),
      kombu.queue,
    );
  });

  it('inspect reserved lists buffered requests in Request.info() format', async () => {
    const ids = [randomUUID(), randomUUID(), randomUUID()];
    for (const [index, id] of ids.entries()) {
      await suite.rabbit.publishTask(buffered, { task: 'rc.buffered', id, args: [index], kwargs: { k: 'v' } });
    }
    const reserved = await inspectUntil('reserved', (reply) => ids.every((id) => reply.some((info) => info.id === id)), 'three reserved');
    const info = reserved.find((each) => each.id === ids[1]);
    assert.deepEqual(info, {
      id: ids[1],
      name: 'rc.buffered',
      args: [1],
      kwargs: { k: 'v' },
      type: 'rc.buffered',
      hostname,
      time_start: null,
      acknowledged: false,
      delivery_info: { exchange: '', routing_key: buffered, priority: null, redelivered: false },
      worker_pid: null,
    });
    assert.equal(recorded(Buffered).received, 0);
  });

  it('inspect active lists requests whose batch is running', async () => {
    const id = randomUUID();
    await suite.rabbit.publishTask(quick, { task: 'rc.block', id, args: ['held'] });
    await recorded(Blocking).waitForRequests(1);
    const [info] = (await inspect('active')) as Info[];
    assert.equal(info.id, id);
    assert.equal(info.name, 'rc.block');
    assert.deepEqual(info.args, ['held']);
    assert.equal(info.worker_pid, process.pid);
    assert.equal(typeof info.time_start, 'number');
    assert.ok(Math.abs((info.time_start as number) - Date.now() / 1000) < 60, 'time_start is Unix seconds');
    release?.();
    await waitFor(async () => (await stateOf(id)) === 'SUCCESS', 'the blocked request to finish');
    assert.equal(((await inspect('stats')) as { total: Record<string, number> }).total['rc.block'], 1);
  });

  it('control revoke replies like a Python worker and the id is listed by inspect revoked', async () => {
    const id = randomUUID();
    const [event] = await control({ revoke: [id] });
    assert.deepEqual(event.reply, [{ [hostname]: { ok: `tasks ${id} flagged as revoked` } }]);
    assert.ok(((await inspect('revoked')) as string[]).includes(id));
    assert.ok(app.get(RevokedIds).has(id));
  });

  it('a revoked task arriving later is not run and is stored REVOKED', async () => {
    const revoked = randomUUID();
    const later = randomUUID();
    await control({ revoke: [revoked] });
    await suite.rabbit.publishTask(quick, { task: 'rc.quick', id: revoked, args: ['revoked'] });
    await suite.rabbit.publishTask(quick, { task: 'rc.quick', id: later, args: ['runs'] });
    await waitFor(async () => (await stateOf(revoked)) === 'REVOKED', 'REVOKED for the revoked task');
    await waitFor(async () => (await stateOf(later)) === 'SUCCESS', 'the next task to run');
    const ran = recorded(Quick)
      .batches.flat()
      .map((request: SimpleRequest) => request.id);
    assert.ok(!ran.includes(revoked), 'the handler never saw the revoked request');
  });

  it('a revoked task held for its ETA is stored REVOKED when due', async () => {
    const id = randomUUID();
    await suite.rabbit.publishTask(quick, { task: 'rc.quick', id, args: ['eta'], eta: new Date(Date.now() + 4_000) });
    await control({ revoke: [id] });
    await waitFor(async () => (await stateOf(id)) === 'REVOKED', 'REVOKED for the held task', 15_000);
    assert.ok(
      !recorded(Quick)
        .batches.flat()
        .some((request: SimpleRequest) => request.id === id),
    );
  });

  it('a revoked request already in the buffer is skipped when its batch starts', async () => {
    const first = randomUUID();
    const second = randomUUID();
    await suite.rabbit.publishTask(buffered, { task: 'rc.pair', id: first, args: ['revoked'] });
    await inspectUntil('reserved', (reply) => reply.some((info) => info.id === first), 'the first pair request reserved');
    await control({ revoke: [first] });
    await suite.rabbit.publishTask(buffered, { task: 'rc.pair', id: second, args: ['runs'] });
    await waitFor(async () => (await stateOf(second)) === 'SUCCESS', 'the second pair request to run');
    assert.equal(await stateOf(first), 'REVOKED');
    assert.deepEqual(
      recorded(Pair).batches.map((batch) => batch.map((request) => request.id)),
      [[second]],
    );
  });

  it('replies stay readable by kombu once the clock passes 127 (no AMQP short-int headers)', async () => {
    app.get(WorkerActivity).clock.adjust(40_000);
    assert.deepEqual(await inspect('ping'), { ok: 'pong' });
    assert.ok(Number(((await inspect('stats')) as Info).clock) > 40_000);
  });

  it("enable_events/disable_events reply as Celery's and flip the flag; unknown commands get Celery's error", async () => {
    const events = await control({
      broadcast: [
        { command: 'enable_events' },
        { command: 'enable_events' },
        { command: 'disable_events' },
        { command: 'no_such_command' },
      ],
    });
    assert.deepEqual(
      events.map((event) => event.reply),
      [
        [{ [hostname]: { ok: 'task events enabled' } }],
        [{ [hostname]: { ok: 'task events already enabled' } }],
        [{ [hostname]: { ok: 'task events disabled' } }],
        [{ [hostname]: { error: "KeyError('no_such_command')" } }],
      ],
    );
    assert.equal(app.get(WorkerActivity).eventsEnabled, false);
  });
});
