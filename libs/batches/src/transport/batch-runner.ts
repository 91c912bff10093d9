import type { Logger } from '@nestjs/common';
import type { Delivery } from '../broker/broker.interface.js';
import { hasWorkflow, type FinalState, type WorkflowSteps } from '../canvas/workflow-steps.js';
import type { WorkerActivity } from '../control/worker-activity.js';
import type { BatchEvents, FlushReason } from '../events/batch-events.js';
import type { RegisteredHandler } from '../handler.explorer.js';
import type { BatchesTracing } from '../observability/batches-tracing.js';
import type { ResultBackend } from '../results/result-backend.js';
import type { ExceptionInfo } from '../results/task-result.js';
import type { SimpleRequest } from '../simple-request.js';
import type { AckTrackers } from './ack-tracker.js';
import type { BatchMarks, RunningBatches } from './batch-marks.js';
import { partition, returnedValues, type Outcome } from './batch-outcome.js';
import type { Envelope } from './envelope.js';
import { describe, FailedRequests } from './failed-requests.js';
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
  private readonly activity?: WorkerActivity;
  private readonly workflows?: WorkflowSteps;
  private readonly tracing?: BatchesTracing;
  private readonly failures: FailedRequests;

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
      activity: this.activity,
      workflows: this.workflows,
      tracing: this.tracing,
    } = deps);
    this.failures = new FailedRequests(handler, deps);
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
      ({ done, unmarked, values } = partition(batch, marks, outcome, returned, again));
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
      again.length === 0
        ? []
        : await Promise.all(again.map(({ envelope, error }) => this.failures.retryOrFail(envelope, error, runtimeMs)));
    const toAck = deliveriesOf(done);
    for (const delivery of redelivered) if (delivery) toAck.push(delivery);
    this.acks.ack(toAck);
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

  private logFailure(count: number, error: unknown): void {
    if (count === 0) return;
    this.logger.warn(`${this.handler.source} failed a batch of ${count} '${this.handler.task}' request(s): ${describe(error)}`);
  }
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
