import { BatchesConfigError } from '../options/option-checks.js';

/**
 * The part of prom-client's `Registry` the metrics use: pass `new Registry()` or prom-client's
 * default `register`. Declared here so the library's types do not need prom-client installed.
 */
export interface MetricsRegistry {
  registerMetric(metric: never): void;
  getSingleMetric(name: string): unknown;
  removeSingleMetric(name: string): void;
}

/** The `metrics` option of `BatchesModule.forRoot()` in its object form. */
export interface BatchesMetricsOptions {
  /** Where the metrics are registered; prom-client's default `register` when unset. */
  registry?: MetricsRegistry;
  /** Prepended to every metric name; `'nestjs_batches_'` when unset. */
  prefix?: string;
}

export interface ResolvedMetricsOptions {
  registry?: MetricsRegistry;
  prefix: string;
}

export const DEFAULT_METRICS_PREFIX = 'nestjs_batches_';

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/** Validates the `metrics` option: `undefined`/`false` is off, `true` the defaults. */
export function resolveMetricsOptions(where: string, value: unknown): ResolvedMetricsOptions | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return { prefix: DEFAULT_METRICS_PREFIX };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BatchesConfigError(
      `${where}: \`metrics\` must be true, false or { registry?, prefix? }, got ${JSON.stringify(value)}. ` +
        "Use `metrics: true` for prom-client's default registry.",
    );
  }
  const { registry, prefix = DEFAULT_METRICS_PREFIX, ...unknown } = value as Record<string, unknown>;
  const extra = Object.keys(unknown);
  if (extra.length > 0) {
    throw new BatchesConfigError(`${where}: \`metrics\` has unknown field(s) ${extra.join(', ')}. It takes \`registry\` and \`prefix\`.`);
  }
  if (typeof prefix !== 'string' || (prefix !== '' && !METRIC_NAME.test(prefix))) {
    throw new BatchesConfigError(
      `${where}: \`metrics.prefix\` must be a Prometheus metric name prefix (letters, digits, '_' and ':', not starting with a digit), ` +
        `got ${JSON.stringify(prefix)}. Leave it unset for '${DEFAULT_METRICS_PREFIX}'.`,
    );
  }
  if (registry !== undefined && !isRegistry(registry)) {
    throw new BatchesConfigError(
      `${where}: \`metrics.registry\` must be a prom-client Registry (\`new Registry()\` or prom-client's \`register\`). ` +
        'Leave it unset for the default registry.',
    );
  }
  return registry === undefined ? { prefix } : { registry, prefix };
}

function isRegistry(value: unknown): value is MetricsRegistry {
  const registry = value as Partial<Record<keyof MetricsRegistry, unknown>> | null;
  return (
    typeof registry === 'object' &&
    registry !== null &&
    typeof registry.registerMetric === 'function' &&
    typeof registry.getSingleMetric === 'function' &&
    typeof registry.removeSingleMetric === 'function'
  );
}
