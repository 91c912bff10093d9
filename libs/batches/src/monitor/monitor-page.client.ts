// The page's script must be self-contained (it is inlined by its source): its helpers live inside it.
// oxlint-disable unicorn/consistent-function-scoping
import type { MonitorQueueSnapshot, MonitorSnapshot, MonitorSpread, MonitorTaskSnapshot } from './monitor-snapshot.js';

/**
 * The monitor page's script, run in the browser: its source is inlined into the page
 * (`monitorClient.toString()`), so it must use nothing from outside its own body. It builds the page
 * from each snapshot of `<page path>/events` with `textContent` only, never markup from the data.
 */
export function monitorClient(): void {
  /** Snapshots drawn in each sparkline. */
  const HISTORY = 60;

  /** A task's card (cloned from the page's `#task-card` template) and its sparklines' values. */
  interface Card {
    root: HTMLElement;
    history: Map<string, number[]>;
  }

  const byId = (id: string): HTMLElement => {
    const found = document.getElementById(id);
    if (!found) throw new Error(`#${id} missing`);
    return found;
  };
  const element = <K extends keyof HTMLElementTagNameMap>(tag: K, className?: string, text?: string): HTMLElementTagNameMap[K] => {
    const created = document.createElement(tag);
    if (className) created.className = className;
    if (text !== undefined) created.textContent = text;
    return created;
  };
  const part = (root: Element, selector: string): HTMLElement => {
    const found = root.querySelector<HTMLElement>(selector);
    if (!found) throw new Error(`${selector} missing`);
    return found;
  };

  const integer = (value: number): string => Math.round(value).toLocaleString('en-US');
  const rate = (value: number): string =>
    value === 0 ? '0' : value < 10 ? value.toFixed(2) : value < 100 ? value.toFixed(1) : integer(value);
  const size = (value: number): string => (Number.isInteger(value) ? integer(value) : value.toFixed(1));
  const duration = (ms: number): string => {
    if (ms < 1) return `${ms.toFixed(2)} ms`;
    if (ms < 1_000) return `${Math.round(ms)} ms`;
    // parseFloat drops trailing zeros: a flushInterval of 10 000 reads `10 s`.
    if (ms < 60_000) return `${parseFloat((ms / 1_000).toFixed(ms < 10_000 ? 2 : 1))} s`;
    return `${parseFloat((ms / 60_000).toFixed(1))} min`;
  };
  const clock = (at: number): string => new Date(at).toLocaleTimeString('en-GB');

  const cards = new Map<string, Card>();
  const tasksRoot = byId('tasks');
  const template = byId('task-card') as HTMLTemplateElement;

  function card(task: string): Card {
    const existing = cards.get(task);
    if (existing) return existing;
    const root = template.content.firstElementChild?.cloneNode(true) as HTMLElement;
    root.dataset.task = task;
    part(root, 'h2').textContent = task;
    for (const svg of root.querySelectorAll('svg')) svg.setAttribute('viewBox', `0 0 ${HISTORY - 1} 20`);
    tasksRoot.append(root);
    const created: Card = { root, history: new Map() };
    cards.set(task, created);
    return created;
  }

  function set(target: Card, key: string, value: string, note = ''): void {
    const tile = part(target.root, `[data-stat="${key}"]`);
    const [shown, noted] = [part(tile, '.value'), part(tile, '.note')];
    if (shown.textContent !== value) shown.textContent = value;
    if (noted.textContent !== note) noted.textContent = note;
  }

  function plot(target: Card, key: string, value: number): void {
    const series = target.history.get(key) ?? [];
    series.push(value);
    if (series.length > HISTORY) series.shift();
    target.history.set(key, series);
    // The newest value at the right edge, one step per snapshot; scaled to the largest value shown.
    const top = Math.max(...series, 1e-9);
    const offset = HISTORY - series.length;
    const points = series.map((each, i) => `${offset + i},${(19.5 - (each / top) * 18).toFixed(2)}`);
    const tile = part(target.root, `[data-stat="${key}"]`);
    tile.querySelector('polyline')?.setAttribute('points', points.join(' '));
    tile.querySelector('polygon')?.setAttribute('points', `${offset},20 ${points.join(' ')} ${HISTORY - 1},20`);
  }

  function spreadText(spread: MonitorSpread | null, format: (value: number) => string): [string, string] {
    return spread ? [format(spread.mean), `max ${format(spread.max)}`] : ['–', 'none in window'];
  }

  function renderTask(task: MonitorTaskSnapshot, snapshot: MonitorSnapshot): void {
    const target = card(task.task);
    const policy = task.flush === 'adaptive' ? 'adaptive flush' : 'fixed flush';
    part(target.root, '.meta').textContent = [
      `queue ${task.queue}`,
      `flushEvery ${integer(task.flushEvery)}`,
      `flushInterval ${duration(task.flushInterval)}`,
      `concurrency ${task.concurrency}`,
      policy + (task.grouped ? ', by key' : ''),
    ].join(' · ');

    const window = `last ${Math.round(snapshot.windowMs / 1000)} s`;
    set(target, 'batchesPerSecond', rate(task.batchesPerSecond), window);
    set(target, 'requestsPerSecond', rate(task.requestsPerSecond), window);
    const [sizeValue, sizeNote] = spreadText(task.batchSize, size);
    set(target, 'batchSize', sizeValue, task.batchSize ? `max ${size(task.batchSize.max)} of ${integer(task.flushEvery)}` : sizeNote);
    part(target.root, '.fill').style.width = `${Math.min(100, ((task.batchSize?.mean ?? 0) / task.flushEvery) * 100).toFixed(1)}%`;
    set(target, 'oldestWaitMs', ...spreadText(task.oldestWaitMs, duration));
    set(target, 'handlerMs', ...spreadText(task.handlerMs, duration));
    set(target, 'buffered', integer(task.buffered), 'waiting for a flush');
    set(target, 'inFlight', integer(task.inFlight), 'in running batches');
    set(target, 'deadLettered', integer(task.totals.deadLettered), `since ${clock(snapshot.since)}`);
    part(target.root, '[data-stat="deadLettered"] .value').classList.toggle('bad', task.totals.deadLettered > 0);

    plot(target, 'batchesPerSecond', task.batchesPerSecond);
    plot(target, 'requestsPerSecond', task.requestsPerSecond);
    plot(target, 'oldestWaitMs', task.oldestWaitMs?.mean ?? 0);
    plot(target, 'handlerMs', task.handlerMs?.mean ?? 0);
    plot(target, 'buffered', task.buffered);
    plot(target, 'inFlight', task.inFlight);

    const reasons = Object.entries(task.flushReasons).toSorted(([a], [b]) => a.localeCompare(b));
    const pills = [element('span', 'caption', 'Flushed by')];
    if (reasons.length === 0) pills.push(element('span', 'quiet', 'no batch yet'));
    for (const [reason, count] of reasons) {
      const pill = element('span', `reason reason-${reason}`);
      pill.dataset.reason = reason;
      pill.append(element('b', '', integer(count)), document.createTextNode(` ${reason}`));
      pills.push(pill);
    }
    part(target.root, '.reasons').replaceChildren(...pills);

    const { totals } = task;
    const line = part(target.root, '.totals');
    line.textContent =
      `Since ${clock(snapshot.since)}: ${integer(totals.requests)} requests in ${integer(totals.batches)} batches · ` +
      `${integer(totals.failedBatches)} failed batches · ${integer(totals.retried)} retried · ${integer(totals.failed)} failed`;
    line.dataset.requests = String(totals.requests);
    line.dataset.batches = String(totals.batches);
    renderRecent(part(target.root, '.recent'), task, snapshot);
  }

  function renderRecent(recent: HTMLElement, task: MonitorTaskSnapshot, snapshot: MonitorSnapshot): void {
    if (!task.recent) return;
    const columns: Array<[string, (sample: NonNullable<MonitorTaskSnapshot['recent']>[number]) => string]> = [
      ['Request', (sample) => sample.id],
      ['State', (sample) => sample.state],
    ];
    if (snapshot.showArguments) columns.push(['args', (sample) => sample.args ?? ''], ['kwargs', (sample) => sample.kwargs ?? '']);
    if (snapshot.showResults) columns.push(['Result or error', (sample) => sample.outcome ?? '']);
    const head = element('tr');
    for (const [title] of columns) head.append(element('th', '', title));
    const body = element('tbody');
    for (const sample of task.recent) {
      const row = element('tr', sample.state === 'FAILURE' ? 'failed' : '');
      for (const [, read] of columns) row.append(element('td', '', read(sample)));
      body.append(row);
    }
    if (task.recent.length === 0) {
      const row = element('tr');
      const cell = element('td', 'quiet', 'no request settled yet');
      cell.colSpan = columns.length;
      row.append(cell);
      body.append(row);
    }
    const table = element('table');
    table.append(element('thead'), body);
    table.tHead?.append(head);
    recent.replaceChildren(element('h3', '', 'Latest requests'), table);
  }

  function renderQueues(queues: MonitorQueueSnapshot[], snapshot: MonitorSnapshot): void {
    byId('reason-head').hidden = !snapshot.showResults;
    byId('queues-body').replaceChildren(
      ...queues.map((queue) => {
        const row = element('tr');
        row.dataset.queue = queue.queue;
        const dead = element('td', queue.deadLetters > 0 ? 'num bad' : 'num', integer(queue.deadLetters));
        row.append(
          element('td', '', queue.queue),
          element('td', '', queue.tasks.join(', ')),
          element('td', 'num', integer(queue.held)),
          dead,
        );
        if (snapshot.showResults) row.append(element('td', 'reason-text', queue.lastDeadLetterReason ?? ''));
        return row;
      }),
    );
  }

  function render(snapshot: MonitorSnapshot): void {
    document.title = `Batches · ${snapshot.hostname}`;
    byId('host').textContent = `worker ${snapshot.hostname}`;
    const broker = byId('broker');
    broker.textContent = `broker ${snapshot.broker}`;
    broker.className = `pill ${snapshot.broker === 'connected' ? 'ok' : snapshot.broker === 'connecting' ? 'wait' : 'bad'}`;
    byId('updated').textContent = `updated ${clock(snapshot.at)}`;
    byId('empty').hidden = snapshot.tasks.length > 0;
    const seen = new Set<string>();
    for (const task of snapshot.tasks) {
      renderTask(task, snapshot);
      seen.add(task.task);
    }
    for (const [task, gone] of cards) {
      if (!seen.has(task)) {
        gone.root.remove();
        cards.delete(task);
      }
    }
    renderQueues(snapshot.queues, snapshot);
    const hidden = [!snapshot.showArguments && 'arguments', !snapshot.showResults && 'results'].filter(Boolean);
    byId('foot').textContent =
      `Rates, means and maxima over the last ${Math.round(snapshot.windowMs / 1000)} s; totals since ${clock(snapshot.since)}. ` +
      (hidden.length > 0
        ? `Task ${hidden.join(' and ')} are not shown (showArguments / showResults).`
        : 'Task arguments and results are shown (showArguments, showResults).');
  }

  const live = byId('live');
  const showState = (text: string, state: 'ok' | 'bad'): void => {
    live.textContent = text;
    live.className = `pill ${state}`;
  };
  const streamUrl = `${location.pathname.replace(/\/?$/, '/')}events`;
  // A stream that was refused (a guard, the app shutting down) or closed for good is tried again this much later.
  const RETRY_CLOSED = 10_000;
  const connect = (): void => {
    const events = new EventSource(streamUrl);
    const retryLater = (text: string): void => {
      events.close();
      showState(text, 'bad');
      setTimeout(connect, RETRY_CLOSED);
    };
    events.addEventListener('open', () => showState('live', 'ok'));
    events.addEventListener('message', (message: MessageEvent<string>) => render(JSON.parse(message.data) as MonitorSnapshot));
    // The app is shutting down: reconnecting at once would keep its HTTP server busy.
    events.addEventListener('closed', () => retryLater('app stopped'));
    events.addEventListener('error', () => {
      if (events.readyState === EventSource.CLOSED) retryLater('disconnected');
      else showState('reconnecting…', 'bad');
    });
  };
  connect();
}
