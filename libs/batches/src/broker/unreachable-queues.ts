import { Logger } from '@nestjs/common';
import type { EventEmitter } from 'node:events';

const logger = new Logger('BatchesServer');

/** Queues RabbitMQ could not reach (home node down, no quorum): declared again, alone, until they are back. */
export class UnreachableQueues {
  /** Each unreachable queue's failed declarations so far. */
  private readonly unreachable = new Map<string, number>();

  /** `events`: the broker's, told of each `unreachable` queue by name. */
  constructor(private readonly events: EventEmitter) {}

  /**
   * A queue RabbitMQ cannot reach (its node is down): logged by name and reason at the 1st, 2nd,
   * 4th, 8th… failed declaration, retried every second at first and at most every 5 s, alone: the
   * connection, the publisher and other queues' consumers carry on.
   */
  async waitForReachable(queue: string, reason: string): Promise<void> {
    const attempts = (this.unreachable.get(queue) ?? 0) + 1;
    this.unreachable.set(queue, attempts);
    if ((attempts & (attempts - 1)) === 0) {
      logger.warn(
        `Queue '${queue}' is unreachable: ${reason}. Declaring it again until its node is back (attempt ${attempts}); other queues are consumed meanwhile.`,
      );
    }
    this.events.emit('unreachable', queue);
    await new Promise((resolve) => setTimeout(resolve, Math.min(1_000 * attempts, 5_000)));
  }

  /** A declaration of `queue` succeeded: if it was unreachable, say it is back. */
  reachable(queue: string): void {
    const attempts = this.unreachable.get(queue);
    if (attempts === undefined) return;
    this.unreachable.delete(queue);
    logger.log(`Queue '${queue}' is reachable again after ${attempts} failed declaration(s)`);
  }
}
