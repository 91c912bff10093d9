import { BatchesConfigError } from './option-checks.js';
import type { ResolvedHandlerOptions } from './resolve-handler-options.js';

// How many unacked messages each queue's channel may hold, derived from its handlers.

/** RabbitMQ's prefetch count is a 16-bit field. */
export const MAX_PREFETCH = 65_535;

/** The narrowest derived window: wide enough that the broker keeps streaming while batches run. */
export const MIN_DERIVED_PREFETCH = 1_000;

/**
 * A handler's share of its queue's window: its running batches plus one filling buffer per key it
 * may hold (one without `groupBy`), so a key never waits for room another key's partial buffer took.
 */
function handlerWindow(handler: ResolvedHandlerOptions): number {
  return handler.flushEvery * (handler.concurrency + (handler.maxGroups ?? 1));
}

/**
 * Warnings for `groupBy` handlers whose own `prefetch` is narrower than a filling buffer per key
 * (`flushEvery × (concurrency + maxGroups)`): partial buffers of many keys can then fill the
 * window, and every key waits for its interval. Allowed (fewer unacked messages may matter more),
 * but said once at startup.
 */
export function narrowGroupWindows(handlers: ReadonlyArray<{ task: string; options: ResolvedHandlerOptions }>): string[] {
  return handlers
    .filter(({ options }) => options.groupBy !== undefined && options.prefetch !== undefined && options.prefetch < handlerWindow(options))
    .map(
      ({ task, options }) =>
        `@BatchHandler('${task}'): \`prefetch\` ${options.prefetch} is below flushEvery × (concurrency + maxGroups) = ` +
        `${handlerWindow(options)}, so with groupBy, partial buffers of many keys can fill the window and each key then waits for ` +
        '`flushInterval`. Raise `prefetch` to that, lower `maxGroups`, or leave `prefetch` unset to let the library derive it.',
    );
}

/**
 * Unacked messages a queue's channel may hold: room for every handler's running batches plus the
 * next one filling, so handlers sharing a queue never starve each other.
 */
export function derivePrefetch(queue: string, handlers: ResolvedHandlerOptions[]): number {
  const explicit = handlers.every((handler) => handler.prefetch !== undefined);
  const needed = handlers.reduce((sum, handler) => sum + (handler.prefetch ?? handlerWindow(handler)), 0);
  // A prefetch the user set is taken as given; a derived one never drops below the streaming window.
  const prefetch = explicit ? needed : Math.max(needed, MIN_DERIVED_PREFETCH);
  if (prefetch > MAX_PREFETCH) {
    throw new BatchesConfigError(
      `Queue '${queue}': its handlers need a prefetch of ${prefetch}, above RabbitMQ's limit of ${MAX_PREFETCH}. ` +
        'Lower `flushEvery`, `concurrency` or `maxGroups`, or move a handler to its own `queue`.',
    );
  }
  return prefetch;
}
