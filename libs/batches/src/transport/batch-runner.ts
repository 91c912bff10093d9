import type { Logger } from '@nestjs/common';
import type { Delivery } from '../broker/broker.interface.js';
import { hasWorkflow, type FinalState, type WorkflowSteps } from '../canvas/workflow-steps.js';
import type { WorkerActivity } from '../control/worker-activity.js';
import type { BatchEvents, FlushReason } from '../events/batch-events.js';
import type { RegisteredHandler } from '../handler.explorer.js';
import type { BatchesTracing } from '../observability/batches-tracing.js';
import type { ResultBackend } from '../results/result-backend.js';
import { exceptionInfo, type ExceptionInfo } from '../results/task-result.js';
import type { SimpleRequest } from '../simple-request.js';
import type { AckTrackers } from './ack-tracker.js';
import type { BatchMarks, RunningBatches } from './batch-marks.js';
import type { Envelope } from './envelope.js';
import type { Republisher } from './republisher.js';

/** What a runner settles requests with. Eager runs have no republisher, activity or workflows. */
export interface RunnerDeps {
  results: ResultBackend;
  /** Which batches are running, so marks made through the ResultBackend find their batch. */
  batches: RunningBatches;
  acks: AckTrackers;
  logger: Logger;
  events: BatchEvents;
  /** Publishes retries and dead letters. */
  republisher?: Republisher;
  /** What remote control reports and revokes. */
  activity?: WorkerActivity;
  /** Chains, callbacks, errbacks and chords after each request's outcome. */
  workflows?: WorkflowSteps;
  /** A span per batch run, when the module's `tracing` option is on. */
  tracing?: BatchesTracing;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/**
 * Runs one batch through its handler and settles every request in it: results stored first,
 * then retries and dead letters published, and only then the deliveries acked.
 */
export class BatchRunner {
  private readonly results: ResultBackend;
  private readonly batches: RunningBatches;
  private readonly acks: AckTrackers;
  private readonly logger: Logger;
  private readonly events: BatchEvents;
  private readonly republisher?: Republisher;
  private readonly activity?: WorkerActivity;
  private readonly workflows?: WorkflowSteps;
  private readonly tracing?: BatchesTracing;

  constructor(
    private readonly handler: RegisteredHandler,
    deps: RunnerDeps,
  ) {
    ({
      results: this.results,
      batches: this.batches,
      acks: this.acks,
      logger: this.logger,
      events: this.events,
      republisher: this.republisher,
      activity: this.activity,
      workflows: this.workflows,
      tracing: this.tracing,
    } = deps);
  }

  /** Never rejects: a failure is settled per request. Returns the batch's marks, to read each request's final state. */
  async run(buffered: readonly Envelope[], reason: FlushReason): Promise<BatchMarks | undefined> {
    // Revoked while buffered: stored REVOKED and acked instead of run.
    const batch = this.activity ? this.activity.admit(buffered, this.results, this.acks) : buffered;
    // Requests from a channel that died are redelivered by the broker: running them here would run them twice.
    const live = allLive(batch) ? batch : batch.filter(isLive);
    if (live.length === 0) return undefined;
    const requests = requestsOf(live);
    const marks = this.batches.track(requests);
    const running = this.activity?.started(requests);
    const { task } = this.handler;
    const queue = live[0].queue;
    const started = Date.now();
    if (this.events.observed) this.events.emit({ type: 'batch.started', task, queue, at: started, requests, reason });
    try {
      let outcome: Outcome;
      try {
        // Tracing off costs this one check: no closure, no span.
        const value = this.tracing
          ? await this.tracing.runBatch(task, queue, requests, reason, () => this.handler.invoke(requests, { task, queue, reason }))
          : await this.handler.invoke(requests, { task, queue, reason });
        outcome = { ok: true, value };
      } catch (error) {
        outcome = { ok: false, error };
      }
      const durationMs = Date.now() - started;
      await this.conclude(live, requests, marks, outcome, durationMs);
      if (this.events.observed) {
        const at = Date.now();
        const size = live.length;
        this.events.emit(
          outcome.ok
            ? { type: 'batch.completed', task, queue, at, size, durationMs }
            : { type: 'batch.failed', task, queue, at, size, durationMs, error: outcome.error },
        );
      }
      return marks;
    } finally {
      this.batches.untrack(marks);
      running?.finished();
    }
  }

  private async conclude(
    batch: readonly Envelope[],
    requests: readonly SimpleRequest[],
    marks: BatchMarks,
    outcome: Outcome,
    runtimeMs: number,
  ): Promise<void> {
    let done: readonly Envelope[];
    const again: Array<{ envelope: Envelope; error: unknown }> = [];
    const returned = outcome.ok ? returnedValues(outcome.value, requests) : undefined;
    let unmarked: readonly SimpleRequest[];
    let values: readonly unknown[];
    if (returned !== undefined && marks.marks.size === 0) {
      // Most handlers mark nothing: every request takes its returned value, none needs looking up.
      done = batch;
      unmarked = requestsOf(batch);
      values = returned;
    } else {
      ({ done, unmarked, values } = this.partition(batch, marks, outcome, returned, again));
    }
    // Beyond celery-batches: an unmarked request takes its returned value, or null, never PENDING forever.
    if (unmarked.length > 0) void marks.resolve(this.results, unmarked, values);
    if (!outcome.ok) this.logFailure(again.length, outcome.error);
    const writeFailure = await Promise.all(marks.writes).then(
      () => undefined,
      (error: unknown) => error ?? new Error('result write failed'),
    );
    if (writeFailure !== undefined) {
      // Acking now would lose results; retrying keeps the messages without wedging the channel.
      this.logger.error(`Results of '${this.handler.task}' could not be stored, so the batch is retried: ${describe(writeFailure)}`);
      for (const envelope of done) again.push({ envelope, error: writeFailure });
      done = [];
    }
    if (this.events.observed) this.emitSettled(done, marks, unmarked, values, runtimeMs);
    const following = this.workflows && this.followWorkflows(this.workflows, done, marks, unmarked, values);
    if (following) await following;
    const redelivered =
      again.length === 0 ? [] : await Promise.all(again.map(({ envelope, error }) => this.retryOrFail(envelope, error, runtimeMs)));
    const toAck = deliveriesOf(done);
    for (const delivery of redelivered) if (delivery) toAck.push(delivery);
    this.acks.ack(toAck);
  }

  /**
   * Splits a batch whose handler threw or marked requests: marked ones are done (or retried, for
   * RETRY marks), unmarked ones take their returned value, or are retried when the handler threw.
   */
  private partition(
    batch: readonly Envelope[],
    marks: BatchMarks,
    outcome: Outcome,
    returned: readonly unknown[] | undefined,
    again: Array<{ envelope: Envelope; error: unknown }>,
  ): { done: Envelope[]; unmarked: SimpleRequest[]; values: unknown[] } {
    const done: Envelope[] = [];
    const unmarked: SimpleRequest[] = [];
    const values: unknown[] = [];
    for (let index = 0; index < batch.length; index++) {
      const envelope = batch[index];
      const mark = marks.marks.get(envelope.request.id);
      if (mark?.status === 'RETRY') {
        again.push({ envelope, error: mark.result });
      } else if (mark) {
        done.push(envelope);
      } else if (returned) {
        unmarked.push(envelope.request);
        values.push(returned[index]);
        done.push(envelope);
      } else {
        again.push({ envelope, error: outcome.ok ? undefined : outcome.error });
      }
    }
    return { done, unmarked, values };
  }

  /**
   * Publishes the retry, or the dead letter once retries are spent, and stores the matching state.
   * Returns the delivery to ack, or nothing when the publish failed and the broker must redeliver it.
   */
  private async retryOrFail(envelope: Envelope, error: unknown, runtimeMs: number): Promise<Delivery | undefined> {
    const { request, message, delivery, queue } = envelope;
    const { maxRetries, retryDelay } = this.handler.options;
    const retry = message.retries < maxRetries;
    const { republisher } = this;
    if (republisher && delivery) {
      const publish = (): Promise<void> =>
        retry ? republisher.retry(message, queue, retryDelay) : republisher.deadLetter(delivery, queue, exhausted(maxRetries, error));
      try {
        await publish();
      } catch (publishError) {
        // No queue took it (its node is down): held, not lost, and the batch goes on. Settled and acked once it is published.
        const held = republisher.heldUntilRoutable(publishError, publish, delivery);
        this.logger.error(
          `Could not ${retry ? 'retry' : 'dead-letter'} task ${request.id}; it stays unacked ` +
            `${held ? 'and is published again once the queue takes it' : 'for redelivery'}: ${describe(publishError)}`,
        );
        void held
          ?.then(async (published) => {
            if (!published) return;
            await this.settleFailed(envelope, error, retry, runtimeMs);
            this.acks.ack([delivery]);
          })
          .catch((settleError: unknown) => this.logger.error(`Could not settle task ${request.id}: ${describe(settleError)}`));
        return undefined;
      }
    }
    await this.settleFailed(envelope, error, retry && delivery !== undefined, runtimeMs);
    return delivery;
  }

  /** Stores RETRY (`retried`) or FAILURE, with its event and, for a final failure, its errbacks and chord. */
  private async settleFailed(envelope: Envelope, error: unknown, retried: boolean, runtimeMs: number): Promise<void> {
    const { request } = envelope;
    if (this.events.observed) this.emitFailed(envelope, error, retried, runtimeMs);
    const stored = retried ? this.results.markAsRetry(request.id, error, request) : this.results.markAsFailure(request.id, error, request);
    await stored.catch((storeError: unknown) =>
      this.logger.error(`Could not store the state of task ${request.id}: ${describe(storeError)}`),
    );
    if (!retried && this.workflows && hasWorkflow(request)) await this.workflows.settled(request, 'FAILURE', exceptionInfo(error));
  }

  /**
   * Chains, callbacks, errbacks and chord counts of the requests settled without a retry; nothing
   * to wait for when none has any (most batches).
   */
  private followWorkflows(
    workflows: WorkflowSteps,
    done: readonly Envelope[],
    marks: BatchMarks,
    unmarked: readonly SimpleRequest[],
    values: readonly unknown[],
  ): Promise<unknown> | undefined {
    let involved: Envelope[] | undefined;
    for (let index = 0; index < done.length; index++) if (hasWorkflow(done[index].request)) (involved ??= []).push(done[index]);
    if (!involved) return undefined;
    const returned = new Map(unmarked.map((request, index) => [request.id, values[index]]));
    return Promise.all(
      involved.map(({ request }) => {
        const mark = marks.marks.get(request.id);
        const state: FinalState = mark ? (mark.status as FinalState) : 'SUCCESS';
        return workflows.settled(request, state, mark ? mark.result : (returned.get(request.id) ?? null));
      }),
    );
  }

  /** Per-request events for the requests settled without a retry: their final state is their mark, or the returned value. */
  private emitSettled(
    done: readonly Envelope[],
    marks: BatchMarks,
    unmarked: readonly SimpleRequest[],
    values: readonly unknown[],
    runtimeMs: number,
  ): void {
    const returned = new Map(unmarked.map((request, index) => [request.id, values[index]]));
    const at = Date.now();
    const { task } = this.handler;
    for (const { request, queue } of done) {
      const mark = marks.marks.get(request.id);
      if (!mark) {
        this.events.emit({ type: 'request.succeeded', task, queue, at, request, result: returned.get(request.id) ?? null, runtimeMs });
      } else if (mark.status === 'SUCCESS') {
        this.events.emit({ type: 'request.succeeded', task, queue, at, request, result: mark.result, runtimeMs });
      } else if (mark.status === 'FAILURE') {
        this.events.emit({ type: 'request.failed', task, queue, at, request, error: mark.result, runtimeMs });
      } else if (mark.status === 'REVOKED') {
        const reason = (mark.result as ExceptionInfo | null)?.exc_message?.[0];
        this.events.emit({ type: 'request.revoked', task, queue, at, request, reason: typeof reason === 'string' ? reason : 'revoked' });
      }
    }
  }

  private emitFailed(envelope: Envelope, error: unknown, retried: boolean, runtimeMs: number): void {
    const { request, queue } = envelope;
    const { task, options } = this.handler;
    const at = Date.now();
    if (retried) {
      this.events.emit({ type: 'request.retried', task, queue, at, request, error });
      return;
    }
    this.events.emit({ type: 'request.failed', task, queue, at, request, error, runtimeMs });
    if (envelope.delivery) {
      this.events.emit({
        type: 'request.deadLettered',
        task,
        queue,
        at,
        id: request.id,
        request,
        reason: exhausted(options.maxRetries, error),
      });
    }
  }

  private logFailure(count: number, error: unknown): void {
    if (count === 0) return;
    this.logger.warn(`${this.handler.source} failed a batch of ${count} '${this.handler.task}' request(s): ${describe(error)}`);
  }
}

/**
 * A handler's return value as per-request results, by index in `requests`: an array aligned with
 * the requests, or a Map keyed by request id. Anything else resolves every request with null.
 */
function returnedValues(value: unknown, requests: readonly SimpleRequest[]): unknown[] {
  // A copy: the handler keeps its own array.
  if (Array.isArray(value) && value.length === requests.length) return value.slice();
  const values: unknown[] = [];
  for (let index = 0; index < requests.length; index++) {
    const { id } = requests[index];
    values.push(value instanceof Map && value.has(id) ? value.get(id) : null);
  }
  return values;
}

function isLive(envelope: Envelope): boolean {
  return envelope.delivery === undefined || envelope.delivery.channel.open;
}

function allLive(batch: readonly Envelope[]): boolean {
  for (let index = 0; index < batch.length; index++) if (!isLive(batch[index])) return false;
  return true;
}

/**
 * The batch's requests. Plain loops here and below: per-batch code runs unoptimized for a while,
 * and there `map` or `filter` with a callback costs several times a loop.
 */
function requestsOf(batch: readonly Envelope[]): SimpleRequest[] {
  const requests: SimpleRequest[] = [];
  for (let index = 0; index < batch.length; index++) requests.push(batch[index].request);
  return requests;
}

/** The broker deliveries of `batch` (eager requests have none). */
function deliveriesOf(batch: readonly Envelope[]): Delivery[] {
  const deliveries: Delivery[] = [];
  for (let index = 0; index < batch.length; index++) {
    const { delivery } = batch[index];
    if (delivery) deliveries.push(delivery);
  }
  return deliveries;
}

/** The dead-letter reason of a request whose retries are spent. */
function exhausted(maxRetries: number, error: unknown): string {
  return `${maxRetries} retries exhausted: ${describe(error)}`;
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
