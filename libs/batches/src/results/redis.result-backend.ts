import { Redis } from 'ioredis';
import { ResultBackend } from './result-backend.js';
import { pendingResult, toTaskResult, type TaskMeta, type TaskResult, type WaitOptions } from './task-result.js';

const KEY_PREFIX = 'celery-task-meta-';

// Check-and-set in one step, as Celery's backend does it: never overwrite a stored SUCCESS.
const STORE_SCRIPT = `
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and meta['status'] == 'SUCCESS' then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
`;

type Waiter = (meta: TaskMeta) => void;

/**
 * Results in Redis in Celery's format (`celery-task-meta-<id>`, published on the same channel), so
 * Python's `AsyncResult(id).get()` reads what Nest stores and the other way round.
 */
export class RedisResultBackend extends ResultBackend {
  private readonly client: Redis & { storeCeleryMeta(key: string, value: string, expiresMs: number): Promise<number> };
  private subscriber?: Redis;
  private readonly waiters = new Map<string, Set<Waiter>>();

  constructor(
    url: string,
    private readonly expiresMs: number,
  ) {
    super();
    // Auto-pipelining sends a batch's many result writes in one round trip.
    const client = new Redis(url, { enableAutoPipelining: true, maxRetriesPerRequest: null });
    client.defineCommand('storeCeleryMeta', { numberOfKeys: 1, lua: STORE_SCRIPT });
    client.on('error', () => undefined); // ioredis reconnects; commands wait meanwhile
    this.client = client as typeof this.client;
  }

  async getResult<T = unknown>(id: string): Promise<TaskResult<T>> {
    const meta = await this.read(id);
    return (meta ? toTaskResult(meta) : pendingResult(id)) as TaskResult<T>;
  }

  waitForResult<T = unknown>(id: string, options: WaitOptions = {}): Promise<T> {
    const channel = KEY_PREFIX + id;
    const listen = async (onMeta: Waiter): Promise<() => void> => {
      await this.addWaiter(channel, onMeta);
      return () => this.removeWaiter(channel, onMeta);
    };
    // The read after subscribing catches a result stored before the subscription, published to no one.
    return this.awaitReady<T>(id, options.timeout ?? 10_000, listen, () => this.read(id));
  }

  protected async store(meta: TaskMeta): Promise<void> {
    await this.client.storeCeleryMeta(KEY_PREFIX + meta.task_id, JSON.stringify(meta), this.expiresMs);
  }

  async close(): Promise<void> {
    const closing = [this.client.quit().catch(() => undefined)];
    if (this.subscriber) closing.push(this.subscriber.quit().catch(() => undefined));
    await Promise.all(closing);
  }

  private async read(id: string): Promise<TaskMeta | undefined> {
    const raw = await this.client.get(KEY_PREFIX + id);
    return raw === null ? undefined : (JSON.parse(raw) as TaskMeta);
  }

  /** One subscriber connection per backend, shared by every waiter. */
  private async addWaiter(channel: string, waiter: Waiter): Promise<void> {
    const subscriber = this.subscriberConnection();
    let waiters = this.waiters.get(channel);
    if (!waiters) {
      waiters = new Set();
      this.waiters.set(channel, waiters);
    }
    waiters.add(waiter);
    if (waiters.size === 1) await subscriber.subscribe(channel);
  }

  private removeWaiter(channel: string, waiter: Waiter): void {
    const waiters = this.waiters.get(channel);
    if (!waiters?.delete(waiter) || waiters.size > 0) return;
    this.waiters.delete(channel);
    this.subscriber?.unsubscribe(channel).catch(() => undefined);
  }

  private subscriberConnection(): Redis {
    if (!this.subscriber) {
      this.subscriber = this.client.duplicate({ enableAutoPipelining: false });
      this.subscriber.on('error', () => undefined);
      this.subscriber.on('message', (channel: string, message: string) => {
        const waiters = this.waiters.get(channel);
        if (!waiters) return;
        const meta = JSON.parse(message) as TaskMeta;
        // A waiter removes itself while we iterate; Set iteration allows that.
        for (const waiter of waiters) waiter(meta);
      });
    }
    return this.subscriber;
  }
}
