import { MeasuredWindow, type Measurement, type RunOptions } from '../measurement.js';
import { memoryMessage, WARM_UP } from './memory-pipeline.js';

export const BARE_PARSE = 'bare JSON.parse of the same bodies';

/**
 * What any consumer must spend on a message at least: `JSON.parse` of its UTF-8 body, for the same
 * bodies the memory:// pipeline runs, after the same warm-up. The floor its CPU per message is held against.
 */
export function bareParse({ n }: RunOptions): Promise<Measurement> {
  const bodies = Array.from({ length: n + WARM_UP }, (_, i) => memoryMessage(i).body);
  const window = new MeasuredWindow();
  let checksum = 0;
  for (let i = 0; i < bodies.length; i++) {
    if (i === WARM_UP) window.begin();
    // Reading a field keeps the parse from being optimized away.
    checksum += (JSON.parse(bodies[i].toString('utf8')) as [number[]])[0][0];
  }
  window.end();
  if (checksum !== (bodies.length * (bodies.length - 1)) / 2) throw new Error(`parsed the wrong arguments (checksum ${checksum})`);
  return Promise.resolve(window.measurement(BARE_PARSE, n));
}
