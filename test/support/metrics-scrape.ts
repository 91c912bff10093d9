/** Prometheus metrics as a user serves and a monitor scrapes them: a hybrid app with `/metrics`, and its samples read back. */
import assert from 'node:assert/strict';
import { ConsoleLogger, Controller, Get, Inject, Res, type INestApplication, type Provider } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Registry } from 'prom-client';
import { BatchesModule, type BatchesModuleOptions } from 'nestjs-batches';
import { waitFor } from './wait.js';
import { startHybrid } from './worker-app.js';

const REGISTRY = Symbol('metrics registry');
export const PREFIX = 'nestjs_batches_';

/** What a user writes: the app's own route serving the registry the module registers on. */
@Controller()
class MetricsController {
  constructor(@Inject(REGISTRY) private readonly registry: Registry) {}

  @Get('metrics')
  async metrics(@Res({ passthrough: true }) response: { setHeader(name: string, value: string): void }): Promise<string> {
    response.setHeader('Content-Type', this.registry.contentType);
    return this.registry.metrics();
  }
}

/** A hybrid app: HTTP (serving `/metrics` from `registry`) plus the batches worker. Returns its base URL. */
export async function startMetricsApp(
  options: BatchesModuleOptions,
  registry: Registry,
  providers: Provider[],
): Promise<{ app: INestApplication; url: string }> {
  const moduleRef = await Test.createTestingModule({
    imports: [BatchesModule.forRoot(options)],
    controllers: [MetricsController],
    providers: [...providers, { provide: REGISTRY, useValue: registry }],
  })
    .setLogger(new ConsoleLogger({ logLevels: process.env.TEST_LOGS ? ['log', 'warn', 'error'] : ['error'] }))
    .compile();
  return startHybrid(moduleRef);
}

/** Samples of a Prometheus text scrape, keyed `name{label="value",…}` with labels sorted. */
function parse(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([^{\s]+)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    assert.ok(match, `unreadable metrics line: ${line}`);
    const labels = [...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(([, name, value]) => `${name}="${value}"`);
    samples.set(key(match[1], labels), Number(match[3]));
  }
  return samples;
}

function key(name: string, labels: string[]): string {
  return labels.length === 0 ? name : `${name}{${labels.toSorted().join(',')}}`;
}

/** The key of our metric `name` (without the prefix) with `labels`. */
export function m(name: string, labels: Record<string, string> = {}): string {
  return key(
    PREFIX + name,
    Object.entries(labels).map(([label, value]) => `${label}="${value}"`),
  );
}

export async function scrape(url: string): Promise<Map<string, number>> {
  const response = await fetch(`${url}/metrics`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parse(await response.text());
}

/** Scrapes until every sample in `expected` has its value (15 s at most), then asserts them all. */
export async function expectMetrics(url: string, expected: Record<string, number>): Promise<Map<string, number>> {
  let samples = new Map<string, number>();
  const reached = (): boolean => Object.entries(expected).every(([name, value]) => samples.get(name) === value);
  await waitFor(async () => {
    samples = await scrape(url);
    return reached();
  }, 'the expected metrics').catch(() => undefined); // the assertion below shows what differs
  assert.deepEqual(Object.fromEntries(Object.keys(expected).map((name) => [name, samples.get(name)])), expected);
  return samples;
}

/** The samples of metric `name` (all its label sets). */
export function family(samples: Map<string, number>, name: string): Record<string, number> {
  return Object.fromEntries([...samples].filter(([each]) => each.startsWith(`${PREFIX}${name}{`)));
}
