/**
 * Fakes for the unit lane: no broker, no result server, no Nest application. Everything here is
 * in-process, and `no-network.js` makes any attempt to open a socket fail the test.
 */
import './no-network.js';
import { Logger } from '@nestjs/common';
import type { BatchHandlerOptions } from '../../../libs/batches/src/batches.options.js';
import { resolveHandlerOptions } from '../../../libs/batches/src/options/resolve-handler-options.js';
import { resolveModuleOptions } from '../../../libs/batches/src/options/resolve-module-options.js';
import type { Delivery, DeliveryChannel } from '../../../libs/batches/src/broker/broker.interface.js';
import type { BatchRunContext } from '../../../libs/batches/src/batch-context.js';
import type { RegisteredHandler } from '../../../libs/batches/src/handler.explorer.js';
import { decodeTaskMessage, type TaskMessage } from '../../../libs/batches/src/protocol/task-message-decode.js';
import { encodeTaskMessage, type TaskSpec } from '../../../libs/batches/src/protocol/task-message-encode.js';
import type { SimpleRequest } from '../../../libs/batches/src/simple-request.js';
import type { AckTrackers } from '../../../libs/batches/src/transport/ack-tracker.js';
import { envelopeFor, type Envelope } from '../../../libs/batches/src/transport/envelope.js';
import type { Republisher } from '../../../libs/batches/src/transport/republisher.js';
import { PublishUnroutableError } from '../../../libs/batches/src/broker/broker-errors.js';

/** A broker channel that records its acks as `[deliveryTag, multiple]`. */
export class FakeChannel implements DeliveryChannel {
  open = true;
  readonly acks: Array<[number, boolean]> = [];

  ack(deliveryTag: number, multiple: boolean): void {
    this.acks.push([deliveryTag, multiple]);
  }
}

/** Builds envelopes as the queue worker does, from real encoded messages delivered on fake channels. */
export class Deliveries {
  private nextTag = 1;

  constructor(
    private readonly acks: AckTrackers,
    readonly channel: FakeChannel = new FakeChannel(),
    readonly queue = 'unit',
  ) {}

  /** One delivered request, registered with the ack trackers as the queue worker registers it. */
  envelope(spec: TaskSpec, channel: FakeChannel = this.channel): Envelope {
    const encoded = encodeTaskMessage(spec);
    const delivery: Delivery = {
      body: encoded.body,
      properties: encoded.properties,
      exchange: '',
      routingKey: this.queue,
      redelivered: false,
      deliveryTag: this.nextTag++,
      channel,
    };
    this.acks.received(delivery);
    const message = decodeTaskMessage(encoded.body, encoded.properties, Number.MAX_SAFE_INTEGER);
    return envelopeFor(message, this.queue, 'unit@test', false, delivery);
  }

  /** `count` requests of `task` with ids `<prefix>-1` … `<prefix>-count`. */
  batch(task: string, count: number, prefix = 'r', spec: Partial<TaskSpec> = {}): Envelope[] {
    return Array.from({ length: count }, (_, index) => this.envelope({ ...spec, task, id: `${prefix}-${index + 1}`, args: [index + 1] }));
  }
}

export interface RetryCall {
  id: string;
  retries: number;
  queue: string;
  retryDelay: number;
}

export interface DeadLetterCall {
  deliveryTag: number;
  queue: string;
  reason: string;
}

/** Stands in for `Republisher`: records what would be republished, and can be told to fail. */
export class FakeRepublisher {
  readonly retries: RetryCall[] = [];
  readonly deadLetters: DeadLetterCall[] = [];
  /** When set, every publish rejects with it (the broker is unreachable). */
  failWith?: Error;

  async retry(message: TaskMessage, queue: string, retryDelay: number): Promise<void> {
    if (this.failWith) throw this.failWith;
    this.retries.push({ id: message.id, retries: message.retries, queue, retryDelay });
  }

  async deadLetter(delivery: Delivery, queue: string, reason: string): Promise<void> {
    if (this.failWith) throw this.failWith;
    this.deadLetters.push({ deliveryTag: delivery.deliveryTag, queue, reason });
  }

  /** The real one waits out only `PublishUnroutableError`, which these fakes never throw. */
  heldUntilRoutable(error: unknown): Promise<boolean> | undefined {
    if (error instanceof PublishUnroutableError) throw new Error('FakeRepublisher does not hold unroutable messages');
    return undefined;
  }

  /** Typed as the runner expects it; it has the same public surface. */
  asRepublisher(): Republisher {
    return this as unknown as Republisher;
  }
}

/** A logger that keeps warnings and errors instead of printing them (set TEST_LOGS=1 to print). */
export class RecordingLogger extends Logger {
  readonly warnings: string[] = [];
  readonly errors: string[] = [];

  override log(message: unknown, ...rest: unknown[]): void {
    if (process.env.TEST_LOGS) super.log(message, ...rest);
  }

  override warn(message: unknown, ...rest: unknown[]): void {
    this.warnings.push(String(message));
    if (process.env.TEST_LOGS) super.warn(message, ...rest);
  }

  override error(message: unknown, ...rest: unknown[]): void {
    this.errors.push(String(message));
    if (process.env.TEST_LOGS) super.error(message, ...rest);
  }
}

/** A registered handler as the explorer builds it, calling `fn` directly (no Nest pipeline). */
export function handlerFor(
  task: string,
  options: BatchHandlerOptions,
  fn: (requests: SimpleRequest[], context?: BatchRunContext) => unknown,
): RegisteredHandler & { readonly calls: SimpleRequest[][] } {
  const calls: SimpleRequest[][] = [];
  return {
    task,
    options: resolveHandlerOptions(task, options, resolveModuleOptions()),
    source: 'UnitHandlers.handle',
    calls,
    invoke: async (requests, context) => {
      calls.push(requests);
      return fn(requests, context);
    },
  };
}

/** Waits for a condition, not for a fixed time. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeout = 2_000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
