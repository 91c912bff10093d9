import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { FlushReason } from './events/batch-events.js';
import type { SimpleRequest } from './simple-request.js';

/**
 * What a batch handler is called with besides its requests: the second argument of the handler,
 * `@BatchContext()`, and `ExecutionContext.switchToRpc().getContext()` in guards and interceptors.
 */
export interface BatchRunContext {
  task: string;
  queue: string;
  /** Why the batch left its buffer; `count` for eager runs. */
  reason: FlushReason;
}

/** What a request-scoped batch handler's `@Inject(REQUEST)` receives: the batch it runs. */
export interface BatchRequest {
  requests: readonly SimpleRequest[];
  context: BatchRunContext;
}

/** The batch's requests (`SimpleRequest[]`), as a handler parameter; takes pipes like `@Payload()`. */
export const Requests = createParamDecorator((_data: unknown, context: ExecutionContext) =>
  context.switchToRpc().getData<SimpleRequest[]>(),
);

/** The batch's `BatchRunContext` (task, queue, flush reason), as a handler parameter. */
export const BatchContext = createParamDecorator((_data: unknown, context: ExecutionContext) =>
  context.switchToRpc().getContext<BatchRunContext>(),
);
