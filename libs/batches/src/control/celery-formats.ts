import { createRequire } from 'node:module';
import { loadavg, type as osType } from 'node:os';
import { celeryIsoFormat } from '../protocol/task-message-encode.js';
import { safeRepr } from '../results/python-repr.js';
import type { SimpleRequest } from '../simple-request.js';
import type { LamportClock } from './lamport-clock.js';

/** `celery.worker.request.Request.info()`: what `inspect active`/`reserved` list per request. */
export function requestInfo(request: SimpleRequest, safe: boolean, running?: { timeStart: number }): Record<string, unknown> {
  const { argsrepr, kwargsrepr } = request.headers;
  return {
    id: request.id,
    name: request.name,
    args: safe ? (typeof argsrepr === 'string' ? argsrepr : JSON.stringify(request.args)) : request.args,
    kwargs: safe ? (typeof kwargsrepr === 'string' ? kwargsrepr : JSON.stringify(request.kwargs)) : request.kwargs,
    type: request.name,
    hostname: request.hostname,
    time_start: running?.timeStart ?? null,
    // Late ack: a request is acked only once its batch is settled.
    acknowledged: false,
    delivery_info: {
      exchange: request.deliveryInfo.exchange,
      routing_key: request.deliveryInfo.routingKey,
      priority: request.deliveryInfo.priority,
      redelivered: request.deliveryInfo.redelivered,
    },
    worker_pid: running ? process.pid : null,
  };
}

/** kombu's `Queue('q').as_dict(recurse=True)`: a durable queue bound to the durable direct exchange `q` with key `q`. */
export function celeryQueueInfo(queue: string): Record<string, unknown> {
  return {
    name: queue,
    exchange: {
      name: queue,
      type: 'direct',
      arguments: null,
      durable: true,
      passive: false,
      auto_delete: false,
      delivery_mode: null,
      no_declare: false,
    },
    routing_key: queue,
    queue_arguments: null,
    binding_arguments: null,
    consumer_arguments: null,
    durable: true,
    exclusive: false,
    auto_delete: false,
    no_ack: false,
    alias: null,
    bindings: [],
    no_declare: null,
    expires: null,
    message_ttl: null,
    max_length: null,
    max_length_bytes: null,
    max_priority: null,
  };
}

/** kombu's `Connection.info()` for the first broker URL (never the password); the others are `alternates`. */
export function brokerInfo(urls: readonly string[], heartbeat: number): Record<string, unknown> {
  const [first, ...rest] = urls;
  let url: URL | undefined;
  try {
    url = new URL(first);
  } catch {
    url = undefined;
  }
  const ssl = url?.protocol === 'amqps:';
  const vhost = url ? decodeURIComponent(url.pathname.replace(/^\//, '')) : '';
  return {
    hostname: url?.hostname ?? null,
    userid: url ? decodeURIComponent(url.username) || 'guest' : null,
    virtual_host: vhost || '/',
    port: url?.port ? Number(url.port) : ssl ? 5671 : 5672,
    insist: false,
    ssl,
    transport: 'amqp',
    connect_timeout: 4,
    transport_options: {},
    login_method: 'PLAIN',
    uri_prefix: null,
    heartbeat,
    failover_strategy: 'round-robin',
    alternates: rest.map((each) => each.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:**@')),
  };
}

/** `resource.getrusage(RUSAGE_SELF)` as Celery's `Worker.rusage()` reports it (times in seconds, maxrss in kB). */
export function rusage(): Record<string, number> {
  const usage = process.resourceUsage();
  return {
    utime: usage.userCPUTime / 1e6,
    stime: usage.systemCPUTime / 1e6,
    maxrss: usage.maxRSS,
    ixrss: usage.sharedMemorySize,
    idrss: usage.unsharedDataSize,
    isrss: usage.unsharedStackSize,
    minflt: usage.minorPageFault,
    majflt: usage.majorPageFault,
    nswap: usage.swappedOut,
    inblock: usage.fsRead,
    oublock: usage.fsWrite,
    msgsnd: usage.ipcSent,
    msgrcv: usage.ipcReceived,
    nsignals: usage.signalsCount,
    nvcsw: usage.voluntaryContextSwitches,
    nivcsw: usage.involuntaryContextSwitches,
  };
}

/** One Celery event as `celery.events.Event` builds it. */
export type CeleryEvent = Record<string, unknown> & { type: string };

/** `EventDispatcher.publish`: the fields, stamped with the node, UTC offset, pid and Lamport clock. */
export function celeryEvent(type: string, hostname: string, clock: LamportClock, fields: Record<string, unknown>): CeleryEvent {
  return {
    hostname,
    utcoffset: utcoffset(),
    pid: process.pid,
    clock: clock.forward(),
    ...fields,
    timestamp: Date.now() / 1000,
    type,
  };
}

/** What a Celery monitor reads to tell the worker's software apart (`SOFTWARE_INFO`). */
export function softwareInfo(): { sw_ident: string; sw_ver: string; sw_sys: string } {
  let version = 'unknown';
  try {
    version = (createRequire(import.meta.url)('nestjs-batches/package.json') as { version: string }).version;
  } catch {
    // Not resolvable under its own name (bundled): the version stays unknown.
  }
  const system = osType();
  return { sw_ident: 'nestjs-batches', sw_ver: version, sw_sys: system === 'Windows_NT' ? 'Windows' : system };
}

/** `celery.utils.time.utcoffset()`: hours west of UTC, floored, DST included. */
function utcoffset(): number {
  return Math.floor(new Date().getTimezoneOffset() / 60);
}

/** `celery.utils.sysinfo.load_average()`: each rounded up to two decimals. */
export function loadAverage(): number[] {
  return loadavg().map((load) => Math.ceil(load * 100) / 100);
}

/** The header as the producer wrote it, else the instant as Python's `datetime.isoformat()` writes an aware UTC one. */
function isoformat(date: Date | null, header: unknown): string | null {
  if (typeof header === 'string' && header) return header;
  return date ? celeryIsoFormat(date) : null;
}

/** `task-received` as `celery.worker.strategy` sends it: args/kwargs as their reprs. */
export function taskReceived(request: SimpleRequest): { type: string } & Record<string, unknown> {
  const { headers } = request;
  return {
    type: 'task-received',
    name: request.name,
    args: typeof headers.argsrepr === 'string' ? headers.argsrepr : safeRepr(request.args),
    kwargs: typeof headers.kwargsrepr === 'string' ? headers.kwargsrepr : safeRepr(request.kwargs),
    root_id: request.rootId ?? (typeof headers.root_id === 'string' ? headers.root_id : null),
    parent_id: request.parentId ?? (typeof headers.parent_id === 'string' ? headers.parent_id : null),
    retries: request.retries,
    eta: isoformat(request.eta, headers.eta),
    expires: isoformat(request.expires, headers.expires),
  };
}
