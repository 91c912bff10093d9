// What this machine has and lets us do: root and apt-get, installed services, Python Celery, Chromium, Docker.
import { binary, run, which } from './commands.mjs';

export const PYTHON = process.env.CELERY_PYTHON || '/usr/bin/python3';
export const DEBIAN_PYTHON = '/usr/bin/python3';
export const CELERY_PACKAGES = ['python3-celery', 'python3-redis'];
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const DEBIAN_CHROMIUM = '/usr/bin/chromium';

export const uid = process.getuid?.() ?? -1;
export const aptGet = which('apt-get');
export const canApt = uid === 0 && aptGet !== undefined;

export const installed = (service) => service.binaries.every((name) => binary(name) !== undefined);

export async function celeryImportable() {
  return (await run(PYTHON, ['-c', 'import celery, redis'], { timeout: 30 })).code === 0;
}

/** Why the tests' `rabbitmqctl` (from PATH) is not there, or undefined. */
export function rabbitmqctlProblem() {
  if (which('rabbitmqctl')) return undefined;
  const elsewhere = binary('rabbitmqctl');
  return elsewhere ? `rabbitmqctl is in ${elsewhere} but not on PATH` : 'rabbitmqctl is not installed';
}

export async function dockerProblem() {
  if (!which('docker')) return 'Docker is not installed';
  const info = await run('docker', ['info'], { timeout: 20 });
  if (info.code !== 0) return 'no Docker engine answers: `docker info` failed';
  const compose = await run('docker', ['compose', 'version'], { timeout: 20 });
  if (compose.code !== 0) return 'Docker has no Compose plugin: `docker compose version` failed';
  return undefined;
}
