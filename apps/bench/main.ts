import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { deleteQueue, prepareBacklog, type MessageFormat } from './backlog.js';
import type { Measurement, RunOptions } from './measurement.js';
import { runObservability } from './observability-run.js';
import type { Observability } from './observability.js';
import { chart, summarize, table } from './report.js';
import { celeryAvailable, celeryWorker } from './systems/celery.js';
import { localBrokerPid, treeUsage } from './systems/process-tree.js';

const run = promisify(execFile);
const CHILD = fileURLToPath(new URL('./child.js', import.meta.url));

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: process.env.BENCH_N ?? '100000' },
    // 3 rounds; 7 with --observability, whose differences are smaller than one run's noise.
    runs: { type: 'string', default: process.env.BENCH_RUNS },
    'celery-n': { type: 'string', default: process.env.BENCH_CELERY_N ?? '20000' },
    'memory-n': { type: 'string', default: process.env.BENCH_MEMORY_N ?? '300000' },
    out: { type: 'string', default: 'bench-results' },
    quick: { type: 'boolean', default: false },
    // Only the memory:// pipeline with events, metrics and tracing off/on (see observability-run.ts).
    observability: { type: 'boolean', default: false },
    // With --observability: also the RabbitMQ flushEvery 100 row, on a backlog of --n.
    'observability-rabbitmq': { type: 'boolean', default: false },
    // With --observability: `label=path/to/dist/apps/bench/child.js` of another build (an older commit),
    // whose memory pipeline runs as one more variant, so "off" can be compared with code before the features.
    baseline: { type: 'string', multiple: true },
  },
});
const n = Number(values.n);
const runs = Number(values.runs ?? (values.observability ? 7 : 3));
const celeryN = Math.min(n, Number(values['celery-n']));
// In-process runs are over in a fraction of a second at N = 100,000; a longer window averages out GC and machine noise.
const memoryN = Math.min(n * 3, Number(values['memory-n']));
const brokerPid = localBrokerPid();

/** Runs one system in a child process of its own. */
async function child(system: string, options: RunOptions, script = CHILD): Promise<Measurement> {
  const { stdout } = await run(process.execPath, [script, system, JSON.stringify(options)], { maxBuffer: 16 * 1024 * 1024 });
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as Measurement;
}

/**
 * Waits, at most 20 s, until the local broker uses under a tenth of a core for half a second: what
 * an earlier step left it to do (persisting a backlog, deleting a queue of 100,000 persistent
 * messages) belongs to no one's measurement.
 */
async function brokerQuiet(): Promise<void> {
  if (!brokerPid) return;
  const deadline = Date.now() + 20_000;
  let before = treeUsage(brokerPid).cpuSeconds;
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const now = treeUsage(brokerPid).cpuSeconds;
    if (now - before < 0.05) return;
    before = now;
  }
}

/**
 * Fills a fresh queue with the backlog, lets `consume` drain it, deletes the queue. When RabbitMQ
 * runs on this machine, also reports the CPU it spent per message while the backlog drained.
 */
async function drain(format: MessageFormat, count: number, consume: (queue: string) => Promise<Measurement>): Promise<Measurement> {
  const queue = `bench.${process.pid}.${Date.now()}`;
  await prepareBacklog(queue, count, format);
  await brokerQuiet();
  try {
    const brokerBefore = brokerPid && treeUsage(brokerPid).cpuSeconds;
    const measurement = await consume(queue);
    if (brokerPid && brokerBefore !== undefined && count > 0) {
      measurement.brokerUsPerMessage = ((treeUsage(brokerPid).cpuSeconds - brokerBefore) / count) * 1e6;
    }
    return measurement;
  } finally {
    await deleteQueue(queue);
  }
}

if (values.observability) {
  // No cap by N here: the RabbitMQ backlog (--n) and the memory window are chosen separately.
  const observabilityMemoryN = Number(values['memory-n']);
  await runObservability({
    memoryN: observabilityMemoryN,
    rabbitN: values['observability-rabbitmq'] ? n : 0,
    rounds: runs,
    out: values.out,
    baselines: (values.baseline ?? []).map((spec) => spec.slice(0, spec.indexOf('='))),
    memory: async (variant) => {
      await brokerQuiet();
      const options = { n: observabilityMemoryN, queue: 'bench', flushEvery: 100 };
      const baseline = values.baseline?.find((spec) => spec.startsWith(`${variant}=`));
      if (baseline) return child('memory-pipeline', options, baseline.slice(variant.length + 1));
      return child('memory-pipeline', { ...options, observability: variant as Observability });
    },
    rabbit: async (observability) => {
      await brokerQuiet();
      return drain('celery', n, (queue) => child('nestjs-batches', { n, queue, flushEvery: 100, observability }));
    },
  });
  process.exit(0);
}

const consumers: Array<{ label: string; measure: () => Promise<Measurement> }> = [
  { label: 'ceiling', measure: () => drain('celery', n, (queue) => child('ceiling', { n, queue })) },
  ...[1, 10, 100, 1000].map((flushEvery) => ({
    label: `nestjs-batches flushEvery ${flushEvery}`,
    measure: () => drain('celery', n, (queue) => child('nestjs-batches', { n, queue, flushEvery })),
  })),
  { label: "Nest's RMQ transport", measure: () => drain('nest', n, (queue) => child('nest-rmq', { n, queue, variant: 'Nest messages' })) },
  {
    label: "Nest's RMQ transport, Celery's headers",
    measure: () => drain('nest-celery-headers', n, (queue) => child('nest-rmq', { n, queue, variant: "Celery's headers" })),
  },
];
if (celeryAvailable() && !values.quick) {
  for (const pool of ['solo', 'prefork'] as const) {
    consumers.push({
      label: `Python Celery ${pool}`,
      measure: () => drain('celery', celeryN, (queue) => celeryWorker({ n: celeryN, queue }, pool)),
    });
  }
} else {
  console.log(
    values.quick
      ? 'Python Celery skipped (--quick)'
      : 'Python Celery not installed (/usr/bin/python3 -c "import celery" failed): its rows are skipped',
  );
}
const others: Array<{ label: string; measure: () => Promise<Measurement> }> = [
  { label: 'publish raw', measure: () => drain('celery', 0, (queue) => child('publish-raw', { n, queue })) },
  { label: 'publish client', measure: () => drain('celery', 0, (queue) => child('publish-client', { n, queue })) },
  { label: 'memory pipeline', measure: () => child('memory-pipeline', { n: memoryN, queue: 'bench', flushEvery: 100 }) },
];
if (!values.quick) others.push({ label: 'lateness', measure: () => drain('celery', 0, (queue) => child('lateness', { n, queue })) });

const measurements: Measurement[] = [];
for (let round = 1; round <= runs; round++) {
  // Systems alternate within each round, so machine noise spreads over all of them alike.
  for (const { label, measure } of [...consumers, ...others]) {
    await brokerQuiet();
    const measurement = await measure();
    measurements.push(measurement);
    console.log(
      `run ${round}/${runs} ${label}: ${Math.round(measurement.rate).toLocaleString('en-US')} msg/s, ${measurement.cpuSeconds.toFixed(2)} CPU s, ${Math.round(measurement.peakRssMb)} MB` +
        (measurement.brokerUsPerMessage === undefined ? '' : `, broker ${measurement.brokerUsPerMessage.toFixed(0)} µs/msg`) +
        (measurement.extra ? ` ${JSON.stringify(measurement.extra)}` : ''),
    );
  }
}

const summaries = summarize(measurements);
const find = (system: string) => summaries.find((summary) => summary.system === system);
const ceilingRate = find('ceiling (raw amqplib)')?.median;
console.log(
  `\nN = ${n} (Python Celery: ${celeryN}, memory:// pipeline: ${memoryN}), ${runs} runs, ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}\n`,
);
const markdown = table(summaries, ceilingRate);
console.log(markdown);

const f100 = find('nestjs-batches flushEvery 100');
const ratio = (a?: { median: number }, b?: { median: number }): number | undefined => (a && b ? a.median / b.median : undefined);
const checks: Array<[string, number | undefined, string]> = [
  ['flushEvery 100 / ceiling', f100 && ceilingRate ? f100.median / ceilingRate : undefined, '≥ 0.85'],
  ["flushEvery 100 / Nest's RMQ (Nest messages)", ratio(f100, find("Nest's RMQ transport (Nest messages)")), '≥ 3'],
  ["flushEvery 100 / Nest's RMQ (Celery's headers)", ratio(f100, find("Nest's RMQ transport (Celery's headers)")), '≥ 3'],
  ['BatchClient.delay / raw publish', ratio(find('publish: BatchClient.delay'), find('publish: raw amqplib confirm channel')), '≥ 0.8'],
  ['memory:// pipeline msg/s', find('memory:// pipeline flushEvery 100')?.median, '≥ 500,000'],
  ['worker peak RSS MB (flushEvery 100)', f100?.peakRssMb, '< 150'],
  ['interval flush lateness p99 ms', find('interval flush lateness (200 msg/s, 100 ms)')?.extra?.p99Ms, '< 20'],
];
console.log('\n| target | measured | goal |\n| --- | ---: | --- |');
for (const [name, value, goal] of checks) console.log(`| ${name} | ${value === undefined ? 'n/a' : value.toFixed(2)} | ${goal} |`);

mkdirSync(values.out, { recursive: true });
writeFileSync(
  join(values.out, 'results.json'),
  JSON.stringify({ n, celeryN, memoryN, runs, node: process.version, cores: cpus().length, measurements, summaries }, null, 2),
);
const series = [1, 10, 100, 1000].flatMap((flushEvery) => {
  const summary = find(`nestjs-batches flushEvery ${flushEvery}`);
  return summary ? [{ flushEvery, rate: summary.median }] : [];
});
const references = [
  'ceiling (raw amqplib)',
  "Nest's RMQ transport (Nest messages)",
  "Nest's RMQ transport (Celery's headers)",
  'Python Celery -P solo',
  'Python Celery prefork -c 2',
].flatMap((system) => {
  const summary = find(system);
  return summary ? [{ label: system, rate: summary.median }] : [];
});
writeFileSync(join(values.out, 'chart.svg'), chart(series, references));
writeFileSync(join(values.out, 'table.md'), markdown);
console.log(`\nwrote ${join(values.out, 'results.json')}, chart.svg and table.md`);
