import { FLUSH_EVERY, LOADS, POLICIES, type Policy, type RunResult } from './scenario.js';
import { median } from './stats.js';

/** The medians over the runs of one policy at one load. */
export interface Summary {
  load: number;
  policy: Policy;
  runs: number;
  offeredRate: number;
  handlerStartP50Ms: number;
  handlerStartP99Ms: number;
  storedP50Ms: number;
  storedP99Ms: number;
  meanBatchSize: number;
  throughput: number;
  /** Batches per flush reason, summed over the runs. */
  reasons: Record<string, number>;
}

const FIGURES = [
  'offeredRate',
  'handlerStartP50Ms',
  'handlerStartP99Ms',
  'storedP50Ms',
  'storedP99Ms',
  'meanBatchSize',
  'throughput',
] as const;

export function summarize(results: readonly RunResult[]): Summary[] {
  return LOADS.flatMap((load) =>
    POLICIES.flatMap((policy) => {
      const runs = results.filter((result) => result.load === load && result.policy === policy);
      if (runs.length === 0) return [];
      const reasons: Record<string, number> = {};
      for (const run of runs) for (const [reason, count] of Object.entries(run.reasons)) reasons[reason] = (reasons[reason] ?? 0) + count;
      const figures = Object.fromEntries(FIGURES.map((figure) => [figure, median(runs.map((run) => run[figure]))])) as Record<
        (typeof FIGURES)[number],
        number
      >;
      return [{ load, policy, runs: runs.length, ...figures, reasons }];
    }),
  );
}

const percent = (load: number): string => `${Math.round(load * 100)} %`;
const ms = (value: number): string =>
  Number.isNaN(value) ? 'n/a' : value < 10 ? value.toFixed(1) : Math.round(value).toLocaleString('en-US');
const rate = (value: number): string => Math.round(value).toLocaleString('en-US');

/** Load by load, the two policies in adjacent rows: the same text goes to the terminal and the docs. */
export function latencyTable(summaries: readonly Summary[]): string {
  return [
    '| load | policy | offered req/s | → handler start p50 / p99 ms | → result stored p50 / p99 ms | mean batch | throughput req/s | flushes (all runs) |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |',
    ...summaries.map(
      (row) =>
        `| ${percent(row.load)} | ${row.policy} | ${rate(row.offeredRate)} | ${ms(row.handlerStartP50Ms)} / ${ms(row.handlerStartP99Ms)} | ` +
        `${ms(row.storedP50Ms)} / ${ms(row.storedP99Ms)} | ${Number.isNaN(row.meanBatchSize) ? 'n/a' : row.meanBatchSize.toFixed(1)} | ${rate(row.throughput)} | ` +
        `${Object.entries(row.reasons)
          .toSorted(([, a], [, b]) => b - a)
          .map(([reason, count]) => `${reason} ${count}`)
          .join(', ')} |`,
    ),
  ].join('\n');
}

interface Target {
  name: string;
  /** The measured figure from the medians, and its range over the rounds (each round pairs both policies on the same arrivals). */
  value: number;
  perRound: number[];
  goal: string;
  met: boolean;
}

const ratio = (a: number | undefined, b: number | undefined): number => (a === undefined || b === undefined ? Number.NaN : a / b);
const range = (values: number[]): string =>
  values.length === 0 ? '' : `${Math.min(...values).toFixed(2)}–${Math.max(...values).toFixed(2)}`;

/** The issue's targets, each from the medians, with its spread over the rounds. */
export function targets(results: readonly RunResult[], summaries: readonly Summary[]): Target[] {
  const find = (load: number, policy: Policy) => summaries.find((row) => row.load === load && row.policy === policy);
  const rounds = [...new Set(results.map((result) => result.round))];
  const perRound = (load: number, figure: (adaptive: RunResult, fixed: RunResult) => number): number[] =>
    rounds.flatMap((round) => {
      const pick = (policy: Policy) => results.find((result) => result.round === round && result.load === load && result.policy === policy);
      const [adaptive, fixed] = [pick('adaptive'), pick('fixed')];
      return adaptive && fixed ? [figure(adaptive, fixed)] : [];
    });
  const low = LOADS[0];
  const over = LOADS[LOADS.length - 1];
  const [lowAdaptive, lowFixed, overAdaptive, overFixed] = [
    find(low, 'adaptive'),
    find(low, 'fixed'),
    find(over, 'adaptive'),
    find(over, 'fixed'),
  ];
  const list: Array<Omit<Target, 'met'> & { test: (value: number) => boolean }> = [
    {
      name: `p99 arrival → handler start at ${percent(low)} load, adaptive / fixed`,
      value: ratio(lowAdaptive?.handlerStartP99Ms, lowFixed?.handlerStartP99Ms),
      perRound: perRound(low, (a, f) => a.handlerStartP99Ms / f.handlerStartP99Ms),
      goal: '≤ 0.10',
      test: (value) => value <= 0.1,
    },
    {
      name: `p99 arrival → result stored at ${percent(low)} load, adaptive / fixed`,
      value: ratio(lowAdaptive?.storedP99Ms, lowFixed?.storedP99Ms),
      perRound: perRound(low, (a, f) => a.storedP99Ms / f.storedP99Ms),
      goal: '≤ 0.10',
      test: (value) => value <= 0.1,
    },
    {
      name: `throughput at ${percent(over)} load, adaptive / fixed`,
      value: ratio(overAdaptive?.throughput, overFixed?.throughput),
      perRound: perRound(over, (a, f) => a.throughput / f.throughput),
      goal: '≥ 0.95',
      test: (value) => value >= 0.95,
    },
    {
      name: `mean batch size at ${percent(over)} load, adaptive / flushEvery (${FLUSH_EVERY})`,
      value: ratio(overAdaptive?.meanBatchSize, FLUSH_EVERY),
      perRound: perRound(over, (a) => a.meanBatchSize / FLUSH_EVERY),
      goal: '≥ 0.90',
      test: (value) => value >= 0.9,
    },
  ];
  return list.map(({ test, ...target }) => ({ ...target, met: !Number.isNaN(target.value) && test(target.value) }));
}

export function targetTable(list: readonly Target[]): string {
  return [
    '| target | measured (medians) | per round | goal | met |',
    '| --- | ---: | ---: | --- | --- |',
    ...list.map(
      (target) =>
        `| ${target.name} | ${Number.isNaN(target.value) ? 'n/a' : target.value.toFixed(2)} | ${range(target.perRound)} | ${target.goal} | ${target.met ? 'met' : 'NOT MET'} |`,
    ),
  ].join('\n');
}

/** Every run, in the order they ran, with what held the machine back: the spread behind the medians. */
export function runTable(results: readonly RunResult[]): string {
  return [
    '| round | load | policy | offered req/s | → start p50 / p99 ms | → stored p50 / p99 ms | mean batch | throughput req/s | worker loop delay p99 / max ms | send late p99 ms | load average |',
    '| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...results.map(
      (run) =>
        `| ${run.round} | ${percent(run.load)} | ${run.policy} | ${rate(run.offeredRate)} | ${ms(run.handlerStartP50Ms)} / ${ms(run.handlerStartP99Ms)} | ` +
        `${ms(run.storedP50Ms)} / ${ms(run.storedP99Ms)} | ${Number.isNaN(run.meanBatchSize) ? 'n/a' : run.meanBatchSize.toFixed(1)} | ${rate(run.throughput)} | ` +
        `${Math.round(run.loopDelayP99Ms)} / ${Math.round(run.loopDelayMaxMs)} | ${Math.round(run.sendLateP99Ms)} | ${run.loadAverage.toFixed(1)} |`,
    ),
  ].join('\n');
}
