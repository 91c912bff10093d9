import type { Logger } from '@nestjs/common';
import { MAX_PREFETCH } from '../options/prefetch.js';
import { deadLetterQueue, type Broker, type Delivery, type QueueConsumer } from '../broker/broker.interface.js';
import { decodeTaskMessage, InvalidMessageError, type TaskMessage } from '../protocol/task-message-decode.js';
import { NotRegistered } from '../results/not-registered.js';
import type { ResultBackend } from '../results/result-backend.js';
import type { WorkerActivity } from '../control/worker-activity.js';
import type { BatchEvents } from '../events/batch-events.js';
import type { AckTrackers } from './ack-tracker.js';
import type { BatchPipeline } from './batch-pipeline.js';
import { DueTimer } from './due-timer.js';
import { envelopeFor, type Envelope } from './envelope.js';
import { printable, type Republisher } from './republisher.js';

export interface QueueDispatcherDeps {
  broker: Broker;
  results: ResultBackend;
  acks: AckTrackers;
  republisher: Republisher;
  logger: Logger;
  events: BatchEvents;
  /** What remote control reports and revokes; absent in eager runs. */
  activity?: WorkerActivity;
  hostname: string;
  maxMessageBytes: number;
}

/**
 * Consumes one queue on its own channel: decodes each message, routes it to its task's pipeline,
 * holds requests whose ETA is in the future, and dead-letters what cannot run.
 */
export class QueueDispatcher {
  private consumer?: QueueConsumer;
  private readonly held = new Set<DueTimer>();
  private prefetchUpdate = false;
  private stopped = false;

  constructor(
    readonly queue: string,
    private readonly prefetch: number,
    private readonly pipelines: ReadonlyMap<string, BatchPipeline>,
    private readonly deps: QueueDispatcherDeps,
  ) {}

  /** Requests held for their ETA (unacked, not yet buffered). */
  get heldCount(): number {
    return this.held.size;
  }

  /** Task names handled on this queue. */
  get tasks(): string[] {
    return [...this.pipelines.keys()];
  }

  async start(): Promise<void> {
    // The module's `queues` option reaches the worker through its handlers' options (Celery's declaration when unset).
    const declaration = [...this.pipelines.values()].find((pipeline) => pipeline.handler.options.declaration)?.handler.options.declaration;
    await this.deps.broker.declareQueue(this.queue, declaration);
    await this.deps.broker.declareDeadLetterQueue(deadLetterQueue(this.queue), declaration?.type);
    this.consumer = await this.deps.broker.consume(this.queue, { prefetch: this.prefetch }, (delivery) => this.receive(delivery));
    // Stopped while connecting: consume nothing more.
    if (this.stopped) await this.consumer.cancel();
  }

  /** Stops deliveries. Held ETA requests stay unacked: the broker hands them out again later. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.held) timer.cancel();
    this.held.clear();
    await this.consumer?.cancel();
  }

  private receive(delivery: Delivery): void {
    this.deps.acks.received(delivery);
    let message: TaskMessage;
    try {
      message = decodeTaskMessage(delivery.body, delivery.properties, this.deps.maxMessageBytes);
    } catch (error) {
      if (!(error instanceof InvalidMessageError)) throw error;
      // Like Celery, an unknown task named in protocol-2 headers fails as NotRegistered before its body is read.
      const { id, task } = delivery.properties.headers ?? {};
      if (typeof id === 'string' && id && typeof task === 'string' && task && !this.pipelines.has(task)) {
        return this.unknownTask(delivery, id, task, error.message);
      }
      // Beyond Celery, which leaves it PENDING: a message with an id gets a FAILURE its caller can read.
      if (typeof id === 'string' && id)
        return this.failAndDeadLetter(delivery, id, error, error.message, typeof task === 'string' ? task : null);
      return this.reject(delivery, error.message);
    }
    const pipeline = this.pipelines.get(message.task);
    if (!pipeline) return this.unknownTask(delivery, message.id, message.task);
    const envelope = envelopeFor(message, this.queue, this.deps.hostname, pipeline.handler.options.ignoreResult, delivery);
    const { events } = this.deps;
    if (events.observed) {
      events.emit({ type: 'request.received', task: message.task, queue: this.queue, at: Date.now(), request: envelope.request });
    }
    const { activity } = this.deps;
    if (activity?.revoked.has(message.id)) return activity.revoke(envelope, this.deps.results, this.deps.acks);
    // Most requests have no ETA: no clock read for them.
    if (message.eta !== null) {
      const due = message.eta.getTime();
      // Once stopping, a request not yet due stays unacked: the broker hands it out again.
      if (due > Date.now()) return this.stopped ? undefined : this.hold(pipeline, envelope, due);
    }
    this.dispatch(pipeline, envelope);
  }

  /** Buffers a due request, unless its channel died (the broker redelivers it), it expired or it was revoked. */
  private dispatch(pipeline: BatchPipeline, envelope: Envelope): void {
    const { message, delivery } = envelope;
    if (!delivery?.channel.open) return; // the broker redelivers it
    if (message.expires !== null && message.expires.getTime() <= Date.now()) return this.expire(envelope, delivery);
    const { activity } = this.deps;
    if (activity !== undefined) {
      if (activity.revoked.has(message.id)) return activity.revoke(envelope, this.deps.results, this.deps.acks);
      activity.reserve(envelope.request);
    }
    pipeline.push(envelope);
  }

  /**
   * Keeps a request until its ETA, unacked, and widens the channel's prefetch meanwhile so held
   * requests never eat the window that full batches need (what Celery does for ETA tasks).
   */
  private hold(pipeline: BatchPipeline, envelope: Envelope, due: number): void {
    const timer = new DueTimer(due, () => {
      this.held.delete(timer);
      this.updatePrefetch();
      this.dispatch(pipeline, envelope);
    });
    this.held.add(timer);
    this.updatePrefetch();
  }

  /** Coalesces prefetch changes made in one turn into one basic.qos. */
  private updatePrefetch(): void {
    if (this.prefetchUpdate) return;
    this.prefetchUpdate = true;
    queueMicrotask(() => {
      this.prefetchUpdate = false;
      const prefetch = Math.min(MAX_PREFETCH, this.prefetch + this.held.size);
      this.consumer
        ?.setPrefetch(prefetch)
        .catch((error: unknown) => this.deps.logger.warn(`Could not set prefetch of '${this.queue}': ${String(error)}`));
    });
  }

  private expire(envelope: Envelope, delivery: Delivery): void {
    const { request, message } = envelope;
    const reason = `expired at ${message.expires?.toISOString()}`;
    this.deps.results
      .markAsRevoked(message.id, reason)
      .then(() => {
        this.deps.acks.ack([delivery]);
        const { events } = this.deps;
        if (events.observed)
          events.emit({ type: 'request.expired', task: message.task, queue: this.queue, at: Date.now(), request, reason });
      })
      .catch((error: unknown) =>
        this.deps.logger.error(`Could not store REVOKED for task ${message.id}; it stays unacked: ${String(error)}`),
      );
  }

  /**
   * A task no handler on this queue runs: stores FAILURE `NotRegistered` as Celery's worker does
   * (`on_unknown_task`: whatever the message's `ignore_result`, no errbacks or chain), so its caller
   * does not wait on PENDING, then dead-letters and acks it. If the result cannot be stored, the
   * message stays unacked: the broker hands it out again.
   */
  private unknownTask(delivery: Delivery, id: string, task: string, invalid?: string): void {
    const reason =
      `unknown task '${task}': no @BatchHandler for it consumes queue '${this.queue}'` +
      (invalid ? ` (and the message is invalid: ${invalid})` : '');
    this.failAndDeadLetter(delivery, id, new NotRegistered(task), reason, task);
  }

  /** Stores FAILURE for request `id`, then dead-letters and acks; unacked (redelivered) if either fails. */
  private failAndDeadLetter(delivery: Delivery, id: string, error: Error, reason: string, task: string | null): void {
    const dead = deadLetterQueue(this.queue);
    this.deps.logger.warn(
      `Task ${printable(id)} on queue '${this.queue}' cannot run, so it is stored as FAILURE ${error.name} and dead-lettered to '${dead}': ${printable(reason)}`,
    );
    this.deps.results.markAsFailure(id, error).then(
      () => this.deadLetter(delivery, reason, id, task),
      (storeError: unknown) =>
        this.deps.logger.error(
          `Could not store FAILURE ${error.name} for task ${id} from '${this.queue}'; it stays unacked: ${String(storeError)}`,
        ),
    );
  }

  /** Bad input never stops the worker: one log line, then the message moves to `<queue>.dead`. */
  private reject(delivery: Delivery, reason: string): void {
    this.deps.logger.warn(`Dead-lettered a message from '${this.queue}' to '${deadLetterQueue(this.queue)}': ${printable(reason)}`);
    this.deadLetter(delivery, reason, null, null);
  }

  /** Publishes the message to `<queue>.dead`, then acks it; it stays unacked (redelivered) if the publish fails. */
  private deadLetter(delivery: Delivery, reason: string, id: string | null, task: string | null): void {
    const { republisher, acks, events, logger } = this.deps;
    const publish = (): Promise<void> => republisher.deadLetter(delivery, this.queue, reason);
    const done = (): void => {
      acks.ack([delivery]);
      if (events.observed) {
        events.emit({ type: 'request.deadLettered', task: task ?? '', queue: this.queue, at: Date.now(), id, request: null, reason });
      }
    };
    publish()
      .then(done)
      .catch((error: unknown) => {
        // No queue took it (the dead-letter queue's node is down): held unacked and published again once it can be.
        const held = republisher.heldUntilRoutable(error, publish, delivery);
        logger.error(
          `Could not dead-letter ${id ? `task ${id}` : 'a message'} from '${this.queue}'; it stays unacked` +
            `${held ? ' and is published again once the queue takes it' : ''}: ${String(error)}`,
        );
        void held?.then((published) => published && done());
      });
  }
}
