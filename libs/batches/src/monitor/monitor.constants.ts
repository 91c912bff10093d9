/** The monitor's resolved options (`ResolvedMonitorOptions`). */
export const MONITOR_OPTIONS = Symbol('nestjs-batches monitor options');
