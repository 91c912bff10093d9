import type { Measurement } from './measurement.js';
import type { VariantMeasurement } from './observability-run.js';

export interface Summary {
  system: string;
  runs: number;
  median: number;
  min: number;
  max: number;
  cpuSeconds: number;
  peakRssMb: number;
  extra?: Record<string, number>;
  brokerUsPerMessage?: number;
}

function median(values: number[]): number {
  const sorted = values.toSorted((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

export function summarize(measurements: Measurement[]): Summary[] {
  const bySystem = new Map<string, Measurement[]>();
  for (const measurement of measurements) bySystem.set(measurement.system, [...(bySystem.get(measurement.system) ?? []), measurement]);
  return [...bySystem].map(([system, runs]) => ({
    system,
    runs: runs.length,
    median: median(runs.map((run) => run.rate)),
    min: Math.min(...runs.map((run) => run.rate)),
    max: Math.max(...runs.map((run) => run.rate)),
    cpuSeconds: median(runs.map((run) => run.cpuSeconds)),
    peakRssMb: Math.max(...runs.map((run) => run.peakRssMb)),
    extra: medianExtras(runs),
    brokerUsPerMessage: runs.every((run) => run.brokerUsPerMessage !== undefined)
      ? median(runs.map((run) => run.brokerUsPerMessage ?? 0))
      : undefined,
  }));
}

/** Each extra figure's median over the runs; a figure only some runs report (a stall) counts 0 in the others. */
function medianExtras(runs: Measurement[]): Record<string, number> | undefined {
  const keys = [...new Set(runs.flatMap((run) => Object.keys(run.extra ?? {})))];
  if (keys.length === 0) return undefined;
  return Object.fromEntries(keys.map((key) => [key, median(runs.map((run) => run.extra?.[key] ?? 0))]));
}

const number = (value: number): string => Math.round(value).toLocaleString('en-US');

/** A Markdown table: the same text goes to the terminal and into the README. */
export function table(summaries: Summary[], ceiling: number | undefined): string {
  const rows = [
    '| system | messages/s (median) | min–max | × ceiling | CPU s | peak RSS MB | broker CPU µs/msg |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...summaries.map((summary) => {
      const ratio =
        // Only consumers of the same RabbitMQ backlog compare with the ceiling.
        ceiling && !/^(publish|interval|memory)/.test(summary.system) ? (summary.median / ceiling).toFixed(2) : '';
      const extra = summary.extra
        ? ` (${Object.entries(summary.extra)
            .map(([key, value]) => `${key} ${value.toFixed(1)}`)
            .join(', ')})`
        : '';
      return `| ${summary.system}${extra} | ${number(summary.median)} | ${number(summary.min)}–${number(summary.max)} | ${ratio} | ${summary.cpuSeconds.toFixed(2)} | ${Math.round(summary.peakRssMb)} | ${summary.brokerUsPerMessage === undefined ? '' : Math.round(summary.brokerUsPerMessage)} |`;
    }),
  ];
  return rows.join('\n');
}

/** Throughput by flushEvery (log scale) with the ceiling and the peers as labelled reference lines. */
export function chart(series: Array<{ flushEvery: number; rate: number }>, references: Array<{ label: string; rate: number }>): string {
  const [width, height, left, right, top, bottom] = [880, 400, 70, 300, 30, 50];
  const highest = Math.max(...series.map((point) => point.rate), ...references.map((reference) => reference.rate), 1);
  // Four ticks on a round step just above the highest line.
  const magnitude = 10 ** Math.floor(Math.log10(highest / 4));
  const step =
    [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10].map((factor) => factor * magnitude).find((candidate) => candidate * 4 >= highest * 1.05) ??
    10 * magnitude;
  const top_ = step * 4;
  const x = (flushEvery: number): number => left + (Math.log10(flushEvery) / 3) * (width - left - right);
  const y = (rate: number): number => height - bottom - (rate / top_) * (height - top - bottom);
  const colors = ['#d62728', '#7f7f7f', '#2ca02c', '#9467bd', '#8c564b'];
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${left}" y="18" font-size="14">Consume throughput, messages/s (median), by flushEvery</text>`,
    `<line x1="${left}" y1="${height - bottom}" x2="${width - right}" y2="${height - bottom}" stroke="black"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${height - bottom}" stroke="black"/>`,
  ];
  for (const flushEvery of [1, 10, 100, 1000]) {
    parts.push(`<text x="${x(flushEvery)}" y="${height - bottom + 18}" text-anchor="middle">${flushEvery}</text>`);
  }
  parts.push(`<text x="${(left + width - right) / 2}" y="${height - 12}" text-anchor="middle">flushEvery</text>`);
  for (let tick = 0; tick <= 4; tick++) {
    const rate = step * tick;
    parts.push(`<text x="${left - 6}" y="${y(rate) + 4}" text-anchor="end">${number(rate)}</text>`);
  }
  // Labels go top to bottom, at least a line apart, so close reference lines stay readable.
  let lastLabelY = -Infinity;
  references
    .map((reference, index) => ({ ...reference, color: colors[index % colors.length] }))
    .toSorted((a, b) => b.rate - a.rate)
    .forEach((reference) => {
      const lineY = y(reference.rate);
      const labelY = Math.max(lineY + 4, lastLabelY + 13);
      lastLabelY = labelY;
      parts.push(
        `<line x1="${left}" y1="${lineY}" x2="${width - right}" y2="${lineY}" stroke="${reference.color}" stroke-dasharray="6 4"/>`,
      );
      parts.push(`<text x="${width - right + 6}" y="${labelY}" fill="${reference.color}">${reference.label}</text>`);
    });
  const points = series.map((point) => `${x(point.flushEvery)},${y(point.rate)}`).join(' ');
  parts.push(`<polyline points="${points}" fill="none" stroke="#1f77b4" stroke-width="2"/>`);
  for (const point of series) parts.push(`<circle cx="${x(point.flushEvery)}" cy="${y(point.rate)}" r="4" fill="#1f77b4"/>`);
  if (series.length)
    parts.push(`<text x="${x(series[0].flushEvery) + 8}" y="${y(series[0].rate) - 8}" fill="#1f77b4">nestjs-batches</text>`);
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
