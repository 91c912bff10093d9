// Starting a local service that is installed (rabbitmq-server, redis-server), or both with Docker Compose.
import { existsSync, closeSync, openSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { binary, ROOT, run } from './commands.mjs';
import { rabbit, redis } from './endpoints.mjs';
import { uid } from './machine.mjs';
import { portOpen, waitForAnswer, waitUntil } from './probes.mjs';
import { lastLines } from './report.mjs';

const RABBITMQ_PORT_WAIT = 90; // s, for the port after `rabbitmq-server -detached`
const RABBITMQ_STARTUP_WAIT = 60; // s, `rabbitmqctl await_startup --timeout`
const REDIS_WAIT = 30; // s
const COMPOSE_TIMEOUT = 600; // s, image pulls included

function rabbitLog() {
  const base = process.env.RABBITMQ_LOG_BASE || '/var/log/rabbitmq';
  const node = process.env.RABBITMQ_NODENAME || `rabbit@${hostname().split('.')[0]}`;
  const file = join(base, `${node}.log`);
  return existsSync(file) ? file : `the logs in ${base}/`;
}

function redisLogFile(port) {
  // A per-user name when another user's log is in the way (redis-server would refuse to start).
  for (const name of [`nestjs-batches-redis-${port}.log`, `nestjs-batches-redis-${port}-${uid}.log`]) {
    const file = join(tmpdir(), name);
    try {
      closeSync(openSync(file, 'a'));
      return file;
    } catch {
      // not ours
    }
  }
  return '';
}

/** Starts a local service that is installed; resolves to an error message or undefined when it is ready. */
export async function startLocal(service) {
  const began = Date.now();
  if (!(await service.answers()).ok) {
    const problem = service === rabbit ? await startRabbit() : await startRedis();
    if (problem) return problem;
  }
  console.log(`${service.name} is up on ${service.address} (${Math.round((Date.now() - began) / 1000)} s).`);
  return undefined;
}

async function startRabbit() {
  const server = binary('rabbitmq-server');
  const ctl = binary('rabbitmqctl');
  const log = rabbitLog();
  const awaitStartup = (seconds) => run(ctl, ['await_startup', '--timeout', String(seconds)], { timeout: seconds + 30 });
  if (!(await portOpen(rabbit))) {
    // A node that runs but does not listen there (other listeners, or another port) is not ours to fix.
    if ((await awaitStartup(1)).code === 0 && !(await waitUntil(() => portOpen(rabbit), 5))) {
      return `RabbitMQ runs (rabbitmqctl answers) but does not listen on ${rabbit.address}: see \`rabbitmq-diagnostics listeners\` and set ${rabbit.variable} to match.`;
    }
    console.log(`starting RabbitMQ: rabbitmq-server -detached (port ${rabbit.port})…`);
    const env = { ...process.env, RABBITMQ_NODE_PORT: String(rabbit.port) };
    const started = await run(server, ['-detached'], { env, timeout: 60 });
    // It also fails when the node is already booting (apt-get's postinst may have started it):
    // then await_startup waits for it (it fails at once when there is no node).
    if (started.code !== 0 && (await awaitStartup(RABBITMQ_STARTUP_WAIT)).code !== 0) {
      return `RabbitMQ did not start: \`rabbitmq-server -detached\` exited with ${started.code}: ${lastLines(started.output, 5)}\nSee ${log}.`;
    }
    if (!(await waitUntil(() => portOpen(rabbit), RABBITMQ_PORT_WAIT))) {
      return `RabbitMQ did not open ${rabbit.address} within ${RABBITMQ_PORT_WAIT} s of \`rabbitmq-server -detached\`; see ${log}.`;
    }
  }
  // Something listens but RabbitMQ is not installed here: all we can do is wait for it to answer.
  if (!ctl) {
    const state = await waitForAnswer(rabbit, RABBITMQ_STARTUP_WAIT);
    return state.ok ? undefined : `Something listens on ${rabbit.address} but is not a RabbitMQ that answers (${state.detail}).`;
  }
  const ready = await awaitStartup(RABBITMQ_STARTUP_WAIT);
  if (ready.code !== 0) {
    return `RabbitMQ listens on ${rabbit.address} but \`rabbitmqctl await_startup --timeout ${RABBITMQ_STARTUP_WAIT}\` failed: ${lastLines(ready.output, 5)}\nSee ${log}.`;
  }
  const state = await waitForAnswer(rabbit, 10);
  return state.ok ? undefined : `RabbitMQ reports it started, but ${rabbit.address} ${state.detail}; see ${log}.`;
}

async function startRedis() {
  if (await portOpen(redis)) {
    // Not started by us: maybe a Redis still loading, maybe something else.
    const state = await waitForAnswer(redis, REDIS_WAIT);
    return state.ok ? undefined : `Something listens on ${redis.address} but is not a Redis that answers PING (${state.detail}).`;
  }
  const log = redisLogFile(redis.port);
  const where = log ? `see ${log}` : 'run redis-server in the foreground to see why';
  const bind = redis.host === '::1' ? ['127.0.0.1', '::1'] : ['127.0.0.1'];
  console.log(`starting Redis: redis-server --daemonize yes --port ${redis.port}…`);
  // prettier-ignore
  const started = await run(binary('redis-server'), [
    '--daemonize', 'yes', '--bind', ...bind, '--port', String(redis.port), '--save', '', '--appendonly', 'no', '--logfile', log,
  ]);
  if (started.code !== 0) {
    return `Redis did not start: redis-server exited with ${started.code}: ${lastLines(started.output, 5)}\n${where}.`;
  }
  const state = await waitForAnswer(redis, REDIS_WAIT);
  return state.ok ? undefined : `Redis did not answer PING on ${redis.address} within ${REDIS_WAIT} s (${state.detail}); ${where}.`;
}

/** Starts `list` with `docker compose up -d --wait`: the problems, one message each (none when all answer). */
export async function startWithCompose(list) {
  const names = list.map((service) => service.composeService);
  const env = { ...process.env, RABBITMQ_PORT: String(rabbit.port), REDIS_PORT: String(redis.port) };
  console.log(`starting ${list.map((service) => service.name).join(' and ')} with Docker: docker compose up -d --wait ${names.join(' ')}…`);
  const up = await run('docker', ['compose', '-f', join(ROOT, 'docker-compose.yml'), 'up', '-d', '--wait', ...names], {
    env,
    timeout: COMPOSE_TIMEOUT,
  });
  const logs = `docker compose logs ${names.join(' ')}`;
  if (up.code !== 0) return [`\`docker compose up -d --wait ${names.join(' ')}\` failed: ${lastLines(up.output, 8)}\nSee \`${logs}\`.`];
  const problems = [];
  for (const service of list) {
    const state = await waitForAnswer(service, 60);
    if (!state.ok) {
      problems.push(`${service.name} (Docker) does not answer on ${service.address}: ${state.detail}; see \`${logs}\`.`);
    } else {
      console.log(`${service.name} is up on ${service.address} (Docker).`);
    }
  }
  return problems;
}
