export { BatchesModule } from './batches.module.js';
export {
  BATCHES_DEFAULTS,
  type BatchesModuleOptions,
  type BatchHandlerOptions,
  type FlushPolicy,
  type BatchesTlsOptions,
} from './batches.options.js';
export { BatchesConfigError } from './options/option-checks.js';
export type { QueueOptions } from './options/queue-options.js';
export type { BatchesModuleAsyncOptions } from './batches.module-definition.js';
export { BATCHES_BROKER } from './batches.constants.js';
export { BatchHandler } from './batch-handler.decorator.js';
export { Requests, BatchContext, type BatchRunContext, type BatchRequest } from './batch-context.js';
export { OnBatchEvent } from './events/on-batch-event.decorator.js';
export {
  BatchEvents,
  type BatchEvent,
  type BatchEventType,
  type BatchEventOf,
  type FlushReason,
  type BatchFlushedEvent,
  type BatchStartedEvent,
  type BatchCompletedEvent,
  type BatchFailedEvent,
  type RequestReceivedEvent,
  type RequestSucceededEvent,
  type RequestFailedEvent,
  type RequestRetriedEvent,
  type RequestDeadLetteredEvent,
  type RequestRevokedEvent,
  type RequestExpiredEvent,
} from './events/batch-events.js';
export { SimpleRequest, type DeliveryInfo, type TaskArgs, type TaskKwargs } from './simple-request.js';
export { BatchesServer, BATCHES_TRANSPORT, type BatchesStatus } from './transport/batches.server.js';
export { UnknownTaskError } from './transport/batch-worker.js';
export { DEAD_LETTER_SUFFIX, deadLetterQueue } from './broker/broker.interface.js';
export { BatchClient, type ApplyAsyncOptions, type ApplyOptions } from './client/batch.client.js';
export { AsyncResult, EagerResult, GroupResult } from './client/async-result.js';
export { signature, type Signature, type SignatureOptions } from './canvas/signature.js';
export { ResultBackend } from './results/result-backend.js';
export { MemoryResultBackend } from './results/memory.result-backend.js';
export { RedisResultBackend, type RedisResultBackendOptions } from './results/redis.result-backend.js';
export { NotRegistered } from './results/not-registered.js';
export {
  TaskFailedError,
  ResultTimeoutError,
  READY_STATES,
  type TaskState,
  type TaskResult,
  type ExceptionInfo,
  type WaitOptions,
  type TaskMeta,
} from './results/task-result.js';
export type {
  Broker,
  BrokerEvent,
  Delivery,
  OutgoingMessage,
  MessageProperties,
  PublishOptions,
  QueueDeclaration,
  QueueExchangeType,
  QueueType,
} from './broker/broker.interface.js';
export { MemoryBroker } from './broker/memory.broker.js';
export { AmqpBroker, type AmqpBrokerOptions } from './broker/amqp.broker.js';
export { BrokerFailedError, PublishTimeoutError, PublishUnroutableError } from './broker/broker-errors.js';
export { decodeTaskMessage, InvalidMessageError, type TaskMessage } from './protocol/task-message-decode.js';
export { encodeTaskMessage, type MessageFormat, type TaskSpec } from './protocol/task-message-encode.js';
export { RevokedIds } from './control/revoked-ids.js';
export { WorkerActivity } from './control/worker-activity.js';
export { CeleryEvents, CELERY_EVENT_EXCHANGE } from './control/celery-events.js';
export type { CeleryEvent } from './control/celery-formats.js';
export type { WorkerState, ActiveRequest } from './control/worker-state.js';
export { BatchesMetrics, type RequestOutcome } from './observability/batches-metrics.js';
export { DEFAULT_METRICS_PREFIX, type BatchesMetricsOptions, type MetricsRegistry } from './observability/metrics-options.js';
export { BatchesHealthIndicator, type BatchesHealthDetails, type BatchesHealthResult } from './observability/batches-health.indicator.js';
export type { TracingOption, TracerLike } from './observability/batches-tracing.js';
export { BatchesMonitorModule } from './monitor/batches-monitor.module.js';
export type { BatchesMonitorAsyncOptions } from './monitor/batches-monitor.module-definition.js';
export { BatchesMonitorController } from './monitor/batches-monitor.controller.js';
export type { BatchesMonitorOptions, BatchesMonitorRoute } from './monitor/monitor.options.js';
export type {
  MonitorSnapshot,
  MonitorTaskSnapshot,
  MonitorQueueSnapshot,
  MonitorRequestSample,
  MonitorSpread,
} from './monitor/monitor-snapshot.js';
