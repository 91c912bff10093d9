import { ResultBackend } from './result-backend.js';
import {
  pendingResult,
  READY_STATES,
  ResultTimeoutError,
  settle,
  toTaskResult,
  type TaskMeta,
  type TaskResult,
  type WaitOptions,
} from './task-result.js';

interface Entry {
  meta: TaskMeta;
  expiresAt: number;
}

/** In-process results with expiry: the default, for one-process apps and tests. */
export class MemoryResultBackend extends ResultBackend {
  private readonly entries = new Map<string, Entry>();
  private readonly waiters = new Map<string, Set<(meta: TaskMeta) => void>>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly expiresMs: number) {
    super();
    // Map insertion order is write order, so expired entries sit at the front.
    this.sweeper = setInterval(() => this.sweep(), Math.min(expiresMs, 60_000));
    this.sweeper.unref();
  }

  async getResult<T = unknown>(id: string): Promise<TaskResult<T>> {
    const meta = this.read(id);
    return (meta ? toTaskResult(meta) : pendingResult(id)) as TaskResult<T>;
  }

  waitForResult<T = unknown>(id: string, options: WaitOptions = {}): Promise<T> {
    const timeout = options.timeout ?? 10_000;
    const meta = this.read(id);
    if (meta && READY_STATES.has(meta.status)) return settleAsync<T>(meta);
    return new Promise<T>((resolve, reject) => {
      const waiters = this.waiters.get(id) ?? new Set();
      this.waiters.set(id, waiters);
      const onMeta = (stored: TaskMeta): void => {
        if (!READY_STATES.has(stored.status)) return;
        done();
        settleAsync<T>(stored).then(resolve, reject);
      };
      const timer = setTimeout(() => {
        done();
        reject(new ResultTimeoutError(id, timeout, this.read(id)?.status ?? 'PENDING'));
      }, timeout);
      const done = (): void => {
        clearTimeout(timer);
        waiters.delete(onMeta);
        if (waiters.size === 0) this.waiters.delete(id);
      };
      waiters.add(onMeta);
    });
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
    const waiters = this.waiters.get(meta.task_id);
    if (waiters) for (const waiter of waiters) waiter(meta);
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
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

async function settleAsync<T>(meta: TaskMeta): Promise<T> {
  return settle(toTaskResult(meta)) as T;
}
