import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConsoleLogger, Injectable, type CanActivate, type DynamicModule, type ExecutionContext } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { BatchesConfigError, BatchesModule, BatchesMonitorController, BatchesMonitorModule } from 'nestjs-batches';
import { startApp } from './support/monitored-app.js';
import { rabbitSuite } from './support/rabbitmq.js';
import { SnapshotStream } from './support/snapshot-stream.js';
import { waitFor } from './support/wait.js';
import { recorder } from './support/worker-app.js';

// How the page is served (path, policy, guards, shutdown, options); what its stream shows is in monitor-stream.test.ts.

/** Compiles (and closes) a module with `imports`: where option errors surface. */
async function build(imports: DynamicModule[]): Promise<void> {
  const moduleRef = await Test.createTestingModule({ imports })
    .setLogger(new ConsoleLogger({ logLevels: [] }))
    .compile();
  await moduleRef.close();
}

describe('BatchesMonitorModule over HTTP, on RabbitMQ', () => {
  const suite = rabbitSuite();

  it('serves one self-contained page under its path, whose policy lets only its own script, style and origin in', async () => {
    const queue = suite.queue('monitor.page');
    const { app, url } = await startApp(
      { defaultQueue: queue },
      [BatchesMonitorModule.forRoot({ path: '/ops/batches' })],
      [recorder('monitor.page', { flushEvery: 2 })],
    );
    suite.closeAfter(app);

    const response = await fetch(`${url}/ops/batches`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'text/html; charset=utf-8');
    const csp = response.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'sha256-[A-Za-z0-9+/]+=*'(;|$)/);
    assert.match(csp, /connect-src 'self'/);
    const page = await response.text();
    assert.match(page, /^<!doctype html>/);
    // Nothing to fetch from anywhere: no external script, stylesheet, font or image.
    assert.deepEqual(
      [...page.matchAll(/https?:\/\/[^\s'"`)]+/g)].map(([match]) => match),
      [],
    );
    assert.doesNotMatch(page, /<script[^>]+src=|<link[^>]+stylesheet|@import|url\(/);

    // Its stream is beside it; the default path is not served.
    const stream = await SnapshotStream.open(`${url}/ops/batches/events`);
    suite.closeAfter(stream);
    assert.equal(stream.response.status, 200);
    assert.equal(stream.response.headers.get('content-type'), 'text/event-stream');
    assert.equal((await stream.until('the task', (snapshot) => snapshot.tasks.length > 0, 5_000)).tasks[0].task, 'monitor.page');
    assert.equal((await fetch(`${url}/batches`)).status, 404);
  });

  it("is guarded by the app's own guards: a global guard that refuses answers 403 on the page and its stream", async () => {
    @Injectable()
    class MonitorKeyGuard implements CanActivate {
      canActivate(context: ExecutionContext): boolean {
        if (context.getClass() !== BatchesMonitorController) return true;
        return context.switchToHttp().getRequest<{ headers: Record<string, string | undefined> }>().headers['x-monitor-key'] === 'letmein';
      }
    }
    const queue = suite.queue('monitor.guard');
    const { app, url } = await startApp(
      { defaultQueue: queue },
      [BatchesMonitorModule.forRoot()],
      [recorder('monitor.guard', { flushEvery: 2 }), { provide: APP_GUARD, useClass: MonitorKeyGuard }],
    );
    suite.closeAfter(app);

    for (const path of ['/batches', '/batches/events']) {
      const refused = await fetch(`${url}${path}`);
      assert.equal(refused.status, 403, path);
      assert.doesNotMatch(await refused.text(), /monitor\.guard/);
    }
    assert.equal((await fetch(`${url}/batches`, { headers: { 'x-monitor-key': 'letmein' } })).status, 200);
    const stream = await SnapshotStream.open(`${url}/batches/events`, { 'x-monitor-key': 'letmein' });
    suite.closeAfter(stream);
    assert.equal(stream.response.status, 200);
    await stream.until('the task', (snapshot) => snapshot.tasks.some((task) => task.task === 'monitor.guard'), 5_000);
  });

  it('ends open streams when the app closes, instead of waiting for the pages to leave', async () => {
    const queue = suite.queue('monitor.close');
    const { app, url } = await startApp(
      { defaultQueue: queue },
      [BatchesMonitorModule.forRoot()],
      [recorder('monitor.close', { flushEvery: 2 })],
    );
    const stream = await SnapshotStream.open(`${url}/batches/events`);
    await stream.until('a snapshot', () => true, 5_000);
    await app.close();
    await waitFor(() => stream.ended, 'the stream to end with the app', 5_000);
  });

  it('refuses options that cannot work, naming the option', async () => {
    await assert.rejects(build([BatchesModule.forRoot(), BatchesMonitorModule.forRoot({ refreshInterval: 5 })]), (error: Error) => {
      assert.ok(error instanceof BatchesConfigError);
      assert.match(error.message, /`refreshInterval` must be an integer from 100 to 10000/);
      return true;
    });
    assert.throws(() => BatchesMonitorModule.forRoot({ path: 'batches?x=1' }), /`path` must be a route path/);
    await assert.rejects(
      build([BatchesModule.forRoot(), BatchesMonitorModule.forRootAsync({ useFactory: () => ({ path: '/x' }) as object })]),
      /`path` is fixed when the app starts: pass it to forRootAsync\(\{ path \}\)/,
    );
    await assert.rejects(build([BatchesMonitorModule.forRoot()]), /import BatchesModule\.forRoot\(\)/);
  });
});
