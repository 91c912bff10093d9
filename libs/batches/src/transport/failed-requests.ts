import type { Logger } from '@nestjs/common';
import type { Delivery } from '../broker/broker.interface.js';
import { hasWorkflow, type WorkflowSteps } from '../canvas/workflow-steps.js';
import type { BatchEvents } from '../events/batch-events.js';
import type { RegisteredHandler } from '../handler.explorer.js';
import type { ResultBackend } from '../results/result-backend.js';
import { exceptionInfo } from '../results/task-result.js';
import type { AckTrackers } from './ack-tracker.js';
import type { Envelope } from './envelope.js';
import type { Republisher } from './republisher.js';

/** What settling failed requests takes: the runner's deps without its batch bookkeeping. */
export interface FailedRequestDeps {
  results: ResultBackend;
  acks: AckTrackers;
  logger: Logger;
  events: BatchEvents;
  republisher?: Republisher;
  workflows?: WorkflowSteps;
}

/**
 * The requests of a batch that did not succeed: each is retried, or dead-lettered once its retries
 * are spent, and stored RETRY or FAILURE with its event.
 */
export class FailedRequests {
  private readonly results: ResultBackend;
  private readonly acks: AckTrackers;
  private readonly logger: Logger;
  private readonly events: BatchEvents;
  private readonly republisher?: Republisher;
  private readonly workflows?: WorkflowSteps;

  constructor(
    private readonly handler: RegisteredHandler,
    deps: FailedRequestDeps,
  ) {
    ({
      results: this.results,
      acks: this.acks,
      logger: this.logger,
      events: this.events,
      republisher: this.republisher,
      workflows: this.workflows,
    } = deps);
  }

  /**
   * Publishes the retry, or the dead letter once retries are spent, and stores the matching state.
   * Returns the delivery to ack, or nothing when the publish failed and the broker must redeliver it.
   */
  async retryOrFail(envelope: Envelope, error: unknown, runtimeMs: number): Promise<Delivery | undefined> {
    const { request, message, delivery, queue } = envelope;
    const { maxRetries, retryDelay } = this.handler.options;
    const retry = message.retries < maxRetries;
    const { republisher } = this;
    if (republisher && delivery) {
      const publish = (): Promise<void> =>
        retry ? republisher.retry(message, queue, retryDelay) : republisher.deadLetter(delivery, queue, exhausted(maxRetries, error));
      try {
        await publish();
      } catch (publishError) {
        // No queue took it (its node is down): held, not lost, and the batch goes on. Settled and acked once it is published.
        const held = republisher.heldUntilRoutable(publishError, publish, delivery);
        this.logger.error(
          `Could not ${retry ? 'retry' : 'dead-letter'} task ${request.id}; it stays unacked ` +
            `${held ? 'and is published again once the queue takes it' : 'for redelivery'}: ${describe(publishError)}`,
        );
        void held
          ?.then(async (published) => {
            if (!published) return;
            await this.settleFailed(envelope, error, retry, runtimeMs);
            this.acks.ack([delivery]);
          })
          .catch((settleError: unknown) => this.logger.error(`Could not settle task ${request.id}: ${describe(settleError)}`));
        return undefined;
      }
    }
    await this.settleFailed(envelope, error, retry && delivery !== undefined, runtimeMs);
    return delivery;
  }

  /** Stores RETRY (`retried`) or FAILURE, with its event and, for a final failure, its errbacks and chord. */
  private async settleFailed(envelope: Envelope, error: unknown, retried: boolean, runtimeMs: number): Promise<void> {
    const { request } = envelope;
    if (this.events.observed) this.emitFailed(envelope, error, retried, runtimeMs);
    const stored = retried ? this.results.markAsRetry(request.id, error, request) : this.results.markAsFailure(request.id, error, request);
    await stored.catch((storeError: unknown) =>
      this.logger.error(`Could not store the state of task ${request.id}: ${describe(storeError)}`),
    );
    if (!retried && this.workflows && hasWorkflow(request)) await this.workflows.settled(request, 'FAILURE', exceptionInfo(error));
  }

  private emitFailed(envelope: Envelope, error: unknown, retried: boolean, runtimeMs: number): void {
    const { request, queue } = envelope;
    const { task, options } = this.handler;
    const at = Date.now();
    if (retried) {
      this.events.emit({ type: 'request.retried', task, queue, at, request, error });
      return;
    }
    this.events.emit({ type: 'request.failed', task, queue, at, request, error, runtimeMs });
    if (envelope.delivery) {
      this.events.emit({
        type: 'request.deadLettered',
        task,
        queue,
        at,
        id: request.id,
        request,
        reason: exhausted(options.maxRetries, error),
      });
    }
  }
}

/** The dead-letter reason of a request whose retries are spent. */
function exhausted(maxRetries: number, error: unknown): string {
  return `${maxRetries} retries exhausted: ${describe(error)}`;
}

/** An error as the worker's log lines name it. */
export function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
