import { Logger } from '@nestjs/common';
import { brokerInfo, celeryQueueInfo, requestInfo, rusage } from './celery-formats.js';
import type { WorkerState } from './worker-state.js';

export type ControlArguments = Record<string, unknown>;
type Command = (args: ControlArguments) => unknown;

/** AMQP heartbeat the broker connection negotiates (seconds; see `AmqpBroker`). */
const HEARTBEAT_SECONDS = 5;

const ok = (value: unknown) => ({ ok: value });
const nok = (value: unknown) => ({ error: value });

/**
 * Celery's remote-control commands (`celery/worker/control.py`) answered from the worker's state,
 * with Celery's reply values, so `celery inspect`/`control` and Flower read a Nest worker as a
 * Python one. `handle()` never throws: errors become Celery's `{error: repr(exc)}`.
 */
export class ControlCommands {
  private readonly logger = new Logger('BatchesServer');
  private readonly commands: Record<string, Command> = {
    ping: () => ok('pong'),
    registered: () => this.state.tasks(),
    stats: () => this.stats(),
    active: (args) => this.state.active().map(({ request, timeStart }) => requestInfo(request, args.safe === true, { timeStart })),
    reserved: () => this.state.reserved().map((request) => requestInfo(request, false)),
    active_queues: () => this.state.queues().map(celeryQueueInfo),
    query_task: (args) => this.queryTask(args),
    revoke: (args) => this.revoke(args),
    revoked: () => this.state.revoked.list(),
    clock: () => ({ clock: this.state.clock.value }),
    enable_events: () => this.setEvents(true),
    disable_events: () => this.setEvents(false),
    shutdown: () => {
      this.logger.warn('Ignored a remote shutdown: stop the Nest application (SIGTERM / app.close()) to drain and exit');
      return nok('shutdown is not supported by nestjs-batches workers: stop the application so it drains its batches');
    },
  };

  constructor(
    private readonly state: WorkerState,
    private readonly brokerUrls: readonly string[],
  ) {
    // Celery's aliases.
    this.commands.dump_tasks = this.commands.registered;
    this.commands.dump_active = this.commands.active;
    this.commands.dump_reserved = this.commands.reserved;
    this.commands.dump_revoked = this.commands.revoked;
  }

  /** Runs `method`: its reply value, or Celery's error reply. */
  handle(method: string, args: ControlArguments = {}): unknown {
    const command = Object.hasOwn(this.commands, method) ? this.commands[method] : undefined;
    if (!command) {
      this.logger.warn(`No such control command: ${method}`);
      return nok(`KeyError(${pythonRepr(method)})`);
    }
    try {
      return command(args);
    } catch (error) {
      this.logger.error(`pidbox command error: ${String(error)}`);
      return nok(error instanceof Error ? `${error.name}(${pythonRepr(error.message)})` : String(error));
    }
  }

  private stats(): Record<string, unknown> {
    const { state } = this;
    return {
      total: state.processedTotals(),
      pid: process.pid,
      clock: String(state.clock.value),
      uptime: Math.round((Date.now() - state.startedAt) / 1000),
      pool: {
        'max-concurrency': state.concurrency(),
        processes: [process.pid],
        'max-tasks-per-child': null,
        'put-guarded-by-semaphore': false,
        timeouts: [],
      },
      broker: brokerInfo(this.brokerUrls, HEARTBEAT_SECONDS),
      prefetch_count: state.prefetchCount(),
      rusage: rusage(),
    };
  }

  private queryTask(args: ControlArguments): Record<string, unknown> {
    const ids = new Set(idList(args.ids));
    const found: Record<string, unknown> = {};
    for (const { request, timeStart } of this.state.active()) {
      if (ids.has(request.id)) found[request.id] = ['active', requestInfo(request, false, { timeStart })];
    }
    for (const request of this.state.reserved()) {
      if (ids.has(request.id)) found[request.id] ??= ['reserved', requestInfo(request, false)];
    }
    return found;
  }

  /** Records the ids; the worker skips them and stores REVOKED. Running batches are not interrupted. */
  private revoke(args: ControlArguments): unknown {
    const ids = [...new Set(idList(args.task_id))];
    this.state.revoked.add(...ids);
    if (args.terminate) {
      // Celery terminates a pool process; a batch handler shares the process with the worker and cannot be killed.
      return ok('terminate: tasks unknown');
    }
    const idstr = ids.join(', ');
    this.logger.log(`Tasks flagged as revoked: ${idstr}`);
    return ok(`tasks ${idstr} flagged as revoked`);
  }

  /** `enable_events`/`disable_events`: task events on or off. */
  private setEvents(enabled: boolean): unknown {
    const word = enabled ? 'enabled' : 'disabled';
    if (this.state.eventsEnabled === enabled) return ok(`task events already ${word}`);
    this.state.eventsEnabled = enabled;
    this.logger.log(`Events of group {task} ${word} by remote.`);
    return ok(`task events ${word}`);
  }
}

/** Celery's `maybe_list`: one id or a list of ids. */
function idList(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  return (Array.isArray(value) ? value : [value]).map(String);
}

/** Python's `repr()` of a str. */
function pythonRepr(text: string): string {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  const escaped = text.replace(/\\/g, '\\\\').replace(quote === "'" ? /'/g : /"/g, `\\${quote}`);
  return `${quote}${escaped.replace(/\n/g, '\\n')}${quote}`;
}
