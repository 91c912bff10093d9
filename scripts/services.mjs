// Makes sure the services the tests talk to are up on localhost: RabbitMQ (5672) and Redis (6379).
// Starts one that is installed but not running; fails with what to do when it is not installed.
import { execFileSync, spawnSync } from 'node:child_process';
import { createConnection } from 'node:net';

const services = [
  {
    name: 'RabbitMQ',
    port: Number(process.env.RABBITMQ_PORT ?? 5672),
    binary: 'rabbitmq-server',
    start: ['rabbitmq-server', ['-detached']],
    install: 'apt-get install rabbitmq-server, or `docker compose up -d` with the docker-compose.yml in this repo',
    // The port opens before the broker accepts work; rabbitmqctl answers once it does.
    ready: () => spawnSync('rabbitmqctl', ['await_startup', '--timeout', '60'], { stdio: 'ignore' }).status === 0,
  },
  {
    name: 'Redis',
    port: Number(process.env.REDIS_PORT ?? 6379),
    binary: 'redis-server',
    start: ['redis-server', ['--daemonize', 'yes', '--bind', '127.0.0.1', '--port', '6379', '--save', '', '--appendonly', 'no']],
    install: 'apt-get install redis-server, or `docker compose up -d` with the docker-compose.yml in this repo',
    ready: () => true,
  },
];

function portOpen(port) {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => socket.end(() => resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

function installed(binary) {
  return spawnSync('sh', ['-c', `command -v ${binary}`], { stdio: 'ignore' }).status === 0;
}

async function waitForPort(port, seconds) {
  for (let i = 0; i < seconds * 4; i++) {
    if (await portOpen(port)) return true;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return false;
}

let failed = false;
for (const service of services) {
  if (await portOpen(service.port)) {
    if (!service.ready()) console.warn(`${service.name} is listening on ${service.port} but did not report ready`);
    continue;
  }
  if (!installed(service.binary)) {
    console.error(`${service.name} is not running on 127.0.0.1:${service.port} and ${service.binary} is not installed: ${service.install}.`);
    failed = true;
    continue;
  }
  console.log(`starting ${service.name}…`);
  const [command, args] = service.start;
  execFileSync(command, args, { stdio: 'inherit' });
  if (!(await waitForPort(service.port, 90)) || !service.ready()) {
    console.error(`${service.name} did not come up on 127.0.0.1:${service.port}; see its log.`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
