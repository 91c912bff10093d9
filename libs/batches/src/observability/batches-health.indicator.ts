import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import type { Subscription } from 'rxjs';
import { BATCHES_BROKER, BATCHES_OPTIONS } from '../batches.constants.js';
import type { ResolvedModuleOptions } from '../options/resolve-module-options.js';
import type { Broker } from '../broker/broker.interface.js';
import { WorkerActivity } from '../control/worker-activity.js';
import { BatchEvents } from '../events/batch-events.js';
import { HandlerExplorer } from '../handler.explorer.js';
import { ResultBackend } from '../results/result-backend.js';
import { BatchesServer, type BatchesStatus } from '../transport/batches.server.js';

/** Without `healthWedgedAfter`: this many times the longest `flushInterval`… */
const WEDGED_FLUSH_INTERVALS = 5;
/** …and never less than this (ms). */
const MIN_WEDGED_AFTER = 300_000;
/** How long (ms) the result backend may take to answer before it counts as down. */
const RESULT_BACKEND_TIMEOUT = 2_000;

/** What `BatchesHealthIndicator` reports under its key; `message` names what is wrong when `status` is `down`. */
export type BatchesHealthDetails = {
  status: 'up' | 'down';
  /** Each problem, `; `-separated; absent when up. */
  message?: string;
  /** The broker as `BatchesServer.status` sees it (`memory://` is always `connected`). `error`: why it `failed`. */
  broker: { status: BatchesStatus; url: string; error?: string };
  /** Each handler's queue: `consuming` or `not consumed`. Absent on `memory://`. */
  queues?: Record<string, 'consuming' | 'not consumed'>;
  resultBackend: { status: 'up' | 'down'; error?: string };
  /**
   * `wedged` when requests are buffered or running but no batch has finished for `wedgedAfterMs`;
   * `tasks` then names the tasks of those requests.
   */
  worker: {
    status: 'ok' | 'wedged';
    buffered: number;
    running: number;
    lastBatchFinishedAt: string | null;
    wedgedAfterMs: number;
    stalledForMs?: number;
    tasks?: string[];
  };
};

/** `{ [key]: details }`: the shape of Terminus's `HealthIndicatorResult`, so `HealthCheckService.check()` takes it as is. */
export type BatchesHealthResult<Key extends string = 'batches'> = Record<Key, BatchesHealthDetails>;

/**
 * A `@nestjs/terminus` health indicator for the batch worker:
 *
 * ```ts
 * @Get('health') @HealthCheck()
 * check() { return this.health.check([() => this.batches.isHealthy()]); }
 * ```
 *
 * It imports nothing from Terminus: it returns Terminus's result shape (`{ batches: { status: 'up' | 'down', … } }`),
 * which Terminus 11+ counts as up or down (503) by its `status`, so importing `nestjs-batches` never
 * needs `@nestjs/terminus`, and the indicator works with whichever Terminus the app has.
 *
 * Down when the broker is not connected, a handler's queue is not consumed, the result backend does
 * not answer, or the worker is wedged (see `healthWedgedAfter`). Watching for finished batches starts
 * with the first check, so apps that never check pay nothing for it.
 */
@Injectable()
export class BatchesHealthIndicator implements OnModuleDestroy {
  private readonly subscriptions: Subscription[] = [];
  private watching = false;
  private status: BatchesStatus = 'connecting';
  private lastFinishedAt?: number;
  /** When a check first saw the current stretch of pending work (reset by a check that sees none). */
  private busySeenAt?: number;

  constructor(
    private readonly server: BatchesServer,
    @Inject(BATCHES_BROKER) private readonly broker: Broker,
    private readonly results: ResultBackend,
    private readonly activity: WorkerActivity,
    private readonly events: BatchEvents,
    private readonly handlers: HandlerExplorer,
    @Inject(BATCHES_OPTIONS) private readonly options: ResolvedModuleOptions,
  ) {}

  /** For `HealthCheckService.check([() => indicator.isHealthy()])`; never rejects. */
  async isHealthy<const Key extends string = 'batches'>(key: Key = 'batches' as Key): Promise<BatchesHealthResult<Key>> {
    this.watch();
    const problems: string[] = [];
    const memory = this.broker.url.startsWith('memory:');

    const broker: BatchesHealthDetails['broker'] = { status: memory ? 'connected' : this.status, url: this.broker.url };
    if (!memory && broker.status !== 'connected') {
      if (broker.status === 'failed' && this.broker.failure) broker.error = this.broker.failure.message;
      problems.push(`broker ${this.broker.url} is ${broker.status}${broker.error ? `: ${broker.error}` : ''}`);
    }

    let queues: BatchesHealthDetails['queues'];
    const consumptions = memory ? undefined : this.broker.consuming?.();
    if (consumptions) {
      queues = {};
      for (const queue of new Set(this.handlers.all().map((handler) => handler.options.queue))) {
        const consumed = consumptions.some((each) => each.queue === queue && each.consuming);
        queues[queue] = consumed ? 'consuming' : 'not consumed';
        if (!consumed) problems.push(`queue '${queue}' is not consumed`);
      }
    }

    const resultBackend = await this.pingResultBackend();
    if (resultBackend.error) problems.push(`result backend: ${resultBackend.error}`);

    const worker = this.workerHealth();
    if (worker.status === 'wedged') {
      problems.push(
        `worker wedged: ${worker.buffered} buffered and ${worker.running} running request(s) of ${worker.tasks?.map((task) => `'${task}'`).join(', ')}, ` +
          `no batch finished for ${worker.stalledForMs} ms (healthWedgedAfter ${worker.wedgedAfterMs} ms)`,
      );
    }

    const details: BatchesHealthDetails =
      problems.length === 0
        ? { status: 'up', broker, ...(queues && { queues }), resultBackend, worker }
        : { status: 'down', message: problems.join('; '), broker, ...(queues && { queues }), resultBackend, worker };
    return { [key]: details } as BatchesHealthResult<Key>;
  }

  /** `healthWedgedAfter`, else 5 × the longest handler `flushInterval`, at least 5 minutes. */
  wedgedAfter(): number {
    if (this.options.healthWedgedAfter !== undefined) return this.options.healthWedgedAfter;
    const intervals = this.handlers.all().map((handler) => handler.options.flushInterval);
    const longest = intervals.length > 0 ? Math.max(...intervals) : this.options.flushInterval;
    return Math.max(WEDGED_FLUSH_INTERVALS * longest, MIN_WEDGED_AFTER);
  }

  onModuleDestroy(): void {
    for (const subscription of this.subscriptions) subscription.unsubscribe();
    this.subscriptions.length = 0;
  }

  /** Follows the server's status (a replay: its current value arrives at once) and finished batches. */
  private watch(): void {
    if (this.watching) return;
    this.watching = true;
    this.subscriptions.push(
      this.server.status.subscribe((status) => (this.status = status)),
      this.events.events$.subscribe((event) => {
        if (event.type === 'batch.completed' || event.type === 'batch.failed') this.lastFinishedAt = event.at;
      }),
    );
  }

  private async pingResultBackend(): Promise<BatchesHealthDetails['resultBackend']> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.results.ping(),
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${RESULT_BACKEND_TIMEOUT} ms`)), RESULT_BACKEND_TIMEOUT);
        }),
      ]);
      return { status: 'up' };
    } catch (error) {
      return { status: 'down', error: error instanceof Error ? error.message : String(error) };
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Wedged: requests are buffered or running, and no batch has finished since the later of the last
   * finished batch and the start of this stretch of pending work. That start is taken as the earlier
   * of the first check that saw the work pending and the oldest running batch's start: never before
   * the work was really pending, so a worker is never called wedged early (at most one check late).
   */
  private workerHealth(): BatchesHealthDetails['worker'] {
    const now = Date.now();
    const buffered = this.activity.reserved();
    const active = this.activity.active();
    const wedgedAfterMs = this.wedgedAfter();
    const lastBatchFinishedAt = this.lastFinishedAt === undefined ? null : new Date(this.lastFinishedAt).toISOString();
    const worker: BatchesHealthDetails['worker'] = {
      status: 'ok',
      buffered: buffered.length,
      running: active.length,
      lastBatchFinishedAt,
      wedgedAfterMs,
    };
    if (buffered.length === 0 && active.length === 0) {
      this.busySeenAt = undefined;
      return worker;
    }
    this.busySeenAt ??= now;
    let pendingSince = this.busySeenAt;
    for (const { timeStart } of active) pendingSince = Math.min(pendingSince, timeStart * 1000);
    const stalledForMs = now - Math.max(pendingSince, this.lastFinishedAt ?? -Infinity);
    if (stalledForMs <= wedgedAfterMs) return worker;
    const tasks = new Set([...active.map(({ request }) => request.name), ...buffered.map((request) => request.name)]);
    return { ...worker, status: 'wedged', stalledForMs, tasks: [...tasks].toSorted() };
  }
}
