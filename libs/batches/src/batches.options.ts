import type { QueueDeclaration } from './broker/broker.interface.js';
import {
  BatchesConfigError,
  booleanOption,
  describeValue,
  nonNegativeInteger,
  positiveInteger,
  queueName,
  scheme,
} from './options/option-checks.js';
import { resolveQueues, type QueueOptions } from './options/queue-options.js';
import { tlsOptions } from './options/tls-options.js';
import { taskRouter } from './canvas/task-routes.js';
import type { SimpleRequest } from './simple-request.js';
import { MAX_TIMER_MS } from './transport/due-timer.js';
import { MESSAGE_FORMATS, type MessageFormat } from './protocol/task-message-encode.js';
import { createTracing, type BatchesTracing, type TracingOption } from './observability/batches-tracing.js';
import { resolveMetricsOptions, type BatchesMetricsOptions, type ResolvedMetricsOptions } from './observability/metrics-options.js';

/** Options of `BatchesModule.forRoot()`. Every field is optional; defaults are in `BATCHES_DEFAULTS`. */
export interface BatchesModuleOptions {
  /**
   * Where tasks come from and go to: `'memory://'` (embedded, in-process), `'amqp://…'` /
   * `'amqps://…'`, or a list of AMQP URLs tried in turn for failover.
   */
  broker?: string | string[];
  /**
   * TLS of the `amqps://` broker URLs: a private CA, a client certificate for mutual TLS, the
   * host name to verify. Every `broker` URL must then be `amqps://`. Unset: `amqps://` verifies
   * the broker against Node's bundled root CAs.
   */
  brokerTls?: BatchesTlsOptions;
  /** Where per-request results are stored: `'memory://'` or `'redis://…'` (`'rediss://…'` for TLS). */
  resultBackend?: string;
  /** TLS of a `rediss://` result backend, as `brokerTls` for the broker; `resultBackend` must be `rediss://`. */
  resultBackendTls?: BatchesTlsOptions;
  /** How long stored results live, in milliseconds (Celery's `result_expires`). */
  resultExpires?: number;
  /** Default `flushEvery` of handlers that set none. */
  flushEvery?: number;
  /** Default `flushInterval` (ms) of handlers that set none. */
  flushInterval?: number;
  /** Queue used by handlers and by the client when none is named (Celery's `task_default_queue`). */
  defaultQueue?: string;
  /**
   * Queues of tasks by name, as Celery's `task_routes`: glob patterns (`'py.*'`) → queue. Used by
   * `BatchClient` and for the tasks the worker sends itself (chain steps, callbacks, chord bodies)
   * when their signature names no queue. Unrouted tasks go to `defaultQueue`.
   */
  taskRoutes?: Record<string, string>;
  /**
   * How queues are declared, by queue name: type (`'classic'` as Celery, or `'quorum'`),
   * `maxPriority`, other `arguments`, `exchange`/`exchangeType`/`routingKey` and extra `bindings`.
   * Used by the worker for the queues it consumes (and their `<queue>.dead`, of the same type) and
   * by `BatchClient` for the queues it sends to. Unlisted queues are declared as Celery declares
   * them. Python Celery workers sharing a queue need the same `task_queues` entry.
   */
  queues?: Record<string, QueueOptions>;
  /** Default `maxRetries` of handlers. */
  maxRetries?: number;
  /** Default `retryDelay` (ms) of handlers: the first retry waits this long, each next one twice as long. */
  retryDelay?: number;
  /** Worker node name reported in `SimpleRequest.hostname` and in the `origin` header. */
  hostname?: string;
  /** Run `delay`/`applyAsync` in-process as batches of one instead of publishing (for tests). */
  eager?: boolean;
  /** Messages larger than this (bytes) are dead-lettered instead of decoded. */
  maxMessageBytes?: number;
  /**
   * Whether `listen()` / `startAllMicroservices()` waits until every queue is consumed. By default
   * (false) they resolve at once and the worker connects in the background, so the app starts while
   * RabbitMQ is down; errors that retrying cannot fix are logged and stop the worker either way.
   */
  waitForBroker?: boolean;
  /** How long (ms) `delay`/`applyAsync` wait for the broker to confirm a message before rejecting. */
  publishTimeout?: number;
  /**
   * How long (ms) closing may take to drain buffers, run batches and store results. Past it the
   * worker stops waiting, logs what it leaves unacked (RabbitMQ redelivers it) and closes.
   */
  shutdownTimeout?: number;
  /**
   * How the messages this module publishes (`BatchClient` tasks and retries) write Celery's
   * protocol-2 header table. `'lean'` (default) leaves out the headers whose value is null
   * (`shadow`, `group_index`, and `group`, `parent_id`, `eta`, `expires` when unset) and `timelimit`
   * when neither limit is set: Celery 5's worker reads each of them with `.get()`, so Python Celery
   * workers run lean messages exactly as full ones, while RabbitMQ spends far less CPU per message
   * (null header values are most of its cost). `'full'` writes Celery's complete table, nulls included, for consumers that
   * expect every header to be there. Messages are read in either form regardless.
   */
  messageFormat?: MessageFormat;
  /**
   * Send Celery's monitoring events (`worker-online`, `worker-heartbeat`, `task-received`,
   * `task-succeeded`, …) on the `celeryev` exchange, as `celery worker -E` does, so `celery events`
   * and Flower see this worker. Off by default, like Celery; remote `enable_events` /
   * `disable_events` (`celery control enable_events`) switch task events at runtime.
   */
  sendEvents?: boolean;
  /**
   * OpenTelemetry tracing (needs the optional peer `@opentelemetry/api`). Off by default. `true`
   * uses the global tracer provider (tracer `nestjs-batches`); `{ tracer }` uses that tracer.
   * When on, `BatchClient` (and the worker's own sends) put the active context into each message's
   * headers as W3C `traceparent`/`tracestate`, and the worker runs each batch inside a CONSUMER
   * span `process <queue>` linked to every request's producer context, with OpenTelemetry's
   * messaging attributes, `nestjs_batches.task` and `nestjs_batches.flush_reason`.
   */
  tracing?: TracingOption;
  /**
   * Prometheus metrics with prom-client (an optional peer: `npm install prom-client`). Off by
   * default. `true` registers them on prom-client's default `register` with the prefix
   * `nestjs_batches_`; `{ registry, prefix }` chooses both. The library serves no HTTP: expose
   * `await registry.metrics()` from a route of your app. Removed from the registry on shutdown.
   */
  metrics?: boolean | BatchesMetricsOptions;
  /**
   * When `BatchesHealthIndicator` reports the worker wedged (ms): requests are buffered or running
   * but no batch has finished for this long. Default: 5 × the longest handler `flushInterval`, and
   * at least 5 minutes. Set it above your slowest batch's running time.
   */
  healthWedgedAfter?: number;
}

/**
 * TLS settings of an `amqps://` broker or a `rediss://` result backend, handed to Node's
 * `tls.connect`. Certificates and keys are PEM contents (strings or Buffers), not file paths:
 * `readFileSync('/etc/ssl/rabbit/ca.pem')`.
 */
export interface BatchesTlsOptions {
  /** CA certificate(s) the server's certificate must chain to. Replaces Node's bundled root CAs. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Client certificate (chain) for mutual TLS, sent when the server asks for one; needs `key`. */
  cert?: string | Buffer;
  /** Private key of `cert`. */
  key?: string | Buffer;
  /** Passphrase of an encrypted `key`. */
  passphrase?: string;
  /**
   * Host name sent as SNI and checked against the server's certificate instead of the URL's host,
   * e.g. when the URL names an IP address or a tunnel.
   */
  servername?: string;
  /** `false` accepts any server certificate: traffic is encrypted but the server is not authenticated. Default true. */
  rejectUnauthorized?: boolean;
}

/** Options of `@BatchHandler(name, options)`. Unset fields take the module's defaults. */
export interface BatchHandlerOptions {
  /** Flush when the buffer holds this many requests. A batch never holds more. */
  flushEvery?: number;
  /** Flush a non-empty buffer after this many milliseconds. */
  flushInterval?: number;
  /** Queue to consume; defaults to the module's `defaultQueue`. */
  queue?: string;
  /**
   * Unacked messages the broker may hand this queue's channel. Derived when unset; when set it
   * must hold a full batch (at least `flushEvery`).
   */
  prefetch?: number;
  /** Batches of this handler running at once (handed out in order). */
  concurrency?: number;
  /** Times a failed request is retried before it is dead-lettered and marked FAILURE. */
  maxRetries?: number;
  /** Delay (ms) before the first retry; doubles with each retry. */
  retryDelay?: number;
  /** Store no results for this task's requests (Celery's `ignore_result`), e.g. for counters. */
  ignoreResult?: boolean;
  /**
   * `'fixed'` (default, celery-batches' policy): a batch leaves the buffer at `flushEvery` requests or
   * when `flushInterval` ends. `'adaptive'`: while fewer than `concurrency` batches are running or
   * waiting, a non-empty buffer is handed over at once (after `coalesceMs`); while the handler is
   * busy, requests keep buffering up to `flushEvery`; `flushInterval` still bounds any request's wait.
   */
  flush?: FlushPolicy;
  /**
   * With `flush: 'adaptive'`: how long (ms) a buffer may gather a burst before an idle handler takes
   * it. Default 0: what arrived in the same turn of the event loop.
   */
  coalesceMs?: number;
  /**
   * Buffers requests per key (a tenant, a table, a remote host): each key flushes on its own count
   * and interval (or adaptively), and a batch never mixes keys. Must not throw; return a short string.
   */
  groupBy?: (request: SimpleRequest) => string;
  /**
   * With `groupBy`: keys buffered at once. When a new key would exceed it, the buffer whose oldest
   * request waited longest is flushed to make room. Default 32.
   */
  maxGroups?: number;
}

/** See `BatchHandlerOptions.flush`. */
export type FlushPolicy = 'fixed' | 'adaptive';

export const BATCHES_DEFAULTS = {
  broker: 'memory://',
  resultBackend: 'memory://',
  resultExpires: 86_400_000,
  flushEvery: 10,
  flushInterval: 30_000,
  defaultQueue: 'celery',
  maxRetries: 3,
  retryDelay: 1_000,
  eager: false,
  maxMessageBytes: 16 * 1024 * 1024,
  concurrency: 1,
  waitForBroker: false,
  publishTimeout: 30_000,
  shutdownTimeout: 20_000,
  messageFormat: 'lean',
  sendEvents: false,
} as const;

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

export interface ResolvedHandlerOptions {
  flushEvery: number;
  flushInterval: number;
  queue: string;
  prefetch?: number;
  concurrency: number;
  maxRetries: number;
  retryDelay: number;
  ignoreResult: boolean;
  flush: FlushPolicy;
  coalesceMs: number;
  groupBy?: (request: SimpleRequest) => string;
  /** Set only with `groupBy`. */
  maxGroups?: number;
  /** The queue's declaration when the module's `queues` option names it (else Celery's). */
  declaration?: QueueDeclaration;
}

/** A `flushInterval`: a timer must hold it (Node fires longer ones at once). */
function interval(where: string, value: number): number {
  positiveInteger(where, 'flushInterval', value, 'It is in milliseconds.');
  if (value > MAX_TIMER_MS) {
    throw new BatchesConfigError(
      `${where}: \`flushInterval\` ${value} is longer than a timer can wait (${MAX_TIMER_MS} ms, about 24.8 days). It is in milliseconds.`,
    );
  }
  return value;
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

export function resolveHandlerOptions(task: string, options: BatchHandlerOptions, defaults: ResolvedModuleOptions): ResolvedHandlerOptions {
  const where = `@BatchHandler('${task}')`;
  const flushEvery = positiveInteger(
    where,
    'flushEvery',
    options.flushEvery ?? defaults.flushEvery,
    'A batch holds at most this many requests.',
  );
  const resolved: ResolvedHandlerOptions = {
    flushEvery,
    flushInterval: interval(where, options.flushInterval ?? defaults.flushInterval),
    queue: queueName(where, 'queue', options.queue ?? defaults.defaultQueue),
    concurrency: positiveInteger(
      where,
      'concurrency',
      options.concurrency ?? BATCHES_DEFAULTS.concurrency,
      'It bounds the batches running at once.',
    ),
    maxRetries: nonNegativeInteger(
      where,
      'maxRetries',
      options.maxRetries ?? defaults.maxRetries,
      'Use 0 to dead-letter on the first failure.',
    ),
    retryDelay: nonNegativeInteger(where, 'retryDelay', options.retryDelay ?? defaults.retryDelay, 'It is in milliseconds.'),
    ignoreResult: options.ignoreResult ?? false,
    flush: flushPolicy(where, options.flush),
    coalesceMs: nonNegativeInteger(
      where,
      'coalesceMs',
      options.coalesceMs ?? 0,
      'It is in milliseconds; 0 gathers what arrives in one turn of the event loop.',
    ),
  };
  if (options.coalesceMs !== undefined && resolved.flush !== 'adaptive') {
    throw new BatchesConfigError(
      `${where}: \`coalesceMs\` only applies to \`flush: 'adaptive'\`. Set \`flush: 'adaptive'\` or remove \`coalesceMs\`.`,
    );
  }
  if (options.groupBy !== undefined) {
    if (typeof options.groupBy !== 'function') {
      throw new BatchesConfigError(
        `${where}: \`groupBy\` must be a function of the request returning its key, e.g. \`(request) => request.kwargs.tenant\`.`,
      );
    }
    resolved.groupBy = options.groupBy;
    resolved.maxGroups = positiveInteger(
      where,
      'maxGroups',
      options.maxGroups ?? DEFAULT_MAX_GROUPS,
      'It bounds the keys buffered at once.',
    );
  } else if (options.maxGroups !== undefined) {
    throw new BatchesConfigError(`${where}: \`maxGroups\` only applies with \`groupBy\`. Set \`groupBy\` or remove \`maxGroups\`.`);
  }
  const declaration = defaults.queues?.[resolved.queue];
  if (declaration) resolved.declaration = declaration;
  if (options.prefetch !== undefined) {
    positiveInteger(where, 'prefetch', options.prefetch, 'Leave it unset to let the library derive it.');
    if (options.prefetch < flushEvery) {
      throw new BatchesConfigError(
        `${where}: \`prefetch\` ${options.prefetch} is below \`flushEvery\` ${flushEvery}, so a full batch could never arrive. ` +
          `Raise prefetch to at least ${flushEvery}, or leave it unset to let the library derive it.`,
      );
    }
    resolved.prefetch = options.prefetch;
  }
  return resolved;
}

/** Keys a `groupBy` handler buffers at once unless `maxGroups` says otherwise. */
export const DEFAULT_MAX_GROUPS = 32;

function flushPolicy(where: string, value: unknown): FlushPolicy {
  if (value === undefined) return 'fixed';
  if (value === 'fixed' || value === 'adaptive') return value;
  throw new BatchesConfigError(`${where}: \`flush\` must be 'fixed' or 'adaptive', got ${JSON.stringify(value)}.`);
}

/** RabbitMQ's prefetch count is a 16-bit field. */
export const MAX_PREFETCH = 65_535;

/** The narrowest derived window: wide enough that the broker keeps streaming while batches run. */
export const MIN_DERIVED_PREFETCH = 1_000;

/**
 * A handler's share of its queue's window: its running batches plus one filling buffer per key it
 * may hold (one without `groupBy`), so a key never waits for room another key's partial buffer took.
 */
function handlerWindow(handler: ResolvedHandlerOptions): number {
  return handler.flushEvery * (handler.concurrency + (handler.maxGroups ?? 1));
}

/**
 * Warnings for `groupBy` handlers whose own `prefetch` is narrower than a filling buffer per key
 * (`flushEvery × (concurrency + maxGroups)`): partial buffers of many keys can then fill the
 * window, and every key waits for its interval. Allowed (fewer unacked messages may matter more),
 * but said once at startup.
 */
export function narrowGroupWindows(handlers: ReadonlyArray<{ task: string; options: ResolvedHandlerOptions }>): string[] {
  return handlers
    .filter(({ options }) => options.groupBy !== undefined && options.prefetch !== undefined && options.prefetch < handlerWindow(options))
    .map(
      ({ task, options }) =>
        `@BatchHandler('${task}'): \`prefetch\` ${options.prefetch} is below flushEvery × (concurrency + maxGroups) = ` +
        `${handlerWindow(options)}, so with groupBy, partial buffers of many keys can fill the window and each key then waits for ` +
        '`flushInterval`. Raise `prefetch` to that, lower `maxGroups`, or leave `prefetch` unset to let the library derive it.',
    );
}

/**
 * Unacked messages a queue's channel may hold: room for every handler's running batches plus the
 * next one filling, so handlers sharing a queue never starve each other.
 */
export function derivePrefetch(queue: string, handlers: ResolvedHandlerOptions[]): number {
  const explicit = handlers.every((handler) => handler.prefetch !== undefined);
  const needed = handlers.reduce((sum, handler) => sum + (handler.prefetch ?? handlerWindow(handler)), 0);
  // A prefetch the user set is taken as given; a derived one never drops below the streaming window.
  const prefetch = explicit ? needed : Math.max(needed, MIN_DERIVED_PREFETCH);
  if (prefetch > MAX_PREFETCH) {
    throw new BatchesConfigError(
      `Queue '${queue}': its handlers need a prefetch of ${prefetch}, above RabbitMQ's limit of ${MAX_PREFETCH}. ` +
        'Lower `flushEvery`, `concurrency` or `maxGroups`, or move a handler to its own `queue`.',
    );
  }
  return prefetch;
}

export { BatchesConfigError } from './options/option-checks.js';
export type { QueueOptions } from './options/queue-options.js';
