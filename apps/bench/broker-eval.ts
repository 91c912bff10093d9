import { execFileSync } from 'node:child_process';

export const RABBITMQCTL = process.env.RABBITMQCTL ?? 'rabbitmqctl';

/** Runs `expression` on the local node with `rabbitmqctl eval`; throws a short reason when it cannot. */
export function evalOnBroker(expression: string): string {
  try {
    return execFileSync(RABBITMQCTL, ['eval', expression], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
  } catch (error) {
    const { code, status, stderr, stdout } = error as { code?: string; status?: number; stderr?: string; stdout?: string };
    if (code === 'ENOENT') throw new Error(`${RABBITMQCTL} not found`, { cause: error });
    const reason = `${stderr ?? ''}\n${stdout ?? ''}`.split('\n').find((line) => line.trim()) ?? `exit status ${status}`;
    throw new Error(`${RABBITMQCTL} eval failed: ${reason.trim().slice(0, 120)}`, { cause: error });
  }
}

/** The OS pid of the broker `rabbitmqctl` reaches, or undefined when it cannot be asked. */
export function evalReachesPid(): number | undefined {
  try {
    return Number(/"(\d+)"/.exec(evalOnBroker('os:getpid().'))?.[1]) || undefined;
  } catch {
    return undefined;
  }
}

/**
 * A full garbage collection of every process of the broker's VM. Publishing a backlog leaves the
 * queue process with a large heap of garbage; collected during the consumer's step, it doubles the
 * broker's CPU per consumed message in some runs and not in others (about 14 against 27 µs for
 * the same consumer). Collected at the end of the publishing step, it is charged to publishing,
 * and every consumer starts from the same broker.
 */
export function collectBrokerGarbage(): void {
  evalOnBroker('[erlang:garbage_collect(P) || P <- erlang:processes()], ok.');
}
