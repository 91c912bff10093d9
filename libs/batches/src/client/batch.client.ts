import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { defer, map, type Observable } from 'rxjs';
import { BATCHES_BROKER, BATCHES_OPTIONS } from '../batches.constants.js';
import type { ResolvedModuleOptions } from '../options/resolve-module-options.js';
import type { Broker } from '../broker/broker.interface.js';
import { PublishTimeoutError, withPublishTimeout } from '../broker/broker-errors.js';
import { publishTask } from '../broker/publish-task.js';
import { CanvasSender } from '../canvas/canvas-sender.js';
import { frozen, signaturesOf, type Signature } from '../canvas/signature.js';
import { encodeTaskMessage } from '../protocol/task-message-encode.js';
import { ResultBackend } from '../results/result-backend.js';
import type { WaitOptions } from '../results/task-result.js';
import type { TaskArgs, TaskKwargs } from '../simple-request.js';
import { BatchWorker } from '../transport/batch-worker.js';
import { AsyncResult, EagerResult, GroupResult } from './async-result.js';

export interface ApplyAsyncOptions {
  args?: TaskArgs;
  kwargs?: TaskKwargs;
  /** Task id; a random UUID by default. */
  taskId?: string;
  /** Run no earlier than this many milliseconds from now. */
  countdown?: number;
  /** Run no earlier than this time. */
  eta?: Date;
  /** Do not run after this time (or this many milliseconds from now). */
  expires?: Date | number;
  priority?: number;
  /** Queue to send to; the module's `defaultQueue` by default. */
  queue?: string;
  /** Ask the worker not to store a result. */
  ignoreResult?: boolean;
  /**
   * Reject with a `PublishTimeoutError` if the broker has not confirmed the message within this many
   * ms (the module's `publishTimeout` by default). Messages survive short reconnects meanwhile.
   */
  timeout?: number;
  /** Sent with this task's result once it succeeds (Celery's `link`). */
  link?: Signature | Signature[];
  /** Sent with this task's id if it fails for good (Celery's `link_error`). */
  linkError?: Signature | Signature[];
}

export interface ApplyOptions {
  args?: TaskArgs;
  kwargs?: TaskKwargs;
  taskId?: string;
}

/** Sends Celery tasks (to Nest batch workers or Python Celery workers) and reads their results. */
@Injectable()
export class BatchClient {
  constructor(
    @Inject(BATCHES_BROKER) private readonly broker: Broker,
    private readonly results: ResultBackend,
    private readonly worker: BatchWorker,
    private readonly canvas: CanvasSender,
    @Inject(BATCHES_OPTIONS) private readonly options: ResolvedModuleOptions,
  ) {}

  /** Sends `name(...args)`; Celery's `delay`. */
  delay<T = unknown>(name: string, ...args: TaskArgs): Promise<AsyncResult<T>> {
    return this.applyAsync<T>(name, { args });
  }

  /** Sends a task with Celery's `apply_async` options. Resolves once the broker has confirmed it. */
  async applyAsync<T = unknown>(name: string, options: ApplyAsyncOptions = {}): Promise<AsyncResult<T>> {
    if (this.options.eager) {
      // The eager run has stored its outcome in the result backend, where this handle reads it.
      const { id } = await this.worker.runEager(name, options.args ?? [], options.kwargs ?? {}, options.taskId);
      return new AsyncResult<T>(id, this.results);
    }
    const queue = options.queue ?? this.options.route(name);
    const now = Date.now();
    const eta = options.eta ?? (options.countdown !== undefined ? new Date(now + options.countdown) : null);
    const expires = typeof options.expires === 'number' ? new Date(now + options.expires) : (options.expires ?? null);
    const encoded = encodeTaskMessage(
      {
        task: name,
        id: options.taskId,
        args: options.args,
        kwargs: options.kwargs,
        eta,
        expires,
        priority: options.priority,
        ignoreResult: options.ignoreResult,
        callbacks: signaturesOf(options.link),
        errbacks: signaturesOf(options.linkError),
        origin: this.options.hostname,
        // W3C `traceparent` of the active span, when tracing is on (Python Celery ignores it).
        headers: this.options.tracing?.traceHeaders(),
      },
      this.options.messageFormat,
    );
    const timeout = options.timeout ?? this.options.publishTimeout;
    try {
      // Declared as the module's `queues` option says (Celery's way when it names none), and sent through its exchange.
      await publishTask(this.broker, queue, this.options.queues?.[queue], encoded, now + timeout);
    } catch (error) {
      if (!(error instanceof PublishTimeoutError)) throw error;
      throw new PublishTimeoutError(
        `Sending '${name}' (task ${encoded.id}) to ${this.broker.url} was not confirmed within ${timeout} ms, so it may not have been sent. ` +
          'Check that the broker is up, or raise `publishTimeout` (module option) or `timeout` (applyAsync option).',
      );
    }
    return new AsyncResult<T>(encoded.id, this.results);
  }

  /**
   * Sends a chain (Celery's `chain(a, b, c)`): each task's result is prepended to the next one's
   * arguments. Resolves with the last task's `AsyncResult` once the first task is confirmed.
   */
  async chain<T = unknown>(signatures: readonly Signature[], options: { timeout?: number } = {}): Promise<AsyncResult<T>> {
    if (signatures.length === 0) throw new TypeError('BatchClient.chain() needs at least one signature');
    const tasks = signatures.map(frozen);
    const chain: Signature = { task: 'celery.chain', args: [], kwargs: { tasks }, options: {}, subtask_type: 'chain', immutable: false };
    await this.sendCanvas(chain, options.timeout);
    return new AsyncResult<T>(tasks[tasks.length - 1].options.task_id as string, this.results);
  }

  /** Sends a group (Celery's `group(a, b)`): the tasks run in parallel; `get()` of the result waits for all. */
  async group<T = unknown>(signatures: readonly Signature[], options: { timeout?: number } = {}): Promise<GroupResult<T>> {
    const tasks = signatures.map(frozen);
    const groupId = randomUUID();
    const group: Signature = {
      task: 'celery.group',
      args: [],
      kwargs: { tasks },
      options: { task_id: groupId },
      subtask_type: 'group',
      immutable: false,
    };
    await this.sendCanvas(group, options.timeout);
    return new GroupResult<T>(
      groupId,
      tasks.map((task) => new AsyncResult<T>(task.options.task_id as string, this.results)),
    );
  }

  private async sendCanvas(canvas: Signature, timeout = this.options.publishTimeout): Promise<void> {
    try {
      await withPublishTimeout(this.canvas.send(canvas), timeout);
    } catch (error) {
      if (!(error instanceof PublishTimeoutError)) throw error;
      throw new PublishTimeoutError(
        `Sending a ${canvas.subtask_type} to ${this.broker.url} was not confirmed within ${timeout} ms, so it may not all have been sent. ` +
          'Check that the broker is up, or raise `publishTimeout` (module option) or `timeout`.',
      );
    }
  }

  /** Runs the handler in-process as a batch of one and returns its request's outcome; Celery's `apply`. */
  async apply<T = unknown>(name: string, options: ApplyOptions = {}): Promise<EagerResult<T>> {
    const { id, mark } = await this.worker.runEager(name, options.args ?? [], options.kwargs ?? {}, options.taskId);
    return new EagerResult<T>(id, mark.status, mark.result);
  }

  /** Nest-style fire-and-forget: `data` becomes `args[0]`; completes once the broker confirmed the message. */
  emit(name: string, data: unknown): Observable<void> {
    return defer(() => this.applyAsync(name, { args: [data] })).pipe(map(() => undefined));
  }

  /** Nest-style request/response: `data` becomes `args[0]`; emits the task's result. */
  send<T = unknown>(name: string, data: unknown, options?: WaitOptions): Observable<T> {
    return defer(async () => (await this.applyAsync<T>(name, { args: [data] })).get(options));
  }
}
