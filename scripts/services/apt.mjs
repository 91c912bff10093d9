// Installing Debian packages with apt-get: one `apt-get update` per run, then each install.
import { run } from './commands.mjs';
import { aptGet } from './machine.mjs';
import { lastLines } from './report.mjs';

const APT_TIMEOUT = 1200; // s

const aptEnv = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
const aptLock = ['-o', 'DPkg::Lock::Timeout=300'];
let aptUpdated = false;

/** `apt-get update` (once), then `apt-get install` of `packages`: an error message, or undefined when installed. */
export async function aptInstall(packages) {
  if (!aptUpdated) {
    const update = await run(aptGet, ['update', '-qq', ...aptLock], { env: aptEnv, timeout: APT_TIMEOUT });
    if (update.code !== 0) return `apt-get update failed (exit ${update.code}):\n${lastLines(update.output, 20)}`;
    aptUpdated = true;
  }
  const install = await run(aptGet, ['install', '-y', '-qq', ...aptLock, ...packages], { env: aptEnv, timeout: APT_TIMEOUT });
  if (install.code !== 0) return `apt-get install ${packages.join(' ')} failed (exit ${install.code}):\n${lastLines(install.output, 30)}`;
  return undefined;
}
