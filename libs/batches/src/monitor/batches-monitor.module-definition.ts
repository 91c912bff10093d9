import { ConfigurableModuleBuilder } from '@nestjs/common';
import { RouterModule } from '@nestjs/core';
import { MONITOR_DEFAULTS, resolveMonitorPath, type BatchesMonitorOptions, type BatchesMonitorRoute } from './monitor.options.js';

export const { ConfigurableModuleClass, MODULE_OPTIONS_TOKEN, OPTIONS_TYPE, ASYNC_OPTIONS_TYPE } =
  new ConfigurableModuleBuilder<BatchesMonitorOptions>()
    .setClassMethodName('forRoot')
    // Routes are fixed when the app scans its modules, before any async factory runs: `path` is an
    // extra of forRoot and forRootAsync alike, and Nest's RouterModule puts the controller under it.
    .setExtras<Required<BatchesMonitorRoute>>({ path: MONITOR_DEFAULTS.path }, (definition, { path }) => ({
      ...definition,
      imports: [...(definition.imports ?? []), RouterModule.register([{ path: resolveMonitorPath(path), module: definition.module }])],
    }))
    .build();

/** Options of `BatchesMonitorModule.forRootAsync()`: `path` beside `imports`, `inject`, `useFactory` (or `useClass` / `useExisting`). */
export type BatchesMonitorAsyncOptions = typeof ASYNC_OPTIONS_TYPE;
