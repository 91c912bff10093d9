import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { flushPolicyChart } from './chart.js';
import { latencyTable, runTable, summarize, targets, targetTable } from './report.js';
import { runOnce } from './run.js';
import { CAPACITY, CONCURRENCY, COST, FLUSH_EVERY, FLUSH_INTERVAL_MS, LOADS, POLICIES, type Policy, type RunResult } from './scenario.js';

/**
 * `npm run bench:flush`: fixed against adaptive flushing at 10, 50, 90 and 120 % of a handler's
 * capacity, on RabbitMQ with results in Redis; each run in child processes of its own (worker,
 * open-loop producer) on a fresh queue. Policies alternate inside each load level, starting with
 * the other one every round, and both get the same arrivals in a round.
 */
const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: process.env.BENCH_RUNS },
    // Seconds of offered load per run; the first and last quarter (at most 2 and 1.5 s) are not measured.
    duration: { type: 'string', default: process.env.BENCH_DURATION },
    // A subset of the load levels, in percent of capacity (e.g. `--loads 10,120`).
    loads: { type: 'string' },
    out: { type: 'string', default: 'bench-results' },
    quick: { type: 'boolean', default: false },
  },
});
const runs = Number(values.runs ?? (values.quick ? 1 : 3));
const durationMs = Number(values.duration ?? (values.quick ? 4 : 12)) * 1000;
const warmupMs = Math.min(2_000, durationMs / 4);
// Past flushInterval, so the window's last batch fills as the others do.
const cooldownMs = Math.min(FLUSH_INTERVAL_MS + 500, durationMs / 4);
const picked = values.loads?.split(',').map(Number);
const loads = picked ? LOADS.filter((load) => picked.includes(Math.round(load * 100))) : LOADS;
if (loads.length === 0) throw new Error(`--loads takes some of ${LOADS.map((load) => load * 100).join(',')}`);
if (!(runs >= 1) || !(durationMs > 0)) throw new Error('--runs must be at least 1 and --duration above 0 (seconds)');

console.log(
  `handler: ${COST.perBatchMs} ms per batch + ${COST.perRequestMs} ms per request, flushEvery ${FLUSH_EVERY}, ` +
    `flushInterval ${FLUSH_INTERVAL_MS} ms, concurrency ${CONCURRENCY}: capacity ${Math.round(CAPACITY).toLocaleString('en-US')} requests/s\n` +
    `${runs} run(s) of ${durationMs / 1000} s per load and policy (the first ${warmupMs / 1000} s and last ${cooldownMs / 1000} s not measured), Poisson arrivals\n`,
);

const results: RunResult[] = [];
const started = Date.now();
for (let round = 1; round <= runs; round++) {
  for (const load of loads) {
    const loadIndex = LOADS.indexOf(load);
    const order: readonly Policy[] = round % 2 ? POLICIES : POLICIES.toReversed();
    for (const policy of order) {
      const runTag = `${process.pid}-${round}-${loadIndex}-${policy}`;
      const spec = {
        queue: `bench.flush.${runTag}`,
        policy,
        rate: load * CAPACITY,
        durationMs,
        warmupMs,
        cooldownMs,
        seed: round * 1000 + loadIndex,
        runTag,
      };
      const { worker, producer } = await runOnce(spec, durationMs + 90_000);
      results.push({ policy, load, round, loadAverage: loadavg()[0], ...worker, ...producer });
      console.log(
        `run ${round}/${runs} ${Math.round(load * 100)} % ${policy}: offered ${Math.round(producer.offeredRate)}/s, ` +
          `start p50/p99 ${worker.handlerStartP50Ms.toFixed(1)}/${worker.handlerStartP99Ms.toFixed(1)} ms, ` +
          `stored p50/p99 ${producer.storedP50Ms.toFixed(1)}/${producer.storedP99Ms.toFixed(1)} ms, ` +
          `batch ${worker.meanBatchSize.toFixed(1)}, ${Math.round(producer.throughput)}/s, ${JSON.stringify(worker.reasons)}; load average ${loadavg()[0].toFixed(1)}, ` +
          `worker loop delay p99/max ${worker.loopDelayP99Ms.toFixed(0)}/${worker.loopDelayMaxMs.toFixed(0)} ms, send late p99 ${producer.sendLateP99Ms.toFixed(0)} ms` +
          (producer.missing || producer.publishFailures
            ? `, ${producer.missing} missing, ${producer.publishFailures} publish failures`
            : ''),
      );
    }
  }
}

const summaries = summarize(results);
const measured = targets(results, summaries);
const machineLoad = results.map((result) => result.loadAverage);
const header =
  `${runs} run(s) of ${durationMs / 1000} s per load and policy, medians; ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, ` +
  `Node ${process.version}, load average ${Math.min(...machineLoad).toFixed(1)}–${Math.max(...machineLoad).toFixed(1)} during the runs, ` +
  `${Math.round((Date.now() - started) / 1000)} s in all`;
const overload = LOADS[LOADS.length - 1];
const ceiling = summaries
  .filter((row) => row.load === overload)
  .map((row) => `${row.policy} ${Math.round(row.throughput).toLocaleString('en-US')}`);
const notes =
  `At ${Math.round(overload * 100)} % the backlog grows for the whole run, so its latencies measure the run's length, not the policy.` +
  (ceiling.length
    ? `\nMeasured ceiling (throughput at ${Math.round(overload * 100)} %, requests/s): ${ceiling.join(', ')}; the handler alone: ` +
      `${Math.round(CAPACITY).toLocaleString('en-US')} (storing results and acking between batches take the rest).`
    : '');
const markdown = `${latencyTable(summaries)}\n\n${targetTable(measured)}\n\n${notes}`;
console.log(`\n${header}\n\n${markdown}`);

mkdirSync(values.out, { recursive: true });
writeFileSync(
  join(values.out, 'flush-policy.json'),
  JSON.stringify(
    {
      cost: COST,
      flushEvery: FLUSH_EVERY,
      flushIntervalMs: FLUSH_INTERVAL_MS,
      concurrency: CONCURRENCY,
      capacity: CAPACITY,
      runs,
      durationMs,
      warmupMs,
      cooldownMs,
      node: process.version,
      cores: cpus().length,
      results,
      summaries,
      targets: measured,
    },
    null,
    2,
  ),
);
writeFileSync(join(values.out, 'flush-policy.md'), `${header}\n\n${markdown}\n\nEvery run:\n\n${runTable(results)}\n`);
writeFileSync(join(values.out, 'flush-policy.svg'), flushPolicyChart(summaries));
console.log(`\nwrote ${join(values.out, 'flush-policy.json')}, flush-policy.md and flush-policy.svg`);
// amqplib and ioredis handles of deleted queues' helpers may linger; the report is written.
process.exit(0);
