import { CAPACITY, FLUSH_EVERY, LOADS, POLICIES, type Policy } from './scenario.js';
import type { Summary } from './report.js';

const COLORS: Record<Policy, string> = { fixed: '#7f7f7f', adaptive: '#1f77b4' };
const [WIDTH, HEIGHT, TOP, BOTTOM, PANEL, GAP, LEFT] = [960, 380, 50, 60, 340, 90, 70];

interface Panel {
  left: number;
  title: string;
  /** Value → y pixel, and the labelled ticks. */
  y: (value: number) => number;
  ticks: Array<{ value: number; label: string }>;
  lines: Array<{ policy: Policy; dashed: boolean; values: number[] }>;
}

const x = (panelLeft: number, load: number): number => panelLeft + (load / 1.3) * PANEL;

function panel({ left, title, y, ticks, lines }: Panel): string[] {
  const bottom = HEIGHT - BOTTOM;
  const parts = [
    `<text x="${left}" y="${TOP - 12}" font-size="13">${title}</text>`,
    `<line x1="${left}" y1="${bottom}" x2="${left + PANEL}" y2="${bottom}" stroke="black"/>`,
    `<line x1="${left}" y1="${TOP}" x2="${left}" y2="${bottom}" stroke="black"/>`,
    // Past this line, load exceeds what the handler can take.
    `<line x1="${x(left, 1)}" y1="${TOP}" x2="${x(left, 1)}" y2="${bottom}" stroke="#d62728" stroke-dasharray="3 3"/>`,
    `<text x="${x(left, 1) - 4}" y="${bottom - 6}" text-anchor="end" fill="#d62728">capacity</text>`,
  ];
  for (const load of LOADS) {
    parts.push(`<text x="${x(left, load)}" y="${bottom + 16}" text-anchor="middle">${Math.round(load * 100)} %</text>`);
  }
  parts.push(`<text x="${left + PANEL / 2}" y="${bottom + 34}" text-anchor="middle">offered load (share of capacity)</text>`);
  for (const { value, label } of ticks) {
    parts.push(`<line x1="${left}" y1="${y(value)}" x2="${left + PANEL}" y2="${y(value)}" stroke="#eeeeee"/>`);
    parts.push(`<text x="${left - 6}" y="${y(value) + 4}" text-anchor="end">${label}</text>`);
  }
  for (const line of lines) {
    const points = line.values.map((value, index) => ({ px: x(left, LOADS[index]), py: y(value) })).filter(({ py }) => Number.isFinite(py));
    const dash = line.dashed ? ' stroke-dasharray="6 4"' : '';
    parts.push(
      `<polyline points="${points.map(({ px, py }) => `${px},${py}`).join(' ')}" fill="none" stroke="${COLORS[line.policy]}" stroke-width="2"${dash}/>`,
    );
    for (const { px, py } of points) parts.push(`<circle cx="${px}" cy="${py}" r="3.5" fill="${COLORS[line.policy]}"/>`);
  }
  return parts;
}

/**
 * Two panels against offered load: request latency arrival → result stored (p99 solid, p50 dashed,
 * log scale) and mean batch size, fixed and adaptive flushing.
 */
export function flushPolicyChart(summaries: readonly Summary[]): string {
  const series = (policy: Policy, figure: keyof Summary): number[] =>
    LOADS.map((load) => Number(summaries.find((row) => row.load === load && row.policy === policy)?.[figure] ?? Number.NaN));
  const latencies = POLICIES.flatMap((policy) => [...series(policy, 'storedP50Ms'), ...series(policy, 'storedP99Ms')]).filter(
    (value) => value > 0,
  );
  const low = Math.floor(Math.log10(Math.min(...latencies, 10)));
  const high = Math.ceil(Math.log10(Math.max(...latencies, 100)));
  const logY = (value: number): number => HEIGHT - BOTTOM - ((Math.log10(value) - low) / (high - low)) * (HEIGHT - TOP - BOTTOM);
  const linearY = (value: number): number => HEIGHT - BOTTOM - (value / FLUSH_EVERY) * (HEIGHT - TOP - BOTTOM);
  const right = LEFT + PANEL + GAP;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${LEFT}" y="16" font-size="14">Fixed and adaptive flushing, flushEvery ${FLUSH_EVERY}, capacity ${Math.round(CAPACITY).toLocaleString('en-US')} requests/s (medians)</text>`,
    ...panel({
      left: LEFT,
      title: 'Arrival → result stored, ms (log scale)',
      y: logY,
      ticks: Array.from({ length: high - low + 1 }, (_, index) => 10 ** (low + index)).map((value) => ({
        value,
        label: value.toLocaleString('en-US'),
      })),
      lines: POLICIES.flatMap((policy) => [
        { policy, dashed: false, values: series(policy, 'storedP99Ms') },
        { policy, dashed: true, values: series(policy, 'storedP50Ms') },
      ]),
    }),
    ...panel({
      left: right,
      title: 'Mean batch size',
      y: linearY,
      ticks: [0, 25, 50, 75, 100].map((value) => ({ value: (value / 100) * FLUSH_EVERY, label: String((value / 100) * FLUSH_EVERY) })),
      lines: POLICIES.map((policy) => ({ policy, dashed: false, values: series(policy, 'meanBatchSize') })),
    }),
  ];
  // One legend for both panels, right of the second.
  const legendX = right + PANEL + 14;
  POLICIES.forEach((policy, index) => {
    const legendY = TOP + 20 + index * 40;
    parts.push(`<line x1="${legendX}" y1="${legendY}" x2="${legendX + 24}" y2="${legendY}" stroke="${COLORS[policy]}" stroke-width="2"/>`);
    parts.push(`<text x="${legendX + 30}" y="${legendY + 4}" fill="${COLORS[policy]}">${policy}</text>`);
  });
  const styleY = TOP + 20 + POLICIES.length * 40;
  parts.push(`<line x1="${legendX}" y1="${styleY}" x2="${legendX + 24}" y2="${styleY}" stroke="black" stroke-width="2"/>`);
  parts.push(`<text x="${legendX + 30}" y="${styleY + 4}">p99</text>`);
  parts.push(
    `<line x1="${legendX}" y1="${styleY + 18}" x2="${legendX + 24}" y2="${styleY + 18}" stroke="black" stroke-width="2" stroke-dasharray="6 4"/>`,
  );
  parts.push(`<text x="${legendX + 30}" y="${styleY + 22}">p50</text>`);
  parts.push('</svg>');
  return parts.join('\n');
}
