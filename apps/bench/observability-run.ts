import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import type { Measurement } from './measurement.js';
import { OBSERVABILITY, type Observability } from './observability.js';
import { observabilityTable } from './report.js';

export interface ObservabilityRun {
  /** Messages in the memory:// pipeline's timed window. */
  memoryN: number;
  /** RabbitMQ backlog of the flushEvery 100 rows; 0 leaves them out. */
  rabbitN: number;
  rounds: number;
  out: string;
  /** Labels of other builds whose memory pipeline (off) runs as one more variant each. */
  baselines: string[];
  /** Runs the memory pipeline in a child process: a variant of this build, or a baseline's label. */
  memory: (variant: string) => Promise<Measurement>;
  /** Drains a RabbitMQ backlog with nestjs-batches flushEvery 100 in a child process. */
  rabbit: (observability: Observability) => Promise<Measurement>;
}

/** One measured run of one variant: which system, the variant, the round it ran in. */
export interface VariantMeasurement {
  group: string;
  /** An `Observability` variant, or the label of a baseline build. */
  observability: string;
  round: number;
  /** Messages in its timed window. */
  n: number;
  measurement: Measurement;
}

/**
 * `npm run bench -- --observability`: the memory:// pipeline (and with `--observability-rabbitmq`
 * the RabbitMQ flushEvery 100 row) with events, metrics and tracing off and on, each in a child
 * process of its own. The variants alternate inside each round, starting one later every round, so
 * machine noise and drift spread over all of them alike.
 */
export async function runObservability({ memoryN, rabbitN, rounds, out, baselines, memory, rabbit }: ObservabilityRun): Promise<void> {
  const groups: Array<{ group: string; n: number; variants: readonly string[]; run: (variant: string) => Promise<Measurement> }> = [
    {
      group: `memory:// pipeline flushEvery 100 (N = ${memoryN.toLocaleString('en-US')})`,
      n: memoryN,
      variants: [...OBSERVABILITY, ...baselines],
      run: memory,
    },
  ];
  if (rabbitN > 0) {
    groups.push({
      group: `nestjs-batches flushEvery 100, RabbitMQ (N = ${rabbitN.toLocaleString('en-US')})`,
      n: rabbitN,
      variants: OBSERVABILITY,
      run: (variant) => rabbit(variant as Observability),
    });
  }
  const results: VariantMeasurement[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const { group, n, variants, run } of groups) {
      const order = variants.map((_, index) => variants[(index + round - 1) % variants.length]);
      for (const observability of order) {
        const measurement = await run(observability);
        results.push({ group, observability, round, n, measurement });
        console.log(
          `round ${round}/${rounds} ${group} ${observability}: ${Math.round(measurement.rate).toLocaleString('en-US')} msg/s, ` +
            `${((measurement.cpuSeconds / n) * 1e6).toFixed(2)} CPU µs/msg, ${Math.round(measurement.peakRssMb)} MB` +
            (measurement.extra ? ` ${JSON.stringify(measurement.extra)}` : ''),
        );
      }
    }
  }
  const markdown = groups
    .map(({ group }) => `${group}\n\n${observabilityTable(results.filter((result) => result.group === group))}`)
    .join('\n\n');
  console.log(`\n${rounds} rounds, ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}\n`);
  console.log(markdown);
  mkdirSync(out, { recursive: true });
  writeFileSync(
    join(out, 'observability.json'),
    JSON.stringify({ memoryN, rabbitN, rounds, node: process.version, cores: cpus().length, results }, null, 2),
  );
  writeFileSync(join(out, 'observability.md'), `${markdown}\n`);
  console.log(`\nwrote ${join(out, 'observability.json')} and observability.md`);
}
