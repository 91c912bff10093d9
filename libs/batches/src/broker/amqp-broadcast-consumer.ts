import { Logger } from '@nestjs/common';
import type { AmqpConnectionManager, ChannelWrapper } from 'amqp-connection-manager';
import type { Channel, ConsumeMessage } from 'amqplib';
import { BrokerFailedError } from './broker-errors.js';
import type { BroadcastBinding, BroadcastMessage, QueueConsumer } from './broker.interface.js';

const logger = new Logger('BatchesServer');

/** A noAck consumer of a transient queue (remote control, events), declared on every (re)connect. */
export class AmqpBroadcastConsumer implements QueueConsumer {
  private readonly wrapper: ChannelWrapper;
  private current?: { channel: Channel; consumerTag: string };
  private cancelled = false;

  constructor(
    connection: AmqpConnectionManager,
    private readonly binding: BroadcastBinding,
    private readonly onMessage: (message: BroadcastMessage) => void,
    private readonly declare: () => Promise<void>,
  ) {
    this.wrapper = connection.createChannel({ confirm: false });
    this.wrapper.on('error', (error: Error) => {
      if (!(error instanceof BrokerFailedError)) logger.warn(`Channel consuming '${binding.queue}' failed: ${error.message}`);
    });
  }

  start(): Promise<void> {
    return this.wrapper.addSetup((channel: Channel) => this.setup(channel));
  }

  private async setup(channel: Channel): Promise<void> {
    if (this.cancelled) return;
    await this.declare();
    channel.on('error', (error: Error) => logger.warn(`Channel consuming '${this.binding.queue}' closed by the broker: ${error.message}`));
    const { consumerTag } = await channel.consume(
      this.binding.queue,
      (message: ConsumeMessage | null) => {
        if (message !== null) this.onMessage({ body: message.content, properties: message.properties });
      },
      { noAck: true },
    );
    this.current = { channel, consumerTag };
  }

  async setPrefetch(): Promise<void> {
    // noAck: the broker sends without a window.
  }

  async cancel(): Promise<void> {
    this.cancelled = true;
    const current = this.current;
    if (current) await current.channel.cancel(current.consumerTag).catch(() => undefined);
  }

  close(): Promise<void> {
    this.cancelled = true;
    return this.wrapper.close();
  }
}
