import type { Logger } from '@nestjs/common';
import type { Delivery } from '../broker/broker.interface.js';
import type { RegisteredHandler } from '../handler.explorer.js';
import type { BatchMarks, RecordedMark, ResultBackend } from '../results/result-backend.js';
import type { SimpleRequest } from '../simple-request.js';
import type { AckTrackers } from './ack-tracker.js';
import type { Envelope } from './envelope.js';
import type { Redelivery } from './redelivery.js';

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/**
 * Runs one batch through its handler and settles every request in it: results stored first,
 * then retries and dead letters published, and only then the deliveries acked.
 */
export class BatchRunner {
  constructor(
    private readonly handler: RegisteredHandler,
    private readonly results: ResultBackend,
    private readonly acks: AckTrackers,
    private readonly logger: Logger,
    /** Absent for eager runs, which have no broker to retry through. */
    private readonly redelivery?: Redelivery,
  ) {}

  /** Never rejects: a failure is settled per request. Returns each request's final state. */
  async run(batch: readonly Envelope[]): Promise<Map<string, RecordedMark>> {
    // Requests from a channel that died are redelivered by the broker: running them here would run them twice.
    const live = batch.filter((envelope) => envelope.delivery === undefined || envelope.delivery.channel.open);
    if (live.length === 0) return new Map();
    const requests = live.map((envelope) => envelope.request);
    const marks = this.results.track(requests);
    try {
      let outcome: Outcome;
      try {
        outcome = { ok: true, value: await this.handler.invoke(requests) };
      } catch (error) {
        outcome = { ok: false, error };
      }
      return await this.settle(live, marks, outcome);
    } finally {
      this.results.untrack(marks);
    }
  }

  private async settle(batch: readonly Envelope[], marks: BatchMarks, outcome: Outcome): Promise<Map<string, RecordedMark>> {
    const returned = outcome.ok ? resultsByRequest(outcome.value, batch.length) : undefined;
    const done: Envelope[] = [];
    const again: Array<{ envelope: Envelope; error: unknown }> = [];
    const unmarked: SimpleRequest[] = [];
    const values: unknown[] = [];
    batch.forEach((envelope, index) => {
      const { request } = envelope;
      const mark = marks.marks.get(request.id);
      if (mark?.status === 'RETRY') {
        again.push({ envelope, error: mark.result });
      } else if (mark) {
        done.push(envelope);
      } else if (outcome.ok) {
        unmarked.push(request);
        values.push(returned ? returned(request, index) : null);
        done.push(envelope);
      } else {
        again.push({ envelope, error: outcome.error });
      }
    });
    // Beyond celery-batches: an unmarked request takes its returned value, or null, never PENDING forever.
    if (unmarked.length > 0) void this.results.resolveUnmarked(marks, unmarked, values);
    if (!outcome.ok) this.logFailure(again.length, outcome.error);
    const writeFailure = await Promise.all(marks.writes).then(
      () => undefined,
      (error: unknown) => error ?? new Error('result write failed'),
    );
    if (writeFailure !== undefined) {
      // Acking now would lose results; retrying keeps the messages without wedging the channel.
      this.logger.error(`Results of '${this.handler.task}' could not be stored, so the batch is retried: ${describe(writeFailure)}`);
      for (const envelope of done.splice(0)) again.push({ envelope, error: writeFailure });
    }
    const redelivered = await Promise.all(again.map(({ envelope, error }) => this.retryOrFail(envelope, error)));
    const toAck: Delivery[] = [];
    for (const envelope of done) if (envelope.delivery) toAck.push(envelope.delivery);
    for (const delivery of redelivered) if (delivery) toAck.push(delivery);
    this.acks.settle(toAck);
    return marks.marks;
  }

  /**
   * Publishes the retry, or the dead letter once retries are spent, and stores the matching state.
   * Returns the delivery to ack, or nothing when the publish failed and the broker must redeliver it.
   */
  private async retryOrFail(envelope: Envelope, error: unknown): Promise<Delivery | undefined> {
    const { request, message, delivery, queue } = envelope;
    const { maxRetries, retryDelay } = this.handler.options;
    const retry = message.retries < maxRetries;
    if (this.redelivery && delivery) {
      try {
        if (retry) await this.redelivery.retry(message, queue, retryDelay);
        else await this.redelivery.deadLetter(delivery, queue, `${maxRetries} retries exhausted: ${describe(error)}`);
      } catch (publishError) {
        this.logger.error(
          `Could not ${retry ? 'retry' : 'dead-letter'} task ${request.id}; it stays unacked for redelivery: ${describe(publishError)}`,
        );
        return undefined;
      }
    }
    const stored =
      retry && delivery ? this.results.markAsRetry(request.id, error, request) : this.results.markAsFailure(request.id, error, request);
    await stored.catch((storeError: unknown) =>
      this.logger.error(`Could not store the state of task ${request.id}: ${describe(storeError)}`),
    );
    return delivery;
  }

  private logFailure(count: number, error: unknown): void {
    if (count === 0) return;
    this.logger.warn(`${this.handler.source} failed a batch of ${count} '${this.handler.task}' request(s): ${describe(error)}`);
  }
}

/**
 * A handler's return value as per-request results: an array aligned with the requests, or a
 * Map keyed by request id. Anything else resolves no request.
 */
function resultsByRequest(value: unknown, size: number): ((request: SimpleRequest, index: number) => unknown) | undefined {
  if (Array.isArray(value) && value.length === size) return (_request, index) => value[index];
  if (value instanceof Map) return (request) => (value.has(request.id) ? value.get(request.id) : null);
  return undefined;
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
