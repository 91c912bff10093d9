import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';

const TASKSET = process.env.TASKSET ?? 'taskset';

/** Threads of `pid` (the Erlang VM binds its schedulers to cores one thread at a time). */
function threads(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number);
  } catch {
    return [];
  }
}

/** `taskset -p <tid>`: the thread's affinity mask, as hex. */
function mask(tid: number): string | undefined {
  try {
    return /mask:\s*([0-9a-f]+)/.exec(execFileSync(TASKSET, ['-p', String(tid)], { encoding: 'utf8' }))?.[1];
  } catch {
    return undefined; // the thread has exited
  }
}

function setMask(tid: number, hex: string): void {
  try {
    execFileSync(TASKSET, ['-p', hex, String(tid)], { stdio: 'ignore' });
  } catch {
    // the thread has exited
  }
}

export interface Pinning {
  /** What went where, for the run's header. */
  description: string;
  /** Gives every thread of the broker back the affinity it had (idempotent). */
  restore(): void;
}

/**
 * `--pin`: the local RabbitMQ (every thread of its Erlang VM) on the first cores, this process on
 * the last one. Every measured process is a child of this one and inherits its affinity, so the
 * broker and the measured consumer (or publisher) never share a core. The broker's threads get
 * their own affinity back on `restore()`, and at the latest when this process exits.
 */
export function pinCores(brokerPid: number, cores: number): Pinning {
  if (cores < 2) throw new Error(`--pin needs at least 2 cores, this machine has ${cores}`);
  try {
    execFileSync(TASKSET, ['-V'], { stdio: 'ignore' });
  } catch {
    throw new Error('--pin needs taskset (util-linux) on the PATH');
  }
  const brokerCpus = cores === 2 ? '0' : `0-${cores - 2}`;
  const benchCpus = String(cores - 1);
  const saved = new Map<number, string>();
  for (const tid of threads(brokerPid)) {
    const hex = mask(tid);
    if (hex) saved.set(tid, hex);
  }
  const processMask = saved.get(brokerPid);
  if (!processMask) throw new Error(`--pin: cannot read the affinity of the broker (pid ${brokerPid})`);
  let restored = false;
  const restore = (): void => {
    if (restored) return;
    restored = true;
    // Threads started since pinning get the process's own mask back.
    for (const tid of threads(brokerPid)) setMask(tid, saved.get(tid) ?? processMask);
  };
  // Also when the bench fails or is interrupted (main.ts exits on SIGINT/SIGTERM).
  process.once('exit', restore);
  execFileSync(TASKSET, ['-a', '-p', '-c', brokerCpus, String(brokerPid)], { stdio: 'ignore' });
  execFileSync(TASKSET, ['-a', '-p', '-c', benchCpus, String(process.pid)], { stdio: 'ignore' });
  return {
    description: `pinned: RabbitMQ (pid ${brokerPid}) to CPU ${brokerCpus}, the bench and every measured process to CPU ${benchCpus}`,
    restore,
  };
}
