import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { deleteQueue, type MessageFormat } from './backlog.js';
import { collectBrokerGarbage } from './broker-eval.js';
import type { Measurement, RunOptions } from './measurement.js';
import { tree, treeUsage } from './systems/process-tree.js';

const run = promisify(execFile);
const CHILD = fileURLToPath(new URL('./child.js', import.meta.url));

/** A backlog to fill before a consumer starts: `count` messages in `format`, by the raw publisher or by `BatchClient.delay`. */
export interface Backlog {
  format: MessageFormat;
  count: number;
  publisher?: 'raw' | 'client';
  /** Task ids start with this (raw publisher only). */
  idPrefix?: string;
}

/** Runs the bench's steps: each system in a child process of its own, with the local broker's CPU read around it. */
export class Runner {
  private queues = 0;
  /** Queues of the steps running now, deleted by `abort()`. */
  private readonly inUse = new Set<string>();
  /** When the broker was last found idle: a step started right after needs no second look. */
  private quietAt = -Infinity;
  /** The broker's CPU seconds per second in the last half second `brokerQuiet` watched. */
  private idleRate = 0;
  private garbageFailed = false;

  constructor(
    /** The local RabbitMQ's pid; undefined when it runs elsewhere (then no broker figures). */
    private readonly brokerPid: number | undefined,
    /** How long to wait at most for the broker to become idle. */
    private readonly quietWithinMs = 20_000,
    /** Collect the broker's garbage at the end of each publishing step (`collectBrokerGarbage`). */
    private readonly collectGarbage = false,
  ) {}

  /** Runs one system in a child process of its own (so CPU seconds and peak RSS are its own). */
  async child(system: string, options: Partial<RunOptions>, script = CHILD): Promise<Measurement> {
    const { stdout } = await run(process.execPath, [script, system, JSON.stringify(options)], { maxBuffer: 16 * 1024 * 1024 });
    return JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as Measurement;
  }

  /**
   * Waits until the local broker uses under a tenth of a core for half a second: what an earlier
   * step left it to do (persisting a backlog, deleting a queue) belongs to no one's measurement.
   * Notes the CPU it used per second in its last half second: its idle rate, on a shared machine
   * the work others give it.
   */
  async brokerQuiet(): Promise<void> {
    if (!this.brokerPid || performance.now() - this.quietAt < 100) return;
    const deadline = Date.now() + this.quietWithinMs;
    let before = treeUsage(this.brokerPid).cpuSeconds;
    while (Date.now() < deadline) {
      const started = performance.now();
      await new Promise((resolve) => setTimeout(resolve, 500));
      const now = treeUsage(this.brokerPid).cpuSeconds;
      this.idleRate = (now - before) / ((performance.now() - started) / 1000);
      if (now - before < 0.05) break;
      before = now;
    }
    this.quietAt = performance.now();
  }

  /**
   * Runs `step` on an idle broker and, when the broker is local, sets the CPU it spent per message
   * from the step's start until it is idle again (what it persists or cleans up after the last
   * confirm or ack is part of the cost), less its idle rate (before and after) over that time.
   */
  async withBroker(count: number, step: () => Promise<Measurement>): Promise<Measurement> {
    await this.brokerQuiet();
    if (!this.brokerPid || count === 0) return step();
    const idleBefore = this.idleRate;
    const before = treeUsage(this.brokerPid).cpuSeconds;
    const started = performance.now();
    const measurement = await step();
    await this.brokerQuiet();
    const seconds = (performance.now() - started) / 1000;
    const idle = ((idleBefore + this.idleRate) / 2) * seconds;
    measurement.brokerUsPerMessage = (Math.max(0, treeUsage(this.brokerPid).cpuSeconds - before - idle) / count) * 1e6;
    return measurement;
  }

  /**
   * Fills a fresh queue with `backlog`, lets `consume` drain it, deletes the queue. Returns the
   * publisher's measurement (when there was a backlog to publish) and the consumer's.
   */
  async drain(
    backlog: Backlog,
    consume: (queue: string) => Promise<Measurement>,
  ): Promise<{ published?: Measurement; consumed: Measurement }> {
    const queue = `bench.${process.pid}.${++this.queues}.${Date.now()}`;
    const { format, count, publisher = 'raw', idPrefix } = backlog;
    this.inUse.add(queue);
    try {
      const published =
        count === 0
          ? undefined
          : await this.withBroker(count, async () => {
              const publishing = await (publisher === 'client'
                ? this.child('publish-client', { n: count, queue, format: format === 'lean' ? 'lean' : 'full' })
                : this.child('publish-raw', { n: count, queue, backlog: format, idPrefix }));
              // Inside the publishing step's broker window: the garbage publishing left is charged to publishing.
              if (this.collectGarbage) this.collectBrokerGarbage();
              return publishing;
            });
      const consumed = await this.withBroker(count, () => consume(queue));
      return { published, consumed };
    } finally {
      await deleteQueue(queue);
      this.inUse.delete(queue);
    }
  }

  /** Collects the broker's garbage; a failure (rabbitmqctl timing out) is said once and the run goes on without it. */
  private collectBrokerGarbage(): void {
    try {
      collectBrokerGarbage();
    } catch (error) {
      if (!this.garbageFailed) console.warn(`could not collect the broker's garbage, going on without: ${(error as Error).message}`);
      this.garbageFailed = true;
    }
  }

  /** On Ctrl-C: stops every process this one started (the measured children, a Python worker) and deletes the queues in use. */
  async abort(): Promise<void> {
    for (const pid of tree(process.pid).slice(1)) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    await Promise.race([
      Promise.allSettled([...this.inUse].map((queue) => deleteQueue(queue))),
      new Promise((resolve) => setTimeout(resolve, 5_000)),
    ]);
  }
}
