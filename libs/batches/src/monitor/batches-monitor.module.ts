import { Module, type DynamicModule } from '@nestjs/common';
import { BatchesMonitorController } from './batches-monitor.controller.js';
import { ConfigurableModuleClass, MODULE_OPTIONS_TOKEN, OPTIONS_TYPE } from './batches-monitor.module-definition.js';
import { MonitorSnapshots } from './monitor-snapshots.js';
import { MONITOR_OPTIONS } from './monitor.constants.js';
import { resolveMonitorOptions, type BatchesMonitorOptions } from './monitor.options.js';

/**
 * A live page of the batch worker, served by the app's own HTTP server:
 * `BatchesMonitorModule.forRoot({ path: '/batches' })` beside `BatchesModule.forRoot()`. Its routes
 * are an ordinary controller (`BatchesMonitorController`), so the app's guards and middleware apply.
 * It reads the worker's events only while a page is open (and for a minute after).
 */
@Module({
  controllers: [BatchesMonitorController],
  providers: [
    {
      provide: MONITOR_OPTIONS,
      inject: [MODULE_OPTIONS_TOKEN],
      useFactory: (options: BatchesMonitorOptions) => resolveMonitorOptions(options),
    },
    MonitorSnapshots,
  ],
})
export class BatchesMonitorModule extends ConfigurableModuleClass {
  /** Options are all optional: `forRoot()` serves the page at `/batches`. */
  static override forRoot(options: typeof OPTIONS_TYPE = {}): DynamicModule {
    return super.forRoot(options);
  }
}
