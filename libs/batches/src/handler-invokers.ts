import { Injectable } from '@nestjs/common';
import { ROUTE_ARGS_METADATA } from '@nestjs/common/constants.js';
import { ContextIdFactory, ExternalContextCreator, ModuleRef } from '@nestjs/core';
import type { BatchRequest, BatchRunContext } from './batch-context.js';
import type { SimpleRequest } from './simple-request.js';

export type Invoke = (requests: SimpleRequest[], context: BatchRunContext) => Promise<unknown>;

type Method = (...args: unknown[]) => unknown;

// Only custom param decorators (`@Requests()`, `@BatchContext()`, your own) apply to batch handlers.
const PARAMS_FACTORY = { exchangeKeyForValue: (): undefined => undefined };

/**
 * Calls batch handlers the way Nest calls its own RPC handlers: through `ExternalContextCreator`,
 * so guards, interceptors, pipes and exception filters (global, class and method ones) apply to
 * each batch, with an `rpc` `ExecutionContext` whose data is the `SimpleRequest[]` and whose
 * context is the `BatchRunContext`.
 */
@Injectable()
export class HandlerInvokers {
  constructor(
    private readonly contexts: ExternalContextCreator,
    private readonly moduleRef: ModuleRef,
  ) {}

  /** For a singleton provider: the Nest pipeline is built once. */
  singleton(instance: object, method: string): Invoke {
    const callable = this.create(instance, method);
    return (requests, context) => callable(requests, context) as Promise<unknown>;
  }

  /**
   * For a request-scoped or transient provider: a fresh instance per batch, resolved under a
   * context id whose `REQUEST` is the batch (`BatchRequest`), as @nestjs/bullmq does per job.
   */
  scoped(token: unknown, method: string, inquirerId: string): Invoke {
    return async (requests, context) => {
      const contextId = ContextIdFactory.create();
      const batch: BatchRequest = { requests, context };
      this.moduleRef.registerRequestByContextId(batch, contextId);
      const instance = await this.moduleRef.resolve<object>(token as never, contextId, { strict: false });
      return this.create(instance, method, contextId, inquirerId)(requests, context) as Promise<unknown>;
    };
  }

  private create(instance: object, method: string, contextId?: ReturnType<typeof ContextIdFactory.create>, inquirerId?: string) {
    const callback = (instance as Record<string, Method>)[method];
    return this.contexts.create(
      instance,
      callback,
      method,
      ROUTE_ARGS_METADATA,
      PARAMS_FACTORY,
      contextId,
      inquirerId,
      { guards: true, interceptors: true, filters: true },
      'rpc',
    );
  }
}
