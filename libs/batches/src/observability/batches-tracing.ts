import type { Attributes, Context, Link, SpanContext, Tracer } from '@opentelemetry/api';
import { optionalPeer } from '../optional-peer.js';
import type { SimpleRequest } from '../simple-request.js';

type OtelApi = typeof import('@opentelemetry/api');

/**
 * An OpenTelemetry `Tracer` (`@opentelemetry/api`), typed by shape so that the library's types
 * compile for users who do not install the package.
 */
export interface TracerLike {
  startSpan(name: string, options?: object, context?: object): object;
}

/**
 * The module's `tracing` option: `true` traces with the global tracer provider's tracer
 * `nestjs-batches`; `{ tracer }` with that tracer. Off (`false`, unset) costs nothing.
 */
export type TracingOption = boolean | { tracer?: TracerLike };

/** What the client, the canvas sender and the batch runner use when tracing is on. */
export interface BatchesTracing {
  /** Message headers carrying the active trace context (`traceparent`, `tracestate`), or undefined when no span is active. */
  traceHeaders(): Record<string, string> | undefined;
  /** Runs `handler` inside the span of one batch run; see `OtelBatchesTracing.runBatch`. */
  runBatch<T>(task: string, queue: string, requests: readonly SimpleRequest[], reason: string, handler: () => Promise<T>): Promise<T>;
}

/** The tracer name used with the global tracer provider. */
export const TRACER_NAME = 'nestjs-batches';

/** Attribute names set on each batch span, beyond OpenTelemetry's messaging conventions. */
export const TRACING_ATTRIBUTES = {
  task: 'nestjs_batches.task',
  queue: 'nestjs_batches.queue',
  flushReason: 'nestjs_batches.flush_reason',
} as const;

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-|$)/;

/**
 * OpenTelemetry tracing of batches, created only when the `tracing` option is on, so
 * `@opentelemetry/api` is loaded only then (users without it never import it).
 *
 * - Producers (`BatchClient`, canvas sends): the active context goes into the task message's
 *   headers as W3C `traceparent` / `tracestate` (through the global propagator when one is
 *   registered, plus a built-in W3C writer when it wrote no `traceparent`). Celery's headers are
 *   free-form: Python Celery workers ignore them, and its OpenTelemetry instrumentation reads them.
 * - Workers: one CONSUMER span `process <queue>` per batch run, with a span link to each request's
 *   producer context and OpenTelemetry's messaging attributes; the handler runs in its context.
 */
class OtelBatchesTracing implements BatchesTracing {
  private readonly tracer: Tracer;

  constructor(
    private readonly api: OtelApi,
    tracer: Tracer | undefined,
    /** `messaging.system`: `rabbitmq`, or `memory` for the embedded broker. */
    private readonly system: string,
  ) {
    // The global provider's tracer is a proxy: a provider registered after startup is still used.
    this.tracer = tracer ?? api.trace.getTracer(TRACER_NAME);
  }

  traceHeaders(): Record<string, string> | undefined {
    const { api } = this;
    const active = api.context.active();
    const carrier: Record<string, string> = {};
    api.propagation.inject(active, carrier);
    if (carrier.traceparent === undefined) {
      const span = api.trace.getSpanContext(active);
      if (span && api.isSpanContextValid(span)) {
        carrier.traceparent = `00-${span.traceId}-${span.spanId}-${(span.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
        const state = span.traceState?.serialize();
        if (state) carrier.tracestate = state;
      }
    }
    return Object.keys(carrier).length > 0 ? carrier : undefined;
  }

  /**
   * Runs `handler` inside a span for one batch: linked to each request's producer context, its
   * status ERROR when `handler` throws. Requests from a broker start a new trace (the worker has no
   * caller); eager runs (`apply()`) are children of the caller's active span.
   */
  runBatch<T>(task: string, queue: string, requests: readonly SimpleRequest[], reason: string, handler: () => Promise<T>): Promise<T> {
    const { api } = this;
    const links: Link[] = [];
    for (const request of requests) {
      const producer = this.producerContext(request.headers);
      if (producer) links.push({ context: producer, attributes: { 'messaging.message.id': request.id } });
    }
    const first = requests[0];
    const attributes: Attributes = {
      'messaging.system': this.system,
      'messaging.operation.type': 'process',
      'messaging.operation.name': 'process',
      'messaging.destination.subscription.name': queue,
      'messaging.batch.message_count': requests.length,
      [TRACING_ATTRIBUTES.task]: task,
      [TRACING_ATTRIBUTES.queue]: queue,
      [TRACING_ATTRIBUTES.flushReason]: reason,
    };
    if (first && !first.deliveryInfo.isEager) {
      // RabbitMQ's conventions: the destination is the exchange ('' for the default one) and routing key.
      attributes['messaging.destination.name'] = first.deliveryInfo.exchange;
      if (first.deliveryInfo.routingKey) attributes['messaging.rabbitmq.destination.routing_key'] = first.deliveryInfo.routingKey;
    }
    const parent: Context = first?.deliveryInfo.isEager ? api.context.active() : api.ROOT_CONTEXT;
    const span = this.tracer.startSpan(`process ${queue}`, { kind: api.SpanKind.CONSUMER, links, attributes }, parent);
    return api.context.with(api.trace.setSpan(parent, span), async () => {
      try {
        return await handler();
      } catch (error) {
        span.recordException(error instanceof Error ? error : String(error));
        span.setAttribute('error.type', error instanceof Error ? error.name : typeof error);
        span.setStatus({ code: api.SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
        throw error;
      } finally {
        span.end();
      }
    });
  }

  /** The producer's span context in a message's headers: W3C `traceparent`, else what the global propagator reads. */
  producerContext(headers: Readonly<Record<string, unknown>>): SpanContext | undefined {
    const { api } = this;
    const traceparent = headers.traceparent;
    if (typeof traceparent === 'string') return parseTraceparent(api, traceparent, headers.tracestate);
    const extracted = api.trace.getSpanContext(api.propagation.extract(api.ROOT_CONTEXT, headers, stringGetter));
    return extracted && api.isSpanContextValid(extracted) ? extracted : undefined;
  }
}

/** Reads only string header values (AMQP headers may hold numbers, tables, buffers). */
const stringGetter = {
  keys: (carrier: Readonly<Record<string, unknown>>): string[] => Object.keys(carrier),
  get: (carrier: Readonly<Record<string, unknown>>, key: string): string | undefined => {
    const value = carrier[key];
    return typeof value === 'string' ? value : undefined;
  },
};

/** A W3C trace context (`traceparent`, `tracestate`) as a remote span context; undefined when invalid. */
function parseTraceparent(api: OtelApi, traceparent: string, tracestate?: unknown): SpanContext | undefined {
  const match = TRACEPARENT.exec(traceparent.trim());
  if (!match || match[1] === 'ff' || (match[1] === '00' && traceparent.trim().length !== 55)) return undefined;
  const context: SpanContext = {
    traceId: match[2],
    spanId: match[3],
    traceFlags: Number.parseInt(match[4], 16),
    isRemote: true,
  };
  if (typeof tracestate === 'string' && tracestate.length > 0) context.traceState = api.createTraceState(tracestate);
  return api.isSpanContextValid(context) ? context : undefined;
}

/**
 * The tracing of a module, or undefined when the option is off. Throws a `BatchesConfigError`
 * naming `npm install @opentelemetry/api` when tracing is on and the package is missing.
 */
export function createTracing(option: TracingOption | undefined, where: string, system: string): BatchesTracing | undefined {
  if (!option) return undefined;
  const api = optionalPeer<OtelApi>('@opentelemetry/api', `${where}: \`tracing\``);
  return new OtelBatchesTracing(api, option === true ? undefined : (option.tracer as Tracer | undefined), system);
}
