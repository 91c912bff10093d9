import amqplib from 'amqplib';
import { formatLabel } from '../backlog.js';
import { AMQP_URL, MeasuredWindow, type Measurement, type RunOptions } from '../measurement.js';

/** One raw consumer configuration: its prefetch mode and its multiple-ack cadence. */
export interface CeilingConfig {
  globalPrefetch: boolean;
  ackEvery: number;
}

export const CEILING_CONFIGS: readonly CeilingConfig[] = [
  { globalPrefetch: false, ackEvery: 100 },
  { globalPrefetch: false, ackEvery: 1000 },
  { globalPrefetch: true, ackEvery: 100 },
  { globalPrefetch: true, ackEvery: 1000 },
];

/** The window a worker would derive for batches of `ackEvery` (the one filling and one running, at least 1000). */
export const ceilingPrefetch = (ackEvery: number): number => Math.max(1000, 2 * ackEvery);

export const ceilingName = (format: string, { globalPrefetch, ackEvery }: CeilingConfig): string =>
  `raw amqplib [${format}]: ${globalPrefetch ? 'channel-wide' : 'per-consumer'} prefetch ${ceilingPrefetch(ackEvery)}, ack every ${ackEvery}`;

/**
 * A raw amqplib consumer that parses nothing and acks every `ackEvery` messages with one
 * multiple-ack, under a per-consumer or a channel-wide (`global`) prefetch: the best of these is
 * the practical upper bound of any consumer of the backlog.
 */
export async function ceiling({
  n,
  queue,
  format = 'full',
  backlog = format,
  globalPrefetch = false,
  ackEvery = 100,
}: RunOptions): Promise<Measurement> {
  const connection = await amqplib.connect(AMQP_URL);
  const channel = await connection.createChannel();
  await channel.prefetch(ceilingPrefetch(ackEvery), globalPrefetch);
  const window = new MeasuredWindow();
  let received = 0;
  await channel.consume(queue, (message) => {
    if (!message) return;
    window.begin();
    received++;
    if (received % ackEvery === 0 || received === n) channel.ack(message, true);
    if (received === n) window.end();
  });
  await window.ended;
  const measurement = window.measurement(ceilingName(formatLabel(backlog), { globalPrefetch, ackEvery }), n);
  await connection.close();
  return measurement;
}
