import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import type { InstanceWrapper } from '@nestjs/core/injector/instance-wrapper.js';
import { BATCH_EVENT_METADATA, BATCH_HANDLER_METADATA, BATCHES_OPTIONS } from './batches.constants.js';
import type { BatchEvent, BatchEventType } from './events/batch-events.js';
import type { BatchHandlerMetadata } from './batch-handler.decorator.js';
import { BatchesConfigError } from './options/option-checks.js';
import { resolveHandlerOptions, type ResolvedHandlerOptions } from './options/resolve-handler-options.js';
import type { ResolvedModuleOptions } from './options/resolve-module-options.js';
import type { BatchRunContext } from './batch-context.js';
import { HandlerInvokers } from './handler-invokers.js';
import type { SimpleRequest } from './simple-request.js';

/** A discovered `@BatchHandler` method, bound to its instance. */
export interface RegisteredHandler {
  task: string;
  options: ResolvedHandlerOptions;
  /** `ClassName.method`, for logs and errors. */
  source: string;
  /** Runs the handler through Nest's pipeline (guards, interceptors, pipes, filters). */
  invoke(requests: SimpleRequest[], context?: BatchRunContext): Promise<unknown>;
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
    private readonly invokers: HandlerInvokers,
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
      if (!instance || typeof instance !== 'object') continue;
      // Request-scoped and transient providers get a fresh instance per batch (see HandlerInvokers.scoped).
      const scoped = !wrapper.isDependencyTreeStatic() || wrapper.isTransient;
      const prototype = Object.getPrototypeOf(instance) as object;
      for (const method of this.scanner.getAllMethodNames(prototype)) {
        this.register(instance as Record<string, unknown>, method, scoped ? wrapper : undefined);
      }
    }
  }

  private register(instance: Record<string, unknown>, method: string, scoped?: InstanceWrapper): void {
    const fn = instance[method];
    if (typeof fn !== 'function') return;
    const source = `${instance.constructor.name}.${method}`;
    const eventType = this.reflector.get<BatchEventType | undefined>(BATCH_EVENT_METADATA, fn);
    if (eventType) {
      if (scoped) {
        throw new BatchesConfigError(
          `@OnBatchEvent('${eventType}') on ${source}: ${instance.constructor.name} is request-scoped or transient, and event listeners need one instance. ` +
            'Move the listener to a singleton provider (the default scope).',
        );
      }
      this.listeners.push({ type: eventType, source, call: (event) => fn.call(instance, event) });
    }
    const metadata = this.reflector.get<BatchHandlerMetadata | undefined>(BATCH_HANDLER_METADATA, fn);
    if (!metadata) return;
    const existing = this.handlers.get(metadata.task);
    if (existing) {
      throw new BatchesConfigError(
        `@BatchHandler('${metadata.task}') is declared twice: on ${existing.source} and on ${source}. A task name has one handler; rename one of them.`,
      );
    }
    const options = resolveHandlerOptions(metadata.task, metadata.options, this.options);
    const invoke = scoped ? this.invokers.scoped(scoped.token, method, scoped.id) : this.invokers.singleton(instance, method);
    const fallback: BatchRunContext = { task: metadata.task, queue: options.queue, reason: 'count' };
    this.handlers.set(metadata.task, {
      task: metadata.task,
      options,
      source,
      invoke: (requests, context = fallback) => invoke(requests, context),
    });
  }
}
