import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Linux's USER_HZ: /proc reports CPU time in these ticks. */
const TICKS_PER_SECOND = 100;

/** A process and its descendants (a prefork worker's children do the work). */
export function tree(pid: number): number[] {
  let children: number[] = [];
  try {
    children = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    // pgrep exits 1 when there are none
  }
  return [pid, ...children.flatMap(tree)];
}

/** CPU seconds (user + system) and peak RSS (VmHWM), summed over the live process tree of `pid`. */
export function treeUsage(pid: number): { cpuSeconds: number; peakRssMb: number } {
  let ticks = 0;
  let peakKb = 0;
  for (const each of tree(pid)) {
    try {
      const stat = readFileSync(`/proc/${each}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
      peakKb += Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${each}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      // exited between pgrep and the read
    }
  }
  return { cpuSeconds: ticks / TICKS_PER_SECOND, peakRssMb: peakKb / 1024 };
}

/** The local RabbitMQ server's pid (its Erlang VM was started with `-s rabbit boot`), or undefined when it runs elsewhere. */
export function localBrokerPid(): number | undefined {
  try {
    const pid = Number(execFileSync('pgrep', ['-o', '-f', 'rabbit boot'], { encoding: 'utf8' }).trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined; // pgrep exits 1 when nothing matches
  }
}
