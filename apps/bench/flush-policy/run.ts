import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { deleteQueue } from '../backlog.js';
import type { ChildMessage, ParentMessage, ProducerReport, RunSpec, WorkerReport } from './scenario.js';

const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));
const PRODUCER = fileURLToPath(new URL('./producer.js', import.meta.url));

/** A child process of this run and the messages it sends, in order. */
class Child {
  private readonly process: ChildProcess;
  private readonly inbox: ChildMessage[] = [];
  private wake?: () => void;
  private exited?: string;

  constructor(script: string, spec: RunSpec) {
    this.process = fork(script, [JSON.stringify(spec)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // Keeps NaN (no sample in the window) as NaN.
      serialization: 'advanced',
    });
    this.process.on('message', (message: ChildMessage) => {
      this.inbox.push(message);
      this.wake?.();
    });
    this.process.on('exit', (code, signal) => {
      this.exited = `exited (${signal ?? code})`;
      this.wake?.();
    });
  }

  /** The next message of `type`; rejects when the child reports an error or exits first. */
  async next<T extends ChildMessage['type']>(type: T): Promise<Extract<ChildMessage, { type: T }>> {
    for (;;) {
      const message = this.inbox.shift();
      if (message?.type === 'error') throw new Error(message.message);
      if (message?.type === type) return message as Extract<ChildMessage, { type: T }>;
      if (message) continue;
      if (this.exited) throw new Error(`${this.process.spawnargs[1]} ${this.exited} before sending '${type}'`);
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  send(message: ParentMessage): void {
    this.process.send(message);
  }

  /** Waits up to `graceMs` for the child to exit by itself, then ends it (a run that failed or timed out). */
  async stop(graceMs: number): Promise<void> {
    const deadline = Date.now() + graceMs;
    while (!this.exited && Date.now() < deadline) await new Promise<void>((resolve) => setTimeout(resolve, 20));
    if (!this.exited) this.process.kill('SIGKILL');
  }
}

/**
 * One run on a fresh queue: the worker and the producer start side by side; once both are connected
 * the producer offers its load; when every result is in, the worker is told the measured window,
 * closes and reports. The queue is deleted afterwards.
 */
export async function runOnce(spec: RunSpec, timeoutMs: number): Promise<{ worker: WorkerReport; producer: ProducerReport }> {
  const worker = new Child(WORKER, spec);
  const producer = new Child(PRODUCER, spec);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`run ${spec.queue} took longer than ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const measured = (async () => {
      await Promise.all([worker.next('ready'), producer.next('ready')]);
      producer.send({ type: 'go' });
      const { report: producerReport } = await producer.next('producer-report');
      worker.send({ type: 'stop', window: producerReport.window });
      const { report: workerReport } = await worker.next('worker-report');
      return { worker: workerReport, producer: producerReport };
    })();
    // After a timeout the children are ended, which rejects this too: nobody waits for it then.
    measured.catch(() => undefined);
    return await Promise.race([measured, timeout]);
  } catch (error) {
    await Promise.all([worker.stop(0), producer.stop(0)]);
    throw error;
  } finally {
    clearTimeout(timer);
    await Promise.all([worker.stop(5_000), producer.stop(5_000)]);
    await deleteQueue(spec.queue).catch(() => undefined);
  }
}
