/** Where the RabbitMQ scripts that boot and control a test cluster's nodes are installed, if anywhere. */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Debian's /usr/sbin scripts re-run themselves as the rabbitmq user (dropping HOME, so our cookie); these do not. */
const REAL_SCRIPTS = '/usr/lib/rabbitmq/bin';
const SBIN = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** The directory holding `rabbitmq-server` and `rabbitmqctl` (only `RABBITMQ_SCRIPTS` when set), or undefined. */
export function scriptsDir(): string | undefined {
  const candidates =
    process.env.RABBITMQ_SCRIPTS !== undefined
      ? [process.env.RABBITMQ_SCRIPTS]
      : [REAL_SCRIPTS, ...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...SBIN];
  return candidates.find((dir) => ['rabbitmq-server', 'rabbitmqctl'].every((script) => executable(join(dir, script))));
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Why a cluster cannot be started here, or undefined when it can. */
export function rabbitClusterMissing(): string | undefined {
  if (scriptsDir()) return undefined;
  return 'rabbitmq-server and rabbitmqctl are not installed (apt-get install rabbitmq-server; .ci/run does this), so no cluster can be started';
}
