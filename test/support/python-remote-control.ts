import assert from 'node:assert/strict';
import { PythonProcess, type PythonEvent } from './python.js';
import { waitFor } from './wait.js';

/** What test/python/control.py sends: inspect methods, revokes and other broadcast commands. */
export interface ControlSpec {
  inspect?: string[];
  revoke?: string[];
  broadcast?: Array<{ command: string; arguments?: Record<string, unknown> }>;
  destination?: string[];
  timeout?: number;
}

export type Info = Record<string, unknown>;

/** Celery remote control sent from Python (test/python/control.py) to the one worker node `hostname`. */
export function pythonRemoteControl(
  hostname: string,
  queue: string,
): {
  control(spec: ControlSpec): Promise<PythonEvent[]>;
  inspect(method: string): Promise<unknown>;
  inspectUntil(method: string, check: (reply: Info[]) => boolean, what: string): Promise<Info[]>;
} {
  /** Runs test/python/control.py against our node only. */
  function control(spec: ControlSpec): Promise<PythonEvent[]> {
    return PythonProcess.run('control.py', [JSON.stringify({ destination: [hostname], timeout: 3, ...spec })], queue);
  }

  async function inspect(method: string): Promise<unknown> {
    const [event] = await control({ inspect: [method] });
    const reply = event.reply as Record<string, unknown> | null;
    assert.ok(reply, `no reply to inspect ${method}`);
    assert.deepEqual(Object.keys(reply), [hostname]);
    return reply[hostname];
  }

  /** Polls an inspect command until `check` holds for its reply (each poll is a Python process). */
  async function inspectUntil(method: string, check: (reply: Info[]) => boolean, what: string): Promise<Info[]> {
    let last: Info[] = [];
    await waitFor(
      async () => check((last = (await inspect(method)) as Info[])),
      `${what} (last reply: ${JSON.stringify(last)})`,
      20_000,
      0,
    );
    return last;
  }

  return { control, inspect, inspectUntil };
}
