import { metricOf, type CeleryFormat, type Measurement, type Metric } from './measurement.js';
import { clientPublishName, floorConsumerName, MEMORY_PIPELINE, NEST_FULL_HEADERS, rawPublishName } from './rows.js';
import { batchesWorkerName } from './systems/batches-worker.js';
import { BARE_PARSE } from './systems/json-parse.js';
import { LATENESS } from './systems/lateness.js';
import type { BrokerFloorResult, TargetResult } from './target-tables.js';

// The Markdown tables live in target-tables.ts, re-exported where they were: main.ts imports one module.

export const ceilingSystem = (format: CeleryFormat): string => `ceiling [${format}]`;

function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = values.toSorted((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** A metric over the runs of `systems`: the highest peak RSS, the median of everything else. */
export function figure(measurements: Measurement[], systems: string[], metric: Metric): number | undefined {
  const values = measurements
    .filter((measurement) => systems.includes(measurement.system))
    .map((measurement) => metricOf(measurement, metric))
    .filter((value): value is number => value !== undefined && Number.isFinite(value));
  if (metric === 'rss') return values.length ? Math.max(...values) : undefined;
  return median(values);
}

/**
 * Adds the `ceiling [format]` rows: the runs of the raw configuration with the highest median rate
 * on that format, so the ceiling is the best of them and each configuration stays in the table.
 */
export function withCeilings(measurements: Measurement[]): Measurement[] {
  const ceilings = (['full', 'lean'] as const).flatMap((format) => {
    const candidates = [...new Set(measurements.map((m) => m.system).filter((system) => system.startsWith(`raw amqplib [${format}]`)))];
    const best = candidates
      .map((system) => ({ system, rate: figure(measurements, [system], 'rate') ?? 0 }))
      .toSorted((a, b) => b.rate - a.rate)[0];
    if (!best) return [];
    const note = `best of ${candidates.length}: ${best.system.slice(best.system.indexOf(':') + 2)}`;
    return measurements.filter((m) => m.system === best.system).map((m) => ({ ...m, system: ceilingSystem(format), note }));
  });
  return [...ceilings, ...measurements];
}

interface Operand {
  systems: string[];
  metric: Metric;
}

/** A figure, or `of / per` as a ratio, judged on the medians over the rounds. */
interface Figure {
  name: string;
  of: Operand;
  per?: Operand;
}

interface Target extends Figure {
  goal: string;
  met: (value: number) => boolean;
  unit: string;
}

const f100 = (format: CeleryFormat): string[] => [batchesWorkerName(100, format, false)];
const ratioTarget = (name: string, goal: string, of: Operand, per: Operand): Target => {
  const bound = Number(goal.slice(2));
  return { name, goal: `${goal} ×`, unit: '×', of, per, met: (value) => (goal.startsWith('≥') ? value >= bound : value <= bound) };
};

/** Issue 13's targets; each is measured in every round, and judged on the medians over the rounds. */
export const TARGETS: Target[] = [
  ...(['full', 'lean'] as const).map((format) =>
    ratioTarget(
      `flushEvery 100 / ceiling, messages/s [${format}]`,
      '≥ 0.95',
      { systems: f100(format), metric: 'rate' },
      { systems: [ceilingSystem(format)], metric: 'rate' },
    ),
  ),
  ...(['full', 'lean'] as const).map((format) =>
    ratioTarget(
      `flushEvery 100 / ceiling, consumer CPU per message [${format}]`,
      '≤ 1.15',
      { systems: f100(format), metric: 'cpu' },
      { systems: [ceilingSystem(format)], metric: 'cpu' },
    ),
  ),
  ratioTarget(
    "flushEvery 100 / Nest's RMQ transport, consumer CPU per message [full]",
    '≤ 0.40',
    { systems: f100('full'), metric: 'cpu' },
    { systems: [NEST_FULL_HEADERS], metric: 'cpu' },
  ),
  ratioTarget(
    'lean / full, broker CPU per consumed message (flushEvery 100)',
    '≤ 0.45',
    { systems: f100('lean'), metric: 'broker' },
    { systems: f100('full'), metric: 'broker' },
  ),
  ratioTarget(
    'BatchClient.delay [lean] / raw confirm publishing [full], messages/s',
    '≥ 1.50',
    { systems: [clientPublishName('lean')], metric: 'rate' },
    { systems: [rawPublishName('full')], metric: 'rate' },
  ),
  ratioTarget(
    'results in Redis / ignoreResult, messages/s (flushEvery 100 [full])',
    '≥ 0.70',
    { systems: [batchesWorkerName(100, 'full', true)], metric: 'rate' },
    { systems: f100('full'), metric: 'rate' },
  ),
  ratioTarget(
    'memory:// pipeline / bare JSON.parse, CPU per message',
    '≤ 2.50',
    { systems: [MEMORY_PIPELINE], metric: 'cpu' },
    { systems: [BARE_PARSE], metric: 'cpu' },
  ),
  {
    name: 'worker peak RSS draining the backlog, MB (flushEvery 100)',
    goal: '< 150 MB',
    unit: 'MB',
    of: { systems: [...f100('full'), ...f100('lean')], metric: 'rss' },
    met: (value) => value < 150,
  },
  {
    name: 'interval flush lateness p99, ms',
    goal: '< 20 ms',
    unit: 'ms',
    of: { systems: [LATENESS], metric: 'p99' },
    met: (value) => value < 20,
  },
];

function valueOf(target: Figure, measurements: Measurement[]): { value?: number; of?: number; per?: number } {
  const of = figure(measurements, target.of.systems, target.of.metric);
  if (!target.per) return { value: of, of };
  const per = figure(measurements, target.per.systems, target.per.metric);
  return { value: of !== undefined && per ? of / per : undefined, of, per };
}

/** A figure from the medians over all rounds, and its lowest and highest value in a round of its own. */
function evaluate(subject: Figure, measurements: Measurement[]): { value?: number; of?: number; per?: number; min?: number; max?: number } {
  const rounds = [...new Set(measurements.map((measurement) => measurement.round))];
  const perRound = rounds
    .map(
      (round) =>
        valueOf(
          subject,
          measurements.filter((measurement) => measurement.round === round),
        ).value,
    )
    .filter((each): each is number => each !== undefined);
  return {
    ...valueOf(subject, measurements),
    min: perRound.length ? Math.min(...perRound) : undefined,
    max: perRound.length ? Math.max(...perRound) : undefined,
  };
}

export function evaluateTargets(measurements: Measurement[]): TargetResult[] {
  return TARGETS.map((target) => {
    const result = evaluate(target, measurements);
    return {
      name: target.name,
      goal: target.goal,
      unit: target.unit,
      ...result,
      met: result.value === undefined ? undefined : target.met(result.value),
    };
  });
}

const brokerOf = (system: string): Operand => ({ systems: [system], metric: 'broker' });

/**
 * Not targets, for information: the broker's CPU per persistent message with our lean header table
 * and with none at all, each over Celery's full table, for the raw consumer's first configuration
 * and for raw confirm publishing. `no headers` is the floor no header table can go below.
 */
export const BROKER_FLOORS: Figure[] = [
  ...(['lean', 'no-headers'] as const).map((format) => ({
    name: `broker CPU per consumed message, raw consumer: ${format === 'lean' ? 'lean' : 'no headers'} / full`,
    of: brokerOf(floorConsumerName(format)),
    per: brokerOf(floorConsumerName('full')),
  })),
  ...(['lean', 'no-headers'] as const).map((format) => ({
    name: `broker CPU per published message, raw confirm publishing: ${format === 'lean' ? 'lean' : 'no headers'} / full`,
    of: brokerOf(rawPublishName(format)),
    per: brokerOf(rawPublishName('full')),
  })),
];

export function evaluateBrokerFloors(measurements: Measurement[]): BrokerFloorResult[] {
  return BROKER_FLOORS.map((floor) => ({ name: floor.name, ...evaluate(floor, measurements) }));
}
