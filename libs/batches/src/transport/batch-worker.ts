import { Inject, Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { BATCHES_BROKER, BATCHES_OPTIONS } from '../batches.constants.js';
import { derivePrefetch, narrowGroupWindows } from '../options/prefetch.js';
import type { ResolvedModuleOptions } from '../options/resolve-module-options.js';
import type { Broker } from '../broker/broker.interface.js';
import { CanvasSender } from '../canvas/canvas-sender.js';
import { WorkflowSteps } from '../canvas/workflow-steps.js';
import { WorkerActivity } from '../control/worker-activity.js';
import { BatchEvents } from '../events/batch-events.js';
import { HandlerExplorer, type RegisteredHandler } from '../handler.explorer.js';
import type { TaskArgs, TaskKwargs } from '../simple-request.js';
import { ResultBackend, type RecordedMark } from '../results/result-backend.js';
import { RunningBatches } from './batch-marks.js';
import { AckTrackers } from './ack-tracker.js';
import { BatchPipeline } from './batch-pipeline.js';
import { BatchRunner, type RunnerDeps } from './batch-runner.js';
import { envelopeFor } from './envelope.js';
import { QueueDispatcher } from './queue-dispatcher.js';
import { Republisher } from './republisher.js';

/** Unknown task names for `apply()`/eager mode. */
export class UnknownTaskError extends Error {
  override readonly name = 'UnknownTaskError';
}

/**
 * Owns the running worker: one QueueDispatcher per queue, one pipeline per handler. Started by
 * `BatchesServer.listen()`, drained by `close()` or on application shutdown, whichever comes first.
 */
@Injectable()
export class BatchWorker implements OnModuleDestroy {
  private readonly logger = new Logger('BatchesServer');
  private readonly acks = new AckTrackers();
  private readonly batches: RunningBatches;
  private queues: QueueDispatcher[] = [];
  private pipelines: BatchPipeline[] = [];
  private connecting?: Promise<void>;
  private stopping?: Promise<void>;

  constructor(
    private readonly handlers: HandlerExplorer,
    private readonly results: ResultBackend,
    @Inject(BATCHES_BROKER) private readonly broker: Broker,
    @Inject(BATCHES_OPTIONS) private readonly options: ResolvedModuleOptions,
    private readonly events: BatchEvents,
    private readonly activity: WorkerActivity,
    private readonly canvas: CanvasSender,
  ) {
    this.batches = new RunningBatches(results);
  }

  /**
   * Consumes every queue: resolves once all of them are consumed, or rejects with what stopped the
   * broker. Configuration errors (prefetch) throw synchronously, before any I/O.
   */
  start(): Promise<void> {
    if (!this.connecting) {
      this.prepare();
      this.connecting = this.consumeAll();
    }
    return this.connecting;
  }

  private prepare(): void {
    const republisher = new Republisher(this.broker, this.options.messageFormat);
    const workflows = new WorkflowSteps(this.canvas, this.results, this.logger);
    const byQueue = new Map<string, Map<string, BatchPipeline>>();
    for (const handler of this.handlers.all()) {
      const tasks = byQueue.get(handler.options.queue) ?? new Map<string, BatchPipeline>();
      const runner = new BatchRunner(handler, { ...this.runnerDeps(), republisher, activity: this.activity, workflows });
      byQueue.set(handler.options.queue, tasks.set(handler.task, new BatchPipeline(handler, runner, this.events, handler.options.queue)));
    }
    const deps = {
      broker: this.broker,
      results: this.results,
      acks: this.acks,
      republisher,
      logger: this.logger,
      events: this.events,
      activity: this.activity,
      hostname: this.options.hostname,
      maxMessageBytes: this.options.maxMessageBytes,
    };
    for (const [queue, tasks] of byQueue) {
      const handlers = [...tasks.values()].map((pipeline) => pipeline.handler);
      const prefetch = derivePrefetch(
        queue,
        handlers.map((handler) => handler.options),
      );
      for (const warning of narrowGroupWindows(handlers)) this.logger.warn(warning);
      this.queues.push(new QueueDispatcher(queue, prefetch, tasks, deps));
      this.pipelines.push(...tasks.values());
    }
  }

  private async consumeAll(): Promise<void> {
    if (this.queues.length === 0) {
      this.logger.warn('No @BatchHandler found: the worker consumes nothing. Decorate a provider method with @BatchHandler(taskName).');
      return;
    }
    try {
      await Promise.all(
        this.queues.map(async (queue) => {
          await queue.start();
          this.logger.log(`Consuming '${queue.queue}' on ${this.broker.url} for ${queue.tasks.join(', ')}`);
        }),
      );
    } catch (error) {
      // A worker that cannot consume stops: its timers must not keep the process alive.
      void this.stop();
      throw error;
    }
  }

  /** Requests held for their ETA, by queue. */
  held(): Array<{ queue: string; count: number }> {
    return this.queues.map((queue) => ({ queue: queue.queue, count: queue.heldCount }));
  }

  /** What every runner of this worker shares. */
  private runnerDeps(): RunnerDeps {
    const { results, batches, acks, logger, events } = this;
    return { results, batches, acks, logger, events, tracing: this.options.tracing };
  }

  /** True once closing has begun. */
  get stopped(): boolean {
    return this.stopping !== undefined;
  }

  /**
   * Stops consuming, flushes every partial buffer, waits for running batches and their acks, for at
   * most `shutdownTimeout`. Idempotent.
   */
  stop(): Promise<void> {
    this.stopping ??= this.drainWithin(this.options.shutdownTimeout);
    return this.stopping;
  }

  private async drainWithin(limit: number): Promise<void> {
    const drained = (async () => {
      await Promise.all(this.queues.map((queue) => queue.stop()));
      await Promise.all(this.pipelines.map((pipeline) => pipeline.drain()));
    })();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<true>((resolve) => (timer = setTimeout(() => resolve(true), limit)));
    const late = await Promise.race([drained.then(() => false), timedOut]);
    clearTimeout(timer);
    if (late) {
      this.logger.error(
        `Draining did not finish within shutdownTimeout (${limit} ms): stopping with ${this.acks.unacked()} message(s) unacked, ` +
          'which RabbitMQ hands to another worker (on memory:// they are lost). Is the broker or the result backend unreachable? ' +
          'Raise `shutdownTimeout` if your batches need longer.',
      );
    }
  }

  onModuleDestroy(): Promise<void> {
    return this.stop();
  }

  /** Runs `task`'s handler in-process on one request (eager mode); resolves with its final state. */
  async runEager(task: string, args: TaskArgs, kwargs: TaskKwargs, id: string = randomUUID()): Promise<{ id: string; mark: RecordedMark }> {
    const handler = this.handler(task);
    const message = {
      protocol: 2 as const,
      id,
      task,
      args,
      kwargs,
      retries: 0,
      eta: null,
      expires: null,
      ignoreResult: false,
      rootId: id,
      parentId: null,
      group: null,
      groupIndex: null,
      callbacks: [],
      errbacks: [],
      chain: [],
      chord: null,
      headers: {},
    };
    // Eager runs have no broker: no republisher, remote-control activity or workflows.
    const runner = new BatchRunner(handler, this.runnerDeps());
    const marks = await runner.run(
      [envelopeFor(message, handler.options.queue, this.options.hostname, handler.options.ignoreResult)],
      'count',
    );
    return { id, mark: marks?.stateOf(id) ?? { status: 'PENDING', result: null } };
  }

  private handler(task: string): RegisteredHandler {
    const handler = this.handlers.get(task);
    if (!handler) {
      const known =
        this.handlers
          .all()
          .map((each) => `'${each.task}'`)
          .join(', ') || 'none';
      throw new UnknownTaskError(
        `No @BatchHandler('${task}') in this application (registered: ${known}). Eager runs need the handler in-process.`,
      );
    }
    return handler;
  }
}
