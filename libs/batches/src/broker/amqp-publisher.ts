import { Logger } from '@nestjs/common';
import type { EventEmitter } from 'node:events';
import type { AmqpConnectionManager, ChannelWrapper } from 'amqp-connection-manager';
import type { Channel, Message, Options } from 'amqplib';
import { pythonSafeHeaders } from './amqp-integer.js';
import { isConnectionLoss, PublishTimeoutError, PublishUnroutableError, type BrokerFailedError } from './broker-errors.js';
import type { OutgoingMessage, PublishOptions } from './broker.interface.js';

const logger = new Logger('BatchesServer');

/** What the publisher asks of the broker it publishes for. */
export interface PublisherHost {
  /** The broker's URLs, redacted, for error messages. */
  readonly url: string;
  /** The error that stopped the broker for good, if one did. */
  failure(): BrokerFailedError | undefined;
  /** True once the broker was closed. */
  closed(): boolean;
}

/**
 * Publishes on a confirm channel that keeps unconfirmed messages across reconnects, tells returned
 * (unroutable) messages apart, and moves to a new channel when RabbitMQ closes the current one.
 */
export class AmqpPublisher {
  /** The confirm channel every publish goes through; replaced when RabbitMQ closes it (see `publisherClosed`). */
  private publisher: ChannelWrapper;
  /** Why RabbitMQ closed each replaced publisher channel, so the publish that caused it can be told apart. */
  private readonly publisherErrors = new WeakMap<ChannelWrapper, Error>();
  /** Messages RabbitMQ handed back as unroutable, until the publish they belong to is confirmed. */
  private readonly returns = new ReturnedMessages();

  /** `events`: the broker's, told of a failed channel setup as a `disconnect`. */
  constructor(
    private readonly connection: AmqpConnectionManager,
    private readonly events: EventEmitter,
    private readonly broker: PublisherHost,
  ) {
    this.publisher = this.openPublisher();
  }

  private openPublisher(): ChannelWrapper {
    const publisher: ChannelWrapper = this.connection.createChannel({
      confirm: true,
      setup: (channel: Channel) => {
        // RabbitMQ sends basic.return before the basic.ack of the same message, so a confirm can tell it apart.
        channel.on('return', (returned: Message) => this.returns.add(returned));
        channel.on('error', (error: Error) => this.publisherClosed(publisher, error));
      },
    });
    // A failed setup is followed by a reconnect that re-sends unconfirmed messages.
    publisher.on('error', (err: Error) => this.events.emit('disconnect', err));
    return publisher;
  }

  /**
   * RabbitMQ closed the publishing channel while the connection lives (a publish to an exchange
   * deleted since it was declared: 404 NOT_FOUND). amqp-connection-manager would hold every publish
   * until the next reconnect, so they move to a new channel: the old one's queued and unconfirmed
   * publishes are rejected by its close and sent again on the new one by `publish`.
   */
  private publisherClosed(publisher: ChannelWrapper, error: Error): void {
    if (publisher !== this.publisher || this.broker.closed() || this.broker.failure() || !this.connection.isConnected()) return;
    logger.warn(`RabbitMQ closed the publishing channel (${error.message}); publishing on a new one`);
    this.publisherErrors.set(publisher, error);
    this.publisher = this.openPublisher();
    void publisher.close().catch(() => undefined);
  }

  /**
   * Resolves once RabbitMQ confirms the message. Sent while the connection is down, it waits for the
   * reconnect; caught on a connection that dies before its confirm, it is sent again on the next one
   * (at least once: RabbitMQ may have taken the first copy).
   */
  async publish(message: OutgoingMessage, options: PublishOptions = {}): Promise<void> {
    // mandatory: a queue that cannot take the message (deleted, or its node is down) hands it back instead of RabbitMQ dropping it.
    const publishOptions: Options.Publish & { timeout?: number } = {
      ...message.properties,
      headers: pythonSafeHeaders(message.properties.headers),
      mandatory: options.mandatory === true,
    };
    const deadline = options.timeout === undefined ? undefined : Date.now() + options.timeout;
    for (;;) {
      if (this.broker.failure()) throw this.broker.failure();
      publishOptions.timeout = deadline === undefined ? undefined : Math.max(1, deadline - Date.now());
      const publisher = this.publisher;
      try {
        await publisher.publish(message.exchange, message.routingKey, message.body, publishOptions);
        if (options.mandatory && this.returns.take(message)) {
          throw new PublishUnroutableError(
            `RabbitMQ could not route the message to '${message.routingKey}'${message.exchange ? ` through exchange '${message.exchange}'` : ''} ` +
              '(312 NO_ROUTE): no queue took it, because the queue was deleted or, on a cluster, its node is down. It was not stored; send it again once the queue is back.',
          );
        }
        return;
      } catch (error) {
        if (this.broker.failure()) throw this.broker.failure();
        if (error instanceof Error && error.message === 'timeout') {
          throw new PublishTimeoutError(
            `RabbitMQ at ${this.broker.url} did not confirm the message to '${message.routingKey}' within ${options.timeout} ms; it may not have been sent.`,
          );
        }
        if (this.broker.closed()) throw error;
        if (publisher !== this.publisher) {
          // Its channel was closed by RabbitMQ and replaced. If this publish is what closed it, sending it again would close the next one too.
          const closedBy = this.publisherErrors.get(publisher);
          if (message.exchange && closedBy?.message.includes(`no exchange '${message.exchange}'`)) {
            throw new PublishUnroutableError(
              `RabbitMQ has no exchange '${message.exchange}' (404 NOT_FOUND: it was deleted since it was declared), so the message to '${message.routingKey}' was not stored; declare the exchange again and resend it.`,
            );
          }
          continue;
        }
        if (!lostBeforeConfirm(error)) throw error;
      }
    }
  }

  /** Closes the current publishing channel. */
  close(): Promise<void> {
    return this.publisher.close();
  }
}

/**
 * Returned (unroutable) messages, matched to their publish by exchange, routing key and body. Kept
 * for a minute at most, so returns of timed-out publishes do not pile up.
 */
class ReturnedMessages {
  private readonly returned: Array<{ exchange: string; routingKey: string; body: Buffer; at: number }> = [];

  add(message: Message): void {
    const now = Date.now();
    while (this.returned.length > 0 && (now - this.returned[0].at > 60_000 || this.returned.length >= 10_000)) this.returned.shift();
    this.returned.push({ exchange: message.fields.exchange, routingKey: message.fields.routingKey, body: message.content, at: now });
  }

  /** True (and forgotten) when `message` was returned. */
  take(message: OutgoingMessage): boolean {
    if (this.returned.length === 0) return false;
    const index = this.returned.findIndex(
      (each) => each.routingKey === message.routingKey && each.exchange === message.exchange && each.body.equals(message.body),
    );
    if (index < 0) return false;
    this.returned.splice(index, 1);
    return true;
  }
}

/** The publish's channel closed (its connection died) before RabbitMQ confirmed it. */
function lostBeforeConfirm(error: unknown): boolean {
  return error instanceof Error && (error.message === 'channel closed' || isConnectionLoss(error));
}
