import type { SimpleRequest } from '../simple-request.js';
import type { BatchMarks } from './batch-marks.js';
import type { Envelope } from './envelope.js';

/** What the handler did with a batch: returned a value, or threw. */
export type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/**
 * Splits a batch whose handler threw or marked requests: marked ones are done (or retried, for
 * RETRY marks), unmarked ones take their returned value, or are retried when the handler threw.
 */
export function partition(
  batch: readonly Envelope[],
  marks: BatchMarks,
  outcome: Outcome,
  returned: readonly unknown[] | undefined,
  again: Array<{ envelope: Envelope; error: unknown }>,
): { done: Envelope[]; unmarked: SimpleRequest[]; values: unknown[] } {
  const done: Envelope[] = [];
  const unmarked: SimpleRequest[] = [];
  const values: unknown[] = [];
  // A plain loop, as every per-batch loop (see requestsOf in batch-runner.ts).
  for (let index = 0; index < batch.length; index++) {
    const envelope = batch[index];
    const mark = marks.marks.get(envelope.request.id);
    if (mark?.status === 'RETRY') {
      again.push({ envelope, error: mark.result });
    } else if (mark) {
      done.push(envelope);
    } else if (returned) {
      unmarked.push(envelope.request);
      values.push(returned[index]);
      done.push(envelope);
    } else {
      again.push({ envelope, error: outcome.ok ? undefined : outcome.error });
    }
  }
  return { done, unmarked, values };
}

/**
 * A handler's return value as per-request results, by index in `requests`: an array aligned with
 * the requests, or a Map keyed by request id. Anything else resolves every request with null.
 */
export function returnedValues(value: unknown, requests: readonly SimpleRequest[]): unknown[] {
  // A copy: the handler keeps its own array.
  if (Array.isArray(value) && value.length === requests.length) return value.slice();
  const values: unknown[] = [];
  for (let index = 0; index < requests.length; index++) {
    const { id } = requests[index];
    values.push(value instanceof Map && value.has(id) ? value.get(id) : null);
  }
  return values;
}
