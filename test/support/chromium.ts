import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { waitFor } from './wait.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** Why the Chromium test cannot run here, or undefined. */
export function chromiumMissing(): string | undefined {
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
export class Chromium {
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
