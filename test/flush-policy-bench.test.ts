import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const BENCH = fileURLToPath(new URL('../apps/bench/flush-policy/main.js', import.meta.url));

// Keeps `npm run bench:flush` working on RabbitMQ and Redis; it checks what is printed, never the figures.
describe('flush policy benchmark smoke run', () => {
  it('prints the latency and batch-size table for every load and policy, and every target line', async () => {
    const out = mkdtempSync(join(tmpdir(), 'bench-flush-'));
    const { stdout } = await run(process.execPath, [BENCH, '--quick', '--duration', '2', '--runs', '1', '--out', out], {
      timeout: 240_000,
    });
    assert.match(
      stdout,
      /\| load \| policy \| offered req\/s \| → handler start p50 \/ p99 ms \| → result stored p50 \/ p99 ms \| mean batch \|/,
    );
    for (const load of ['10 %', '50 %', '90 %', '120 %']) {
      for (const policy of ['fixed', 'adaptive'])
        assert.match(stdout, new RegExp(`\\| ${load} \\| ${policy} \\| \\d`), `${load} ${policy} row`);
    }
    assert.match(stdout, /\| target \| measured \(medians\) \| per round \| goal \| met \|/);
    for (const target of [
      /\| p99 arrival → handler start at 10 % load, adaptive \/ fixed \| ([\d.]+|n\/a) \| .* \| ≤ 0\.10 \| (met|NOT MET) \|/,
      /\| p99 arrival → result stored at 10 % load, adaptive \/ fixed \| ([\d.]+|n\/a) \| .* \| ≤ 0\.10 \| (met|NOT MET) \|/,
      /\| throughput at 120 % load, adaptive \/ fixed \| ([\d.]+|n\/a) \| .* \| ≥ 0\.95 \| (met|NOT MET) \|/,
      /\| mean batch size at 120 % load, adaptive \/ flushEvery \(100\) \| ([\d.]+|n\/a) \| .* \| ≥ 0\.90 \| (met|NOT MET) \|/,
    ]) {
      assert.match(stdout, target);
    }
    const results = JSON.parse(readFileSync(join(out, 'flush-policy.json'), 'utf8')) as { results: Array<{ missing: number }> };
    assert.equal(results.results.length, 8);
    assert.ok(
      results.results.every((result) => result.missing === 0),
      'every request sent got its result',
    );
    assert.match(readFileSync(join(out, 'flush-policy.svg'), 'utf8'), /<svg[\s\S]*adaptive[\s\S]*<\/svg>/);
    assert.match(readFileSync(join(out, 'flush-policy.md'), 'utf8'), /\| 120 % \| adaptive \|/);
  });
});
