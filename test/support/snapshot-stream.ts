import assert from 'node:assert/strict';
import type { MonitorSnapshot, MonitorTaskSnapshot } from 'nestjs-batches';
import { waitFor } from './wait.js';

/** A reader of a monitor's event stream: every snapshot it sent, and the raw text (to check what it never contains). */
export class SnapshotStream {
  readonly snapshots: MonitorSnapshot[] = [];
  text = '';
  ended = false;
  private readonly abort = new AbortController();

  private constructor(readonly response: Response) {}

  static async open(url: string, headers: Record<string, string> = {}): Promise<SnapshotStream> {
    const controller = new AbortController();
    const response = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: controller.signal });
    const stream = new SnapshotStream(response);
    stream.abort.signal.addEventListener('abort', () => controller.abort());
    if (response.ok) void stream.read();
    return stream;
  }

  get latest(): MonitorSnapshot | undefined {
    return this.snapshots.at(-1);
  }

  /** Waits for a snapshot for which `check` holds, and returns it. */
  async until(what: string, check: (snapshot: MonitorSnapshot) => boolean, timeout = 20_000): Promise<MonitorSnapshot> {
    let found: MonitorSnapshot | undefined;
    await waitFor(
      () => (found = this.snapshots.findLast(check)) !== undefined,
      `a snapshot with ${what} (latest: ${JSON.stringify(this.latest)})`,
      timeout,
    );
    return found as MonitorSnapshot;
  }

  close(): void {
    this.abort.abort();
  }

  private async read(): Promise<void> {
    const decoder = new TextDecoder();
    let pending = '';
    try {
      for await (const chunk of this.response.body as unknown as AsyncIterable<Uint8Array>) {
        const text = decoder.decode(chunk, { stream: true });
        this.text += text;
        pending += text;
        const messages = pending.split('\n\n');
        pending = messages.pop() ?? '';
        for (const message of messages) {
          const data = message
            .split('\n')
            .filter((line) => line.startsWith('data: '))
            .map((line) => line.slice(6))
            .join('\n');
          if (data) this.snapshots.push(JSON.parse(data) as MonitorSnapshot);
        }
      }
    } catch {
      // aborted by close()
    }
    this.ended = true;
  }
}

/** The snapshot's figures for `task`, which it must list. */
export function taskOf(snapshot: MonitorSnapshot, task: string): MonitorTaskSnapshot {
  const found = snapshot.tasks.find((each) => each.task === task);
  assert.ok(found, `no task '${task}' in ${JSON.stringify(snapshot.tasks.map((each) => each.task))}`);
  return found;
}
