import type { MessageFormat } from './backlog.js';
import type { Observability } from './observability.js';

/** How a backlog's task messages are written: Celery's full protocol-2 header table or our lean one (no nulls). */
export type CeleryFormat = 'full' | 'lean';

/** What one run of one system reports. */
export interface Measurement {
  system: string;
  /** Messages per second from the first message received to the last one acked (published and confirmed, for publishers). */
  rate: number;
  /** Messages in the measured window. */
  messages: number;
  /** CPU seconds the measured process spent in the window (user + system). */
  cpuSeconds: number;
  /** Peak resident set of the measured process, MB. */
  peakRssMb: number;
  /** Extra figures a system reports (e.g. lateness percentiles). */
  extra?: Record<string, number>;
  /** CPU the local RabbitMQ spent per message, from the step's start until it was idle again, µs. */
  brokerUsPerMessage?: number;
  /** The round it ran in (set by main.ts). */
  round?: number;
  /** Which configuration a derived row (a ceiling) is. */
  note?: string;
}

export interface RunOptions {
  n: number;
  queue: string;
  flushEvery?: number;
  /** A label that tells two setups of one system apart. */
  variant?: string;
  /** Events, metrics and tracing switched on in the worker (memory pipeline, nestjs-batches); off when unset. */
  observability?: Observability;
  /** Format of the Celery messages a publisher writes (and names the consumer's row). */
  format?: CeleryFormat;
  /** Raw consumer: a channel-wide (`global`) prefetch instead of a per-consumer one, and its multiple-ack cadence. */
  globalPrefetch?: boolean;
  ackEvery?: number;
  /** A Redis URL: the worker stores a result per request there (Celery's Redis backend keys) instead of `ignoreResult`. */
  resultBackend?: string;
  /** Raw publisher: what the backlog holds. Raw consumer: names its row after it, when it is not a `format` (`no-headers`). */
  backlog?: MessageFormat;
  /** Raw publisher: task ids start with this (so that their stored results can be found and deleted). */
  idPrefix?: string;
}

export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * The measured stretch of a run: from `begin()` (the first message received) to `end()` (the last
 * one acked), with the CPU this process spent in between.
 */
export class MeasuredWindow {
  private startedAt = 0;
  private cpu?: NodeJS.CpuUsage;
  private result?: { seconds: number; cpuSeconds: number };
  private resolve!: () => void;
  readonly ended = new Promise<void>((resolve) => (this.resolve = resolve));

  /** Starts the clock; later calls do nothing. */
  begin(): void {
    if (this.startedAt !== 0) return;
    this.startedAt = performance.now();
    this.cpu = process.cpuUsage();
  }

  /** Stops the clock; later calls do nothing. */
  end(): void {
    if (this.result) return;
    this.begin();
    const cpu = process.cpuUsage(this.cpu);
    this.result = { seconds: (performance.now() - this.startedAt) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
    this.resolve();
  }

  /** The run's figures for `messages` messages; call after `ended`. */
  measurement(system: string, messages: number, extra?: Record<string, number>): Measurement {
    const { seconds, cpuSeconds } = this.result ?? { seconds: NaN, cpuSeconds: NaN };
    return { system, rate: messages / seconds, messages, cpuSeconds, peakRssMb: peakRssMb(), ...(extra && { extra }) };
  }
}

/**
 * Runs a Nest consumer app until `window` ends, then reports it (with the extra figures `extras`
 * reads before the app closes) and closes the app.
 */
export async function drainWith(
  app: { listen(): Promise<unknown>; close(): Promise<void> },
  window: MeasuredWindow,
  system: string,
  n: number,
  extras?: () => Promise<Record<string, number> | undefined>,
): Promise<Measurement> {
  await app.listen();
  await window.ended;
  const measurement = window.measurement(system, n, await extras?.());
  await app.close();
  return measurement;
}

/** Peak resident set of this process so far, MB. */
export function peakRssMb(): number {
  return process.resourceUsage().maxRSS / 1024;
}

/** CPU and peak RSS of this process since `start`. */
export function usage(start: NodeJS.CpuUsage): { cpuSeconds: number; peakRssMb: number } {
  const cpu = process.cpuUsage(start);
  return { cpuSeconds: (cpu.user + cpu.system) / 1e6, peakRssMb: peakRssMb() };
}

/** What a target reads of a row: messages/s, consumer CPU µs/msg, broker CPU µs/msg, peak RSS MB, lateness p99 ms. */
export type Metric = 'rate' | 'cpu' | 'broker' | 'rss' | 'p99';

export function metricOf(measurement: Measurement, metric: Metric): number | undefined {
  switch (metric) {
    case 'rate':
      return measurement.rate;
    case 'cpu':
      return (measurement.cpuSeconds / measurement.messages) * 1e6;
    case 'broker':
      return measurement.brokerUsPerMessage;
    case 'rss':
      return measurement.peakRssMb;
    case 'p99':
      return measurement.extra?.p99Ms;
  }
}
