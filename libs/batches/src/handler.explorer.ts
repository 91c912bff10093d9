import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import { BATCH_EVENT_METADATA, BATCH_HANDLER_METADATA, BATCHES_OPTIONS } from './batches.constants.js';
import type { BatchEvent, BatchEventType } from './events/batch-events.js';
import type { BatchHandlerMetadata } from './batch-handler.decorator.js';
import { BatchesConfigError, resolveHandlerOptions, type ResolvedHandlerOptions, type ResolvedModuleOptions } from './batches.options.js';
import type { SimpleRequest } from './simple-request.js';

/** A discovered `@BatchHandler` method, bound to its instance. */
export interface RegisteredHandler {
  task: string;
  options: ResolvedHandlerOptions;
  /** `ClassName.method`, for logs and errors. */
  source: string;
  invoke(requests: SimpleRequest[]): Promise<unknown>;
}

/** A discovered `@OnBatchEvent` method, bound to its instance. */
export interface RegisteredEventListener {
  type: BatchEventType;
  source: string;
  call(event: BatchEvent): unknown;
}

/** Finds `@BatchHandler` and `@OnBatchEvent` methods on every provider and controller at bootstrap. */
@Injectable()
export class HandlerExplorer implements OnModuleInit {
  private readonly handlers = new Map<string, RegisteredHandler>();
  private readonly listeners: RegisteredEventListener[] = [];
  private explored = false;

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly reflector: Reflector,
    @Inject(BATCHES_OPTIONS) private readonly options: ResolvedModuleOptions,
  ) {}

  /** Explores at init so that configuration errors stop the app at startup. */
  onModuleInit(): void {
    this.explore();
  }

  get(task: string): RegisteredHandler | undefined {
    this.explore();
    return this.handlers.get(task);
  }

  all(): RegisteredHandler[] {
    this.explore();
    return [...this.handlers.values()];
  }

  eventListeners(): readonly RegisteredEventListener[] {
    this.explore();
    return this.listeners;
  }

  // Also called lazily: a hybrid app may start its microservices before running init hooks.
  private explore(): void {
    if (this.explored) return;
    this.explored = true;
    for (const wrapper of [...this.discovery.getProviders(), ...this.discovery.getControllers()]) {
      const instance: unknown = wrapper.instance;
      // Request-scoped and not-yet-resolved providers have no stable instance to call.
      if (!instance || typeof instance !== 'object' || !wrapper.isDependencyTreeStatic()) continue;
      const prototype = Object.getPrototypeOf(instance) as object;
      for (const method of this.scanner.getAllMethodNames(prototype)) {
        this.register(instance as Record<string, unknown>, method);
      }
    }
  }

  private register(instance: Record<string, unknown>, method: string): void {
    const fn = instance[method];
    if (typeof fn !== 'function') return;
    const eventType = this.reflector.get<BatchEventType | undefined>(BATCH_EVENT_METADATA, fn);
    if (eventType) {
      this.listeners.push({ type: eventType, source: `${instance.constructor.name}.${method}`, call: (event) => fn.call(instance, event) });
    }
    const metadata = this.reflector.get<BatchHandlerMetadata | undefined>(BATCH_HANDLER_METADATA, fn);
    if (!metadata) return;
    const source = `${instance.constructor.name}.${method}`;
    const existing = this.handlers.get(metadata.task);
    if (existing) {
      throw new BatchesConfigError(
        `@BatchHandler('${metadata.task}') is declared twice: on ${existing.source} and on ${source}. A task name has one handler; rename one of them.`,
      );
    }
    this.handlers.set(metadata.task, {
      task: metadata.task,
      options: resolveHandlerOptions(metadata.task, metadata.options, this.options),
      source,
      invoke: async (requests) => fn.call(instance, requests),
    });
  }
}
