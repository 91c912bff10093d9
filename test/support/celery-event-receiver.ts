import assert from 'node:assert/strict';
import { PythonProcess, type PythonEvent } from './python.js';
import { waitFor } from './wait.js';

/** The fields every Celery event carries, and those a worker event adds. */
export const COMMON_FIELDS = ['hostname', 'utcoffset', 'pid', 'clock', 'timestamp', 'type'];
export const WORKER_FIELDS = [...COMMON_FIELDS, 'freq', 'active', 'processed', 'loadavg', 'sw_ident', 'sw_ver', 'sw_sys'];

/** An event as Celery sends it, decoded by the Python receiver. */
export type CeleryEvent = Record<string, unknown> & { type: string };

/** test/python/events.py: a Python `app.events.Receiver` collecting one node's events. */
export class EventReceiver {
  readonly process: PythonProcess;

  constructor(hostname: string, queue: string) {
    this.process = new PythonProcess('events.py', [JSON.stringify({ hostname, seconds: 60 })], queue);
  }

  ready(): Promise<PythonEvent> {
    return this.process.waitForEvent('ready');
  }

  get bodies(): CeleryEvent[] {
    return this.process.events.filter((event) => event.event === 'celery').map((event) => event.body as CeleryEvent);
  }

  of(type: string, uuid?: string): CeleryEvent[] {
    return this.bodies.filter((body) => body.type === type && (uuid === undefined || body.uuid === uuid));
  }

  async waitFor(type: string, count = 1, uuid?: string, timeout = 15_000): Promise<CeleryEvent[]> {
    await waitFor(
      () => this.of(type, uuid).length >= count,
      `${count} '${type}' event(s)${uuid ? ` of ${uuid}` : ''} (got: ${this.bodies.map((body) => body.type).join(', ')})`,
      timeout,
    );
    return this.of(type, uuid);
  }

  /** The final `State` snapshot: printed once the node sent `worker-offline`. */
  async state(): Promise<PythonEvent> {
    return this.process.waitForEvent('state');
  }

  stop(): Promise<void> {
    return this.process.stop();
  }
}

/** Asserts that `body` carries every field of `fields`, as Celery's own events do. */
export function assertFields(body: CeleryEvent, fields: string[]): void {
  for (const field of fields) assert.ok(Object.hasOwn(body, field), `${body.type} has '${field}': ${JSON.stringify(body)}`);
}
