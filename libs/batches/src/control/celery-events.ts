import { Inject, Injectable, Logger } from '@nestjs/common';
import type { AmqpConnectionManager, ChannelWrapper } from 'amqp-connection-manager';
import type { Channel } from 'amqplib';
import type { Subscription } from 'rxjs';
import { BATCHES_BROKER, BATCHES_OPTIONS } from '../batches.constants.js';
import type { ResolvedModuleOptions } from '../options/resolve-module-options.js';
import { AmqpBroker } from '../broker/amqp.broker.js';
import type { Broker } from '../broker/broker.interface.js';
import { BatchEvents, type BatchEvent } from '../events/batch-events.js';
import type { SimpleRequest } from '../simple-request.js';
import { exceptionRepr, pythonRepr, safeRepr, tracebackText } from '../results/python-repr.js';
import { celeryEvent, loadAverage, softwareInfo, taskReceived, type CeleryEvent } from './celery-formats.js';
import { WorkerActivity } from './worker-activity.js';

/** Celery's event exchange (`celery.events.event.event_exchange`): a durable topic exchange. */
export const CELERY_EVENT_EXCHANGE = 'celeryev';
/** Seconds between `worker-heartbeat`s (Celery's `Heart.interval`). */
export const HEARTBEAT_INTERVAL = 2;
/** Task events sent as one `task.multi` message at most (Celery's `EventDispatcher.buffer_limit`). */
const BUFFER_LIMIT = 24;
/** How long an event may wait for a connection before it is dropped (ms). */
const PUBLISH_TIMEOUT = 5_000;
/** How long closing waits for `worker-offline` to be written (ms). */
const OFFLINE_TIMEOUT = 2_000;

/**
 * Sends Celery's monitoring events on the `celeryev` topic exchange as a Python worker does, so
 * `celery events`, Flower and any `app.events.Receiver` see the Nest worker: `worker-online`, a
 * `worker-heartbeat` every 2 s and `worker-offline`, and per request `task-received`,
 * `task-started`, `task-succeeded`, `task-failed`, `task-retried`, `task-revoked`, `task-rejected`.
 *
 * Off by default, like Celery: on with the `sendEvents` option or the remote `enable_events`
 * command. While off it subscribes to nothing, so the worker builds no events. As in Celery,
 * `disable_events` stops task events while the worker keeps its heartbeat once it announced
 * itself. Publishing is fire-and-forget on a channel of its own without confirms: it never slows
 * or fails the worker; errors are logged once per outage. On `memory://` it does nothing.
 */
@Injectable()
export class CeleryEvents {
  private readonly logger = new Logger('BatchesServer');
  private channel?: ChannelWrapper;
  private heartbeat?: NodeJS.Timeout;
  private taskEvents?: Subscription;
  private toggles?: Subscription;
  private buffer: CeleryEvent[] = [];
  private flushScheduled = false;
  private running = false;
  private online = false;
  private failing = false;
  private software?: ReturnType<typeof softwareInfo>;

  constructor(
    private readonly activity: WorkerActivity,
    private readonly events: BatchEvents,
    @Inject(BATCHES_BROKER) private readonly broker: Broker,
    @Inject(BATCHES_OPTIONS) private readonly options: ResolvedModuleOptions,
  ) {}

  /** True while events are published (the worker runs and events are enabled). */
  get sending(): boolean {
    return this.online;
  }

  /** Starts following `eventsEnabled`; sends `worker-online` once events are on. Never throws. */
  start(): void {
    if (this.running || !(this.broker instanceof AmqpBroker)) return; // no Celery tool can reach an in-process broker
    this.running = true;
    this.toggles = this.activity.eventsEnabled$.subscribe((enabled) => (enabled ? this.enable() : this.disable()));
  }

  /** Sends `worker-offline` (waiting for it briefly), then closes the events channel. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.toggles?.unsubscribe();
    this.taskEvents?.unsubscribe();
    this.taskEvents = undefined;
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    const channel = this.channel;
    this.channel = undefined;
    if (!channel) return;
    if (this.online) {
      this.online = false;
      this.flush(channel);
      const offline = this.publish(this.workerEvent('worker-offline'), channel);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([offline, new Promise((resolve) => (timer = setTimeout(resolve, OFFLINE_TIMEOUT)))]);
      clearTimeout(timer);
    }
    await channel.close().catch(() => undefined);
  }

  private enable(): void {
    if (!this.running) return;
    if (!this.online) {
      try {
        this.channel ??= this.openChannel();
      } catch (error) {
        return this.failed(error); // e.g. the broker has stopped for good
      }
      this.online = true;
      void this.publish(this.workerEvent('worker-online'));
      this.heartbeat = setInterval(() => void this.publish(this.workerEvent('worker-heartbeat')), HEARTBEAT_INTERVAL * 1000);
      this.heartbeat.unref();
    }
    this.taskEvents ??= this.events.events$.subscribe((event) => this.onBatchEvent(event));
  }

  /** Task events stop; the heartbeat goes on, as Celery's `disable_events` leaves the worker group on. */
  private disable(): void {
    this.taskEvents?.unsubscribe();
    this.taskEvents = undefined;
    if (this.channel) this.flush(this.channel);
  }

  private openChannel(): ChannelWrapper {
    const connection = (this.broker as AmqpBroker).unwrap() as AmqpConnectionManager;
    const channel = connection.createChannel({
      confirm: false,
      publishTimeout: PUBLISH_TIMEOUT,
      // kombu's `Exchange('celeryev', type='topic')`: durable, not auto-deleted, as Python declares it.
      setup: (ch: Channel) => ch.assertExchange(CELERY_EVENT_EXCHANGE, 'topic', { durable: true, autoDelete: false }),
    });
    channel.on('error', (error: Error) => this.failed(error));
    return channel;
  }

  /** `worker-online`/`-heartbeat`/`-offline` with `Heart._send`'s fields. */
  private workerEvent(type: string): CeleryEvent {
    const processed = Object.values(this.activity.processedTotals()).reduce((sum, count) => sum + count, 0);
    this.software ??= softwareInfo();
    return celeryEvent(type, this.options.hostname, this.activity.clock, {
      freq: HEARTBEAT_INTERVAL,
      active: this.activity.active().length,
      processed,
      loadavg: loadAverage(),
      ...this.software,
    });
  }

  private onBatchEvent(event: BatchEvent): void {
    switch (event.type) {
      case 'request.received':
        // Like Celery's strategy, a request revoked or expired on arrival gets only its task-revoked.
        if (this.skippedOnArrival(event.request)) return;
        return this.task(taskReceived(event.request), event.request);
      case 'batch.started':
        for (const request of event.requests) this.task({ type: 'task-started' }, request);
        return;
      case 'request.succeeded':
        return this.task({ type: 'task-succeeded', result: safeRepr(event.result), runtime: event.runtimeMs / 1000 }, event.request);
      case 'request.failed':
        return this.task(
          { type: 'task-failed', exception: exceptionRepr(event.error), traceback: tracebackText(event.error) },
          event.request,
        );
      case 'request.retried':
        return this.task(
          { type: 'task-retried', exception: exceptionRepr(event.error), traceback: tracebackText(event.error) },
          event.request,
        );
      case 'request.revoked':
      case 'request.expired':
        return this.task(
          { type: 'task-revoked', terminated: false, signum: null, expired: event.type === 'request.expired' },
          event.request,
        );
      case 'request.deadLettered':
        if (event.id === null) return;
        if (event.request === null && event.reason.startsWith('unknown task') && event.task) {
          // `Consumer.on_unknown_task`: a task-failed without a task-received.
          return this.task({ type: 'task-failed', exception: `NotRegistered(${pythonRepr(event.task)})` }, event.id);
        }
        return this.task({ type: 'task-rejected', requeue: false }, event.request ?? event.id);
      default:
        return;
    }
  }

  private skippedOnArrival(request: SimpleRequest): boolean {
    if (this.activity.revoked.has(request.id)) return true;
    const now = Date.now();
    return request.expires !== null && request.expires.getTime() <= now && !(request.eta !== null && request.eta.getTime() > now);
  }

  /** `Request.send_event`: `uuid` first; task events go out in `task.multi` lists like a Python worker's. */
  private task({ type, ...fields }: { type: string } & Record<string, unknown>, request: SimpleRequest | string): void {
    const uuid = typeof request === 'string' ? request : request.id;
    this.buffer.push(celeryEvent(type, this.options.hostname, this.activity.clock, { uuid, ...fields }));
    if (this.buffer.length >= BUFFER_LIMIT) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  private flush(channel = this.channel): void {
    const events = this.buffer;
    if (events.length === 0) return;
    this.buffer = [];
    if (!channel) return;
    if (events.length === 1) void this.publish(events[0], channel);
    else void this.publish(events, channel, 'task.multi');
  }

  /** Fire-and-forget; resolves when written (or dropped), never rejects. */
  private publish(
    body: CeleryEvent | CeleryEvent[],
    channel = this.channel,
    routingKey = Array.isArray(body) ? 'task.multi' : body.type.replace(/-/g, '.'),
  ): Promise<void> {
    if (!channel) return Promise.resolve();
    let payload: Buffer;
    try {
      payload = Buffer.from(JSON.stringify(body));
    } catch (error) {
      this.failed(error);
      return Promise.resolve();
    }
    return channel
      .publish(CELERY_EVENT_EXCHANGE, routingKey, payload, {
        contentType: 'application/json',
        contentEncoding: 'utf-8',
        deliveryMode: 1,
        headers: { hostname: this.options.hostname },
      })
      .then(
        () => {
          this.failing = false;
        },
        (error: unknown) => this.failed(error),
      );
  }

  private failed(error: unknown): void {
    if (this.failing) return;
    this.failing = true;
    this.logger.warn(`Could not send Celery events to '${CELERY_EVENT_EXCHANGE}' (dropped until it works again): ${String(error)}`);
  }
}
