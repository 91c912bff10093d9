import { Inject, Injectable, Optional, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import {
  bufferTime,
  defer,
  filter,
  map,
  race,
  ReplaySubject,
  share,
  startWith,
  takeUntil,
  timer,
  withLatestFrom,
  type Observable,
} from 'rxjs';
import { BatchesConfigError } from '../options/option-checks.js';
import { WorkerActivity } from '../control/worker-activity.js';
import { BatchEvents } from '../events/batch-events.js';
import { HandlerExplorer } from '../handler.explorer.js';
import { BatchWorker } from '../transport/batch-worker.js';
import { BatchesServer, type BatchesStatus } from '../transport/batches.server.js';
import { MONITOR_OPTIONS } from './monitor.constants.js';
import { MONITOR_WINDOW, type ResolvedMonitorOptions } from './monitor.options.js';
import type { MonitorQueueSnapshot, MonitorSnapshot, MonitorTaskSnapshot } from './monitor-snapshot.js';
import { MonitorWindow } from './monitor-window.js';

/** How long (ms) counting goes on after the last page closed, so a reload keeps the totals. */
const KEEP_COUNTING = 60_000;

/** What the worker reads out at each snapshot: the same sources as the metrics' gauges. */
interface WorkerParts {
  activity: WorkerActivity;
  worker: BatchWorker;
  handlers: HandlerExplorer;
}

/**
 * The monitor's snapshots, one per `refreshInterval`, shared by every open page: counts come from
 * `BatchEvents` (only while someone watches), gauges (buffered, in flight, held) are read from the
 * worker at each snapshot.
 */
@Injectable()
export class MonitorSnapshots implements OnModuleInit, OnModuleDestroy {
  /** Every open page's stream: the latest snapshot at once, then one per `refreshInterval`; completes when the app closes. */
  readonly snapshots$: Observable<MonitorSnapshot>;
  /** Replays, so a stream opened during shutdown ends at once too. */
  private readonly closing = new ReplaySubject<void>(1);
  private parts?: WorkerParts;
  private shutDown = false;

  constructor(
    @Inject(MONITOR_OPTIONS) private readonly options: ResolvedMonitorOptions,
    private readonly moduleRef: ModuleRef,
    @Optional() events?: BatchEvents,
    @Optional() server?: BatchesServer,
  ) {
    if (!events || !server) {
      throw new BatchesConfigError(
        'BatchesMonitorModule shows the batch worker of this app: import BatchesModule.forRoot() (or forRootAsync()) in it too.',
      );
    }
    this.snapshots$ = defer(() => this.watch(events, server)).pipe(
      takeUntil(this.closing),
      // After the last page left: a minute more, or no time at all once the app is closing (no timer left behind).
      share({ connector: () => new ReplaySubject(1), resetOnRefCountZero: () => race(timer(KEEP_COUNTING), this.closing) }),
    );
  }

  /** The worker's own parts are not exported by BatchesModule: looked up once every provider exists. */
  onModuleInit(): void {
    const find = <T>(token: abstract new (...args: never[]) => T): T => this.moduleRef.get(token, { strict: false });
    this.parts = { activity: find(WorkerActivity), worker: find(BatchWorker), handlers: find(HandlerExplorer) };
  }

  /** True once the app is shutting down: streams have ended. */
  get closed(): boolean {
    return this.shutDown;
  }

  /** Ends every page's stream, so open pages never hold the HTTP server open at shutdown. */
  onModuleDestroy(): void {
    this.shutDown = true;
    this.closing.next();
    this.closing.complete();
  }

  private watch(events: BatchEvents, server: BatchesServer): Observable<MonitorSnapshot> {
    const { refreshInterval } = this.options;
    const window = new MonitorWindow(Math.ceil(MONITOR_WINDOW / refreshInterval), refreshInterval, this.options);
    return events.events$.pipe(
      filter((event) => window.wants(event)),
      bufferTime(refreshInterval),
      map((tick) => window.add(tick)),
      startWith(window),
      withLatestFrom(server.status),
      map(([counts, broker]) => this.snapshot(counts, broker)),
    );
  }

  private snapshot(window: MonitorWindow, broker: BatchesStatus): MonitorSnapshot {
    const parts = this.parts;
    if (!parts) throw new Error('MonitorSnapshots: a page was served before the app initialized');
    const { activity, worker, handlers } = parts;
    const buffered = countByTask(activity.reserved());
    const inFlight = countByTask(activity.active().map(({ request }) => request));
    const tasks: MonitorTaskSnapshot[] = handlers
      .all()
      .toSorted((a, b) => a.task.localeCompare(b.task))
      .map(({ task, options }) => ({
        task,
        queue: options.queue,
        flushEvery: options.flushEvery,
        flushInterval: options.flushInterval,
        concurrency: options.concurrency,
        flush: options.flush,
        grouped: options.groupBy !== undefined,
        ...window.task(task),
        buffered: buffered.get(task) ?? 0,
        inFlight: inFlight.get(task) ?? 0,
      }));
    const held = new Map(worker.held().map(({ queue, count }) => [queue, count]));
    const queues: MonitorQueueSnapshot[] = [...new Set(tasks.map(({ queue }) => queue))].toSorted().map((queue) => ({
      queue,
      tasks: tasks.filter((each) => each.queue === queue).map(({ task }) => task),
      held: held.get(queue) ?? 0,
      ...window.queue(queue),
    }));
    return {
      at: Date.now(),
      hostname: activity.hostname,
      broker,
      windowMs: window.windowMs,
      since: window.since,
      showArguments: this.options.showArguments,
      showResults: this.options.showResults,
      tasks,
      queues,
    };
  }
}

function countByTask(requests: ReadonlyArray<{ name: string }>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const { name } of requests) counts.set(name, (counts.get(name) ?? 0) + 1);
  return counts;
}
