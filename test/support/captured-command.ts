import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  output: string;
}

/** The environment of child processes: no test-runner or npm-script state of this process leaks into them. */
function childEnv(): NodeJS.ProcessEnv {
  const keep = new Set(['npm_config_cache', 'npm_config_registry', 'npm_config_userconfig', 'npm_config_globalconfig']);
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key === 'NODE_TEST_CONTEXT' || key === 'INIT_CWD') continue;
    if (key.toLowerCase().startsWith('npm_') && !keep.has(key.toLowerCase())) continue;
    env[key] = value;
  }
  return { ...env, NO_COLOR: '1', NO_UPDATE_NOTIFIER: '1', npm_config_update_notifier: 'false', npm_config_fund: 'false' };
}

/** Runs a command with its output captured (never inherited); kills its whole process group after `timeout` ms. */
export function run(command: string, args: string[], cwd: string, timeout: number): Promise<RunResult> {
  return new Promise((resolvePromise) => {
    const child = spawn(command, args, { cwd, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let output = '';
    let timedOut = false;
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      output += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeout);
    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, timedOut, stdout, output });
    };
    child.on('error', (error) => {
      output += `\n${String(error)}`;
      finish(null, null);
    });
    child.on('close', finish);
  });
}

export function describeRun(what: string, result: RunResult): string {
  const status = result.timedOut ? 'timed out' : `exited with ${result.code ?? result.signal}`;
  const printed = result.output.length > 12_000 ? `…${result.output.slice(-12_000)}` : result.output;
  return `${what} ${status}; it printed:\n${printed}`;
}

export async function runOk(what: string, command: string, args: string[], cwd: string, timeout: number): Promise<RunResult> {
  const result = await run(command, args, cwd, timeout);
  assert.ok(result.code === 0 && !result.timedOut, describeRun(what, result));
  return result;
}
