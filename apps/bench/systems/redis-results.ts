import { Redis } from 'ioredis';
import { REDIS_URL } from '../measurement.js';

async function withRedis<T>(use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(REDIS_URL, { lazyConnect: true, connectTimeout: 2_000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    await redis.connect();
    return await use(redis);
  } finally {
    redis.disconnect();
  }
}

/** Whether the Redis result backend of the with-results rows answers. */
export async function redisAvailable(): Promise<boolean> {
  try {
    return (await withRedis((redis) => redis.ping())) === 'PONG';
  } catch {
    return false;
  }
}

/**
 * Deletes the results stored for the tasks whose ids start with `idPrefix` (Celery's keys
 * `celery-task-meta-<id>`), leaving everyone else's keys alone, and says how many there were.
 */
export function deleteResults(idPrefix: string): Promise<number> {
  return withRedis(async (redis) => {
    let deleted = 0;
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `celery-task-meta-${idPrefix}-*`, 'COUNT', 10_000);
      cursor = next;
      if (keys.length > 0) deleted += await redis.unlink(...keys);
    } while (cursor !== '0');
    return deleted;
  });
}
