import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { BATCHES_BROKER, BatchClient, type MemoryBroker } from 'nestjs-batches';
import { AMQP_URL, queueCounts, rabbitSuite } from './support/rabbitmq.js';
import { waitFor } from './support/wait.js';
import { recorder, startWorker } from './support/worker-app.js';

for (const broker of ['amqp', 'memory'] as const) {
  describe(`graceful shutdown on ${broker}://`, () => {
    const suite = rabbitSuite();

    async function counts(app: { get<T>(token: symbol): T }, queue: string): Promise<{ ready: number; unacked: number }> {
      return broker === 'amqp' ? queueCounts(queue) : app.get<MemoryBroker>(BATCHES_BROKER).stats(queue);
    }

    it('flushes partial buffers through the handler before close() resolves, leaving nothing unacked', async () => {
      const queue = suite.queue('drain');
      const A = recorder('drain.a', { flushEvery: 100, flushInterval: 60_000, queue });
      const B = recorder('drain.b', { flushEvery: 100, flushInterval: 60_000, queue });
      const app = await startWorker({ broker: broker === 'amqp' ? AMQP_URL : 'memory://', defaultQueue: queue }, [A, B]);
      const client = app.get(BatchClient);
      for (let i = 0; i < 7; i++) await client.delay('drain.a', i);
      for (let i = 0; i < 3; i++) await client.delay('drain.b', i);
      await waitFor(async () => (await counts(app, queue)).unacked === 10, 'all 10 delivered and buffered');
      assert.equal(app.get(A).received, 0);
      const a = app.get(A);
      const b = app.get(B);
      const memory = broker === 'memory' ? app.get<MemoryBroker>(BATCHES_BROKER) : undefined;
      await app.close();
      assert.deepEqual(
        a.batches.map((batch) => batch.length),
        [7],
      );
      assert.deepEqual(
        b.batches.map((batch) => batch.length),
        [3],
      );
      if (memory) assert.deepEqual(memory.stats(queue), { ready: 0, unacked: 0 });
      else assert.deepEqual(await queueCounts(queue), { ready: 0, unacked: 0 });
    });

    it('waits for a batch still running when close() is called', async () => {
      const queue = suite.queue('slow');
      let finished = false;
      const Slow = recorder('drain.slow', { flushEvery: 2, flushInterval: 60_000, queue }, async () => {
        await new Promise((resolve) => setTimeout(resolve, 500));
        finished = true;
      });
      const app = await startWorker({ broker: broker === 'amqp' ? AMQP_URL : 'memory://', defaultQueue: queue }, [Slow]);
      const client = app.get(BatchClient);
      await client.delay('drain.slow', 1);
      await client.delay('drain.slow', 2);
      const handler = app.get(Slow);
      await handler.waitForRequests(2);
      await app.close();
      assert.equal(finished, true);
      if (broker === 'amqp') assert.deepEqual(await queueCounts(queue), { ready: 0, unacked: 0 });
    });
  });
}

describe('SIGTERM', () => {
  async function terminate(env: Record<string, string>): Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }> {
    const child = spawn(process.execPath, [fileURLToPath(new URL('./support/sigterm-app.js', import.meta.url))], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    await waitFor(() => output.includes('READY') || child.exitCode !== null, 'the worker process to start');
    child.kill('SIGTERM');
    const [code, signal] = await exited;
    return { code, signal, output };
  }

  it('with enableShutdownHooks(), drains the buffers, then the process ends by SIGTERM (status 143)', async () => {
    const { code, signal, output } = await terminate({});
    assert.match(output, /HANDLED 3/);
    assert.deepEqual({ code, signal }, { code: null, signal: 'SIGTERM' }, output);
  });

  it("with the README's handler instead, drains the buffers and exits 0", async () => {
    const { code, signal, output } = await terminate({ EXIT_ZERO: '1' });
    assert.match(output, /HANDLED 3/);
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, output);
  });
});
