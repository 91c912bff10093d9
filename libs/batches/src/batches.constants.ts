export const BATCH_HANDLER_METADATA = Symbol('nestjs-batches:batch-handler');
export const BATCH_EVENT_METADATA = Symbol('nestjs-batches:batch-event');
/** The resolved, validated module options. */
export const BATCHES_OPTIONS = Symbol('nestjs-batches:options');
export const BATCHES_BROKER = Symbol('nestjs-batches:broker');
