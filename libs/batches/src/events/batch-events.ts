import { Injectable } from '@nestjs/common';
import { Subject, type Observable } from 'rxjs';
import type { SimpleRequest } from '../simple-request.js';

/**
 * Why a batch left its buffer: it held `flushEvery` requests (`count`), its oldest request waited
 * `flushInterval` (`interval`), the handler had room for it under `flush: 'adaptive'` (`idle`), a new
 * `groupBy` key needed its place under `maxGroups` (`evicted`), or the worker is closing (`shutdown`).
 */
export type FlushReason = 'count' | 'interval' | 'idle' | 'evicted' | 'shutdown';

interface TaskEvent {
  task: string;
  queue: string;
  /** When it happened (`Date.now()`). */
  at: number;
}

/** A batch left its buffer. `oldestWaitMs`: how long its oldest request had waited in the buffer. */
export interface BatchFlushedEvent extends TaskEvent {
  type: 'batch.flushed';
  size: number;
  reason: FlushReason;
  oldestWaitMs: number;
}

/** The handler was called with `requests`. */
export interface BatchStartedEvent extends TaskEvent {
  type: 'batch.started';
  requests: readonly SimpleRequest[];
  reason: FlushReason;
}

/** The handler resolved and every request in the batch was settled. */
export interface BatchCompletedEvent extends TaskEvent {
  type: 'batch.completed';
  size: number;
  durationMs: number;
}

/** The handler threw (or a guard, interceptor or pipe refused the batch); its requests were retried or failed. */
export interface BatchFailedEvent extends TaskEvent {
  type: 'batch.failed';
  size: number;
  durationMs: number;
  error: unknown;
}

/** A request arrived and was routed to its handler (held first, if its ETA is in the future). */
export interface RequestReceivedEvent extends TaskEvent {
  type: 'request.received';
  request: SimpleRequest;
}

/** A request's final state is SUCCESS. `runtimeMs`: its batch's handler time. */
export interface RequestSucceededEvent extends TaskEvent {
  type: 'request.succeeded';
  request: SimpleRequest;
  result: unknown;
  runtimeMs: number;
}

/** A request's final state is FAILURE (marked so, or its retries are spent). */
export interface RequestFailedEvent extends TaskEvent {
  type: 'request.failed';
  request: SimpleRequest;
  error: unknown;
  runtimeMs: number;
}

/** A request was sent back for a retry (`retries` + 1, due at `eta`). */
export interface RequestRetriedEvent extends TaskEvent {
  type: 'request.retried';
  request: SimpleRequest;
  error: unknown;
}

/** A message went to `<queue>.dead` with `reason`. `id`/`request` are absent when the message could not be read. */
export interface RequestDeadLetteredEvent extends TaskEvent {
  type: 'request.deadLettered';
  id: string | null;
  request: SimpleRequest | null;
  reason: string;
}

/** A request was not run because it was revoked. */
export interface RequestRevokedEvent extends TaskEvent {
  type: 'request.revoked';
  request: SimpleRequest;
  reason: string;
}

/** A request was not run because its `expires` had passed (it is stored REVOKED). */
export interface RequestExpiredEvent extends TaskEvent {
  type: 'request.expired';
  request: SimpleRequest;
  reason: string;
}

export type BatchEvent =
  | BatchFlushedEvent
  | BatchStartedEvent
  | BatchCompletedEvent
  | BatchFailedEvent
  | RequestReceivedEvent
  | RequestSucceededEvent
  | RequestFailedEvent
  | RequestRetriedEvent
  | RequestDeadLetteredEvent
  | RequestRevokedEvent
  | RequestExpiredEvent;

export type BatchEventType = BatchEvent['type'];

/** The event of one type. */
export type BatchEventOf<T extends BatchEventType> = Extract<BatchEvent, { type: T }>;

/**
 * The worker's batch and request events, as an RxJS stream: inject `BatchEvents` and subscribe to
 * `events$`, or decorate a provider method with `@OnBatchEvent(type)`. While nobody listens the
 * worker builds no events at all.
 */
@Injectable()
export class BatchEvents {
  private readonly subject = new Subject<BatchEvent>();

  /** Every event, synchronously as the worker produces it. */
  readonly events$: Observable<BatchEvent> = this.subject.asObservable();

  /** True while anybody listens; emit sites check it before building an event. */
  get observed(): boolean {
    return this.subject.observed;
  }

  /** @internal the worker's side. */
  emit(event: BatchEvent): void {
    this.subject.next(event);
  }
}
