// Where the services are: RabbitMQ at AMQP_URL and Redis at REDIS_URL, read once from the environment.
import { isIP } from 'node:net';
import { amqpAnswers, redisAnswers } from './probes.mjs';
import { die } from './report.mjs';

const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '::1']);

function endpoint(variable, fallback, defaultPort) {
  const raw = process.env[variable] || fallback;
  let url;
  try {
    url = new URL(raw);
  } catch {
    die(`${variable}=${raw} is not a URL.`);
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
  const tls = url.protocol === 'amqps:' || url.protocol === 'rediss:';
  const port = Number(url.port || defaultPort(url.protocol));
  return {
    variable,
    raw: raw.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@'),
    url,
    host,
    port,
    tls,
    local: LOCAL_HOSTS.has(host.toLowerCase()),
    address: `${isIP(host) === 6 ? `[${host}]` : host}:${port}`,
  };
}

export const rabbit = {
  name: 'RabbitMQ',
  ...endpoint('AMQP_URL', 'amqp://guest:guest@127.0.0.1:5672', (protocol) => (protocol === 'amqps:' ? 5671 : 5672)),
  binaries: ['rabbitmq-server', 'rabbitmqctl'],
  packages: ['rabbitmq-server'],
  composeService: 'rabbitmq',
  answers: () => amqpAnswers(rabbit),
};
export const redis = {
  name: 'Redis',
  ...endpoint('REDIS_URL', 'redis://127.0.0.1:6379/0', () => 6379),
  binaries: ['redis-server'],
  packages: ['redis-server'],
  composeService: 'redis',
  answers: () => redisAnswers(redis),
};
export const services = [rabbit, redis];

// The old knobs: the tests never read them, the URLs decide.
for (const [variable, service] of [
  ['RABBITMQ_PORT', rabbit],
  ['REDIS_PORT', redis],
]) {
  const value = process.env[variable];
  if (value && Number(value) !== service.port) {
    console.warn(
      `${variable}=${value} is ignored: the tests and this check use ${service.variable} (${service.address}); set that instead.`,
    );
  }
}
