import 'reflect-metadata';
import type { Measurement, RunOptions } from './measurement.js';
import { batchesWorker } from './systems/batches-worker.js';
import { ceiling } from './systems/ceiling.js';
import { bareParse } from './systems/json-parse.js';
import { intervalLateness } from './systems/lateness.js';
import { memoryPipeline } from './systems/memory-pipeline.js';
import { nestRmq } from './systems/nest-rmq.js';
import { clientPublish, rawPublish } from './systems/publish.js';

/** Runs one system in this process (so its CPU and RSS are its own) and prints its Measurement. */
const systems: Record<string, (options: RunOptions) => Promise<Measurement>> = {
  ceiling,
  'nestjs-batches': batchesWorker,
  'nest-rmq': nestRmq,
  'publish-raw': rawPublish,
  'publish-client': clientPublish,
  'memory-pipeline': memoryPipeline,
  'json-parse': bareParse,
  lateness: intervalLateness,
};

const [name, options] = process.argv.slice(2);
const run = systems[name];
if (!run) throw new Error(`unknown system ${name}; one of ${Object.keys(systems).join(', ')}`);
const measurement = await run(JSON.parse(options) as RunOptions);
process.stdout.write(`${JSON.stringify(measurement)}\n`);
process.exit(0);
