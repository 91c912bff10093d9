import { randomUUID } from 'node:crypto';
import type { Broker, QueueDeclaration } from '../broker/broker.interface.js';
import { publishTask } from '../broker/publish-task.js';
import type { BatchesTracing } from '../observability/batches-tracing.js';
import { encodeTaskMessage, type MessageFormat } from '../protocol/task-message-encode.js';
import type { TaskArgs } from '../simple-request.js';
import { mergedArgs, signaturesOf, type Signature } from './signature.js';

/** Where and how the worker and the client send tasks. */
export interface SendSettings {
  /** The queue of a task name (the module's `taskRoutes`, else `defaultQueue`). */
  route(task: string): string;
  hostname: string;
  messageFormat: MessageFormat;
  /** Present when the module's `tracing` option is on: sent tasks carry the active trace context. */
  tracing?: BatchesTracing;
  /** Declarations of the queues the module's `queues` option names (exchange, routing key, type). */
  queues?: Readonly<Record<string, QueueDeclaration>>;
}

/** The workflow a signature is sent from: its parent task and the workflow's first. */
export interface SendContext {
  parentId?: string | null;
  rootId?: string | null;
  /** The rest of a chain, carried by the task sent (Celery's embed order: next is last). */
  chain?: readonly Signature[];
  groupId?: string;
  groupIndex?: number;
}

/**
 * Sends Celery signatures as Celery's `Signature.apply_async` does: partial arguments prepended
 * (unless immutable), options honoured (`task_id`, `link`, `link_error`, `queue`, `group_id`,
 * `chord`, `countdown`, `priority`), and chains and groups unrolled into their tasks.
 */
export class CanvasSender {
  constructor(
    private readonly broker: Broker,
    private readonly settings: SendSettings,
  ) {}

  /** Sends `sig` with `partial` prepended to its arguments; resolves with the ids of the tasks sent. */
  async send(sig: Signature, partial: TaskArgs = [], context: SendContext = {}): Promise<string[]> {
    if (sig.subtask_type === 'chain') return this.sendChain(sig, partial, context);
    if (sig.subtask_type === 'group') return this.sendGroup(signaturesOf(sig.kwargs.tasks), partial, context, sig.options.task_id);
    if (sig.subtask_type === 'chord') {
      throw new Error(
        `A chord as a callback is not supported by nestjs-batches (signature of '${String(sig.task)}'); send it from Python.`,
      );
    }
    return [await this.sendTask(sig, partial, context)];
  }

  /** Sends every signature as one group (new id unless given), each with `partial` prepended. */
  async sendGroup(sigs: readonly Signature[], partial: TaskArgs, context: SendContext, groupId: string = randomUUID()): Promise<string[]> {
    const ids = await Promise.all(sigs.map((sig, index) => this.send(sig, partial, { ...context, groupId, groupIndex: index })));
    return ids.flat();
  }

  /** A chain: its first task is sent, carrying the rest; the chain's own link and link_error go to its last task. */
  private async sendChain(sig: Signature, partial: TaskArgs, context: SendContext): Promise<string[]> {
    const tasks = signaturesOf(sig.kwargs.tasks);
    if (tasks.length === 0) return [];
    const last = tasks[tasks.length - 1];
    tasks[tasks.length - 1] = {
      ...last,
      options: {
        ...last.options,
        link: [...signaturesOf(last.options.link), ...signaturesOf(sig.options.link)],
        link_error: [...signaturesOf(last.options.link_error), ...signaturesOf(sig.options.link_error)],
      },
    };
    const [first, ...rest] = tasks;
    return this.send(first, partial, { ...context, chain: rest.toReversed() });
  }

  private async sendTask(sig: Signature, partial: TaskArgs, context: SendContext): Promise<string> {
    const { options } = sig;
    const id = typeof options.task_id === 'string' ? options.task_id : randomUUID();
    const queue = typeof options.queue === 'string' ? options.queue : this.settings.route(sig.task);
    const countdown = typeof options.countdown === 'number' ? options.countdown : undefined;
    const encoded = encodeTaskMessage(
      {
        task: sig.task,
        id,
        args: mergedArgs(sig, partial),
        kwargs: sig.kwargs,
        // Celery's countdown is in seconds.
        eta: countdown !== undefined ? new Date(Date.now() + countdown * 1000) : null,
        priority: typeof options.priority === 'number' ? options.priority : undefined,
        rootId: context.rootId ?? id,
        parentId: context.parentId ?? null,
        group: context.groupId ?? (typeof options.group_id === 'string' ? options.group_id : null),
        groupIndex: context.groupIndex ?? (typeof options.group_index === 'number' ? options.group_index : null),
        callbacks: signaturesOf(options.link),
        errbacks: signaturesOf(options.link_error),
        chain: context.chain ?? [],
        chord: options.chord ?? null,
        origin: this.settings.hostname,
        headers: this.settings.tracing?.traceHeaders(),
      },
      this.settings.messageFormat,
    );
    // A queue deleted since it was declared is declared anew, so a callback or chain step is not lost to it.
    await publishTask(this.broker, queue, this.settings.queues?.[queue], encoded);
    return id;
  }
}
