/** A target as evaluated: one row of the targets table. */
export interface TargetResult {
  name: string;
  goal: string;
  unit: string;
  /** From the medians over all rounds (undefined: not measured in this run). */
  value?: number;
  /** The operands' medians behind a ratio. */
  of?: number;
  per?: number;
  /** The target's value in its lowest and highest round. */
  min?: number;
  max?: number;
  met?: boolean;
}

/** A broker floor ratio: `of / per` from the medians (µs per message), with its value in the lowest and highest round. */
export interface BrokerFloorResult {
  name: string;
  value?: number;
  of?: number;
  per?: number;
  min?: number;
  max?: number;
}

const shown = (value: number | undefined, unit: string): string =>
  value === undefined ? 'n/a' : unit === '×' ? value.toFixed(2) : unit === 'MB' ? String(Math.round(value)) : value.toFixed(1);
const operand = (value: number): string => (value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toFixed(2));

/** The targets as a Markdown table (measured vs goal, met or not) and a closing line. */
export function targetsTable(results: TargetResult[]): string {
  const rows = results.map((result) => {
    const ratio =
      result.unit === '×' && result.of !== undefined && result.per !== undefined ? ` (${operand(result.of)} / ${operand(result.per)})` : '';
    const spread = result.min === undefined ? '' : `${shown(result.min, result.unit)}–${shown(result.max, result.unit)}`;
    const verdict = result.met === undefined ? 'not measured' : result.met ? 'met' : '**not met**';
    return `| ${result.name} | ${shown(result.value, result.unit)}${ratio} | ${spread} | ${result.goal} | ${verdict} |`;
  });
  const measured = results.filter((result) => result.met !== undefined);
  const missed = measured.filter((result) => !result.met).map((result) => result.name);
  return [
    '| target | measured (median) | per round min–max | goal | |',
    '| --- | ---: | ---: | --- | --- |',
    ...rows,
    '',
    `targets met: ${measured.length - missed.length} of ${measured.length} measured (${results.length} in all)` +
      (missed.length ? `; not met: ${missed.join('; ')}` : ''),
  ].join('\n');
}

/** The broker floor ratios as a Markdown table with a line that says what they are (and that they are no targets). */
export function brokerFloorTable(results: BrokerFloorResult[]): string {
  const rows = results.map((result) => {
    const ratio = result.of !== undefined && result.per !== undefined ? ` (${result.of.toFixed(1)} / ${result.per.toFixed(1)} µs)` : '';
    const spread = result.min === undefined ? '' : `${shown(result.min, '×')}–${shown(result.max, '×')}`;
    return `| ${result.name} | ${shown(result.value, '×')}${ratio} | ${spread} |`;
  });
  return [
    "Broker's floor for a persistent message (for information, not targets): the broker's CPU per message with our lean " +
      "header table and with no headers at all, each over Celery's full table (raw consumer: per-consumer prefetch 1000, ack every 100)",
    '',
    '| broker CPU per persistent message, ratio | measured (median) | per round min–max |',
    '| --- | ---: | ---: |',
    ...rows,
  ].join('\n');
}
