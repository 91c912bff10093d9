import { Inject, Injectable, Logger } from '@nestjs/common';
import { Server, type CustomTransportStrategy } from '@nestjs/microservices';
import { BATCHES_BROKER, BATCHES_OPTIONS } from '../batches.constants.js';
import type { ResolvedModuleOptions } from '../options/resolve-module-options.js';
import type { Broker, BrokerEvent } from '../broker/broker.interface.js';
import { CeleryEvents } from '../control/celery-events.js';
import { RemoteControl } from '../control/remote-control.js';
import { BatchWorker } from './batch-worker.js';

/** `failed`: an error that reconnecting cannot fix (credentials, vhost, TLS, a conflicting queue) stopped the worker. */
export type BatchesStatus = 'connecting' | 'connected' | 'disconnected' | 'failed';

type BatchesEvents = Record<BrokerEvent, (detail?: unknown) => void>;

/** Transport id of the batches strategy. */
export const BATCHES_TRANSPORT = Symbol('nestjs-batches');

/**
 * The Nest transport strategy that runs the batch worker:
 * `app.connectMicroservice({ strategy: app.get(BatchesServer) })`. Handlers are `@BatchHandler`
 * methods, not `@MessagePattern`s: batches never go through Nest's per-message dispatch.
 */
@Injectable()
export class BatchesServer extends Server<BatchesEvents, BatchesStatus> implements CustomTransportStrategy {
  override transportId = BATCHES_TRANSPORT;

  constructor(
    private readonly worker: BatchWorker,
    @Inject(BATCHES_BROKER) private readonly broker: Broker,
    @Inject(BATCHES_OPTIONS) private readonly options: ResolvedModuleOptions,
    private readonly control: RemoteControl,
    private readonly celeryEvents: CeleryEvents,
  ) {
    super();
    // `connecting` until the first connection; `disconnected` once one is lost.
    let connected = broker.url === 'memory://';
    this._status$.next(connected ? 'connected' : 'connecting');
    broker.on('connect', () => {
      connected = true;
      this._status$.next('connected');
    });
    broker.on('disconnect', () => {
      if (connected) this._status$.next('disconnected');
    });
    broker.on('failed', () => this._status$.next('failed'));
  }

  /**
   * Starts the worker. By default resolves at once and connects in the background, so the app
   * comes up while the broker is down; with `waitForBroker` it resolves once every queue is consumed.
   */
  listen(callback: (error?: unknown) => void): void {
    let started: Promise<void>;
    try {
      started = this.worker.start();
    } catch (error) {
      return callback(error); // configuration errors stop startup
    }
    // Celery's remote control (pidbox); never rejects, so it never stops the worker.
    const control = this.control.start();
    // Celery events (`sendEvents` / remote `enable_events`): fire-and-forget, never stops the worker.
    this.celeryEvents.start();
    if (this.options.waitForBroker) {
      Promise.all([started, control]).then(() => callback(), callback);
      return;
    }
    // The broker has logged what stopped it; anything else is logged here.
    started.catch((error: unknown) => {
      if (error !== this.broker.failure && !this.worker.stopped) new Logger('BatchesServer').error(`The worker stopped: ${String(error)}`);
    });
    callback();
  }

  /** Stops consuming, runs every buffered request through its handler, acks, then returns. */
  async close(): Promise<void> {
    await Promise.all([this.control.stop(), this.worker.stop()]);
    // After the drain, so the last batches' task events precede `worker-offline`.
    await this.celeryEvents.stop();
  }

  on<EventKey extends keyof BatchesEvents>(event: EventKey, callback: BatchesEvents[EventKey]): void {
    this.broker.on(event, callback);
  }

  /** The broker: an `AmqpBroker` (its `unwrap()` is the amqp-connection-manager connection) or a `MemoryBroker`. */
  unwrap<T>(): T {
    return this.broker as T;
  }
}
