/**
 * The stream of ids the quorum-queue cluster suite sends through a cluster: the task and queue it
 * travels on, `Stream` sending ids 0, 1, 2, … and `Counter`, the handler that records each arrival.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { Injectable } from '@nestjs/common';
import { BatchHandler, type BatchClient, type SimpleRequest } from 'nestjs-batches';

export const QUEUE = 'cluster.stream';
const TASK = 'cluster.count';
/** Sends in flight at once: a steady stream the three nodes keep up with on two cores. */
const SEND_WINDOW = 8;
/** A send not confirmed within this is retried (with the same task id), and counted. */
export const SEND_TIMEOUT = 10_000;

/** Counts every request the worker's handler is given, by the id the stream sent it with. */
@Injectable()
export class Counter {
  readonly seen = new Map<number, number>();
  /** Time of each handler call, with the highest id in it. */
  readonly calls: Array<{ at: number; maxId: number }> = [];
  deliveries = 0;

  @BatchHandler(TASK, { queue: QUEUE, flushEvery: 100, flushInterval: 200, ignoreResult: true })
  count(requests: SimpleRequest[]): void {
    let maxId = -1;
    for (const request of requests) {
      const id = request.args[0] as number;
      this.seen.set(id, (this.seen.get(id) ?? 0) + 1);
      maxId = Math.max(maxId, id);
    }
    this.deliveries += requests.length;
    this.calls.push({ at: Date.now(), maxId });
  }
}

/**
 * Sends ids 0, 1, 2, … through `BatchClient` with publisher confirms, a window at a time, until
 * stopped. A send that rejects is sent again with the same task id until it is confirmed.
 */
export class Stream {
  next = 0;
  readonly confirmed = new Set<number>();
  /** Sends that rejected and were sent again. */
  retried = 0;
  /** Ids sent again after a rejection. */
  readonly retriedIds = new Set<number>();
  readonly errors = new Map<string, number>();
  private stopping = false;
  private running?: Promise<void>;

  constructor(private readonly client: BatchClient) {}

  /** Sends the first id alone: it declares the queue, on the node the client connected to. */
  async first(): Promise<void> {
    await this.send(this.next++);
  }

  start(): void {
    this.running = Promise.all(Array.from({ length: SEND_WINDOW }, () => this.lane())).then(() => undefined);
  }

  /** Stops sending new ids; resolves once every id sent so far is confirmed. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
  }

  private async lane(): Promise<void> {
    while (!this.stopping) await this.send(this.next++);
  }

  private async send(id: number): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.client.applyAsync(TASK, { args: [id], taskId: `cluster-${id}` });
        this.confirmed.add(id);
        return;
      } catch (error) {
        const name = error instanceof Error ? `${error.name}: ${error.message.slice(0, 120)}` : String(error);
        this.errors.set(name, (this.errors.get(name) ?? 0) + 1);
        if (attempt >= 10) throw new Error(`id ${id} was never confirmed after ${attempt} sends`, { cause: error });
        this.retried++;
        this.retriedIds.add(id);
        // A rejection that comes at once (no connection) is not retried in a tight loop.
        await delay(200);
      }
    }
  }
}
