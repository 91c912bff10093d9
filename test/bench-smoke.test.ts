import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const BENCH = fileURLToPath(new URL('../apps/bench/main.js', import.meta.url));

// Keeps `npm run bench` working; it measures nothing here (speed is never asserted by a test).
describe('benchmark smoke run', () => {
  it('runs every Node system on a tiny backlog and writes the table, JSON and chart', async () => {
    const out = mkdtempSync(join(tmpdir(), 'bench-'));
    await run(process.execPath, [BENCH, '--n', '300', '--runs', '1', '--quick', '--out', out], { timeout: 120_000 });
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
      measurements: Array<{ system: string; rate: number }>;
    };
    const systems = results.measurements.map((measurement) => measurement.system);
    for (const expected of [
      'ceiling (raw amqplib)',
      'nestjs-batches flushEvery 1',
      'nestjs-batches flushEvery 1000',
      "Nest's RMQ transport (Nest messages)",
      'publish: BatchClient.delay',
      'memory:// pipeline flushEvery 100',
    ]) {
      assert.ok(systems.includes(expected), `${expected} missing from ${systems.join(', ')}`);
    }
    assert.ok(results.measurements.every((measurement) => measurement.rate > 0));
    assert.match(readFileSync(join(out, 'chart.svg'), 'utf8'), /<svg[\s\S]*nestjs-batches[\s\S]*<\/svg>/);
    assert.match(readFileSync(join(out, 'table.md'), 'utf8'), /\| ceiling \(raw amqplib\) \|/);
  });
});
