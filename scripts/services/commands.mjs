// Running other programs: finding them on PATH, and running one to its exit from the project root.
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
const SBIN = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** Runs a command to its exit: { code, output } (code null when it could not run or timed out). */
export function run(command, args, { env, timeout = 60 } = {}) {
  return new Promise((resolve) => {
    let output = '';
    let settled = false;
    const settle = (code) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ code, output: output.trim() });
    };
    let child;
    try {
      child = spawn(command, args, { cwd: ROOT, env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (error) {
      resolve({ code: null, output: error.message });
      return;
    }
    const timer = setTimeout(() => {
      output += `\n(killed after ${timeout} s)`;
      child.kill('SIGKILL');
      settle(null);
    }, timeout * 1000);
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    child.once('error', (error) => {
      output += error.message;
      settle(null);
    });
    child.once('close', (code) => settle(code));
    // A daemon it forked may keep our pipes open after it exits: take what came, then let go.
    child.once('exit', (code) =>
      setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        settle(code);
      }, 200).unref(),
    );
  });
}

/** The executable `name` on PATH (then in `extra` directories), or undefined. */
export function which(name, extra = []) {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...extra]) {
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

// Debian's rabbitmq-server and rabbitmqctl are in /usr/sbin, which a user's PATH may lack.
export const binary = (name) => which(name, SBIN);
