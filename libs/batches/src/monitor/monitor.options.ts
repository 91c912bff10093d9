import { BatchesConfigError } from '../options/option-checks.js';

/** Options of `BatchesMonitorModule.forRoot()` (the route's `path` aside). */
export interface BatchesMonitorOptions {
  /**
   * Show the arguments (`args`, `kwargs`) of each task's latest requests. Default false: they may
   * hold personal data, and the page shows only task names and numbers.
   */
  showArguments?: boolean;
  /** Show the results and errors of each task's latest requests, and dead-letter reasons. Default false, as for `showArguments`. */
  showResults?: boolean;
  /** How often (ms) the page gets a new snapshot. Default 1000, at least 100. */
  refreshInterval?: number;
}

/** The route: `path` is where the page is served (its event stream is `<path>/events`). Default `/batches`. */
export interface BatchesMonitorRoute {
  path?: string;
}

export interface ResolvedMonitorOptions {
  showArguments: boolean;
  showResults: boolean;
  refreshInterval: number;
}

export const MONITOR_DEFAULTS = { path: '/batches', showArguments: false, showResults: false, refreshInterval: 1_000 } as const;

/** Rates, means and maxima on the page are over this span (ms). */
export const MONITOR_WINDOW = 10_000;

const WHERE = 'BatchesMonitorModule.forRoot()';

export function resolveMonitorOptions(options: BatchesMonitorOptions = {}): ResolvedMonitorOptions {
  const { showArguments = false, showResults = false, refreshInterval = MONITOR_DEFAULTS.refreshInterval, ...unknown } = options;
  const extra = Object.keys(unknown);
  if (extra.includes('path')) {
    throw new BatchesConfigError(
      `${WHERE}: \`path\` is fixed when the app starts: pass it to forRootAsync({ path }) beside useFactory, not from the factory.`,
    );
  }
  if (extra.length > 0) {
    throw new BatchesConfigError(
      `${WHERE}: unknown option(s) ${extra.join(', ')}. It takes \`path\`, \`showArguments\`, \`showResults\` and \`refreshInterval\`.`,
    );
  }
  for (const [name, value] of Object.entries({ showArguments, showResults })) {
    if (typeof value !== 'boolean')
      throw new BatchesConfigError(`${WHERE}: \`${name}\` must be true or false, got ${JSON.stringify(value)}.`);
  }
  if (!Number.isInteger(refreshInterval) || refreshInterval < 100 || refreshInterval > MONITOR_WINDOW) {
    throw new BatchesConfigError(
      `${WHERE}: \`refreshInterval\` must be an integer from 100 to ${MONITOR_WINDOW} (ms), got ${String(refreshInterval)}. Leave it unset for 1000.`,
    );
  }
  return { showArguments, showResults, refreshInterval };
}

/** The route path, checked: a Nest route path without query or fragment. */
export function resolveMonitorPath(path: unknown): string {
  if (typeof path !== 'string' || path.trim() === '' || /[?#\s]/.test(path)) {
    throw new BatchesConfigError(`${WHERE}: \`path\` must be a route path such as '/batches', got ${JSON.stringify(path)}.`);
  }
  return path;
}
