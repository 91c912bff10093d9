import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import amqplib from 'amqplib';
import { AMQP_URL, type Measurement, type RunOptions } from '../measurement.js';

const PYTHON = process.env.CELERY_PYTHON ?? '/usr/bin/python3';
const APP_DIR = fileURLToPath(new URL('../../../../apps/bench/python/', import.meta.url));
const TICKS_PER_SECOND = 100;
const TIME_LIMIT_MS = 120_000;

export function celeryAvailable(): boolean {
  try {
    execFileSync(PYTHON, ['-c', 'import celery'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The worker's process tree: prefork children do the work. */
function tree(pid: number): number[] {
  let children: number[] = [];
  try {
    children = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    // no children
  }
  return [pid, ...children.flatMap(tree)];
}

function treeUsage(pid: number): { cpuSeconds: number; peakRssMb: number } {
  let ticks = 0;
  let rssKb = 0;
  for (const each of tree(pid)) {
    const stat = readFileSync(`/proc/${each}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
    rssKb += Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${each}/status`, 'utf8'))?.[1] ?? 0);
  }
  return { cpuSeconds: ticks / TICKS_PER_SECOND, peakRssMb: rssKb / 1024 };
}

/**
 * Python Celery on the same Celery-format backlog with a plain no-op task. Measured from outside:
 * from the first message leaving the queue to the queue being empty (Celery acks on receipt).
 */
export async function celeryWorker({ n, queue }: RunOptions, pool: 'solo' | 'prefork'): Promise<Measurement> {
  const connection = await amqplib.connect(AMQP_URL);
  const channel = await connection.createChannel();
  const worker = spawn(
    PYTHON,
    [
      '-m',
      'celery',
      '-A',
      'bench_app',
      'worker',
      '-P',
      pool,
      '-c',
      pool === 'solo' ? '1' : '2',
      '-l',
      'WARNING',
      '--without-gossip',
      '--without-mingle',
      '--without-heartbeat',
    ],
    { cwd: APP_DIR, env: { ...process.env, CELERY_QUEUE: queue }, stdio: ['ignore', 'ignore', 'ignore'] },
  );
  let started = 0;
  let left = n;
  const deadline = performance.now() + TIME_LIMIT_MS;
  // Bounded: a stalled worker ends the measurement with what it got through.
  while (left > 0 && performance.now() < deadline) {
    left = (await channel.checkQueue(queue)).messageCount;
    if (!started && left < n) started = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const seconds = (performance.now() - (started || deadline)) / 1000;
  const measured = treeUsage(worker.pid ?? 0);
  worker.kill('SIGTERM');
  await new Promise((resolve) => worker.once('exit', resolve));
  await connection.close();
  const extra = left > 0 ? { unfinished: left } : undefined;
  return { system: `Python Celery ${pool === 'solo' ? '-P solo' : 'prefork -c 2'}`, rate: (n - left) / seconds, ...measured, extra };
}
