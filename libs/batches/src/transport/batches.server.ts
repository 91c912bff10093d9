import { Inject, Injectable } from '@nestjs/common';
import { Server, type CustomTransportStrategy } from '@nestjs/microservices';
import { BATCHES_BROKER } from '../batches.constants.js';
import type { Broker, BrokerEvent } from '../broker/broker.interface.js';
import { BatchWorker } from './batch-worker.js';

export type BatchesStatus = 'connected' | 'disconnected';

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
  ) {
    super();
    broker.on('connect', () => this._status$.next('connected'));
    broker.on('disconnect', () => this._status$.next('disconnected'));
  }

  listen(callback: (error?: unknown) => void): void {
    this.worker.start().then(
      () => callback(),
      (error: unknown) => callback(error),
    );
  }

  /** Stops consuming, runs every buffered request through its handler, acks, then returns. */
  close(): Promise<void> {
    return this.worker.stop();
  }

  on<EventKey extends keyof BatchesEvents>(event: EventKey, callback: BatchesEvents[EventKey]): void {
    this.broker.on(event, callback);
  }

  /** The broker: an `AmqpBroker` (its `unwrap()` is the amqp-connection-manager connection) or a `MemoryBroker`. */
  unwrap<T>(): T {
    return this.broker as T;
  }
}
