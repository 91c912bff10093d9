import { metricOf, type Measurement, type Metric } from './measurement.js';
import type { VariantMeasurement } from './observability-run.js';

/** Median and spread of one figure over a row's runs. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

export interface Summary {
  system: string;
  runs: number;
  /** Messages per second. */
  rate: Spread;
  /** Consumer (or publisher) CPU per message, µs. */
  cpu: Spread;
  /** Highest peak RSS over the runs, MB. */
  peakRssMb: number;
  extra?: Record<string, number>;
  /** The local broker's CPU per message, µs (when it runs here). */
  broker?: Spread;
  note?: string;
}

function median(values: number[]): number {
  const sorted = values.toSorted((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function spread(runs: Measurement[], metric: Metric): Spread | undefined {
  const values = runs.map((run) => metricOf(run, metric)).filter((value): value is number => value !== undefined);
  if (values.length < runs.length || values.length === 0) return undefined;
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

/** One summary per system, in `order` (systems it does not list come last, as they first appear). */
export function summarize(measurements: Measurement[], order: string[] = []): Summary[] {
  const bySystem = new Map<string, Measurement[]>();
  for (const measurement of measurements) bySystem.set(measurement.system, [...(bySystem.get(measurement.system) ?? []), measurement]);
  const rank = (system: string): number => (order.includes(system) ? order.indexOf(system) : order.length);
  return [...bySystem]
    .toSorted(([a], [b]) => rank(a) - rank(b))
    .map(([system, runs]) => ({
      system,
      runs: runs.length,
      rate: spread(runs, 'rate') ?? { median: NaN, min: NaN, max: NaN },
      cpu: spread(runs, 'cpu') ?? { median: NaN, min: NaN, max: NaN },
      peakRssMb: Math.max(...runs.map((run) => run.peakRssMb)),
      extra: medianExtras(runs),
      broker: spread(runs, 'broker'),
      note: runs[0].note,
    }));
}

/** Each extra figure's median over the runs; a figure only some runs report (a stall) counts 0 in the others. */
function medianExtras(runs: Measurement[]): Record<string, number> | undefined {
  const keys = [...new Set(runs.flatMap((run) => Object.keys(run.extra ?? {})))];
  if (keys.length === 0) return undefined;
  return Object.fromEntries(keys.map((key) => [key, median(runs.map((run) => run.extra?.[key] ?? 0))]));
}

const number = (value: number): string => Math.round(value).toLocaleString('en-US');
const micro = (value: number): string => (value >= 100 ? Math.round(value).toString() : value >= 10 ? value.toFixed(1) : value.toFixed(2));
const range = (figure: Spread, format: (value: number) => string): string => `${format(figure.min)}–${format(figure.max)}`;
const extraText = (value: number): string => (Number.isInteger(value) ? value.toLocaleString('en-US') : value.toFixed(1));

/** The header table a row's messages carry (`[full]`, `[lean]`), when the row drained a Celery-format backlog. */
export const formatOf = (system: string): 'full' | 'lean' | undefined =>
  /\[(full|lean)\]$/.exec(system)?.[1] as 'full' | 'lean' | undefined;
/** Rows that drained a RabbitMQ backlog (not publishers, the in-process rows or the lateness trickle). */
export const isConsumer = (system: string): boolean => !/^(publish|interval|memory|bare)/.test(system);

/**
 * A Markdown table (the same text goes to the terminal and into the README): each row's medians
 * with their spread (min–max) over the runs, and consumers of a Celery-format backlog as a
 * multiple of the ceiling on the same format.
 */
export function table(summaries: Summary[]): string {
  const ceilings = new Map(
    summaries.filter((summary) => summary.system.startsWith('ceiling [')).map((summary) => [formatOf(summary.system), summary]),
  );
  const rows = [
    '| system | runs | messages/s (median) | min–max | × ceiling | CPU µs/msg (median) | min–max | peak RSS MB | broker CPU µs/msg (median) | min–max |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...summaries.map((summary) => {
      const ceiling = ceilings.get(formatOf(summary.system));
      const ratio = ceiling && isConsumer(summary.system) ? (summary.rate.median / ceiling.rate.median).toFixed(2) : '';
      const notes = [
        ...(summary.note ? [summary.note] : []),
        ...Object.entries(summary.extra ?? {}).map(([key, value]) => `${key} ${extraText(value)}`),
      ];
      const name = `${summary.system}${notes.length ? ` (${notes.join(', ')})` : ''}`;
      const broker = summary.broker ? `${micro(summary.broker.median)} | ${range(summary.broker, micro)}` : ' | ';
      return (
        `| ${name} | ${summary.runs} | ${number(summary.rate.median)} | ${range(summary.rate, number)} | ${ratio} | ` +
        `${micro(summary.cpu.median)} | ${range(summary.cpu, micro)} | ${Math.round(summary.peakRssMb)} | ${broker} |`
      );
    }),
  ];
  return rows.join('\n');
}

/** Consume throughput of every consumer row (median, with its min–max as a whisker), by backlog format. */
export function chart(summaries: Summary[]): string {
  const bars = summaries.filter((summary) => isConsumer(summary.system) && Number.isFinite(summary.rate.median));
  const [width, left, right, top, barHeight, gap] = [960, 430, 40, 40, 16, 6];
  const height = top + bars.length * (barHeight + gap) + 40;
  const highest = Math.max(...bars.map((bar) => bar.rate.max), 1);
  const magnitude = 10 ** Math.floor(Math.log10(highest / 4));
  const step =
    [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10].map((factor) => factor * magnitude).find((candidate) => candidate * 4 >= highest * 1.02) ??
    10 * magnitude;
  const x = (rate: number): number => left + (rate / (step * 4)) * (width - left - right);
  const colors: Record<string, string> = { full: '#d62728', lean: '#1f77b4' };
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="10" y="20" font-size="14">Consume throughput, messages/s (median, whisker min–max); red: Celery's full headers, blue: lean, grey: other</text>`,
  ];
  for (let tick = 0; tick <= 4; tick++) {
    const at = x(step * tick);
    parts.push(`<line x1="${at}" y1="${top - 6}" x2="${at}" y2="${height - 30}" stroke="#ddd"/>`);
    parts.push(`<text x="${at}" y="${height - 14}" text-anchor="middle">${number(step * tick)}</text>`);
  }
  bars.forEach((bar, index) => {
    const y = top + index * (barHeight + gap);
    const color = colors[formatOf(bar.system) ?? ''] ?? '#7f7f7f';
    const label = bar.system.replace(/&/g, '&amp;').replace(/</g, '&lt;');
    parts.push(`<text x="${left - 8}" y="${y + barHeight - 4}" text-anchor="end">${label}</text>`);
    parts.push(`<rect x="${left}" y="${y}" width="${x(bar.rate.median) - left}" height="${barHeight}" fill="${color}" opacity="0.8"/>`);
    parts.push(
      `<line x1="${x(bar.rate.min)}" y1="${y + barHeight / 2}" x2="${x(bar.rate.max)}" y2="${y + barHeight / 2}" stroke="black"/>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n');
}

const ratioTo = (value: number, base: number | undefined): string => (base ? (value / base).toFixed(2) : '');

/**
 * One system with events, metrics and tracing off and on: per variant the median rate and CPU per
 * message over the rounds, their spread, and both as a ratio to `off` (from the medians), plus what
 * the variant saw per run (events received, spans ended, requests the metrics counted).
 */
export function observabilityTable(results: VariantMeasurement[]): string {
  const variants = [...new Set(results.map((result) => result.observability))];
  const rows = variants.map((observability) => {
    const runs = results.filter((result) => result.observability === observability);
    const rates = runs.map(({ measurement }) => measurement.rate);
    const cpu = runs.map(({ measurement, n }) => (measurement.cpuSeconds / n) * 1e6);
    const extra = medianExtras(runs.map(({ measurement }) => measurement));
    return {
      observability,
      runs: runs.length,
      rate: median(rates),
      rates,
      cpu: median(cpu),
      cpus: cpu,
      rss: Math.max(...runs.map(({ measurement }) => measurement.peakRssMb)),
      extra,
    };
  });
  const off = rows.find((row) => row.observability === 'off');
  return [
    '| observability | runs | messages/s (median) | min–max | × off | CPU µs/msg (median) | min–max | × off | peak RSS MB | seen per run (median) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    ...rows.map(
      (row) =>
        `| ${row.observability} | ${row.runs} | ${number(row.rate)} | ${number(Math.min(...row.rates))}–${number(Math.max(...row.rates))} | ${ratioTo(row.rate, off?.rate)} | ` +
        `${row.cpu.toFixed(2)} | ${Math.min(...row.cpus).toFixed(2)}–${Math.max(...row.cpus).toFixed(2)} | ${ratioTo(row.cpu, off?.cpu)} | ${Math.round(row.rss)} | ` +
        `${
          row.extra
            ? Object.entries(row.extra)
                .map(([key, value]) => `${key} ${number(value)}`)
                .join(', ')
            : ''
        } |`,
    ),
  ].join('\n');
}
