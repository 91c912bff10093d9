import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Chromium, chromiumMissing } from './support/chromium.js';
import { ClickCounterProcess } from './support/click-counter-process.js';
import { rabbitSuite } from './support/rabbitmq.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SCREENSHOT = join(ROOT, 'test-results', 'monitor.png');

/** The text of a count_click tile's value on the page. */
function tile(stat: string): string {
  return `document.querySelector('[data-task="count_click"] [data-stat="${stat}"] .value')?.textContent`;
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
