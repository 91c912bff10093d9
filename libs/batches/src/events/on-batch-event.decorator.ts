import { SetMetadata } from '@nestjs/common';
import { BATCH_EVENT_METADATA } from '../batches.constants.js';
import type { BatchEventType } from './batch-events.js';

/**
 * Calls the decorated provider method with every worker event of `type` (see `BatchEvent`), e.g.
 * `@OnBatchEvent('batch.flushed') onFlush(event: BatchFlushedEvent) {}`. Found at bootstrap like
 * `@BatchHandler`; a listener that throws or rejects is logged and never disturbs the worker.
 */
export const OnBatchEvent = (type: BatchEventType): MethodDecorator => SetMetadata<symbol, BatchEventType>(BATCH_EVENT_METADATA, type);
