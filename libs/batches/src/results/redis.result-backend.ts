import { BATCHES_DEFAULTS, type BatchesTlsOptions } from '../batches.options.js';
import { Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { optionalPeer } from '../optional-peer.js';
import { defineCeleryScripts, type CeleryRedis } from './redis-scripts.js';
import { ResultBackend, type ChordPart } from './result-backend.js';
import { ResultWaiters } from './result-waiters.js';
import { pendingResult, toTaskResult, type TaskMeta, type TaskResult, type TaskState, type WaitOptions } from './task-result.js';

const KEY_PREFIX = 'celery-task-meta-';
const GROUP_KEY_PREFIX = 'celery-taskset-meta-';
const logger = new Logger('RedisResultBackend');

/** Results per script call: bounds a script's run time (Redis serves nothing else meanwhile). */
const STORE_MANY_CHUNK = 1_000;

/** Options of `new RedisResultBackend(url, expires, options)`. */
export interface RedisResultBackendOptions {
  /** TLS of a `rediss://` URL (the module's `resultBackendTls`). */
  tls?: BatchesTlsOptions;
}

/**
 * Results in Redis in Celery's format (`celery-task-meta-<id>`, published on the same channel), so
 * Python's `AsyncResult(id).get()` reads what Nest stores and the other way round.
 */
export class RedisResultBackend extends ResultBackend {
  private readonly client: CeleryRedis;
  /** One connection in subscriber mode serves every waiter; created on the first wait. */
  private subscriber?: Redis;
  /** Each waited-for task has one SUBSCRIBE, shared by its waiters, resolved once Redis acknowledged it. */
  private readonly waiters = new ResultWaiters(
    {
      listen: (id) => this.subscriberConnection().subscribe(KEY_PREFIX + id),
      unlisten: (id) => void this.subscriber?.unsubscribe(KEY_PREFIX + id).catch(() => undefined),
      read: (id) => this.read(id),
    },
    'Redis',
  );

  constructor(
    url: string,
    /** How long results live (the module's `resultExpires`, one day by default). */
    private readonly expiresMs: number = BATCHES_DEFAULTS.resultExpires,
    options: RedisResultBackendOptions = {},
  ) {
    super();
    const RedisClient = redisClass(url);
    if (!Number.isInteger(expiresMs) || expiresMs <= 0) {
      throw new RangeError(`resultExpires must be a positive whole number of milliseconds, got ${expiresMs}`);
    }
    if (options.tls && !/^rediss:/i.test(url)) {
      throw new RangeError(`TLS options need a 'rediss://' URL, got ${JSON.stringify(redactUrl(url))}`);
    }
    // Auto-pipelining sends a batch's many result writes in one round trip; null retries: writes wait out a reconnect.
    // With `tls`, ioredis hands it to tls.connect (a bare rediss:// URL uses Node's root CAs); duplicate() keeps it.
    const client = defineCeleryScripts(
      new RedisClient(url, {
        enableAutoPipelining: true,
        maxRetriesPerRequest: null,
        ...(options.tls && { tls: { ...options.tls } }),
      }),
    );
    reportErrors(client, 'connection');
    this.client = client;
  }

  async getResult<T = unknown>(id: string): Promise<TaskResult<T>> {
    const meta = await this.read(id);
    return (meta ? toTaskResult(meta) : pendingResult(id)) as TaskResult<T>;
  }

  waitForResult<T = unknown>(id: string, options?: WaitOptions): Promise<T> {
    return this.waiters.wait<T>(id, options);
  }

  override async chordPartReturn(part: ChordPart): Promise<ChordPart[] | undefined> {
    const key = `${GROUP_KEY_PREFIX}${part.groupId}`;
    const encoded = JSON.stringify([1, part.taskId, part.state, part.result]);
    const score = part.groupIndex === null ? '+inf' : String(part.groupIndex);
    const parts = await this.client.chordPartReturn(`${key}.j`, `${key}.t`, `${key}.s`, encoded, score, this.expiresMs);
    return parts ? parts.map((each) => decodeChordPart(each, part.groupId)) : undefined;
  }

  protected async store(meta: TaskMeta): Promise<void> {
    await this.client.storeCeleryMeta(KEY_PREFIX + meta.task_id, encodeMeta(meta), this.expiresMs);
  }

  /** A batch's results in one script call (per 1,000), with Celery's keys, values, expiry and PUBLISH. */
  protected override async storeMany(metas: TaskMeta[]): Promise<void> {
    if (metas.length === 1) return this.store(metas[0]);
    const writes: Promise<number>[] = [];
    for (let start = 0; start < metas.length; start += STORE_MANY_CHUNK) {
      const chunk = metas.slice(start, start + STORE_MANY_CHUNK);
      const keys = chunk.map((meta) => KEY_PREFIX + meta.task_id);
      writes.push(this.client.storeCeleryMetas(keys.length, ...keys, ...chunk.map(encodeMeta), this.expiresMs));
    }
    await Promise.all(writes);
  }

  /**
   * PINGs Redis, failing at once while the connection is down (commands would otherwise wait for the
   * reconnect) and after `timeoutMs` when Redis does not answer.
   */
  override async ping(timeoutMs = 1_000): Promise<void> {
    if (this.client.status !== 'ready') throw new Error(`Redis is not connected (connection ${this.client.status})`);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`Redis did not answer PING within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([this.client.ping(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.waiters.close();
    await Promise.all([this.client, this.subscriber].map((connection) => connection && quit(connection)));
  }

  private async read(id: string): Promise<TaskMeta | undefined> {
    const raw = await this.client.get(KEY_PREFIX + id);
    return raw === null ? undefined : (JSON.parse(raw) as TaskMeta);
  }

  private subscriberConnection(): Redis {
    if (this.subscriber) return this.subscriber;
    // Resubscribing is ours (see resubscribe), so we know when to read what was published meanwhile.
    const subscriber = this.client.duplicate({ enableAutoPipelining: false, autoResubscribe: false });
    reportErrors(subscriber, 'subscriber connection');
    subscriber.on('message', (channel: string, message: string) => this.dispatch(channel, message));
    let connectedBefore = false;
    subscriber.on('ready', () => {
      if (connectedBefore) this.resubscribe(subscriber).catch(() => undefined); // a later drop retries
      connectedBefore = true;
    });
    this.subscriber = subscriber;
    return subscriber;
  }

  /** After a reconnect: subscribe again, then read each awaited result once (its publish may have been missed). */
  private async resubscribe(subscriber: Redis): Promise<void> {
    const channels = this.waiters.ids().map((id) => KEY_PREFIX + id);
    if (channels.length === 0) return;
    await subscriber.subscribe(...channels);
    const values = await this.client.mget(channels);
    values.forEach((value, index) => value !== null && this.dispatch(channels[index], value));
  }

  private dispatch(channel: string, message: string): void {
    if (!channel.startsWith(KEY_PREFIX)) return;
    let meta: TaskMeta;
    try {
      meta = JSON.parse(message) as TaskMeta;
    } catch {
      return; // someone else's publish on our channel name; the key itself is what counts
    }
    this.waiters.deliver(channel.slice(KEY_PREFIX.length), meta);
  }
}

/** Logs the first error of each outage instead of crashing on an unhandled 'error' event; ioredis reconnects. */
function reportErrors(connection: Redis, role: string): void {
  let reported = false;
  connection.on('error', (error: Error) => {
    if (!reported) logger.warn(`Redis result backend ${role}: ${error.message}; reconnecting`);
    reported = true;
  });
  connection.on('ready', () => {
    reported = false;
  });
}

/** QUIT lets pending writes finish; with reconnecting stopped, an unreachable Redis fails them after one last attempt instead of never. */
async function quit(connection: Redis): Promise<void> {
  connection.options.retryStrategy = () => null;
  await connection.quit().catch(() => undefined);
}

/** ioredis is an optional peer: only `redis://` result backends load it. */
function redisClass(url: string): typeof Redis {
  return optionalPeer<{ Redis: typeof Redis }>('ioredis', `\`resultBackend: '${redactUrl(url)}'\``).Redis;
}

function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}

/** One stored chord part, `[1, task id, state, result]` as Celery encodes it. */
function decodeChordPart(encoded: string, groupId: string): ChordPart {
  const [, taskId, state, result] = JSON.parse(encoded) as [number, string, TaskState, unknown];
  return { groupId, taskId, groupIndex: null, state, result };
}

/** Celery's stored value; JSON.stringify drops an undefined property, and Celery's value always has `result`. */
function encodeMeta(meta: TaskMeta): string {
  return JSON.stringify(meta.result === undefined ? { ...meta, result: null } : meta);
}
