import amqplib from 'amqplib';
import { AMQP_URL, usage, type Measurement, type RunOptions } from '../measurement.js';

/** A raw amqplib consumer, prefetch 1000, one multiple-ack per 100 messages: the practical upper bound. */
export async function ceiling({ n, queue }: RunOptions): Promise<Measurement> {
  const connection = await amqplib.connect(AMQP_URL);
  const channel = await connection.createChannel();
  await channel.prefetch(1000);
  const cpu = process.cpuUsage();
  let received = 0;
  let started = 0;
  await new Promise<void>((resolve) => {
    void channel.consume(queue, (message) => {
      if (!message) return;
      if (received === 0) started = performance.now();
      received++;
      if (received % 100 === 0 || received === n) channel.ack(message, true);
      if (received === n) resolve();
    });
  });
  const seconds = (performance.now() - started) / 1000;
  const measured = usage(cpu);
  await connection.close();
  return { system: 'ceiling (raw amqplib)', rate: n / seconds, ...measured };
}
