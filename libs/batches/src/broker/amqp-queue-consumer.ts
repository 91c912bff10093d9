import { Logger } from '@nestjs/common';
import type { AmqpConnectionManager, ChannelWrapper } from 'amqp-connection-manager';
import type { Channel, ConsumeMessage } from 'amqplib';
import { MAX_PREFETCH } from '../options/prefetch.js';
import { LiveChannel } from './amqp-live-channel.js';
import { BrokerFailedError } from './broker-errors.js';
import type { Delivery, QueueConsumer } from './broker.interface.js';

const logger = new Logger('BatchesServer');

/**
 * One channel per queue, consuming with a per-consumer prefetch (`basic.qos` with global false: what
 * quorum queues support). Its deliveries carry the channel they came on.
 *
 * Held ETA requests must not eat the window full batches need, but a per-consumer prefetch applies
 * only to consumers created after the `basic.qos`. So the window is widened by consuming again on
 * the same channel with the wider prefetch and then cancelling the old consumer: unacked deliveries
 * of the old consumer stay ackable by their tags (tags belong to the channel) and no longer count
 * against the new consumer's window; deliveries already on their way to the old one arrive before
 * its cancel-ok and go to the same handler, so nothing is lost or delivered twice.
 */
export class AmqpQueueConsumer implements QueueConsumer {
  private wrapper: ChannelWrapper;
  /** Set when the broker closed our channel: the next setup declares the queue anew. */
  private redeclare = false;
  private reopening?: NodeJS.Timeout;
  /** The consumer now receiving: its channel, tag and prefetch. */
  private current?: { channel: Channel; tag: ConsumerTag; prefetch: number; live: LiveChannel };
  private cancelled = false;
  /** The channel now consuming; unset while the broker has cancelled the consumer. */
  private live?: LiveChannel;
  /** The window asked for by `setPrefetch` (the base prefetch plus the held requests). */
  private wanted: number;
  /** Re-consumes run one at a time; changes asked for meanwhile are coalesced into the next. */
  private reconsuming?: Promise<void>;
  private consumingStarted?: () => void;
  /** Resolves once the first setup consumes. */
  readonly started = new Promise<void>((resolve) => (this.consumingStarted = resolve));

  constructor(
    readonly queue: string,
    private readonly base: number,
    private readonly onDelivery: (delivery: Delivery) => void,
    private readonly declare: (fresh: boolean) => Promise<void>,
    private readonly connection: AmqpConnectionManager,
  ) {
    this.wanted = base;
    this.wrapper = this.openWrapper();
  }

  /** A channel that amqp-connection-manager sets up again on each reconnect. */
  private openWrapper(): ChannelWrapper {
    const wrapper = this.connection.createChannel({ confirm: false });
    // Deliveries of a lost channel are already marked closed.
    wrapper.on('error', (error: Error) => {
      if (!(error instanceof BrokerFailedError)) logger.warn(`Channel consuming '${this.queue}' failed: ${error.message}`);
    });
    return wrapper;
  }

  async start(): Promise<void> {
    await this.wrapper.addSetup((channel: Channel) => this.setup(channel));
    await this.started;
  }

  /**
   * The broker closed our channel while the connection lives (amqp-connection-manager would only
   * reopen it on the next reconnect): consume again on a new channel, declaring the queue anew.
   */
  private reopen(): void {
    if (this.cancelled || this.reopening) return;
    this.redeclare = true;
    this.reopening = setTimeout(() => {
      this.reopening = undefined;
      if (this.cancelled) return;
      const old = this.wrapper;
      this.wrapper = this.openWrapper();
      void old.close().catch(() => undefined);
      this.wrapper
        .addSetup((channel: Channel) => this.setup(channel))
        .catch((error: unknown) => {
          if (!this.cancelled) logger.warn(`Could not consume '${this.queue}' again: ${String(error)}`);
        });
    }, 1_000);
  }

  private async setup(channel: Channel): Promise<void> {
    if (this.cancelled) return;
    this.current = undefined;
    // Declared on every (re)connect, on a channel of its own: consuming a queue the broker lost would fail this one.
    const fresh = this.redeclare;
    await this.declare(fresh);
    this.redeclare = false;
    const live = new LiveChannel(channel);
    channel.once('close', () => live.markClosed());
    channel.on('error', (error: Error) => {
      live.markClosed();
      logger.warn(`Channel consuming '${this.queue}' closed by the broker: ${error.message}`);
      if (this.connection.isConnected()) this.reopen();
    });
    const prefetch = this.windowFor(this.wanted);
    await channel.prefetch(prefetch, false);
    const tag = await this.consumeOn(channel, live);
    this.current = { channel, tag, prefetch, live };
    this.live = live;
    this.consumingStarted?.();
  }

  /** Starts a consumer on `channel` with the prefetch of the last `basic.qos`. */
  private async consumeOn(channel: Channel, live: LiveChannel): Promise<ConsumerTag> {
    const tag: ConsumerTag = { value: '' };
    const { consumerTag } = await channel.consume(
      this.queue,
      (message: ConsumeMessage | null) => {
        if (message === null) {
          // The broker cancelled this consumer: the queue was deleted, or its node went down. Like Celery, declare and consume it again.
          if (this.current?.tag === tag && this.live === live) {
            this.live = undefined;
            void this.resume(channel, live);
          }
          return;
        }
        this.onDelivery({
          body: message.content,
          properties: message.properties,
          exchange: message.fields.exchange,
          routingKey: message.fields.routingKey,
          redelivered: message.fields.redelivered,
          deliveryTag: message.fields.deliveryTag,
          channel: live,
        });
      },
      { noAck: false },
    );
    tag.value = consumerTag;
    return tag;
  }

  /**
   * Consumes again on the same channel once the queue can be declared (at once if it was deleted;
   * when its node is back if that node went down). Unacked deliveries stay ackable meanwhile.
   */
  private async resume(channel: Channel, live: LiveChannel): Promise<void> {
    logger.warn(
      `RabbitMQ cancelled the consumer of '${this.queue}' (the queue was deleted or its node went down); consuming it again once it can be declared`,
    );
    try {
      await this.declare(true);
      const current = this.current;
      if (this.cancelled || !live.open || this.live !== undefined || current?.channel !== channel) return;
      const tag = await this.consumeOn(channel, live);
      this.current = { channel, tag, prefetch: current.prefetch, live };
      this.live = live;
      logger.log(`Consuming '${this.queue}' again`);
    } catch (error) {
      // A closed channel is set up again by the wrapper on the next connection.
      if (live.open && !this.cancelled) logger.warn(`Could not consume '${this.queue}' again: ${String(error)}`);
    }
  }

  /** True while the broker delivers to this consumer: its channel is open and neither side cancelled it. */
  get consuming(): boolean {
    return !this.cancelled && this.live?.open === true;
  }

  /**
   * Asks for a window of `prefetch` (base + held). A wider one is given with slack (twice the held
   * count), so a growing number of held requests re-consumes only each time it doubles; the window
   * is narrowed again once the held requests are down to a quarter of the slack.
   */
  setPrefetch(prefetch: number): Promise<void> {
    this.wanted = Math.max(this.base, prefetch);
    this.reconsuming ??= this.reconsume().finally(() => (this.reconsuming = undefined));
    return this.reconsuming;
  }

  private windowFor(wanted: number): number {
    return Math.min(MAX_PREFETCH, this.base + 2 * Math.max(0, wanted - this.base));
  }

  private needsReconsume(applied: number): boolean {
    if (this.wanted > applied) return applied < MAX_PREFETCH;
    const slack = applied - this.base;
    return slack > 0 && 4 * (this.wanted - this.base) <= slack;
  }

  private async reconsume(): Promise<void> {
    for (;;) {
      const old = this.current;
      if (!old || this.cancelled || !old.live.open || !this.needsReconsume(old.prefetch)) return;
      const { channel, live } = old;
      const prefetch = this.windowFor(this.wanted);
      try {
        // Consume anew first, then cancel the old consumer: no gap in deliveries.
        await channel.prefetch(prefetch, false);
        const tag = await this.consumeOn(channel, live);
        if (this.current !== old || this.cancelled) {
          // Set up again on another channel meanwhile, or stopped: this consumer must not stay.
          await channel.cancel(tag.value).catch(() => undefined);
          return;
        }
        this.current = { channel, tag, prefetch, live };
        await channel.cancel(old.tag.value);
      } catch (error) {
        // A closed channel is set up again by the wrapper, with the window asked for by then.
        if (live.open && !this.cancelled) logger.warn(`Could not change the prefetch of '${this.queue}': ${String(error)}`);
        return;
      }
    }
  }

  async cancel(): Promise<void> {
    this.cancelled = true;
    await this.reconsuming?.catch(() => undefined);
    const current = this.current;
    if (current) await current.channel.cancel(current.tag.value).catch(() => undefined);
  }

  close(): Promise<void> {
    this.cancelled = true;
    clearTimeout(this.reopening);
    return this.wrapper.close();
  }
}

/** A consumer tag, known once basic.consume-ok has come (deliveries may reach the handler first). */
interface ConsumerTag {
  value: string;
}
