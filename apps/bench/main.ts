import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { evalReachesPid } from './broker-eval.js';
import { metricOf, REDIS_URL, type Measurement } from './measurement.js';
import { runObservability } from './observability-run.js';
import type { Observability } from './observability.js';
import { pinCores, type Pinning } from './pinning.js';
import { chart, summarize, table } from './report.js';
import { benchRows, type Row } from './rows.js';
import { Runner } from './runner.js';
import { celeryAvailable } from './systems/celery.js';
import { localBrokerPid } from './systems/process-tree.js';
import { redisAvailable } from './systems/redis-results.js';
import { brokerFloorTable, targetsTable } from './target-tables.js';
import { ceilingSystem, evaluateBrokerFloors, evaluateTargets, withCeilings } from './targets.js';

const HELP = `npm run bench -- [options]

Drains backlogs of small persistent task messages on the local RabbitMQ with each system in a child
process of its own, alternating the systems inside each round (the order rotates from round to
round), and prints every row's medians with their spread (min–max) and the targets of issue 13.

  --n N              backlog per RabbitMQ row (default 100,000; 20,000 with --quick)
  --runs R           rounds (default 5; 1 with --quick; 7 with --observability)
  --celery-n N       backlog of the Python Celery rows (default 20,000: they drain ~5 times slower)
  --memory-n N       in-process window of the memory:// pipeline and the bare JSON.parse (300,000, at most 3 × N)
  --sweep            also nestjs-batches at flushEvery 1, 10 and 1000 (3 more RabbitMQ rows per round)
  --pin              pin the local RabbitMQ to the first core(s) and the bench with every measured process
                     to the last one (taskset, needs 2+ cores and the right to set the broker's affinity),
                     with as many of its VM's schedulers online as it has cores (rabbitmqctl eval; RABBITMQCTL
                     names the command); the broker's own affinity and schedulers are restored at the end, on
                     Ctrl-C and on errors
  --keep-broker-garbage
                     do not collect the local broker's garbage after each backlog is published (by default it
                     is, with rabbitmqctl eval, inside the publishing step, so every consumer starts from the
                     same broker; without it the broker's CPU per consumed message varies about 2 × run to run)
  --quick            N 20,000, 1 round, no Python Celery, no lateness run: a quick look
  --out DIR          where results.json, table.md and chart.svg go (default bench-results)
  --observability    only the memory:// pipeline with events, metrics and tracing off and on
                     (with --observability-rabbitmq also the RabbitMQ flushEvery 100 row;
                     --baseline label=path/to/dist/apps/bench/child.js adds another build's pipeline)

Environment: AMQP_URL, REDIS_URL (the with-results rows; skipped when Redis does not answer),
CELERY_PYTHON (default /usr/bin/python3), BENCH_N, BENCH_RUNS, TASKSET (--pin) and RABBITMQCTL.`;

const { values } = parseArgs({
  options: {
    help: { type: 'boolean', short: 'h', default: false },
    n: { type: 'string', default: process.env.BENCH_N },
    runs: { type: 'string', default: process.env.BENCH_RUNS },
    'celery-n': { type: 'string', default: process.env.BENCH_CELERY_N ?? '20000' },
    'memory-n': { type: 'string', default: process.env.BENCH_MEMORY_N ?? '300000' },
    out: { type: 'string', default: 'bench-results' },
    quick: { type: 'boolean', default: false },
    sweep: { type: 'boolean', default: false },
    pin: { type: 'boolean', default: false },
    'keep-broker-garbage': { type: 'boolean', default: false },
    observability: { type: 'boolean', default: false },
    'observability-rabbitmq': { type: 'boolean', default: false },
    baseline: { type: 'string', multiple: true },
  },
});
if (values.help) {
  console.log(HELP);
  process.exit(0);
}
const quick = values.quick;
const n = Number(values.n ?? (quick ? 20_000 : 100_000));
const runs = Number(values.runs ?? (values.observability ? 7 : quick ? 1 : 5));
const celeryN = Math.min(n, Number(values['celery-n']));
// In-process runs are over in a fraction of a second at N = 100,000; a longer window averages out GC and machine noise.
const memoryN = Math.min(n * 3, Number(values['memory-n']));
const brokerPid = localBrokerPid();

let pinning: Pinning | undefined;
if (values.pin) {
  if (brokerPid) {
    pinning = pinCores(brokerPid, cpus().length);
    console.log(pinning.description);
  } else {
    console.log('--pin: RabbitMQ does not run on this machine, so nothing is pinned');
  }
}
// A loaded shared broker may never fall quiet: wait for it at most about as long as it takes to persist a backlog.
// Only on the broker whose CPU is read (rabbitmqctl may reach another node).
const collectGarbage = !values['keep-broker-garbage'] && brokerPid !== undefined && evalReachesPid() === brokerPid;
const runner = new Runner(brokerPid, Math.min(20_000, Math.max(500, n / 5)), collectGarbage);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.log(`\n${signal}: stopping the measured processes, deleting the bench's queues`);
    void runner.abort().finally(() => process.exit(130));
  });
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
      await runner.brokerQuiet();
      const options = { n: observabilityMemoryN, queue: 'bench', flushEvery: 100 };
      const baseline = values.baseline?.find((spec) => spec.startsWith(`${variant}=`));
      if (baseline) return runner.child('memory-pipeline', options, baseline.slice(variant.length + 1));
      return runner.child('memory-pipeline', { ...options, observability: variant as Observability });
    },
    rabbit: async (observability) => {
      const { consumed } = await runner.drain({ format: 'full', count: n }, (queue) =>
        runner.child('nestjs-batches', { n, queue, flushEvery: 100, observability }),
      );
      return consumed;
    },
  });
  process.exit(0);
}

const redis = await redisAvailable();
if (!redis) console.log(`Redis at ${REDIS_URL} does not answer: the with-results rows are skipped`);
const celery = !quick && celeryAvailable();
if (!celery) {
  console.log(
    quick
      ? 'Python Celery skipped (--quick)'
      : 'Python Celery not installed (/usr/bin/python3 -c "import celery" failed): its rows are skipped',
  );
}
const rows = benchRows(runner, { n, celeryN, memoryN, celery, redis, sweep: values.sweep, lateness: !quick });

/** Table order: each format's ceiling before its raw configurations, publishers after the consumers. */
function tableOrder(all: Row[]): string[] {
  const systems = [...new Set(all.flatMap((row) => row.systems))];
  const withCeilingRows = systems.flatMap((system) => {
    const format = /^raw amqplib \[(full|lean)\]/.exec(system)?.[1] as 'full' | 'lean' | undefined;
    return format && systems.find((each) => each.startsWith(`raw amqplib [${format}]`)) === system
      ? [ceilingSystem(format), system]
      : [system];
  });
  const publishers = withCeilingRows.filter((system) => system.startsWith('publish:'));
  const rest = withCeilingRows.filter((system) => !system.startsWith('publish:'));
  const firstInProcess = rest.findIndex((system) => /^(memory|bare|interval)/.test(system));
  return firstInProcess < 0 ? [...rest, ...publishers] : [...rest.slice(0, firstInProcess), ...publishers, ...rest.slice(firstInProcess)];
}

const micro = (value: number | undefined): string => (value === undefined ? '' : value.toFixed(1));
const startedAt = new Date();
const measurements: Measurement[] = [];
for (let round = 1; round <= runs; round++) {
  // Rows alternate within each round, each round starting further along, so noise and position spread over all alike.
  const offset = Math.round(((round - 1) * rows.length) / runs) % rows.length;
  for (const row of [...rows.slice(offset), ...rows.slice(0, offset)]) {
    for (const measurement of await row.run(round)) {
      measurement.round = round;
      measurements.push(measurement);
      console.log(
        `run ${round}/${runs} ${measurement.system}: ${Math.round(measurement.rate).toLocaleString('en-US')} msg/s, ` +
          `${micro(metricOf(measurement, 'cpu'))} CPU µs/msg, ${Math.round(measurement.peakRssMb)} MB` +
          (measurement.brokerUsPerMessage === undefined ? '' : `, broker ${micro(measurement.brokerUsPerMessage)} µs/msg`) +
          (measurement.extra ? ` ${JSON.stringify(measurement.extra)}` : ''),
      );
    }
  }
}
pinning?.restore();

const all = withCeilings(measurements);
const summaries = summarize(all, tableOrder(rows));
const targets = evaluateTargets(all);
const brokerFloors = evaluateBrokerFloors(all);
const minutes = (Date.now() - startedAt.getTime()) / 60_000;
const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
const header =
  `${startedAt.toISOString().slice(0, 10)}, \`${command}\`, ${minutes.toFixed(1)} min: N = ${n.toLocaleString('en-US')} ` +
  `(${celery ? `Python Celery ${celeryN.toLocaleString('en-US')}` : 'no Python Celery'}, in process ${memoryN.toLocaleString('en-US')}), ` +
  `${runs} round${runs === 1 ? '' : 's'}, ` +
  `${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}` +
  (pinning ? `, ${pinning.description}` : brokerPid ? ', broker and bench unpinned' : ', broker not on this machine') +
  (collectGarbage ? ", the broker's garbage collected at the end of each publishing step" : '');
const markdown = table(summaries);
const targetsMarkdown = targetsTable(targets);
const floorsMarkdown = brokerFloorTable(brokerFloors);
console.log(
  `\n${header}\n\n${markdown}\n\nTargets (medians over the rounds; the spread is the target's value in each round):\n\n${targetsMarkdown}` +
    `\n\n${floorsMarkdown}`,
);

mkdirSync(values.out, { recursive: true });
writeFileSync(
  join(values.out, 'results.json'),
  JSON.stringify(
    {
      date: startedAt.toISOString(),
      command,
      n,
      celeryN,
      memoryN,
      runs,
      node: process.version,
      cores: cpus().length,
      pinned: Boolean(pinning),
      measurements,
      summaries,
      targets,
      brokerFloors,
    },
    null,
    2,
  ),
);
writeFileSync(join(values.out, 'chart.svg'), chart(summaries));
writeFileSync(join(values.out, 'table.md'), `${header}\n\n${markdown}\n\n${targetsMarkdown}\n\n${floorsMarkdown}\n`);
console.log(`\nwrote ${join(values.out, 'results.json')}, chart.svg and table.md`);
