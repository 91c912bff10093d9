import type { Observability } from './observability.js';

/** What one run of one system reports. */
export interface Measurement {
  system: string;
  /** Messages per second from the first message received to the last one acked. */
  rate: number;
  /** CPU seconds the measured process spent in the window (user + system). */
  cpuSeconds: number;
  /** Peak resident set of the measured process, MB. */
  peakRssMb: number;
  /** Extra figures a system reports (e.g. lateness percentiles). */
  extra?: Record<string, number>;
  /** CPU the local RabbitMQ spent per message while this system drained its backlog, µs. */
  brokerUsPerMessage?: number;
}

export interface RunOptions {
  n: number;
  queue: string;
  flushEvery?: number;
  /** A label that tells two setups of one system apart. */
  variant?: string;
  /** Events, metrics and tracing switched on in the worker (memory pipeline, nestjs-batches); off when unset. */
  observability?: Observability;
}

export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/**
 * Runs a Nest consumer app until `finished`, and reports its rate from `firstMessage()` on, with the
 * CPU this process spent meanwhile, then closes it.
 */
export async function drainWith(
  app: { listen(): Promise<unknown>; close(): Promise<void> },
  finished: Promise<void>,
  firstMessage: () => number,
  system: string,
  n: number,
  /** Extra figures to report, read before the app closes. */
  extras?: () => Promise<Record<string, number> | undefined>,
): Promise<Measurement> {
  const cpu = process.cpuUsage();
  await app.listen();
  await finished;
  const seconds = (performance.now() - firstMessage()) / 1000;
  const measured = usage(cpu);
  const extra = await extras?.();
  await app.close();
  return { system, rate: n / seconds, ...measured, ...(extra && { extra }) };
}

/** CPU and peak RSS of this process since `start`. */
export function usage(start: NodeJS.CpuUsage): { cpuSeconds: number; peakRssMb: number } {
  const cpu = process.cpuUsage(start);
  return { cpuSeconds: (cpu.user + cpu.system) / 1e6, peakRssMb: process.resourceUsage().maxRSS / 1024 };
}
