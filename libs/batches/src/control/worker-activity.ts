import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { BehaviorSubject, distinctUntilChanged, type Observable } from 'rxjs';
import { BATCHES_OPTIONS } from '../batches.constants.js';
import { derivePrefetch } from '../options/prefetch.js';
import type { ResolvedModuleOptions } from '../options/resolve-module-options.js';
import { BatchEvents } from '../events/batch-events.js';
import { HandlerExplorer } from '../handler.explorer.js';
import type { ResultBackend } from '../results/result-backend.js';
import { Ring } from '../ring.js';
import type { SimpleRequest } from '../simple-request.js';
import type { AckTrackers } from '../transport/ack-tracker.js';
import type { Envelope } from '../transport/envelope.js';
import { LamportClock } from './lamport-clock.js';
import { RevokedIds } from './revoked-ids.js';
import type { ActiveRequest, WorkerState } from './worker-state.js';

/** A running batch; `finished()` once its requests are settled. */
export interface RunningBatch {
  finished(): void;
}

/**
 * The worker's bookkeeping for remote control: the worker reports requests as it buffers, starts
 * and finishes them; remote control reads them. Revoked ids live here too, so a batch that starts
 * skips them (stored REVOKED and acked, as Celery does).
 */
@Injectable()
export class WorkerActivity implements WorkerState {
  readonly clock = new LamportClock();
  readonly startedAt = Date.now();
  private readonly eventsSwitch = new BehaviorSubject(false);
  /** `eventsEnabled` now and on every change (the Celery event sender follows it). */
  readonly eventsEnabled$: Observable<boolean> = this.eventsSwitch.pipe(distinctUntilChanged());
  private readonly logger = new Logger('BatchesServer');
  /** Per task, its buffered requests in arrival order: batches leave from the front (grouped ones may pass it). */
  private readonly buffered = new Map<string, BufferedRequests>();
  private lastBuffered?: BufferedRequests;
  private readonly running = new Set<{ requests: readonly SimpleRequest[]; timeStart: number }>();
  private readonly totals = new Map<string, number>();

  constructor(
    readonly revoked: RevokedIds,
    private readonly handlers: HandlerExplorer,
    @Inject(BATCHES_OPTIONS) private readonly options: ResolvedModuleOptions,
    @Optional() private readonly batchEvents?: BatchEvents,
  ) {
    this.eventsSwitch.next(options.sendEvents === true);
  }

  /** Whether Celery events are sent: the `sendEvents` option, then remote `enable_events`/`disable_events`. */
  get eventsEnabled(): boolean {
    return this.eventsSwitch.value;
  }

  set eventsEnabled(enabled: boolean) {
    this.eventsSwitch.next(enabled);
  }

  get hostname(): string {
    return this.options.hostname;
  }

  /** The worker buffered a request (it goes to a pipeline). */
  reserve(request: SimpleRequest): void {
    // Requests come in runs of one task: the last task's buffer, without a map lookup.
    let queue = this.lastBuffered;
    if (queue?.task !== request.name) {
      queue = this.buffered.get(request.name);
      if (!queue) {
        queue = new BufferedRequests(request.name);
        this.buffered.set(request.name, queue);
      }
      this.lastBuffered = queue;
    }
    queue.push(request);
  }

  /**
   * A batch leaves its buffer: returns the requests to run. Revoked ones are split off, stored
   * REVOKED and acked (requests from a closed channel are left to the broker's redelivery).
   */
  admit(batch: readonly Envelope[], results: ResultBackend, acks: AckTrackers): readonly Envelope[] {
    // A batch holds one task's requests (one pipeline per task).
    if (batch.length > 0) this.buffered.get(batch[0].request.name)?.take(batch);
    if (this.revoked.size === 0 || !batch.some((envelope) => this.revoked.has(envelope.request.id))) return batch;
    const run: Envelope[] = [];
    for (const envelope of batch) {
      if (!this.revoked.has(envelope.request.id)) run.push(envelope);
      else if (envelope.delivery === undefined || envelope.delivery.channel.open) this.revoke(envelope, results, acks);
    }
    return run;
  }

  /** A batch's handler is about to run on `requests`. */
  started(requests: readonly SimpleRequest[]): RunningBatch {
    const batch = { requests, timeStart: Date.now() / 1000 };
    this.running.add(batch);
    // One task per batch.
    if (requests.length > 0) this.totals.set(requests[0].name, (this.totals.get(requests[0].name) ?? 0) + requests.length);
    return { finished: () => this.running.delete(batch) };
  }

  tasks(): string[] {
    return this.handlers
      .all()
      .map((handler) => handler.task)
      .toSorted();
  }

  queues(): string[] {
    return [...new Set(this.handlers.all().map((handler) => handler.options.queue))];
  }

  reserved(): SimpleRequest[] {
    return [...this.buffered.values()].flatMap((queue) => queue.requests());
  }

  active(): ActiveRequest[] {
    return [...this.running].flatMap(({ requests, timeStart }) => requests.map((request) => ({ request, timeStart })));
  }

  processedTotals(): Record<string, number> {
    return Object.fromEntries(this.totals);
  }

  concurrency(): number {
    return this.handlers.all().reduce((sum, handler) => sum + handler.options.concurrency, 0);
  }

  prefetchCount(): number {
    let total = 0;
    for (const queue of this.queues()) {
      const options = this.handlers
        .all()
        .filter((handler) => handler.options.queue === queue)
        .map((handler) => handler.options);
      try {
        total += derivePrefetch(queue, options);
      } catch {
        // A refused configuration never started the worker: nothing is prefetched for it.
      }
    }
    return total;
  }

  /** Skips a revoked request: stores REVOKED, then acks it (unacked, so redelivered, if the store fails). */
  revoke(envelope: Envelope, results: ResultBackend, acks: AckTrackers): void {
    void this.storeRevoked(envelope, results, acks);
  }

  private async storeRevoked(envelope: Envelope, results: ResultBackend, acks: AckTrackers): Promise<void> {
    const { request, delivery } = envelope;
    try {
      await results.markAsRevoked(request.id, 'revoked', request);
      if (delivery) acks.ack([delivery]);
      this.logger.log(`Discarding revoked task: ${request.name}[${request.id}]`);
      const events = this.batchEvents;
      if (events?.observed) {
        events.emit({ type: 'request.revoked', task: request.name, queue: envelope.queue, at: Date.now(), request, reason: 'revoked' });
      }
    } catch (error) {
      this.logger.error(`Could not store REVOKED for task ${request.id}; it stays unacked: ${String(error)}`);
    }
  }
}

/**
 * One task's buffered requests in arrival order, in a ring (no allocation per request). Batches
 * usually leave from the front; a grouped one (`groupBy`) can pass older requests of other keys,
 * and its requests are then skipped when they reach the front.
 */
class BufferedRequests {
  private readonly ring = new Ring<SimpleRequest>();
  /** Requests that left out of order and are still behind the front. */
  private taken = new Set<SimpleRequest>();

  constructor(readonly task: string) {}

  push(request: SimpleRequest): void {
    this.ring.push(request);
  }

  /** The requests of `batch` (in buffer order, as every batch is) left the buffer. */
  take(batch: readonly Envelope[]): void {
    const { ring } = this;
    const size = batch.length;
    if (size <= ring.length && ring.at(0) === batch[0].request && ring.at(size - 1) === batch[size - 1].request) {
      // First and last at the front: in buffer order, the batch is the whole front.
      for (let index = 0; index < size; index++) ring.shift();
    } else {
      for (let index = 0; index < size; index++) {
        const { request } = batch[index];
        if (ring.length > 0 && ring.at(0) === request) ring.shift();
        else this.taken.add(request);
      }
    }
    if (this.taken.size === 0) return;
    while (ring.length > 0 && this.taken.delete(ring.at(0) as SimpleRequest)) ring.shift();
    // A request never buffered here (none is, in the worker) must not stay in `taken`.
    if (this.taken.size > ring.length) this.taken = new Set(this.requests(true));
  }

  /** The buffered requests, oldest first (with `taken`, only those that left out of order). */
  requests(taken = false): SimpleRequest[] {
    const requests: SimpleRequest[] = [];
    for (let offset = 0; offset < this.ring.length; offset++) {
      const request = this.ring.at(offset) as SimpleRequest;
      if (this.taken.has(request) === taken) requests.push(request);
    }
    return requests;
  }
}
