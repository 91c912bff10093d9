import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import amqplib, { type Channel } from 'amqplib';
import { AMQP_URL, type Measurement, type RunOptions } from '../measurement.js';
import { treeUsage } from './process-tree.js';

export type CeleryPool = 'solo' | 'prefork';

const PYTHON = process.env.CELERY_PYTHON ?? '/usr/bin/python3';
const APP_DIR = fileURLToPath(new URL('../../../../apps/bench/python/', import.meta.url));
const POLL_MS = 20;
/** A worker that drains thousands per second and then takes nothing for this long has stalled. */
const STALL_MS = 3_000;
const TIME_LIMIT_MS = 120_000;

export function celeryAvailable(): boolean {
  try {
    execFileSync(PYTHON, ['-c', 'import celery'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

interface Drain {
  drained: number;
  seconds: number;
  stalled: boolean;
  cpuSeconds: number;
  peakRssMb: number;
}

/**
 * Starts a worker on the backlog in `queue` and watches the queue from outside (checkQueue every
 * 20 ms): timed from the first poll that sees messages gone to the first that sees none ready.
 * Celery acks on receipt, so at that point at most its prefetch (4 × concurrency) no-op tasks are
 * still running. CPU is the worker's process tree over that window; peak RSS the tree's VmHWM.
 *
 * A worker that makes no progress for 3 s is reported as stalled instead of being waited out
 * (python/bench_app.py works around the kombu bug that used to cause it).
 */
async function runWorker(channel: Channel, queue: string, n: number, pool: CeleryPool, resultBackend?: string): Promise<Drain> {
  const concurrency = pool === 'solo' ? '1' : '2';
  const worker = spawn(
    PYTHON,
    // No gossip, mingle or event heartbeats: nothing but the task messages on the worker's connection.
    [
      '-m',
      'celery',
      '-A',
      'bench_app',
      'worker',
      '-P',
      pool,
      '-c',
      concurrency,
      '-l',
      'WARNING',
      '--without-gossip',
      '--without-mingle',
      '--without-heartbeat',
    ],
    {
      cwd: APP_DIR,
      env: { ...process.env, CELERY_QUEUE: queue, BROKER_URL: AMQP_URL, CELERY_RESULT_BACKEND: resultBackend ?? '' },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  worker.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2000)));
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  let alive = true;
  void exited.then(() => (alive = false));
  const pid = worker.pid ?? 0;

  const deadline = performance.now() + TIME_LIMIT_MS;
  let left = n;
  let started = 0;
  let lastProgress = 0;
  let cpuAtStart = 0;
  let stalled = false;
  try {
    while (left > 0) {
      if (!alive) throw new Error(`celery worker exited early: ${stderr.trim().split('\n').slice(-5).join(' | ')}`);
      const ready = (await channel.checkQueue(queue)).messageCount;
      const now = performance.now();
      if (ready < left) {
        if (!started) {
          started = now;
          cpuAtStart = treeUsage(pid).cpuSeconds;
        }
        lastProgress = now;
        left = ready;
      } else if ((started && now - lastProgress > STALL_MS) || now > deadline) {
        stalled = true;
        break;
      }
      if (left > 0) await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    const usage = treeUsage(pid);
    return {
      drained: n - left,
      seconds: started ? Math.max(lastProgress - started, POLL_MS) / 1000 : TIME_LIMIT_MS / 1000,
      stalled,
      cpuSeconds: usage.cpuSeconds - cpuAtStart,
      peakRssMb: usage.peakRssMb,
    };
  } finally {
    worker.kill('SIGTERM');
    await exited;
  }
}

export const celeryName = (pool: CeleryPool, results: boolean): string =>
  `Python Celery ${pool === 'solo' ? '-P solo' : 'prefork -c 2'}${results ? ', results in Redis' : ''} [full]`;

/**
 * Python Celery (Debian's python3-celery) on the same Celery-format backlog: a plain no-op task
 * (`ignore_result`), or with `resultBackend` one returning its argument, stored by Celery's Redis backend.
 */
export async function celeryWorker({ n, queue, resultBackend }: RunOptions, pool: CeleryPool): Promise<Measurement> {
  const connection = await amqplib.connect(AMQP_URL);
  try {
    const drain = await runWorker(await connection.createChannel(), queue, n, pool, resultBackend);
    return {
      system: celeryName(pool, Boolean(resultBackend)),
      rate: drain.drained / drain.seconds,
      messages: drain.drained,
      cpuSeconds: drain.cpuSeconds,
      peakRssMb: drain.peakRssMb,
      // A stalled run's rate is over the part that drained.
      extra: drain.stalled ? { stalled: 1, drained: drain.drained } : undefined,
    };
  } finally {
    await connection.close();
  }
}
