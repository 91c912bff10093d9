import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { after, before } from 'node:test';
import amqplib, { type ChannelModel, type ConfirmChannel, type GetMessage, type Options } from 'amqplib';
import { encodeTaskMessage, type TaskSpec } from 'nestjs-batches';

const run = promisify(execFile);

export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/** A queue name no other test uses. */
export function uniqueQueue(prefix: string): string {
  return `test.${prefix}.${randomUUID().slice(0, 8)}`;
}

/** Ready and unacked counts as the broker's queue process holds them. */
export async function queueCounts(queue: string): Promise<{ ready: number; unacked: number }> {
  const { stdout } = await run('rabbitmqctl', [
    'list_queues',
    '-q',
    '--formatter',
    'json',
    'name',
    'messages_ready',
    'messages_unacknowledged',
  ]);
  const rows = JSON.parse(stdout) as Array<{ name: string; messages_ready: number; messages_unacknowledged: number }>;
  const row = rows.find((each) => each.name === queue);
  return { ready: row?.messages_ready ?? 0, unacked: row?.messages_unacknowledged ?? 0 };
}

/** Force-closes every client connection, as a broker restart or a network cut would. */
export async function closeAllConnections(): Promise<void> {
  await run('rabbitmqctl', ['close_all_connections', 'test: forced connection loss']);
}

/** A plain amqplib client for the tests' side of the broker: publishing raw messages and reading queues. */
export class TestRabbit {
  private constructor(
    private readonly connection: ChannelModel,
    readonly channel: ConfirmChannel,
  ) {}

  static async connect(): Promise<TestRabbit> {
    const connection = await amqplib.connect(AMQP_URL);
    // A forced close (closeAllConnections) is part of some tests, not a crash.
    connection.on('error', () => undefined);
    const channel = await connection.createConfirmChannel();
    channel.on('error', () => undefined);
    return new TestRabbit(connection, channel);
  }

  /** Declares `queue` as Celery does, so messages published before the worker starts are kept. */
  async declareCeleryQueue(queue: string): Promise<void> {
    await this.channel.assertExchange(queue, 'direct', { durable: true });
    await this.channel.assertQueue(queue, { durable: true });
    await this.channel.bindQueue(queue, queue, queue);
  }

  async publishTask(queue: string, spec: TaskSpec): Promise<string> {
    const encoded = encodeTaskMessage(spec);
    await this.publishRaw(queue, encoded.body, encoded.properties);
    return encoded.id;
  }

  async publishRaw(queue: string, body: Buffer, properties: Options.Publish): Promise<void> {
    // Through the default exchange: the queue may not be bound yet when a test publishes.
    this.channel.sendToQueue(queue, body, properties);
    await this.channel.waitForConfirms();
  }

  /** Takes every message now in `queue`, acking each. */
  async takeAll(queue: string): Promise<GetMessage[]> {
    const messages: GetMessage[] = [];
    for (;;) {
      const message = await this.channel.get(queue, { noAck: true });
      if (message === false) return messages;
      messages.push(message);
    }
  }

  /** Deletes the queues and the Celery exchanges named after them. */
  async deleteQueues(...queues: string[]): Promise<void> {
    for (const queue of queues) {
      await this.channel.deleteQueue(queue);
      await this.channel.deleteExchange(queue);
    }
  }

  async close(): Promise<void> {
    await this.connection.close();
  }
}

/** What a suite closes once its tests are done: a Nest app, a worker, a proxy. */
export interface Closable {
  close(): Promise<unknown> | unknown;
}

/**
 * A suite's RabbitMQ side: a test connection opened before the suite and, after it, what the suite
 * handed to `closeAfter` closed (newest first), then every queue it named (with its dead-letter
 * queue and exchange) deleted over a fresh connection, in case a test force-closed the first.
 * Closing first matters: a worker still consuming a deleted queue declares it again, as Celery does.
 */
export function rabbitSuite(): {
  readonly rabbit: TestRabbit;
  queue(prefix: string): string;
  closeAfter<T extends Closable>(closable: T): T;
} {
  const queues: string[] = [];
  const closing: Closable[] = [];
  let rabbit: TestRabbit | undefined;
  before(async () => {
    rabbit = await TestRabbit.connect();
  });
  after(async () => {
    for (const each of closing.toReversed()) await Promise.resolve(each.close()).catch(() => undefined);
    const fresh = await TestRabbit.connect();
    await fresh.deleteQueues(...queues.flatMap((queue) => [queue, `${queue}.dead`]));
    await fresh.close();
    await rabbit?.close().catch(() => undefined);
  });
  return {
    get rabbit(): TestRabbit {
      if (!rabbit) throw new Error('rabbitSuite(): the connection opens in a before() hook; use it inside tests');
      return rabbit;
    },
    queue(prefix: string): string {
      const queue = uniqueQueue(prefix);
      queues.push(queue);
      return queue;
    },
    closeAfter<T extends Closable>(closable: T): T {
      closing.push(closable);
      return closable;
    },
  };
}
