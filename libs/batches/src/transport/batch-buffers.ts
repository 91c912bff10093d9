import { Logger } from '@nestjs/common';
import { Observable, type OperatorFunction } from 'rxjs';
import type { FlushReason } from '../events/batch-events.js';
import type { SimpleRequest } from '../simple-request.js';
import type { Envelope } from './envelope.js';

/** A batch leaving its buffer, and why. */
export interface Flush {
  batch: Envelope[];
  reason: FlushReason;
}

/** Batches handed to the handler and not finished yet (running or waiting for a slot). */
export interface HandlerLoad {
  /** Running or waiting batches. */
  readonly inFlight: number;
  /** How many may run at once. */
  readonly concurrency: number;
  /** Emits each time a batch finishes: the handler-idle signal that drives adaptive flushing. */
  readonly released$: Observable<unknown>;
}

export interface BatchBuffersOptions {
  flushEvery: number;
  flushInterval: number;
  /** Hand a buffer over as soon as the handler has room (see `HandlerLoad`). */
  adaptive?: { load: HandlerLoad; coalesceMs: number };
  groupBy?: (request: SimpleRequest) => string;
  maxGroups?: number;
}

interface Buffer {
  readonly key: string;
  readonly items: Envelope[];
  readonly timer: NodeJS.Timeout;
}

const logger = new Logger('BatchBuffers');

/**
 * Buffers requests per `groupBy` key (one buffer without it) and emits each buffer as a batch
 * when it holds `flushEvery`, when its first request has waited `flushInterval`, when a new key
 * needs its place under `maxGroups`, when the handler has room (adaptive), or when the source
 * completes. Buffers are kept in the order their first request arrived, so the oldest goes first.
 */
export function batchBuffers(options: BatchBuffersOptions): OperatorFunction<Envelope, Flush> {
  const { flushEvery, flushInterval, adaptive, groupBy } = options;
  const maxGroups = options.maxGroups ?? 1;
  return (source) =>
    new Observable<Flush>((subscriber) => {
      const buffers = new Map<string, Buffer>();
      let idleFlush: NodeJS.Immediate | NodeJS.Timeout | undefined;
      let keyFailures = 0;

      const flush = (buffer: Buffer, reason: FlushReason): void => {
        clearTimeout(buffer.timer);
        buffers.delete(buffer.key);
        subscriber.next({ batch: buffer.items, reason });
      };
      // While the handler has room, the oldest buffers go to it one by one.
      const flushIdle = (): void => {
        idleFlush = undefined;
        if (!adaptive) return;
        for (const buffer of buffers.values()) {
          if (adaptive.load.inFlight >= adaptive.load.concurrency) return;
          flush(buffer, 'idle');
        }
      };
      const scheduleIdleFlush = (): void => {
        if (idleFlush !== undefined || !adaptive || adaptive.load.inFlight >= adaptive.load.concurrency) return;
        idleFlush = adaptive.coalesceMs > 0 ? setTimeout(flushIdle, adaptive.coalesceMs) : setImmediate(flushIdle);
      };
      // What waited while the handler was busy goes as soon as it has room: a coalescing window would only add latency.
      const released = adaptive?.load.released$.subscribe(() => {
        if (buffers.size > 0) flushIdle();
      });

      const keyOf = (envelope: Envelope): string => {
        if (!groupBy) return '';
        try {
          return String(groupBy(envelope.request));
        } catch (error) {
          // A throwing groupBy must not lose the request: it shares the '' key and the log says why.
          if (keyFailures++ % 1000 === 0) {
            logger.warn(
              `groupBy of '${envelope.request.name}' threw (${error instanceof Error ? error.message : String(error)}); ` +
                `the request is batched under the key '' (${keyFailures} so far). Make groupBy return a string for every request.`,
            );
          }
          return '';
        }
      };

      const subscription = source.subscribe({
        next: (envelope) => {
          const key = keyOf(envelope);
          let buffer = buffers.get(key);
          if (!buffer) {
            if (buffers.size >= maxGroups) flush(buffers.values().next().value as Buffer, 'evicted');
            const created: Buffer = { key, items: [], timer: setTimeout(() => flush(created, 'interval'), flushInterval) };
            buffers.set(key, (buffer = created));
          }
          buffer.items.push(envelope);
          if (buffer.items.length >= flushEvery) flush(buffer, 'count');
          else scheduleIdleFlush();
        },
        error: (error) => subscriber.error(error),
        complete: () => {
          for (const buffer of buffers.values()) flush(buffer, 'shutdown');
          subscriber.complete();
        },
      });

      return () => {
        subscription.unsubscribe();
        released?.unsubscribe();
        for (const buffer of buffers.values()) clearTimeout(buffer.timer);
        if (idleFlush !== undefined) {
          clearTimeout(idleFlush as NodeJS.Timeout);
          clearImmediate(idleFlush as NodeJS.Immediate);
        }
      };
    });
}
