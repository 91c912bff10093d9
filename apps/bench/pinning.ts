import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { evalOnBroker, evalReachesPid, RABBITMQCTL } from './broker-eval.js';

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

/** The broker VM's schedulers online (normal and dirty CPU ones). */
interface Schedulers {
  online: number;
  dirtyOnline: number;
}

/**
 * Sets the broker VM's schedulers online (and dirty CPU schedulers online) to `count`, at most as
 * many as it has: two schedulers squeezed onto one pinned core ping-pong on it, and the broker's
 * CPU per message comes out bimodal from run to run. Checks first that `rabbitmqctl` reaches the
 * VM of `brokerPid` (its OS pid), and returns the counts it found and the ones it set.
 */
function setSchedulers(brokerPid: number, count: number): { before: Schedulers; now: Schedulers } {
  const read = evalOnBroker(
    '{os:getpid(), erlang:system_info(schedulers_online), erlang:system_info(dirty_cpu_schedulers_online), ' +
      'erlang:system_info(schedulers), erlang:system_info(dirty_cpu_schedulers)}.',
  );
  const found = /\{"(\d+)",(\d+),(\d+),(\d+),(\d+)\}/.exec(read);
  if (!found) throw new Error(`unexpected answer from ${RABBITMQCTL} eval: ${read.trim().slice(0, 80)}`);
  const [pid, online, dirtyOnline, schedulers, dirtySchedulers] = found.slice(1).map(Number);
  if (pid !== brokerPid) throw new Error(`${RABBITMQCTL} reaches another node (OS pid ${pid})`);
  const before = { online, dirtyOnline };
  const wanted = { online: Math.min(count, schedulers), dirtyOnline: Math.min(count, dirtySchedulers) };
  try {
    applySchedulers(wanted);
  } catch (error) {
    restoreSchedulers(brokerPid, before);
    throw error;
  }
  return { before, now: wanted };
}

/** Schedulers online first: changing them changes the dirty CPU schedulers online in proportion. */
function applySchedulers({ online, dirtyOnline }: Schedulers): void {
  evalOnBroker(`erlang:system_flag(schedulers_online, ${online}), erlang:system_flag(dirty_cpu_schedulers_online, ${dirtyOnline}), ok.`);
}

/** Gives the broker its scheduler counts back, unless it has restarted since (then it has its own again). */
function restoreSchedulers(brokerPid: number, schedulers: Schedulers): void {
  try {
    if (evalReachesPid() === brokerPid) applySchedulers(schedulers);
  } catch (error) {
    console.error(`--pin: could not restore the broker's schedulers online to ${schedulers.online}: ${(error as Error).message}`);
  }
}

export interface Pinning {
  /** What went where, for the run's header. */
  description: string;
  /** Gives every thread of the broker back the affinity it had and the VM its schedulers online (idempotent). */
  restore(): void;
}

/**
 * `--pin`: the local RabbitMQ (every thread of its Erlang VM) on the first cores, this process on
 * the last one. Every measured process is a child of this one and inherits its affinity, so the
 * broker and the measured consumer (or publisher) never share a core. The VM runs as many
 * schedulers (and dirty CPU schedulers) online as it has cores (through `rabbitmqctl eval`; when
 * that fails the threads are pinned all the same, and the description says so). The broker's
 * threads get their own affinity back on `restore()`, its VM its scheduler counts, and at the
 * latest when this process exits.
 */
export function pinCores(brokerPid: number, cores: number): Pinning {
  if (cores < 2) throw new Error(`--pin needs at least 2 cores, this machine has ${cores}`);
  try {
    execFileSync(TASKSET, ['-V'], { stdio: 'ignore' });
  } catch {
    throw new Error('--pin needs taskset (util-linux) on the PATH');
  }
  const brokerCores = cores - 1;
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
  let schedulers: { before: Schedulers; now: Schedulers } | undefined;
  const restore = (): void => {
    if (restored) return;
    restored = true;
    // Threads started since pinning get the process's own mask back.
    for (const tid of threads(brokerPid)) setMask(tid, saved.get(tid) ?? processMask);
    if (schedulers) restoreSchedulers(brokerPid, schedulers.before);
  };
  // Also when the bench fails or is interrupted (main.ts exits on SIGINT/SIGTERM).
  process.once('exit', restore);
  // Schedulers first: the VM unbinds a scheduler it takes offline (gives it its whole mask), and the
  // pinning after it takes that thread along too. Bringing it back online on restore binds it again.
  let schedulerText: string;
  try {
    schedulers = setSchedulers(brokerPid, brokerCores);
    const { before, now } = schedulers;
    schedulerText =
      `with ${now.online} scheduler${now.online === 1 ? '' : 's'} and ${now.dirtyOnline} dirty CPU scheduler` +
      `${now.dirtyOnline === 1 ? '' : 's'} online (were ${before.online} and ${before.dirtyOnline})`;
  } catch (error) {
    schedulerText = `(its schedulers online not changed: ${(error as Error).message})`;
  }
  execFileSync(TASKSET, ['-a', '-p', '-c', brokerCpus, String(brokerPid)], { stdio: 'ignore' });
  execFileSync(TASKSET, ['-a', '-p', '-c', benchCpus, String(process.pid)], { stdio: 'ignore' });
  return {
    description: `pinned: RabbitMQ (pid ${brokerPid}) to CPU ${brokerCpus} ${schedulerText}, the bench and every measured process to CPU ${benchCpus}`,
    restore,
  };
}
