import type { EventEmitter } from 'node:events';
import type { Channel, ChannelModel } from 'amqplib';
import {
  declarationConflict,
  isConnectionLoss,
  unreachableQueue,
  withPublishTimeout,
  type BrokerFailedError,
  type DeclarationContext,
} from './broker-errors.js';
import { celeryQueueDeclaration, DEAD_LETTER_SUFFIX, queueArguments } from './broker.interface.js';
import type { BroadcastBinding, QueueDeclaration, QueueType } from './broker.interface.js';
import { UnreachableQueues } from './unreachable-queues.js';

/** What declarations ask of the broker that owns the connection. */
export interface DeclarationsHost {
  /** The current connection, once there is one; rejects once the broker failed or was closed. */
  connected(): Promise<ChannelModel>;
  /** Stops the broker for good; returns the error it stopped with. */
  fail(error: BrokerFailedError): BrokerFailedError;
  /** True once the broker failed or was closed. */
  stopped(): boolean;
}

/**
 * Task queues, dead-letter queues, transient exchanges and broadcast bindings, each declared on a
 * channel of its own; a queue whose node is down is declared again until it is back.
 */
export class AmqpDeclarations {
  /** Declarations made on the current connection; like kombu, declared again after a reconnect. */
  private readonly declared = new Map<string, Declaration>();
  /** Each queue declaration's cache key (its JSON), built once per declaration object. */
  private readonly declarationKeys = new WeakMap<QueueDeclaration, string>();
  /** Celery's default declaration of each queue name sent to without one, and its key. */
  private readonly defaultDeclarations = new Map<string, { declaration: QueueDeclaration; key: string }>();
  /** The last declaration given per queue name: used again by callers that give none (re-declarations, canvas sends). */
  private readonly queueDeclarations = new Map<string, QueueDeclaration>();
  /** Queues RabbitMQ could not reach, declared again until they are back. */
  private readonly unreachable: UnreachableQueues;

  /** `events`: the broker's, where each `unreachable` queue is told by name. */
  constructor(
    private readonly broker: DeclarationsHost,
    private readonly events: EventEmitter,
  ) {
    this.unreachable = new UnreachableQueues(events);
  }

  /** The connection was made or lost: what it declared is declared again on the next use. */
  forget(): void {
    this.declared.clear();
  }

  declareQueue(queue: string, declaration?: QueueDeclaration | string, options: { fresh?: boolean; timeout?: number } = {}): Promise<void> {
    if (options.fresh) for (const key of this.declared.keys()) if (key.startsWith(`queue:${queue}:`)) this.declared.delete(key);
    if (typeof declaration === 'object') this.queueDeclarations.set(queue, declaration);
    const { declaration: declared, key } = this.queueDeclaration(queue, declaration);
    const done = this.declareOnce(queue, key, (channel) => declareTaskQueue(channel, queue, declared), true, { declaration: declared });
    // Every send declares its queue: once this connection has, no timer and no race.
    if (options.timeout === undefined || this.declared.get(key)?.settled) return done;
    return withPublishTimeout(done, options.timeout);
  }

  /** What `queue` is declared as, and the cache key of that declaration (its JSON, computed once per declaration). */
  private queueDeclaration(queue: string, given: QueueDeclaration | string | undefined): { declaration: QueueDeclaration; key: string } {
    const declaration = typeof given === 'object' ? given : typeof given === 'string' ? undefined : this.queueDeclarations.get(queue);
    if (declaration) {
      let key = this.declarationKeys.get(declaration);
      if (key === undefined) this.declarationKeys.set(declaration, (key = declarationKey(queue, declaration)));
      return { declaration, key };
    }
    // Through a named exchange (rare): built anew each time.
    if (typeof given === 'string') {
      const named = celeryQueueDeclaration(queue, given);
      return { declaration: named, key: declarationKey(queue, named) };
    }
    let celery = this.defaultDeclarations.get(queue);
    if (!celery) {
      const standard = celeryQueueDeclaration(queue);
      celery = { declaration: standard, key: declarationKey(queue, standard) };
      this.defaultDeclarations.set(queue, celery);
    }
    return celery;
  }

  /**
   * `type`: the main queue's, so dead letters are as safe as the tasks were. Resolves once declared,
   * or once RabbitMQ said it cannot reach the queue (its node is down): the declaration goes on in
   * the background and the task queue is consumed meanwhile.
   */
  declareDeadLetterQueue(queue: string, type: QueueType = 'classic'): Promise<void> {
    const deadLetterOf = queue.endsWith(DEAD_LETTER_SUFFIX) ? queue.slice(0, -DEAD_LETTER_SUFFIX.length) : queue;
    const declared = this.declareOnce(
      queue,
      `dead:${queue}:${type}`,
      async (channel) => {
        await channel.assertQueue(queue, {
          durable: true,
          autoDelete: false,
          exclusive: false,
          arguments: queueArguments({ type, arguments: {} }),
        });
      },
      true,
      { deadLetterOf },
    );
    return new Promise<void>((resolve, reject) => {
      const settle = (): void => {
        this.events.off('unreachable', unreachable);
        resolve();
      };
      const unreachable = (name: string): void => {
        if (name === queue) settle();
      };
      this.events.on('unreachable', unreachable);
      declared.then(settle, (error: unknown) => {
        this.events.off('unreachable', unreachable);
        reject(error);
      });
    });
  }

  declareTransientExchange(exchange: string, type: BroadcastBinding['exchangeType']): Promise<void> {
    return this.declareOnce(
      exchange,
      `transient-exchange:${exchange}`,
      async (channel) => {
        await channel.assertExchange(exchange, type, { durable: false, autoDelete: false });
      },
      false,
    );
  }

  /**
   * Not cached per connection: an auto-delete queue goes away with its consumer's channel, so each
   * new consumer channel declares it again. A conflict is this binding's problem, not the worker's.
   */
  declareBroadcast(binding: BroadcastBinding): Promise<void> {
    return this.onOwnChannel(
      binding.queue,
      async (channel) => {
        await channel.assertExchange(binding.exchange, binding.exchangeType, { durable: false, autoDelete: false });
        const { consumerCount } = await channel.assertQueue(binding.queue, {
          durable: false,
          autoDelete: true,
          exclusive: false,
          arguments: binding.queueArguments,
        });
        await channel.bindQueue(binding.queue, binding.exchange, binding.routingKey);
        binding.onDeclared?.(consumerCount);
      },
      false,
    );
  }

  /** `fatal`: a refused declaration (PRECONDITION_FAILED) stops the broker; otherwise it only rejects. */
  private declareOnce(
    queue: string,
    key: string,
    declare: (channel: Channel) => Promise<void>,
    fatal = true,
    context?: DeclarationContext,
  ): Promise<void> {
    let declared = this.declared.get(key);
    if (!declared) {
      const entry: Declaration = { promise: this.onOwnChannel(queue, declare, fatal, context), settled: false };
      this.declared.set(key, entry);
      entry.promise.then(
        () => (entry.settled = true),
        () => {
          if (this.declared.get(key) === entry) this.declared.delete(key);
        },
      );
      declared = entry;
    }
    return declared.promise;
  }

  /**
   * Runs a declaration on a channel of its own, so a refused declaration (which closes its channel)
   * never takes the publisher or a consumer down with it. A lost connection means: again on the next.
   */
  private async onOwnChannel(
    queue: string,
    work: (channel: Channel) => Promise<void>,
    fatal = true,
    context?: DeclarationContext,
  ): Promise<void> {
    for (;;) {
      const connection = await this.broker.connected();
      try {
        const channel = await connection.createChannel();
        channel.on('error', () => undefined); // the refused call rejects with the same error
        await work(channel);
        await channel.close().catch(() => undefined);
        this.unreachable.reachable(queue);
        return;
      } catch (error) {
        const conflict = declarationConflict(error, queue, context);
        if (conflict && fatal) throw this.broker.fail(conflict);
        if (conflict) throw conflict;
        if (this.broker.stopped()) throw error;
        const reason = unreachableQueue(error);
        if (reason !== undefined) {
          await this.unreachable.waitForReachable(queue, reason);
          continue;
        }
        if (!isConnectionLoss(error)) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }
}

/** The cache key of `queue` declared as `declaration` (all of a queue's keys start with `queue:<name>:`). */
function declarationKey(queue: string, declaration: QueueDeclaration): string {
  return `queue:${queue}:${JSON.stringify(declaration)}`;
}

/** A declaration made on the current connection; `settled` once RabbitMQ answered it. */
interface Declaration {
  promise: Promise<void>;
  settled: boolean;
}

/**
 * kombu's `Queue(queue, Exchange(exchange, type), routing_key, queue_arguments)`: by default Celery's
 * (direct exchange and key named after the queue, no arguments). Python workers must declare the
 * queue the same way: RabbitMQ refuses a declaration whose type or arguments differ.
 */
async function declareTaskQueue(channel: Channel, queue: string, declaration: QueueDeclaration): Promise<void> {
  await channel.assertExchange(declaration.exchange, declaration.exchangeType, { durable: true, autoDelete: false });
  await channel.assertQueue(queue, { durable: true, autoDelete: false, exclusive: false, arguments: queueArguments(declaration) });
  for (const key of [declaration.routingKey, ...declaration.bindings]) await channel.bindQueue(queue, declaration.exchange, key);
}
