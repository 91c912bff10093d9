import { bufferTime, filter, lastValueFrom, map, mergeMap, Observable, Subject, tap, type Subscriber } from 'rxjs';
import type { BatchEvents, FlushReason } from '../events/batch-events.js';
import type { RegisteredHandler } from '../handler.explorer.js';
import { batchBuffers, type Flush, type HandlerLoad } from './batch-buffers.js';
import type { BatchRunner } from './batch-runner.js';
import type { Envelope } from './envelope.js';

/**
 * One task's buffer: flushes at `flushEvery` requests or every `flushInterval` ms, whichever
 * comes first (or, with `flush: 'adaptive'`, as soon as the handler has room; with `groupBy`, per
 * key), and runs at most `concurrency` batches at once, in order.
 */
export class BatchPipeline implements HandlerLoad {
  /** The buffer's one subscriber (`lastValueFrom` subscribes in the constructor), called directly: a Subject iterates its observers per message. */
  private sink?: Subscriber<Envelope>;
  private readonly input = new Observable<Envelope>((subscriber) => {
    this.sink = subscriber;
  });
  private readonly released = new Subject<void>();
  private readonly finished: Promise<unknown>;
  private draining = false;
  inFlight = 0;
  readonly concurrency: number;
  readonly released$: Observable<void> = this.released.asObservable();

  constructor(
    readonly handler: RegisteredHandler,
    runner: BatchRunner,
    private readonly events: BatchEvents,
    private readonly queue: string,
  ) {
    const { flushEvery, flushInterval, concurrency, flush, coalesceMs, groupBy, maxGroups } = handler.options;
    this.concurrency = concurrency;
    const flushes: Observable<Flush> =
      flush === 'fixed' && !groupBy
        ? // celery-batches' policy, on RxJS's own buffer: a repeating window that also closes at flushEvery.
          this.input.pipe(
            bufferTime(flushInterval, null, flushEvery),
            filter((batch) => batch.length > 0),
            map((batch) => ({ batch, reason: this.fixedReason(batch) })),
          )
        : this.input.pipe(
            batchBuffers({
              flushEvery,
              flushInterval,
              adaptive: flush === 'adaptive' ? { load: this, coalesceMs } : undefined,
              groupBy,
              maxGroups,
            }),
          );
    this.finished = lastValueFrom(
      flushes.pipe(
        tap(({ batch, reason }) => {
          this.inFlight++;
          if (this.events.observed) this.emitFlushed(batch, reason);
        }),
        mergeMap(
          ({ batch, reason }) =>
            runner.run(batch, reason).finally(() => {
              this.inFlight--;
              this.released.next();
            }),
          concurrency,
        ),
      ),
      { defaultValue: undefined },
    );
  }

  push(envelope: Envelope): void {
    if (this.events.observed) envelope.bufferedAt = Date.now();
    this.sink?.next(envelope);
  }

  /** Flushes the partial buffers through the handler and waits for every running batch. */
  async drain(): Promise<void> {
    this.draining = true;
    this.sink?.complete();
    await this.finished;
    this.released.complete();
  }

  private fixedReason(batch: readonly Envelope[]): FlushReason {
    return batch.length === this.handler.options.flushEvery ? 'count' : this.draining ? 'shutdown' : 'interval';
  }

  private emitFlushed(batch: readonly Envelope[], reason: FlushReason): void {
    const at = Date.now();
    const oldest = batch[0].bufferedAt;
    this.events.emit({
      type: 'batch.flushed',
      task: this.handler.task,
      queue: this.queue,
      at,
      size: batch.length,
      reason,
      oldestWaitMs: oldest === undefined ? 0 : at - oldest,
    });
  }
}
