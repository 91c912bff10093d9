import type { QueueDeclaration } from '../broker/broker.interface.js';
import { BATCHES_DEFAULTS, type BatchHandlerOptions, type FlushPolicy } from '../batches.options.js';
import type { SimpleRequest } from '../simple-request.js';
import { BatchesConfigError, interval, nonNegativeInteger, positiveInteger, queueName } from './option-checks.js';
import type { ResolvedModuleOptions } from './resolve-module-options.js';

// `@BatchHandler()` options checked and completed from the module's resolved options.

export interface ResolvedHandlerOptions {
  flushEvery: number;
  flushInterval: number;
  queue: string;
  prefetch?: number;
  concurrency: number;
  maxRetries: number;
  retryDelay: number;
  ignoreResult: boolean;
  flush: FlushPolicy;
  coalesceMs: number;
  groupBy?: (request: SimpleRequest) => string;
  /** Set only with `groupBy`. */
  maxGroups?: number;
  /** The queue's declaration when the module's `queues` option names it (else Celery's). */
  declaration?: QueueDeclaration;
}

export function resolveHandlerOptions(task: string, options: BatchHandlerOptions, defaults: ResolvedModuleOptions): ResolvedHandlerOptions {
  const where = `@BatchHandler('${task}')`;
  const flushEvery = positiveInteger(
    where,
    'flushEvery',
    options.flushEvery ?? defaults.flushEvery,
    'A batch holds at most this many requests.',
  );
  const resolved: ResolvedHandlerOptions = {
    flushEvery,
    flushInterval: interval(where, options.flushInterval ?? defaults.flushInterval),
    queue: queueName(where, 'queue', options.queue ?? defaults.defaultQueue),
    concurrency: positiveInteger(
      where,
      'concurrency',
      options.concurrency ?? BATCHES_DEFAULTS.concurrency,
      'It bounds the batches running at once.',
    ),
    maxRetries: nonNegativeInteger(
      where,
      'maxRetries',
      options.maxRetries ?? defaults.maxRetries,
      'Use 0 to dead-letter on the first failure.',
    ),
    retryDelay: nonNegativeInteger(where, 'retryDelay', options.retryDelay ?? defaults.retryDelay, 'It is in milliseconds.'),
    ignoreResult: options.ignoreResult ?? false,
    flush: flushPolicy(where, options.flush),
    coalesceMs: nonNegativeInteger(
      where,
      'coalesceMs',
      options.coalesceMs ?? 0,
      'It is in milliseconds; 0 gathers what arrives in one turn of the event loop.',
    ),
  };
  if (options.coalesceMs !== undefined && resolved.flush !== 'adaptive') {
    throw new BatchesConfigError(
      `${where}: \`coalesceMs\` only applies to \`flush: 'adaptive'\`. Set \`flush: 'adaptive'\` or remove \`coalesceMs\`.`,
    );
  }
  if (options.groupBy !== undefined) {
    if (typeof options.groupBy !== 'function') {
      throw new BatchesConfigError(
        `${where}: \`groupBy\` must be a function of the request returning its key, e.g. \`(request) => request.kwargs.tenant\`.`,
      );
    }
    resolved.groupBy = options.groupBy;
    resolved.maxGroups = positiveInteger(
      where,
      'maxGroups',
      options.maxGroups ?? DEFAULT_MAX_GROUPS,
      'It bounds the keys buffered at once.',
    );
  } else if (options.maxGroups !== undefined) {
    throw new BatchesConfigError(`${where}: \`maxGroups\` only applies with \`groupBy\`. Set \`groupBy\` or remove \`maxGroups\`.`);
  }
  const declaration = defaults.queues?.[resolved.queue];
  if (declaration) resolved.declaration = declaration;
  if (options.prefetch !== undefined) {
    positiveInteger(where, 'prefetch', options.prefetch, 'Leave it unset to let the library derive it.');
    if (options.prefetch < flushEvery) {
      throw new BatchesConfigError(
        `${where}: \`prefetch\` ${options.prefetch} is below \`flushEvery\` ${flushEvery}, so a full batch could never arrive. ` +
          `Raise prefetch to at least ${flushEvery}, or leave it unset to let the library derive it.`,
      );
    }
    resolved.prefetch = options.prefetch;
  }
  return resolved;
}

/** Keys a `groupBy` handler buffers at once unless `maxGroups` says otherwise. */
export const DEFAULT_MAX_GROUPS = 32;

function flushPolicy(where: string, value: unknown): FlushPolicy {
  if (value === undefined) return 'fixed';
  if (value === 'fixed' || value === 'adaptive') return value;
  throw new BatchesConfigError(`${where}: \`flush\` must be 'fixed' or 'adaptive', got ${JSON.stringify(value)}.`);
}
