import type { QueueOptions } from './options/queue-options.js';
import type { SimpleRequest } from './simple-request.js';
import type { MessageFormat } from './protocol/task-message-encode.js';
import type { TracingOption } from './observability/batches-tracing.js';
import type { BatchesMetricsOptions } from './observability/metrics-options.js';

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
