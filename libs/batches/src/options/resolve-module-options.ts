import type { QueueDeclaration } from '../broker/broker.interface.js';
import { BATCHES_DEFAULTS, type BatchesModuleOptions, type BatchesTlsOptions } from '../batches.options.js';
import {
  BatchesConfigError,
  booleanOption,
  describeValue,
  interval,
  nonNegativeInteger,
  positiveInteger,
  queueName,
  scheme,
} from './option-checks.js';
import { resolveQueues } from './queue-options.js';
import { tlsOptions } from './tls-options.js';
import { taskRouter } from '../canvas/task-routes.js';
import { MESSAGE_FORMATS, type MessageFormat } from '../protocol/task-message-encode.js';
import { createTracing, type BatchesTracing, type TracingOption } from '../observability/batches-tracing.js';
import { resolveMetricsOptions, type ResolvedMetricsOptions } from '../observability/metrics-options.js';

// `BatchesModule.forRoot()` options checked and completed from BATCHES_DEFAULTS at startup.

export interface ResolvedModuleOptions {
  brokerUrls: string[];
  /** Present only when `brokerTls` is set (validated, known keys only). */
  brokerTls?: BatchesTlsOptions;
  resultBackend: string;
  /** Present only when `resultBackendTls` is set (validated, known keys only). */
  resultBackendTls?: BatchesTlsOptions;
  resultExpires: number;
  flushEvery: number;
  flushInterval: number;
  defaultQueue: string;
  /** The queue of a task name (`taskRoutes`, else `defaultQueue`). */
  route: (task: string) => string;
  /** Declarations of the queues named in the `queues` option; others are Celery's. */
  queues?: Readonly<Record<string, QueueDeclaration>>;
  maxRetries: number;
  retryDelay: number;
  hostname: string;
  eager: boolean;
  maxMessageBytes: number;
  waitForBroker: boolean;
  publishTimeout: number;
  shutdownTimeout: number;
  messageFormat: MessageFormat;
  sendEvents: boolean;
  /** Present only when the `tracing` option is on. */
  tracing?: BatchesTracing;
  /** Absent when metrics are off. */
  metrics?: ResolvedMetricsOptions;
  /** Unset: derived from the handlers' `flushInterval` (see `wedgedAfter()` of the health indicator). */
  healthWedgedAfter?: number;
}

const BROKER_SCHEMES = ['memory:', 'amqp:', 'amqps:'];
const BACKEND_SCHEMES = ['memory:', 'redis:', 'rediss:'];

export function resolveModuleOptions(options: BatchesModuleOptions = {}): ResolvedModuleOptions {
  const where = 'BatchesModule.forRoot()';
  const brokerUrls = [options.broker ?? BATCHES_DEFAULTS.broker].flat();
  if (brokerUrls.length === 0) {
    throw new BatchesConfigError(`${where}: \`broker\` is an empty list. Give at least one URL, e.g. 'amqp://guest:guest@127.0.0.1:5672'.`);
  }
  for (const url of brokerUrls) {
    if (!BROKER_SCHEMES.includes(scheme(url))) {
      throw new BatchesConfigError(
        `${where}: \`broker\` ${JSON.stringify(url)} has an unknown scheme. Use 'memory://' or an 'amqp://' / 'amqps://' URL.`,
      );
    }
  }
  if (brokerUrls.length > 1 && brokerUrls.some((url) => scheme(url) === 'memory:')) {
    throw new BatchesConfigError(`${where}: \`broker\` lists 'memory://' among failover URLs. Failover lists take AMQP URLs only.`);
  }
  const resultBackend = options.resultBackend ?? BATCHES_DEFAULTS.resultBackend;
  if (!BACKEND_SCHEMES.includes(scheme(resultBackend))) {
    throw new BatchesConfigError(
      `${where}: \`resultBackend\` ${JSON.stringify(resultBackend)} has an unknown scheme. Use 'memory://' or a 'redis://' URL.`,
    );
  }
  const hint = 'Leave it unset for the default.';
  const defaultQueue = queueName(where, 'defaultQueue', options.defaultQueue ?? BATCHES_DEFAULTS.defaultQueue);
  return {
    brokerUrls,
    ...(options.brokerTls !== undefined && {
      brokerTls: tlsOptions(where, 'brokerTls', options.brokerTls, 'broker', brokerUrls, 'amqps:'),
    }),
    resultBackend,
    ...(options.resultBackendTls !== undefined && {
      resultBackendTls: tlsOptions(where, 'resultBackendTls', options.resultBackendTls, 'resultBackend', [resultBackend], 'rediss:'),
    }),
    resultExpires: positiveInteger(where, 'resultExpires', options.resultExpires ?? BATCHES_DEFAULTS.resultExpires, hint),
    flushEvery: positiveInteger(where, 'flushEvery', options.flushEvery ?? BATCHES_DEFAULTS.flushEvery, hint),
    flushInterval: interval(where, options.flushInterval ?? BATCHES_DEFAULTS.flushInterval),
    defaultQueue,
    route: taskRouter(options.taskRoutes ?? {}, defaultQueue),
    ...(options.queues !== undefined && { queues: resolveQueues(where, options.queues) }),
    maxRetries: nonNegativeInteger(where, 'maxRetries', options.maxRetries ?? BATCHES_DEFAULTS.maxRetries, hint),
    retryDelay: nonNegativeInteger(where, 'retryDelay', options.retryDelay ?? BATCHES_DEFAULTS.retryDelay, 'It is in milliseconds.'),
    hostname: options.hostname ?? `nestjs-batches@${process.env.HOSTNAME ?? 'localhost'}`,
    eager: options.eager ?? BATCHES_DEFAULTS.eager,
    maxMessageBytes: positiveInteger(where, 'maxMessageBytes', options.maxMessageBytes ?? BATCHES_DEFAULTS.maxMessageBytes, hint),
    waitForBroker: options.waitForBroker ?? BATCHES_DEFAULTS.waitForBroker,
    publishTimeout: positiveInteger(
      where,
      'publishTimeout',
      options.publishTimeout ?? BATCHES_DEFAULTS.publishTimeout,
      'It is in milliseconds.',
    ),
    shutdownTimeout: positiveInteger(
      where,
      'shutdownTimeout',
      options.shutdownTimeout ?? BATCHES_DEFAULTS.shutdownTimeout,
      'It is in milliseconds.',
    ),
    messageFormat: messageFormat(where, options.messageFormat ?? BATCHES_DEFAULTS.messageFormat),
    sendEvents: booleanOption(where, 'sendEvents', options.sendEvents ?? BATCHES_DEFAULTS.sendEvents),
    ...(options.tracing && { tracing: tracingOf(where, options.tracing, brokerUrls[0]) }),
    metrics: resolveMetricsOptions(where, options.metrics),
    // Absent when unset: the health indicator derives it from the handlers.
    ...(options.healthWedgedAfter !== undefined && {
      healthWedgedAfter: positiveInteger(
        where,
        'healthWedgedAfter',
        options.healthWedgedAfter,
        'It is in milliseconds; leave it unset for 5 × the longest flushInterval (at least 5 minutes).',
      ),
    }),
  };
}

function messageFormat(where: string, value: unknown): MessageFormat {
  if (!MESSAGE_FORMATS.includes(value as MessageFormat)) {
    throw new BatchesConfigError(
      `${where}: \`messageFormat\` must be 'lean' or 'full', got ${JSON.stringify(value)}. ` +
        "Use 'full' only for consumers that need Celery's complete header table, or leave it unset for 'lean'.",
    );
  }
  return value as MessageFormat;
}

function tracingOf(where: string, value: unknown, brokerUrl: string): BatchesTracing | undefined {
  const tracer = typeof value === 'object' && value !== null ? (value as { tracer?: unknown }).tracer : undefined;
  if (
    (typeof value !== 'boolean' && (typeof value !== 'object' || value === null)) ||
    (tracer !== undefined && typeof (tracer as { startSpan?: unknown } | null)?.startSpan !== 'function')
  ) {
    throw new BatchesConfigError(
      `${where}: \`tracing\` must be true, false or { tracer } with an OpenTelemetry Tracer, got ${describeValue(value)}. ` +
        "Use `tracing: true` for the global tracer provider, or `tracing: { tracer: trace.getTracer('my-app') }`.",
    );
  }
  return createTracing(value as TracingOption, where, scheme(brokerUrl) === 'memory:' ? 'memory' : 'rabbitmq');
}
