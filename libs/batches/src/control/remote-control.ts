import { Inject, Injectable, Logger } from '@nestjs/common';
import { BATCHES_BROKER, BATCHES_OPTIONS } from '../batches.constants.js';
import type { ResolvedModuleOptions } from '../options/resolve-module-options.js';
import type { BroadcastMessage, Broker, QueueConsumer } from '../broker/broker.interface.js';
import { ControlCommands } from './control-commands.js';
import { amqpInteger, isForNode, parseControlMessage, pidboxBinding, type ControlMessage } from './pidbox.js';
import { WorkerActivity } from './worker-activity.js';

/** How long a reply may wait for the broker's confirm. */
const REPLY_TIMEOUT = 10_000;

/**
 * The worker's node in Celery's pidbox: consumes `<hostname>.celery.pidbox` (bound to the fanout
 * exchange `celery.pidbox`) and answers commands meant for this node on `reply.celery.pidbox`, as a
 * Python worker does. Started and stopped with the worker; on `memory://` it does nothing.
 */
@Injectable()
export class RemoteControl {
  private readonly logger = new Logger('BatchesServer');
  private readonly commands: ControlCommands;
  private consumer?: QueueConsumer;
  private starting?: Promise<void>;
  private stopped = false;

  constructor(
    private readonly activity: WorkerActivity,
    @Inject(BATCHES_BROKER) private readonly broker: Broker,
    @Inject(BATCHES_OPTIONS) private readonly options: ResolvedModuleOptions,
  ) {
    this.commands = new ControlCommands(activity, options.brokerUrls);
  }

  /** Resolves once the node queue is consumed, or at once when remote control cannot run; never rejects. */
  start(): Promise<void> {
    this.starting ??= this.listen().catch((error: unknown) => {
      if (this.stopped || error === this.broker.failure) return;
      this.logger.warn(`Remote control is off: could not consume the pidbox of ${this.options.hostname}: ${String(error)}`);
    });
    return this.starting;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.consumer?.cancel();
  }

  private async listen(): Promise<void> {
    if (!this.broker.consumeBroadcast) return; // in-process broker: no Celery tools can reach it
    const { hostname } = this.options;
    const binding = {
      ...pidboxBinding(hostname),
      onDeclared: (consumers: number) => {
        if (consumers > 0) {
          this.logger.warn(
            `A node named ${hostname} is already using this process mailbox: give each worker a unique \`hostname\` ` +
              '(name@host), or replies to `celery inspect` mix up the nodes.',
          );
        }
      },
    };
    this.consumer = await this.broker.consumeBroadcast(binding, (message) => this.receive(message));
    if (this.stopped) await this.consumer.cancel();
  }

  private receive(message: BroadcastMessage): void {
    const command = parseControlMessage(message.body, message.properties.contentType);
    if (!command) {
      this.logger.warn(`Ignored a remote-control message that is not a JSON command (content type ${message.properties.contentType})`);
      return;
    }
    this.activity.clock.adjust(message.properties.headers?.clock ?? 0);
    if (!isForNode(command, this.options.hostname)) return;
    const reply = this.commands.handle(command.method, command.arguments ?? {});
    if (command.reply_to) void this.reply(command, command.reply_to, reply);
  }

  /** `Mailbox._publish_reply`: `{hostname: reply}` to the reply exchange with the request's ticket. */
  private async reply(command: ControlMessage, to: NonNullable<ControlMessage['reply_to']>, reply: unknown): Promise<void> {
    try {
      await this.broker.declareTransientExchange?.(to.exchange, 'direct');
      await this.broker.publish(
        {
          exchange: to.exchange,
          routingKey: to.routing_key,
          body: Buffer.from(JSON.stringify({ [this.options.hostname]: reply })),
          properties: {
            contentType: 'application/json',
            contentEncoding: 'utf-8',
            deliveryMode: 1,
            headers: { ticket: command.ticket ?? null, clock: amqpInteger(this.activity.clock.forward()) },
          },
        },
        { timeout: REPLY_TIMEOUT },
      );
    } catch (error) {
      if (!this.stopped) this.logger.warn(`Could not reply to remote-control command '${command.method}': ${String(error)}`);
    }
  }
}
