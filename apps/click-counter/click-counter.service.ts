import { Injectable, Logger } from '@nestjs/common';
import { BatchHandler, type SimpleRequest } from 'nestjs-batches';

/** celery-batches' click counter: one handler call counts up to 100 clicks, or whatever arrived in 10 s. */
@Injectable()
export class ClickCounter {
  private readonly logger = new Logger(ClickCounter.name);
  private counted = 0;
  private readonly waiters: Array<{ total: number; resolve: () => void }> = [];

  @BatchHandler('count_click', { flushEvery: 100, flushInterval: 10_000 })
  countClicks(requests: SimpleRequest<[string]>[]): void {
    const counts = new Map<string, number>();
    for (const request of requests) {
      const url = request.args[0] ?? String(request.kwargs.url);
      counts.set(url, (counts.get(url) ?? 0) + 1);
    }
    this.logger.log(`batch of ${requests.length}`);
    for (const [url, count] of counts) console.log(`>>> Clicks: ${url} -> ${count}`);
    this.counted += requests.length;
    for (const waiter of this.waiters.filter((each) => each.total <= this.counted)) waiter.resolve();
  }

  /** Resolves once `total` clicks have been counted. */
  whenCounted(total: number): Promise<void> {
    if (this.counted >= total) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ total, resolve }));
  }
}
