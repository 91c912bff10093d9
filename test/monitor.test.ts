import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import {
  ConsoleLogger,
  Injectable,
  Module,
  type CanActivate,
  type DynamicModule,
  type ExecutionContext,
  type INestApplication,
  type Provider,
} from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import {
  BatchClient,
  BatchesConfigError,
  BatchesModule,
  BatchesMonitorController,
  BatchesMonitorModule,
  BatchHandler,
  ResultBackend,
  type BatchesModuleOptions,
  type SimpleRequest,
  type MonitorSnapshot,
  type MonitorTaskSnapshot,
} from 'nestjs-batches';
import { AMQP_URL, rabbitSuite } from './support/rabbitmq.js';
import { waitFor, gate } from './support/wait.js';
import { recorder, RecordingLogger, startHybrid } from './support/worker-app.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const SCREENSHOT = join(ROOT, 'test-results', 'monitor.png');

/** A hybrid app (HTTP + the worker on RabbitMQ) as a user builds it, with the monitor's module among its imports. */
async function startApp(
  options: BatchesModuleOptions,
  imports: DynamicModule[],
  providers: Provider[],
): Promise<{ app: INestApplication; url: string }> {
  @Module({ imports: [BatchesModule.forRoot({ broker: AMQP_URL, waitForBroker: true, ...options }), ...imports], providers })
  class MonitoredAppModule {}
  const moduleRef = await Test.createTestingModule({ imports: [MonitoredAppModule] })
    .setLogger(new RecordingLogger())
    .compile();
  return startHybrid(moduleRef);
}

/** A reader of a monitor's event stream: every snapshot it sent, and the raw text (to check what it never contains). */
class SnapshotStream {
  readonly snapshots: MonitorSnapshot[] = [];
  text = '';
  ended = false;
  private readonly abort = new AbortController();

  private constructor(readonly response: Response) {}

  static async open(url: string, headers: Record<string, string> = {}): Promise<SnapshotStream> {
    const controller = new AbortController();
    const response = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: controller.signal });
    const stream = new SnapshotStream(response);
    stream.abort.signal.addEventListener('abort', () => controller.abort());
    if (response.ok) void stream.read();
    return stream;
  }

  get latest(): MonitorSnapshot | undefined {
    return this.snapshots.at(-1);
  }

  /** Waits for a snapshot for which `check` holds, and returns it. */
  async until(what: string, check: (snapshot: MonitorSnapshot) => boolean, timeout = 20_000): Promise<MonitorSnapshot> {
    let found: MonitorSnapshot | undefined;
    await waitFor(
      () => (found = this.snapshots.findLast(check)) !== undefined,
      `a snapshot with ${what} (latest: ${JSON.stringify(this.latest)})`,
      timeout,
    );
    return found as MonitorSnapshot;
  }

  close(): void {
    this.abort.abort();
  }

  private async read(): Promise<void> {
    const decoder = new TextDecoder();
    let pending = '';
    try {
      for await (const chunk of this.response.body as unknown as AsyncIterable<Uint8Array>) {
        const text = decoder.decode(chunk, { stream: true });
        this.text += text;
        pending += text;
        const messages = pending.split('\n\n');
        pending = messages.pop() ?? '';
        for (const message of messages) {
          const data = message
            .split('\n')
            .filter((line) => line.startsWith('data: '))
            .map((line) => line.slice(6))
            .join('\n');
          if (data) this.snapshots.push(JSON.parse(data) as MonitorSnapshot);
        }
      }
    } catch {
      // aborted by close()
    }
    this.ended = true;
  }
}

function taskOf(snapshot: MonitorSnapshot, task: string): MonitorTaskSnapshot {
  const found = snapshot.tasks.find((each) => each.task === task);
  assert.ok(found, `no task '${task}' in ${JSON.stringify(snapshot.tasks.map((each) => each.task))}`);
  return found;
}

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

  it('streams per-task rates, sizes, flush reasons, waits, handler times, gauges and dead letters, and no argument', async () => {
    const queue = suite.queue('monitor.stream');
    const SUM = 'monitor.sum';
    const BLOCK = 'monitor.block';
    const FAIL = 'monitor.fail';
    const blocked = gate();
    const { app, url } = await startApp(
      { defaultQueue: queue },
      [BatchesMonitorModule.forRoot({ refreshInterval: 200 })],
      [
        recorder(SUM, { flushEvery: 3, flushInterval: 300 }, (requests) => requests.map(() => 'private-result')),
        recorder(BLOCK, { flushEvery: 2, flushInterval: 60_000 }, () => blocked.wait),
        recorder(FAIL, { flushEvery: 1, maxRetries: 0 }, () => {
          throw new Error('private-error');
        }),
      ],
    );
    suite.closeAfter(app);
    const client = app.get(BatchClient);
    const stream = await SnapshotStream.open(`${url}/batches/events`);
    suite.closeAfter(stream);

    // The first snapshot comes at once: every handler, nothing counted yet.
    const first = await stream.until('the first snapshot', () => true, 5_000);
    assert.deepEqual(
      first.tasks.map(({ task, queue: on, flushEvery, flushInterval, concurrency }) => ({
        task,
        on,
        flushEvery,
        flushInterval,
        concurrency,
      })),
      [
        { task: BLOCK, on: queue, flushEvery: 2, flushInterval: 60_000, concurrency: 1 },
        { task: FAIL, on: queue, flushEvery: 1, flushInterval: 30_000, concurrency: 1 },
        { task: SUM, on: queue, flushEvery: 3, flushInterval: 300, concurrency: 1 },
      ],
    );
    assert.equal(first.broker, 'connected');
    assert.deepEqual(taskOf(first, SUM).totals, { batches: 0, requests: 0, failedBatches: 0, retried: 0, failed: 0, deadLettered: 0 });

    // 4 requests: a batch of 3 by count, one of 1 by the interval.
    for (let i = 1; i <= 4; i++) await client.delay(SUM, `private-arg-${i}`);
    const summed = await stream.until('both SUM batches', (snapshot) => taskOf(snapshot, SUM).totals.batches === 2);
    const sum = taskOf(summed, SUM);
    assert.deepEqual(sum.flushReasons, { count: 1, interval: 1 });
    assert.equal(sum.totals.requests, 4);
    assert.deepEqual(sum.batchSize, { mean: 2, max: 3 });
    assert.ok(sum.batchesPerSecond > 0 && sum.requestsPerSecond > sum.batchesPerSecond, JSON.stringify(sum));
    assert.ok(sum.oldestWaitMs && sum.oldestWaitMs.max >= 0 && sum.oldestWaitMs.max < 300 + 2_000, JSON.stringify(sum.oldestWaitMs));
    assert.ok(sum.handlerMs && sum.handlerMs.max >= sum.handlerMs.mean, JSON.stringify(sum.handlerMs));
    assert.equal(sum.recent, undefined);

    // Gauges: a batch of 2 held in its handler is in flight, a third request waits in the buffer,
    // and one due in a minute is held on the queue.
    await client.delay(BLOCK, 1);
    await client.delay(BLOCK, 2);
    await client.delay(BLOCK, 3);
    await client.applyAsync(SUM, { args: ['private-arg-later'], countdown: 60_000 });
    const busy = await stream.until('2 in flight, 1 buffered, 1 held', (snapshot) => {
      const block = taskOf(snapshot, BLOCK);
      return block.inFlight === 2 && block.buffered === 1 && snapshot.queues[0].held === 1;
    });
    assert.deepEqual(busy.queues, [{ queue, tasks: [BLOCK, FAIL, SUM], held: 1, deadLetters: 0 }]);
    blocked.open();
    await client.delay(BLOCK, 4);
    await stream.until('BLOCK drained', (snapshot) => {
      const block = taskOf(snapshot, BLOCK);
      return block.totals.requests === 4 && block.inFlight === 0 && block.buffered === 0;
    });

    // A request that always fails: its batch fails, the request is failed and dead-lettered.
    await client.delay(FAIL, 'private-arg-fail');
    const failed = await stream.until('the dead letter', (snapshot) => snapshot.queues[0].deadLetters === 1);
    assert.deepEqual(taskOf(failed, FAIL).totals, { batches: 1, requests: 1, failedBatches: 1, retried: 0, failed: 1, deadLettered: 1 });
    assert.equal(failed.queues[0].lastDeadLetterReason, undefined);
    assert.equal((await suite.rabbit.takeAll(`${queue}.dead`)).length, 1);

    // Rates are over the last 10 s at most (less while counting has just begun).
    assert.ok(failed.windowMs > 0 && failed.windowMs <= 10_000, String(failed.windowMs));

    // Task names and numbers only: no argument, result or error text ever went out.
    assert.doesNotMatch(stream.text, /private-/);
  });

  it('shows the latest requests with their arguments and results only when opted in (forRootAsync)', async () => {
    const queue = suite.queue('monitor.optin');
    const TASK = 'monitor.optin';
    const BROKEN = 'monitor.broken';

    @Injectable()
    class Lookups {
      constructor(private readonly results: ResultBackend) {}

      @BatchHandler(TASK, { flushEvery: 2 })
      async look(requests: SimpleRequest[]): Promise<void> {
        for (const request of requests) {
          if (request.args[0] === 'bad') await this.results.markAsFailure(request.id, new RangeError('no such thing'), request);
          else await this.results.markAsDone(request.id, `done ${String(request.args[0])}`, request);
        }
      }

      @BatchHandler(BROKEN, { flushEvery: 1, maxRetries: 0 })
      broken(): never {
        throw new Error('the lookup service is down');
      }
    }

    const { app, url } = await startApp(
      { defaultQueue: queue },
      [
        BatchesMonitorModule.forRootAsync({
          path: 'admin/batches',
          useFactory: async () => ({ showArguments: true, showResults: true, refreshInterval: 200 }),
        }),
      ],
      [Lookups],
    );
    suite.closeAfter(app);
    const stream = await SnapshotStream.open(`${url}/admin/batches/events`);
    suite.closeAfter(stream);
    const client = app.get(BatchClient);
    await client.applyAsync(TASK, { args: ['good'], kwargs: { tenant: 7 }, taskId: 'optin-good' });
    await client.applyAsync(TASK, { args: ['bad'], taskId: 'optin-bad' });
    const shown = await stream.until('both samples', (snapshot) => (taskOf(snapshot, TASK).recent ?? []).length === 2);
    const recent = (taskOf(shown, TASK).recent ?? []).toSorted((a, b) => a.id.localeCompare(b.id));
    assert.deepEqual(
      recent.map(({ id, state, args, kwargs, outcome }) => ({ id, state, args, kwargs, outcome })),
      [
        { id: 'optin-bad', state: 'FAILURE', args: '["bad"]', kwargs: '{}', outcome: 'RangeError: no such thing' },
        { id: 'optin-good', state: 'SUCCESS', args: '["good"]', kwargs: '{"tenant":7}', outcome: '"done good"' },
      ],
    );
    assert.ok(shown.showArguments && shown.showResults);

    await client.delay(BROKEN, 'x');
    const dead = await stream.until('the dead letter', (snapshot) => snapshot.queues[0].deadLetters === 1);
    assert.match(dead.queues[0].lastDeadLetterReason ?? '', /the lookup service is down/);
    assert.equal(taskOf(dead, BROKEN).recent?.[0]?.outcome, 'Error: the lookup service is down');
    await suite.rabbit.takeAll(`${queue}.dead`);
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

// ---------------------------------------------------------------------------------------------
// A real browser

/** Why the Chromium test cannot run here, or undefined. */
function chromiumMissing(): string | undefined {
  if (existsSync(CHROMIUM)) return undefined;
  return `no Chromium at ${CHROMIUM} (as root: apt-get install chromium; npm test's pretest installs it where it can, or set CHROMIUM)`;
}

type CdpMessage = {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
  sessionId?: string;
};

/**
 * Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON
 * messages ending in NUL on fds 3 and 4), which needs no WebSocket client and no driver package
 * tied to one browser build: Debian's Chromium is whatever version Debian ships.
 */
class Chromium {
  /** Console errors, uncaught exceptions and refused loads (a CSP violation shows up here). */
  readonly problems: string[] = [];
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve(result: Record<string, unknown>): void; reject(error: Error): void }>();
  private session = '';
  private stderr = '';

  private constructor(
    private readonly child: ChildProcess,
    private readonly profile: string,
  ) {
    let buffered = '';
    (child.stdio[4] as Readable).on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      let end: number;
      while ((end = buffered.indexOf('\0')) >= 0) {
        this.receive(JSON.parse(buffered.slice(0, end)) as CdpMessage);
        buffered = buffered.slice(end + 1);
      }
    });
    child.stderr?.on('data', (chunk: Buffer) => (this.stderr = (this.stderr + chunk.toString()).slice(-4_000)));
    child.once('exit', (code, signal) => {
      for (const { reject } of this.waiting.values()) reject(new Error(`Chromium exited (${code ?? signal}): ${this.stderr}`));
      this.waiting.clear();
    });
  }

  static async launch(): Promise<Chromium> {
    const profile = await mkdtemp(join(tmpdir(), 'monitor-chromium-'));
    // prettier-ignore
    const child = spawn(CHROMIUM, [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-extensions', '--disable-dev-shm-usage', '--hide-scrollbars',
      '--mute-audio', `--user-data-dir=${profile}`, '--remote-debugging-pipe', 'about:blank',
    ], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
    const browser = new Chromium(child, profile);
    const { targetInfos } = (await browser.send('Target.getTargets')) as { targetInfos: Array<{ targetId: string; type: string }> };
    const page = targetInfos.find((target) => target.type === 'page');
    const targetId = page ? page.targetId : ((await browser.send('Target.createTarget', { url: 'about:blank' })).targetId as string);
    browser.session = (await browser.send('Target.attachToTarget', { targetId, flatten: true })).sessionId as string;
    await browser.send('Runtime.enable');
    await browser.send('Log.enable');
    await browser.send('Page.enable');
    await browser.send('Emulation.setDeviceMetricsOverride', { width: 1280, height: 900, deviceScaleFactor: 1, mobile: false });
    return browser;
  }

  async open(url: string): Promise<void> {
    const { errorText } = await this.send('Page.navigate', { url });
    if (errorText) throw new Error(`Chromium could not open ${url}: ${String(errorText)}`);
  }

  /** The value of a JavaScript expression in the page. */
  async evaluate<T>(expression: string): Promise<T> {
    const { result, exceptionDetails } = (await this.send('Runtime.evaluate', { expression, returnByValue: true })) as {
      result: { value: T };
      exceptionDetails?: { text: string };
    };
    if (exceptionDetails) throw new Error(`${expression}: ${exceptionDetails.text}`);
    return result.value;
  }

  /** Polls `expression` in the page until it is truthy, and returns that value. */
  async until<T>(expression: string, what: string, timeout = 20_000): Promise<T> {
    let value: T | undefined;
    try {
      await waitFor(async () => Boolean((value = await this.evaluate<T>(expression))), `the page to show ${what}`, timeout, 100);
    } catch (error) {
      // What the page ran into by then (a refused script, an exception) is usually why.
      throw new Error(`${(error as Error).message} (the page's problems: ${this.problems.join('; ') || 'none'})`, { cause: error });
    }
    return value as T;
  }

  async screenshot(file: string): Promise<void> {
    // The page's own height, so the picture has no empty space below it.
    const height = await this.evaluate<number>("Math.ceil(document.querySelector('main').getBoundingClientRect().bottom)");
    await this.send('Emulation.setDeviceMetricsOverride', {
      width: 1280,
      height: Math.max(height, 300),
      deviceScaleFactor: 1,
      mobile: false,
    });
    const { data } = await this.send('Page.captureScreenshot', { format: 'png' });
    await mkdir(join(file, '..'), { recursive: true });
    await writeFile(file, Buffer.from(data as string, 'base64'));
  }

  async close(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve));
      await this.send('Browser.close', {}, false).catch(() => undefined);
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
      if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    }
    await rm(this.profile, { recursive: true, force: true }).catch(() => undefined);
  }

  private send(
    method: string,
    params: Record<string, unknown> = {},
    inSession = method.split('.')[0] !== 'Target',
  ): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    const message: CdpMessage = { id, method, params, ...(inSession && this.session && { sessionId: this.session }) };
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      (this.child.stdio[3] as Writable).write(`${JSON.stringify(message)}\0`);
    });
  }

  private receive(message: CdpMessage): void {
    if (message.id !== undefined) {
      const waiter = this.waiting.get(message.id);
      this.waiting.delete(message.id);
      if (message.error) waiter?.reject(new Error(message.error.message));
      else waiter?.resolve(message.result ?? {});
      return;
    }
    const params = message.params ?? {};
    if (message.method === 'Runtime.exceptionThrown') {
      const details = params.exceptionDetails as { text: string; exception?: { description?: string } };
      this.problems.push(`exception: ${details.exception?.description ?? details.text}`);
    } else if (message.method === 'Runtime.consoleAPICalled' && params.type === 'error') {
      this.problems.push(`console.error: ${JSON.stringify(params.args)}`);
    } else if (message.method === 'Log.entryAdded') {
      const entry = params.entry as { level: string; text: string; url?: string };
      // The favicon-less 404s and the like are not the page's problem; errors of the page itself are.
      if (entry.level === 'error') this.problems.push(`log: ${entry.text} ${entry.url ?? ''}`);
    }
  }
}

/** The text of a count_click tile's value on the page. */
function tile(stat: string): string {
  return `document.querySelector('[data-task="count_click"] [data-stat="${stat}"] .value')?.textContent`;
}

/** The click-counter example, run as a user runs it (`node dist/apps/click-counter/main.js`), as a hybrid app on RabbitMQ. */
class ClickCounterProcess {
  output = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;

  constructor(queue: string) {
    this.child = spawn(process.execPath, [join(ROOT, 'dist/apps/click-counter/main.js')], {
      cwd: ROOT,
      env: { ...process.env, BROKER_URL: AMQP_URL, QUEUE: queue, HTTP_PORT: '0', CLICKS: '0', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    for (const stream of [this.child.stdout, this.child.stderr]) stream?.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /** The page's URL, once the app prints it. */
  async monitorUrl(): Promise<string> {
    await waitFor(() => /monitor: (\S+)/.test(this.output), `the example to start (output: ${this.output.slice(-2_000)})`, 30_000);
    return (/monitor: (\S+)/.exec(this.output) as RegExpExecArray)[1].replace('localhost', '127.0.0.1');
  }

  /** SIGTERM (a graceful close), and SIGKILL if it has not exited `within` ms later. Resolves with how it exited. */
  async stop(within = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; killed: boolean }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const late = Symbol('late');
    let timer: NodeJS.Timeout | undefined;
    const exit = await Promise.race([this.exited, new Promise<typeof late>((resolve) => (timer = setTimeout(resolve, within, late)))]);
    clearTimeout(timer);
    if (exit !== late) return { ...exit, killed: false };
    this.child.kill('SIGKILL');
    return { ...(await this.exited), killed: true };
  }
}

describe('the click-counter example’s monitor page in headless Chromium', { skip: chromiumMissing() ?? false }, () => {
  const suite = rabbitSuite();
  let browser: Chromium | undefined;
  let example: ClickCounterProcess | undefined;
  before(async () => {
    browser = await Chromium.launch();
  });
  after(async () => {
    await example?.stop();
    await browser?.close();
  });

  const requestsShown = `Number(document.querySelector('[data-task="count_click"] [data-stat="totals"]')?.dataset.requests ?? -1)`;

  it('loads, shows count_click, and its numbers follow the clicks; a screenshot is kept', { timeout: 120_000 }, async () => {
    const queue = suite.queue('monitor.example');
    example = new ClickCounterProcess(queue);
    const url = await example.monitorUrl();
    const page = browser as Chromium;
    await page.open(url);

    // The page came up from its own inline script (the CSP let it run) and the stream is live.
    await page.until(`document.querySelector('[data-task="count_click"]') !== null`, 'the example’s task');
    await page.until(`document.getElementById('live').textContent === 'live'`, 'a live stream');
    assert.equal(await page.evaluate<string>(`document.querySelector('[data-task="count_click"] h2').textContent`), 'count_click');
    assert.match(
      await page.evaluate<string>(`document.querySelector('[data-task="count_click"] .meta').textContent`),
      /flushEvery 100 · flushInterval 10 s/,
    );
    assert.equal(await page.evaluate<number>(requestsShown), 0);

    // Clicks sent as a Python Celery producer would: 250 in bursts, then 130 more.
    const click = async (count: number): Promise<void> => {
      for (let i = 0; i < count; i++)
        await suite.rabbit.publishTask(queue, { task: 'count_click', args: [`https://example.com/${i % 7}`] });
    };
    for (const burst of [80, 60, 110]) await click(burst);
    await page.until(`${requestsShown} >= 200`, 'the two full batches', 30_000);
    assert.notEqual(await page.evaluate<string>(tile('requestsPerSecond')), '0');
    assert.notEqual(await page.evaluate<string>(tile('batchesPerSecond')), '0');
    // The last 50 leave by the 10 s interval.
    await page.until(
      `${requestsShown} === 250 && document.querySelector('[data-task="count_click"] [data-reason="interval"]') !== null`,
      'the interval flush',
      30_000,
    );
    await click(130);
    await page.until(`${requestsShown} > 250`, 'the next batch', 30_000);
    assert.equal(await page.evaluate<string>(tile('deadLettered')), '0');
    assert.match(await page.evaluate<string>(`document.querySelector('[data-queue] td').textContent`), /^test\.monitor\.example\./);
    // No argument on the page: the clicked URLs stay private.
    assert.doesNotMatch(await page.evaluate<string>('document.body.innerText'), /example\.com/);
    assert.deepEqual(page.problems, []);

    await page.screenshot(SCREENSHOT);
    assert.ok(existsSync(SCREENSHOT));

    // The example shuts down gracefully while the page is still open: its stream does not hold the server.
    const { code, signal, killed } = await example.stop();
    assert.ok(!killed, `the example did not exit within 20 s of SIGTERM: ${example.output.slice(-2_000)}`);
    assert.ok(code === 0 || signal === 'SIGTERM', `the example exited with ${code ?? signal}: ${example.output.slice(-2_000)}`);
    await page.until(`document.getElementById('live').textContent === 'app stopped'`, 'that the app stopped');
    assert.deepEqual(page.problems, []);
  });
});
