import { SetMetadata } from '@nestjs/common';
import { BATCH_HANDLER_METADATA } from './batches.constants.js';
import type { BatchHandlerOptions } from './batches.options.js';

export interface BatchHandlerMetadata {
  task: string;
  options: BatchHandlerOptions;
}

/**
 * Marks a method as the batch handler of Celery task `task`: the worker buffers the task's
 * requests and calls the method with up to `flushEvery` of them at a time.
 */
export const BatchHandler = (task: string, options: BatchHandlerOptions = {}): MethodDecorator =>
  SetMetadata<symbol, BatchHandlerMetadata>(BATCH_HANDLER_METADATA, { task, options });
