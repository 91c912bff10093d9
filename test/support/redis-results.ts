import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0';

/** Celery's key for a task's result, which is also the channel its writes are published on. */
export const resultKey = (id: string): string => `celery-task-meta-${id}`;

/** The tests' own Redis client: the task ids they use, and what a result backend wrote and how it is connected. */
export class RedisInspector extends Redis {
  private readonly taskIds: string[] = [];

  /** A task id of the test's own, whose result `deleteResults()` removes. */
  newTaskId(): string {
    const id = `test-${randomUUID()}`;
    this.taskIds.push(id);
    return id;
  }

  async deleteResults(): Promise<void> {
    await this.del(...this.taskIds.map(resultKey));
  }

  /** The stored value of task `id`, parsed (null when there is none). */
  async stored(id: string): Promise<Record<string, unknown>> {
    return JSON.parse((await this.get(resultKey(id))) ?? 'null') as Record<string, unknown>;
  }

  /** The CLIENT LIST lines of the connections named `name`. */
  async connectionsNamed(name: string): Promise<string[]> {
    const list = String(await this.client('LIST'));
    return list.split('\n').filter((line) => line.includes(` name=${name} `));
  }

  /** How many connections subscribe to task `id`'s channel. */
  async subscribers(id: string): Promise<number> {
    const [, count] = (await this.pubsub('NUMSUB', resultKey(id))) as [string, number];
    return Number(count);
  }

  /** Calls of the commands that read a result, server-wide since Redis started. */
  async readCommands(): Promise<number> {
    const stats = await this.info('commandstats');
    return ['get', 'mget', 'exists'].reduce(
      (sum, command) => sum + Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(stats)?.[1] ?? 0),
      0,
    );
  }
}
