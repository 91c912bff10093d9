import { Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { filter, type Subscription } from 'rxjs';
import { HandlerExplorer } from '../handler.explorer.js';
import { BatchEvents } from './batch-events.js';

const logger = new Logger('BatchEvents');

/** Subscribes every `@OnBatchEvent` method to the worker's events, and unsubscribes at shutdown. */
@Injectable()
export class BatchEventListeners implements OnModuleInit, OnApplicationShutdown {
  private readonly subscriptions: Subscription[] = [];

  constructor(
    private readonly explorer: HandlerExplorer,
    private readonly events: BatchEvents,
  ) {}

  onModuleInit(): void {
    for (const listener of this.explorer.eventListeners()) {
      const subscription = this.events.events$.pipe(filter((event) => event.type === listener.type)).subscribe((event) => {
        try {
          const returned: unknown = listener.call(event);
          if (returned instanceof Promise) returned.catch((error: unknown) => report(listener.source, error));
        } catch (error) {
          report(listener.source, error);
        }
      });
      this.subscriptions.push(subscription);
    }
  }

  onApplicationShutdown(): void {
    for (const subscription of this.subscriptions.splice(0)) subscription.unsubscribe();
  }
}

function report(source: string, error: unknown): void {
  logger.error(`@OnBatchEvent listener ${source} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
}
