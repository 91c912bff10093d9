import { BATCHES_DEFAULTS } from '../batches.options.js';
import { ResultBackend } from './result-backend.js';
import { ResultWaiters } from './result-waiters.js';
import { pendingResult, toTaskResult, type TaskMeta, type TaskResult, type WaitOptions } from './task-result.js';

interface Entry {
  meta: TaskMeta;
  expiresAt: number;
}

/** In-process results with expiry: the default, for one-process apps and tests. */
export class MemoryResultBackend extends ResultBackend {
  private readonly entries = new Map<string, Entry>();
  // Writes are delivered synchronously, so listening is ready at once.
  private readonly waiters = new ResultWaiters(
    { listen: async () => undefined, unlisten: () => undefined, read: async (id) => this.read(id) },
    'in-memory',
  );
  private readonly sweeper: NodeJS.Timeout;

  /** `expiresMs`: how long results live (the module's `resultExpires`, one day by default). */
  constructor(private readonly expiresMs: number = BATCHES_DEFAULTS.resultExpires) {
    super();
    if (!Number.isInteger(expiresMs) || expiresMs <= 0) {
      throw new RangeError(`resultExpires must be a positive whole number of milliseconds, got ${expiresMs}`);
    }
    // Map insertion order is write order, so expired entries sit at the front.
    this.sweeper = setInterval(() => this.sweep(), Math.min(expiresMs, 60_000));
    this.sweeper.unref();
  }

  async getResult<T = unknown>(id: string): Promise<TaskResult<T>> {
    const meta = this.read(id);
    return (meta ? toTaskResult(meta) : pendingResult(id)) as TaskResult<T>;
  }

  waitForResult<T = unknown>(id: string, options?: WaitOptions): Promise<T> {
    return this.waiters.wait<T>(id, options);
  }

  protected async store(meta: TaskMeta): Promise<void> {
    this.write(meta, Date.now() + this.expiresMs);
  }

  protected override async storeMany(metas: TaskMeta[]): Promise<void> {
    const expiresAt = Date.now() + this.expiresMs;
    for (const meta of metas) this.write(meta, expiresAt);
  }

  private write(meta: TaskMeta, expiresAt: number): void {
    if (this.read(meta.task_id)?.status === 'SUCCESS') return;
    this.entries.delete(meta.task_id);
    this.entries.set(meta.task_id, { meta, expiresAt });
    this.waiters.deliver(meta.task_id, meta);
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.waiters.close();
  }

  private read(id: string): TaskMeta | undefined {
    const entry = this.entries.get(id);
    if (entry && entry.expiresAt <= Date.now()) {
      this.entries.delete(id);
      return undefined;
    }
    return entry?.meta;
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, entry] of this.entries) {
      if (entry.expiresAt > now) break;
      this.entries.delete(id);
    }
  }
}
