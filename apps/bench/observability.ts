import type { ReadableSpan, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { INestApplicationContext } from '@nestjs/common';
import { BatchEvents, type BatchesModuleOptions } from 'nestjs-batches';
import type { Registry } from 'prom-client';

/**
 * What a worker run has switched on besides batching: `off` (the default, what every other row
 * measures), one no-op subscriber on `BatchEvents.events$`, Prometheus metrics on a registry of its
 * own, OpenTelemetry tracing into a globally registered SDK provider, or all three.
 */
export const OBSERVABILITY = ['off', 'events', 'metrics', 'tracing', 'all'] as const;
export type Observability = (typeof OBSERVABILITY)[number];

const has = (variant: Observability | undefined, part: 'events' | 'metrics' | 'tracing'): boolean => variant === part || variant === 'all';

/** A W3C trace context a traced producer would have put into each message (sampled). */
export const PRODUCER_TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

/** Whether the run's messages carry a producer's `traceparent`, as they do from a traced `BatchClient`. */
export const tracesProducers = (variant: Observability | undefined): boolean => has(variant, 'tracing');

/**
 * The module options of a variant: `metrics` and `tracing`; nothing at all for `off`, which loads
 * neither prom-client nor OpenTelemetry (imported here only when a variant needs them).
 */
export async function observabilityOptions(variant: Observability | undefined): Promise<Pick<BatchesModuleOptions, 'metrics' | 'tracing'>> {
  const options: Pick<BatchesModuleOptions, 'metrics' | 'tracing'> = {};
  if (has(variant, 'metrics')) {
    const { Registry } = await import('prom-client');
    registry = new Registry();
    options.metrics = { registry };
  }
  if (has(variant, 'tracing')) {
    // `tracing: true` uses the global provider; a real SDK provider (the default sampler samples every
    // root span) builds and ends every span, and a processor that only counts them exports nothing.
    const { trace } = await import('@opentelemetry/api');
    const { BasicTracerProvider } = await import('@opentelemetry/sdk-trace-base');
    const provider = new BasicTracerProvider({ spanProcessors: [spanCounter] });
    trace.setGlobalTracerProvider(provider);
    options.tracing = true;
  }
  return options;
}

let registry: Registry | undefined;
let spansEnded = 0;
const spanCounter: SpanProcessor = {
  onStart: () => undefined,
  onEnd: (_span: ReadableSpan) => void spansEnded++,
  forceFlush: () => Promise.resolve(),
  shutdown: () => Promise.resolve(),
};

/**
 * After the app is created: subscribes the variant's one no-op listener to `events$` (which makes
 * the worker build its events). Returns what the run saw (call it before closing the app), to show
 * each part was really on: events received, spans ended, requests counted by the metrics.
 */
export function observe(
  variant: Observability | undefined,
  app: INestApplicationContext,
): () => Promise<Record<string, number> | undefined> {
  let events = 0;
  if (has(variant, 'events')) app.get(BatchEvents).events$.subscribe(() => void events++);
  const spansBefore = spansEnded;
  return async () => {
    if (!variant || variant === 'off') return undefined;
    const seen: Record<string, number> = {};
    if (has(variant, 'events')) seen.events = events;
    if (has(variant, 'tracing')) seen.spans = spansEnded - spansBefore;
    if (has(variant, 'metrics')) {
      const requests = (await registry?.getSingleMetric('nestjs_batches_requests_total')?.get())?.values ?? [];
      seen.metricRequests = requests.reduce((sum, { value }) => sum + value, 0);
    }
    return seen;
  };
}
