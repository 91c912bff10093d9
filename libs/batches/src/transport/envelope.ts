import type { Delivery } from '../broker/broker.interface.js';
import type { TaskMessage } from '../protocol/task-message-decode.js';
import { frozen } from '../canvas/signature.js';
import { SimpleRequest } from '../simple-request.js';

/** A request on its way through a pipeline, with what is needed to settle it. */
export interface Envelope {
  request: SimpleRequest;
  message: TaskMessage;
  /** The broker delivery to ack; absent for eager requests. */
  delivery?: Delivery;
  /** The queue it was consumed from. */
  queue: string;
  /** When it entered its buffer (`Date.now()`), recorded only while somebody listens to events. */
  bufferedAt?: number;
}

/** Builds the handler's view of a task message. */
export function envelopeFor(message: TaskMessage, queue: string, hostname: string, ignoreResult: boolean, delivery?: Delivery): Envelope {
  const request = new SimpleRequest({
    id: message.id,
    name: message.task,
    args: message.args,
    kwargs: message.kwargs,
    deliveryInfo: {
      exchange: delivery?.exchange ?? '',
      routingKey: delivery?.routingKey ?? queue,
      redelivered: delivery?.redelivered ?? false,
      priority: delivery?.properties.priority ?? null,
      isEager: delivery === undefined,
    },
    hostname,
    replyTo: delivery?.properties.replyTo ?? null,
    correlationId: delivery?.properties.correlationId ?? message.id,
    ignoreResult: ignoreResult || message.ignoreResult,
    retries: message.retries,
    eta: message.eta,
    expires: message.expires,
    headers: message.headers,
    // Ids fixed now, so a stored result can list what its success sends (Celery's `children`).
    callbacks: message.callbacks.length > 0 ? message.callbacks.map(frozen) : message.callbacks,
    errbacks: message.errbacks,
    chain: message.chain.length > 0 ? [...message.chain.slice(0, -1), frozen(message.chain[message.chain.length - 1])] : message.chain,
    chord: message.chord,
    group: message.group,
    groupIndex: message.groupIndex,
    parentId: message.parentId,
    rootId: message.rootId,
  });
  return { request, message, delivery, queue };
}
