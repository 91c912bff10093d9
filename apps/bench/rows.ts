import { randomBytes } from 'node:crypto';
import { formatLabel, isCeleryBacklog, type CeleryBacklogFormat } from './backlog.js';
import { REDIS_URL, type CeleryFormat, type Measurement } from './measurement.js';
import type { Backlog, Runner } from './runner.js';
import { batchesWorkerName } from './systems/batches-worker.js';
import { CEILING_CONFIGS, ceilingName } from './systems/ceiling.js';
import { celeryName, celeryWorker, type CeleryPool } from './systems/celery.js';
import { BARE_PARSE } from './systems/json-parse.js';
import { LATENESS } from './systems/lateness.js';
import { deleteResults } from './systems/redis-results.js';

export const NEST_MESSAGES = "Nest's RMQ transport, Nest envelope [no headers]";
export const NEST_FULL_HEADERS = "Nest's RMQ transport, Nest envelope [full]";
export const MEMORY_PIPELINE = 'memory:// pipeline flushEvery 100';
/** The raw consumer's first configuration on a backlog of `format`: the broker's floor per consumed message. */
export const floorConsumerName = (format: CeleryBacklogFormat): string => ceilingName(formatLabel(format), CEILING_CONFIGS[0]);
export const rawPublishName = (format: CeleryBacklogFormat): string => `publish: raw amqplib confirm channel [${formatLabel(format)}]`;
export const clientPublishName = (format: CeleryFormat): string => `publish: BatchClient.delay [${format}]`;

export interface Plan {
  /** RabbitMQ backlog of every consumer row but Python Celery's. */
  n: number;
  celeryN: number;
  memoryN: number;
  /** Python Celery rows (Celery importable, not --quick). */
  celery: boolean;
  /** With-results rows (Redis answers). */
  redis: boolean;
  /** nestjs-batches at flushEvery 1, 10 and 1000 too. */
  sweep: boolean;
  /** The interval lateness row (not --quick). */
  lateness: boolean;
}

/** One step of a round: what it reports (in table order) and how to run it. */
export interface Row {
  systems: string[];
  run: (round: number) => Promise<Measurement[]>;
}

/** `xxxxxxxx-xxxx-xxxx-xxxx`: the first four groups of the task ids of one with-results backlog. */
function idPrefix(): string {
  const hex = randomBytes(10).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}`;
}

/**
 * The rows of one round, in table order (main.ts rotates them from round to round). Backlogs of
 * N messages in a Celery format are filled by the raw confirm publisher (or, for flushEvery 100,
 * by `BatchClient.delay`), and that publishing is measured too: publishing costs no extra step.
 */
export function benchRows(runner: Runner, plan: Plan): Row[] {
  const { n } = plan;
  /** A consumer of a backlog; keeps the publisher's figures when the backlog is an N-message Celery one. */
  const consumerRow = (
    system: string,
    backlog: (() => Backlog) | Backlog,
    consume: (queue: string) => Promise<Measurement>,
    after?: (consumed: Measurement, backlog: Backlog) => Promise<void>,
  ): Row => {
    const { format, count, publisher = 'raw' } = typeof backlog === 'function' ? backlog() : backlog;
    const publishes = count === n && isCeleryBacklog(format);
    const published = publishes
      ? [publisher === 'raw' ? rawPublishName(format) : clientPublishName(format === 'lean' ? 'lean' : 'full')]
      : [];
    return {
      systems: [system, ...published],
      run: async () => {
        const each = typeof backlog === 'function' ? backlog() : backlog;
        const { published: publishing, consumed } = await runner.drain(each, consume);
        await after?.(consumed, each);
        return publishes && publishing ? [consumed, publishing] : [consumed];
      },
    };
  };
  /** Task ids of a fresh prefix each run; the row counts (and deletes) the results stored under it, so it shows they were all there. */
  const resultsRow = (system: string, count: number, consume: (queue: string) => Promise<Measurement>): Row =>
    consumerRow(
      system,
      () => ({ format: 'full', count, idPrefix: idPrefix() }),
      consume,
      async (consumed, { idPrefix: prefix = '' }) => {
        consumed.extra = { ...consumed.extra, stored: await deleteResults(prefix) };
      },
    );

  const rows: Row[] = [];
  for (const format of ['full', 'lean'] as const) {
    for (const config of CEILING_CONFIGS) {
      const system = ceilingName(format, config);
      rows.push(consumerRow(system, { format, count: n }, (queue) => runner.child('ceiling', { n, queue, format, ...config })));
    }
    const f100 = batchesWorkerName(100, format, false);
    rows.push(
      consumerRow(f100, { format, count: n, publisher: 'client' }, (queue) =>
        runner.child('nestjs-batches', { n, queue, flushEvery: 100, format }),
      ),
    );
    if (format === 'full' && plan.redis) {
      const system = batchesWorkerName(100, format, true);
      rows.push(
        resultsRow(system, n, (queue) => runner.child('nestjs-batches', { n, queue, flushEvery: 100, format, resultBackend: REDIS_URL })),
      );
    }
    if (format === 'full' && plan.sweep) {
      for (const flushEvery of [1, 10, 1000]) {
        const system = batchesWorkerName(flushEvery, format, false);
        rows.push(consumerRow(system, { format, count: n }, (queue) => runner.child('nestjs-batches', { n, queue, flushEvery, format })));
      }
    }
  }
  // The broker's floor for a persistent message: the lean message's properties and no header table. Only
  // the first raw configuration (the floor's broker figures, not a ceiling: withCeilings reads [full] and [lean]).
  rows.push(
    consumerRow(floorConsumerName('no-headers'), { format: 'no-headers', count: n }, (queue) =>
      runner.child('ceiling', { n, queue, backlog: 'no-headers', ...CEILING_CONFIGS[0] }),
    ),
  );
  rows.push(
    consumerRow(NEST_FULL_HEADERS, { format: 'nest-celery-headers', count: n }, (queue) =>
      runner.child('nest-rmq', { n, queue, variant: 'Nest envelope [full]' }),
    ),
    consumerRow(NEST_MESSAGES, { format: 'nest', count: n }, (queue) =>
      runner.child('nest-rmq', { n, queue, variant: 'Nest envelope [no headers]' }),
    ),
  );
  if (plan.celery) {
    const celeryN = plan.celeryN;
    for (const pool of ['solo', 'prefork'] as CeleryPool[]) {
      const system = celeryName(pool, false);
      rows.push(consumerRow(system, { format: 'full', count: celeryN }, (queue) => celeryWorker({ n: celeryN, queue }, pool)));
    }
    if (plan.redis) {
      const system = celeryName('solo', true);
      rows.push(resultsRow(system, celeryN, (queue) => celeryWorker({ n: celeryN, queue, resultBackend: REDIS_URL }, 'solo')));
    }
  }
  // Back to back, in alternating order: the pipeline's CPU per message is held against the bare parse's.
  rows.push({
    systems: [MEMORY_PIPELINE, BARE_PARSE],
    run: async (round) => {
      const pipeline = (): Promise<Measurement> => runner.child('memory-pipeline', { n: plan.memoryN, queue: 'bench', flushEvery: 100 });
      const parse = (): Promise<Measurement> => runner.child('json-parse', { n: plan.memoryN });
      await runner.brokerQuiet();
      return round % 2 ? [await pipeline(), await parse()] : [await parse(), await pipeline()];
    },
  });
  if (plan.lateness) {
    rows.push(consumerRow(LATENESS, { format: 'full', count: 0 }, (queue) => runner.child('lateness', { n, queue })));
  }
  return rows;
}
