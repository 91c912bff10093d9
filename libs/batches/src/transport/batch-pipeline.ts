import { bufferTime, filter, lastValueFrom, map, mergeMap, Subject } from 'rxjs';
import type { BatchEvents, FlushReason } from '../events/batch-events.js';
import type { RegisteredHandler } from '../handler.explorer.js';
import type { BatchRunner } from './batch-runner.js';
import type { Envelope } from './envelope.js';

/**
 * One task's buffer: flushes at `flushEvery` requests or every `flushInterval` ms, whichever
 * comes first, and runs at most `concurrency` batches at once, in order.
 */
export class BatchPipeline {
  private readonly input = new Subject<Envelope>();
  private readonly finished: Promise<unknown>;
  private draining = false;

  constructor(
    readonly handler: RegisteredHandler,
    runner: BatchRunner,
    private readonly events: BatchEvents,
    private readonly queue: string,
  ) {
    const { flushEvery, flushInterval, concurrency } = handler.options;
    this.finished = lastValueFrom(
      this.input.pipe(
        bufferTime(flushInterval, null, flushEvery),
        filter((batch) => batch.length > 0),
        map((batch) => ({ batch, reason: this.flushed(batch) })),
        mergeMap(({ batch, reason }) => runner.run(batch, reason), concurrency),
      ),
      { defaultValue: undefined },
    );
  }

  push(envelope: Envelope): void {
    if (this.events.observed) envelope.bufferedAt = Date.now();
    this.input.next(envelope);
  }

  /** Flushes the partial buffer through the handler and waits for every running batch. */
  async drain(): Promise<void> {
    this.draining = true;
    this.input.complete();
    await this.finished;
  }

  private flushed(batch: readonly Envelope[]): FlushReason {
    const reason: FlushReason = batch.length === this.handler.options.flushEvery ? 'count' : this.draining ? 'shutdown' : 'interval';
    if (this.events.observed) {
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
    return reason;
  }
}
