import { MAX_TIMER_MS } from '../transport/due-timer.js';

// Checks the option resolvers share: each failure names the option and the fix.

/** Thrown at startup for an option that cannot work; the message names the option and the fix. */
export class BatchesConfigError extends Error {
  override readonly name = 'BatchesConfigError';
}

export function positiveInteger(where: string, option: string, value: number, hint: string): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new BatchesConfigError(`${where}: \`${option}\` must be a positive integer, got ${String(value)}. ${hint}`);
  }
  return value;
}

export function nonNegativeInteger(where: string, option: string, value: number, hint: string): number {
  if (!Number.isInteger(value) || value < 0) {
    throw new BatchesConfigError(`${where}: \`${option}\` must be an integer of 0 or more, got ${String(value)}. ${hint}`);
  }
  return value;
}

export function scheme(url: string): string {
  const match = /^([a-z][a-z0-9+.-]*:)/i.exec(url);
  return match ? match[1].toLowerCase() : '';
}

export function booleanOption(where: string, option: string, value: unknown): boolean {
  if (typeof value !== 'boolean') {
    throw new BatchesConfigError(`${where}: \`${option}\` must be true or false, got ${JSON.stringify(value)}.`);
  }
  return value;
}

export function describeValue(value: unknown): string {
  if (typeof value !== 'object' || value === null) return JSON.stringify(value) ?? String(value);
  return `an object with ${
    Object.keys(value)
      .map((key) => `'${key}'`)
      .join(', ') || 'no keys'
  }`;
}

export function queueName(where: string, option: string, value: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 255) {
    throw new BatchesConfigError(`${where}: \`${option}\` must be a queue name of 1 to 255 characters, got ${JSON.stringify(value)}.`);
  }
  return value;
}

/** A `flushInterval`: a timer must hold it (Node fires longer ones at once). */
export function interval(where: string, value: number): number {
  positiveInteger(where, 'flushInterval', value, 'It is in milliseconds.');
  if (value > MAX_TIMER_MS) {
    throw new BatchesConfigError(
      `${where}: \`flushInterval\` ${value} is longer than a timer can wait (${MAX_TIMER_MS} ms, about 24.8 days). It is in milliseconds.`,
    );
  }
  return value;
}
