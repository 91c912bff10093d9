import { createHash } from 'node:crypto';
import { monitorClient } from './monitor-page.client.js';

const STYLE = `
:root { color-scheme: light dark; --bg: #f5f6f8; --card: #fff; --ink: #1d2433; --muted: #667085; --line: #e4e7ec;
  --accent: #2f6fde; --accent-soft: #e3ecfc; --ok: #13795b; --ok-soft: #dcf3ea; --bad: #c4320a; --bad-soft: #fde8e1;
  --wait: #9a6700; --wait-soft: #fdf1d6; }
@media (prefers-color-scheme: dark) { :root { --bg: #0f1320; --card: #171c2b; --ink: #e6e9f0; --muted: #98a2b3; --line: #2a3145;
  --accent: #6d9cf5; --accent-soft: #1e2a47; --ok: #4cc38a; --ok-soft: #16332a; --bad: #ff7a59; --bad-soft: #3a1d17;
  --wait: #e3b341; --wait-soft: #3a2f12; } }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif; }
body > header { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; justify-content: space-between; padding: 14px 28px;
  background: var(--card); border-bottom: 1px solid var(--line); }
.brand { display: flex; align-items: baseline; gap: 10px; }
h1 { margin: 0; font-size: 18px; letter-spacing: .01em; }
#host { color: var(--muted); }
.status { display: flex; gap: 8px; align-items: center; color: var(--muted); font-size: 12px; }
.pill { padding: 2px 10px; border-radius: 999px; font-size: 12px; font-weight: 600; background: var(--line); color: var(--muted); }
.pill.ok { background: var(--ok-soft); color: var(--ok); }
.pill.wait { background: var(--wait-soft); color: var(--wait); }
.pill.bad { background: var(--bad-soft); color: var(--bad); }
main { max-width: 1280px; margin: 0 auto; padding: 20px 28px 32px; }
#tasks { display: grid; gap: 18px; }
.task, .queues { background: var(--card); border: 1px solid var(--line); border-radius: 12px; padding: 16px 20px 14px; }
.task header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 14px; margin-bottom: 12px; }
h2 { margin: 0; font-size: 17px; font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; }
h3 { margin: 14px 0 6px; font-size: 13px; color: var(--muted); font-weight: 600; }
.meta { margin: 0; color: var(--muted); font-size: 12.5px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(138px, 1fr)); gap: 10px; }
.tile { position: relative; display: flex; flex-direction: column; min-height: 104px; padding: 10px 12px 30px; border: 1px solid var(--line);
  border-radius: 10px; overflow: hidden; }
.label { font-size: 11.5px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.value { font-size: 24px; font-weight: 650; font-variant-numeric: tabular-nums; line-height: 1.25; margin-top: 2px; }
.value.bad { color: var(--bad); }
.note { font-size: 12px; color: var(--muted); font-variant-numeric: tabular-nums; min-height: 1.45em; }
.spark { position: absolute; left: 0; right: 0; bottom: 0; width: 100%; height: 26px; opacity: .9; pointer-events: none; }
.spark polyline { fill: none; stroke: var(--accent); stroke-width: 1.5; vector-effect: non-scaling-stroke; }
.spark polygon { fill: var(--accent-soft); stroke: none; }
.bar { height: 4px; margin-top: 4px; border-radius: 2px; background: var(--accent-soft); }
.fill { height: 100%; width: 0; border-radius: 2px; background: var(--accent); transition: width .3s; }
.reasons { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin-top: 12px; font-size: 12.5px; }
.caption { color: var(--muted); margin-right: 2px; }
.reason { padding: 1px 9px; border-radius: 999px; background: var(--accent-soft); color: var(--ink); }
.reason b { font-variant-numeric: tabular-nums; }
.reason-shutdown, .reason-evicted { background: var(--wait-soft); }
.totals { margin: 8px 0 0; color: var(--muted); font-size: 12.5px; font-variant-numeric: tabular-nums; }
.quiet { color: var(--muted); font-style: italic; }
table { width: 100%; border-collapse: collapse; font-size: 13px; }
th { text-align: left; font-weight: 600; color: var(--muted); font-size: 12px; border-bottom: 1px solid var(--line); padding: 6px 8px; }
td { border-bottom: 1px solid var(--line); padding: 6px 8px; vertical-align: top; word-break: break-all; }
tr:last-child td { border-bottom: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; word-break: normal; }
td.bad { color: var(--bad); font-weight: 600; }
tr.failed td { color: var(--bad); }
.recent td { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 12px; }
.queues { margin-top: 18px; }
.queues h2 { font-family: inherit; font-size: 15px; margin-bottom: 6px; }
.reason-text { color: var(--muted); font-size: 12px; }
#empty { padding: 28px; text-align: center; color: var(--muted); background: var(--card); border: 1px dashed var(--line); border-radius: 12px; }
.foot { margin: 16px 2px 0; color: var(--muted); font-size: 12px; }
`;

const SCRIPT = `(${monitorClient.toString()})();`;

/** A task card's tiles: `data-stat` is what the script fills in; `spark` draws the last minute. */
const TILES: ReadonlyArray<{ stat: string; label: string; spark?: true; bar?: true }> = [
  { stat: 'batchesPerSecond', label: 'Batches / s', spark: true },
  { stat: 'requestsPerSecond', label: 'Requests / s', spark: true },
  { stat: 'batchSize', label: 'Batch size', bar: true },
  { stat: 'oldestWaitMs', label: 'Oldest wait', spark: true },
  { stat: 'handlerMs', label: 'Handler time', spark: true },
  { stat: 'buffered', label: 'Buffered', spark: true },
  { stat: 'inFlight', label: 'In flight', spark: true },
  { stat: 'deadLettered', label: 'Dead letters' },
];

const TASK_CARD = `<article class="task">
  <header><h2></h2><p class="meta"></p></header>
  <div class="tiles">
${TILES.map(
  ({ stat, label, spark, bar }) =>
    `    <div class="tile" data-stat="${stat}"><span class="label">${label}</span><span class="value">–</span><span class="note"></span>` +
    (bar ? '<div class="bar"><div class="fill"></div></div>' : '') +
    (spark ? '<svg class="spark" preserveAspectRatio="none"><polygon/><polyline/></svg>' : '') +
    '</div>',
).join('\n')}
  </div>
  <div class="reasons"></div>
  <p class="totals" data-stat="totals"></p>
  <div class="recent"></div>
</article>`;

const sha256 = (text: string): string => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

/** The page, whole: no file, CDN or font to fetch. */
export const MONITOR_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Batches</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<header>
  <div class="brand"><h1>Batches</h1><span id="host"></span></div>
  <div class="status"><span id="updated"></span><span id="broker" class="pill">broker</span><span id="live" class="pill wait">connecting…</span></div>
</header>
<main>
  <p id="empty" hidden>This app has no <code>@BatchHandler</code>.</p>
  <section id="tasks"></section>
  <section class="queues">
    <h2>Queues</h2>
    <table>
      <thead><tr><th>Queue</th><th>Tasks</th><th class="num">Held until ETA</th><th class="num">Dead letters</th><th id="reason-head" hidden>Latest dead-letter reason</th></tr></thead>
      <tbody id="queues-body"></tbody>
    </table>
  </section>
  <p class="foot" id="foot"></p>
</main>
<template id="task-card">${TASK_CARD}</template>
<script>${SCRIPT}</script>
</body>
</html>
`;

/**
 * Only the page's own inline style and script run, and it talks only to its own origin (the event
 * stream): a page of numbers needs nothing else, and a compromised value cannot load or send anything.
 */
export const MONITOR_PAGE_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');
