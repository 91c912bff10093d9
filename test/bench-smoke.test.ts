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
  it('runs every Node system on a tiny backlog and prints the table, every target line, the JSON and the chart', async () => {
    const out = mkdtempSync(join(tmpdir(), 'bench-'));
    const { stdout } = await run(process.execPath, [BENCH, '--n', '300', '--runs', '1', '--memory-n', '3000', '--quick', '--out', out], {
      timeout: 300_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
      measurements: Array<{ system: string; rate: number; extra?: Record<string, number> }>;
      brokerFloors: Array<{ name: string }>;
    };
    const systems = results.measurements.map((measurement) => measurement.system);
    for (const format of ['full', 'lean']) {
      for (const expected of [
        `raw amqplib [${format}]: per-consumer prefetch 1000, ack every 100`,
        `raw amqplib [${format}]: per-consumer prefetch 2000, ack every 1000`,
        `raw amqplib [${format}]: channel-wide prefetch 1000, ack every 100`,
        `raw amqplib [${format}]: channel-wide prefetch 2000, ack every 1000`,
        `nestjs-batches flushEvery 100 [${format}]`,
        `publish: raw amqplib confirm channel [${format}]`,
        `publish: BatchClient.delay [${format}]`,
      ]) {
        assert.ok(systems.includes(expected), `${expected} missing from ${systems.join(', ')}`);
      }
    }
    for (const expected of [
      // The broker's floor (no header table at all): one raw consumer configuration and its publisher.
      'raw amqplib [no headers]: per-consumer prefetch 1000, ack every 100',
      'publish: raw amqplib confirm channel [no headers]',
      "Nest's RMQ transport, Nest envelope [full]",
      "Nest's RMQ transport, Nest envelope [no headers]",
      'memory:// pipeline flushEvery 100',
      'bare JSON.parse of the same bodies',
    ]) {
      assert.ok(systems.includes(expected), `${expected} missing from ${systems.join(', ')}`);
    }
    assert.ok(results.measurements.every((measurement) => measurement.rate > 0));
    // The with-results row stores (and the bench then deletes) one result per request; the suite's Redis is up.
    const withResults = results.measurements.find(
      (measurement) => measurement.system === 'nestjs-batches flushEvery 100, results in Redis [full]',
    );
    assert.equal(withResults?.extra?.stored, 300);

    const table = readFileSync(join(out, 'table.md'), 'utf8');
    assert.match(table, /^\| ceiling \[full\] \(best of 4: .+\) \| 1 \|/m);
    assert.match(table, /^\| ceiling \[lean\] \(best of 4: .+\) \| 1 \|/m);
    for (const target of [
      'flushEvery 100 / ceiling, messages/s [full]',
      'flushEvery 100 / ceiling, messages/s [lean]',
      'flushEvery 100 / ceiling, consumer CPU per message [full]',
      'flushEvery 100 / ceiling, consumer CPU per message [lean]',
      "flushEvery 100 / Nest's RMQ transport, consumer CPU per message [full]",
      'lean / full, broker CPU per consumed message (flushEvery 100)',
      'BatchClient.delay [lean] / raw confirm publishing [full], messages/s',
      'results in Redis / ignoreResult, messages/s (flushEvery 100 [full])',
      'memory:// pipeline / bare JSON.parse, CPU per message',
      'worker peak RSS draining the backlog, MB (flushEvery 100)',
      'interval flush lateness p99, ms',
    ]) {
      const line = new RegExp(
        `^\\| ${target.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} \\| .+ \\| (met|\\*\\*not met\\*\\*|not measured) \\|$`,
        'm',
      );
      assert.match(stdout, line, `target line '${target}' missing`);
      assert.match(table, line, `target line '${target}' missing from table.md`);
    }
    assert.match(stdout, /^targets met: \d+ of \d+ measured \(11 in all\)/m);
    // The broker floor ratios: printed after the targets, not counted among them.
    const floors = [
      'broker CPU per consumed message, raw consumer: lean / full',
      'broker CPU per consumed message, raw consumer: no headers / full',
      'broker CPU per published message, raw confirm publishing: lean / full',
      'broker CPU per published message, raw confirm publishing: no headers / full',
    ];
    assert.deepEqual(
      results.brokerFloors.map((floor) => floor.name),
      floors,
    );
    for (const floor of floors) {
      // A tiny backlog can cost the broker less than one clock tick: the ratio is then n/a, still with its operands.
      const line = new RegExp(`^\\| ${floor.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} \\| (n/a|\\d+\\.\\d\\d)( \\(.+\\))? \\| .* \\|$`, 'm');
      assert.match(stdout.slice(stdout.indexOf('targets met:')), line, `floor line '${floor}' missing after the targets`);
      assert.match(table, line, `floor line '${floor}' missing from table.md`);
    }
    assert.match(readFileSync(join(out, 'chart.svg'), 'utf8'), /<svg[\s\S]*nestjs-batches flushEvery 100 \[lean\][\s\S]*<\/svg>/);
  });
});
