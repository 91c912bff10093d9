import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { BatchesModuleOptions } from './batches.options.js';

export const { ConfigurableModuleClass, MODULE_OPTIONS_TOKEN, OPTIONS_TYPE, ASYNC_OPTIONS_TYPE } =
  new ConfigurableModuleBuilder<BatchesModuleOptions>()
    .setClassMethodName('forRoot')
    // The client, results and server are app-wide: one worker per application.
    .setExtras({}, (definition) => ({ ...definition, global: true }))
    .build();

/** Options of `BatchesModule.forRootAsync()`: `imports`, `inject`, `useFactory` (or `useClass` / `useExisting`). */
export type BatchesModuleAsyncOptions = typeof ASYNC_OPTIONS_TYPE;
