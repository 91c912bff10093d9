import { bufferTime, filter, lastValueFrom, mergeMap, Subject } from 'rxjs';
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

  constructor(
    readonly handler: RegisteredHandler,
    runner: BatchRunner,
  ) {
    const { flushEvery, flushInterval, concurrency } = handler.options;
    this.finished = lastValueFrom(
      this.input.pipe(
        bufferTime(flushInterval, null, flushEvery),
        filter((batch) => batch.length > 0),
        mergeMap((batch) => runner.run(batch), concurrency),
      ),
      { defaultValue: undefined },
    );
  }

  push(envelope: Envelope): void {
    this.input.next(envelope);
  }

  /** Flushes the partial buffer through the handler and waits for every running batch. */
  async drain(): Promise<void> {
    this.input.complete();
    await this.finished;
  }
}
