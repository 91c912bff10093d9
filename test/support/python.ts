import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor } from './wait.js';

/** Debian's interpreter: the one python3-celery installs into. */
export const PYTHON = process.env.CELERY_PYTHON ?? '/usr/bin/python3';
const SCRIPTS = fileURLToPath(new URL('../../../test/python/', import.meta.url));

/** Why the Python interop tests cannot run here, or undefined when they can. */
export function celeryMissing(): string | undefined {
  const probe = spawnSync(PYTHON, ['-c', 'import celery, redis'], { encoding: 'utf8' });
  if (probe.status === 0) return undefined;
  return `Python Celery is not importable by ${PYTHON} (apt-get install python3-celery python3-redis; .ci/run does this)`;
}

export type PythonEvent = Record<string, unknown> & { event: string };

/** A Python script of test/python/ running against our queue; its stdout JSON lines are collected. */
export class PythonProcess {
  readonly events: PythonEvent[] = [];
  private stderr = '';
  private readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;

  constructor(script: string, args: string[], queue: string) {
    this.child = spawn(PYTHON, [script, ...args], {
      cwd: SCRIPTS,
      env: { ...process.env, CELERY_QUEUE: queue, PYTHONUNBUFFERED: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buffered = '';
    this.child.stdout?.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) if (line.startsWith('{')) this.events.push(JSON.parse(line) as PythonEvent);
    });
    this.child.stderr?.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', resolve));
  }

  /** Runs a script to its end and returns its events; rejects with its stderr when it fails. */
  static async run(script: string, args: string[], queue: string): Promise<PythonEvent[]> {
    const process = new PythonProcess(script, args, queue);
    const code = await process.exited;
    if (code !== 0) throw new Error(`${script} exited with ${code}: ${process.stderr.slice(-2000)}`);
    return process.events;
  }

  async waitForEvent(event: string, timeout = 30_000): Promise<PythonEvent> {
    await waitFor(
      () => this.events.some((each) => each.event === event),
      `python event '${event}' (stderr: ${this.stderr.slice(-500)})`,
      timeout,
    );
    return this.events.find((each) => each.event === event) as PythonEvent;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
    await this.exited;
  }
}
