import type { SimpleRequest } from '../simple-request.js';

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
