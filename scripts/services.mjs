// `pretest`: gets what the tests need before they run, so that `npm test` works on a fresh machine.
//
//  - RabbitMQ at AMQP_URL (default amqp://guest:guest@127.0.0.1:5672) and Redis at REDIS_URL
//    (default redis://127.0.0.1:6379/0). One that answers is left alone. A local one (127.0.0.1,
//    localhost, ::1) that does not is started when installed; when it is not installed, it is
//    installed with apt-get if we are root and have apt-get, else started with
//    `docker compose up -d --wait` (docker-compose.yml) if a Docker engine answers, else we stop
//    with the one line to run. A remote one is only checked.
//  - Python Celery for the interop tests (python3-celery, python3-redis, imported by
//    /usr/bin/python3 or CELERY_PYTHON): installed with apt-get when missing and we can; otherwise
//    those tests skip themselves and we say so.
//  - Debian's Chromium for the monitor page's browser test (/usr/bin/chromium, or CHROMIUM): installed
//    with apt-get when missing and we can, in an install of its own, so that a failure only skips
//    that test; otherwise it skips itself and we say why.
//
// apt-get runs only when something is missing (one `apt-get update`, then the installs), so a run
// where everything is up only probes: well under 2 s.
import { spawn } from 'node:child_process';
import { accessSync, closeSync, constants, existsSync, openSync } from 'node:fs';
import { createConnection, isIP } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');
const PYTHON = process.env.CELERY_PYTHON || '/usr/bin/python3';
const DEBIAN_PYTHON = '/usr/bin/python3';
const CELERY_PACKAGES = ['python3-celery', 'python3-redis'];
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const DEBIAN_CHROMIUM = '/usr/bin/chromium';
const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '::1']);
const SBIN = ['/usr/local/sbin', '/usr/sbin', '/sbin'];
const RABBITMQ_PORT_WAIT = 90; // s, for the port after `rabbitmq-server -detached`
const RABBITMQ_STARTUP_WAIT = 60; // s, `rabbitmqctl await_startup --timeout`
const REDIS_WAIT = 30; // s
const COMPOSE_TIMEOUT = 600; // s, image pulls included
const APT_TIMEOUT = 1200; // s

const uid = process.getuid?.() ?? -1;
const aptGet = which('apt-get');
const canApt = uid === 0 && aptGet !== undefined;

// ---------------------------------------------------------------------------------------------
// Where the services are

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

const rabbit = {
  name: 'RabbitMQ',
  ...endpoint('AMQP_URL', 'amqp://guest:guest@127.0.0.1:5672', (protocol) => (protocol === 'amqps:' ? 5671 : 5672)),
  binaries: ['rabbitmq-server', 'rabbitmqctl'],
  packages: ['rabbitmq-server'],
  composeService: 'rabbitmq',
  answers: amqpAnswers,
};
const redis = {
  name: 'Redis',
  ...endpoint('REDIS_URL', 'redis://127.0.0.1:6379/0', () => 6379),
  binaries: ['redis-server'],
  packages: ['redis-server'],
  composeService: 'redis',
  answers: redisAnswers,
};
const services = [rabbit, redis];

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

// ---------------------------------------------------------------------------------------------
// Probes

/**
 * Opens a connection, sends `request`, and lets `judge` read the reply: { open, ok, detail }.
 * Without a request, ok is whether the connection opened.
 */
function exchange({ host, port, tls, url }, request, judge, timeoutMs = 3000) {
  return new Promise((resolve) => {
    let open = false;
    let received = Buffer.alloc(0);
    let done = false;
    const finish = (verdict) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ open, ...verdict });
    };
    const socket = tls ? tlsConnect({ host, port, servername: isIP(host) ? undefined : url.hostname }) : createConnection({ host, port });
    const timer = setTimeout(() => finish({ ok: false, detail: open ? 'no answer' : 'connection timed out' }), timeoutMs);
    socket.once('connect', () => {
      open = true;
      if (!request) finish({ ok: true });
    });
    socket.once(tls ? 'secureConnect' : 'connect', () => request && socket.write(request));
    socket.on('data', (chunk) => {
      received = Buffer.concat([received, chunk]);
      const verdict = judge(received);
      if (verdict) finish(verdict);
    });
    socket.once('error', (error) => finish({ ok: false, detail: error.code ?? error.message }));
    socket.once('close', () => finish({ ok: false, detail: 'connection closed without an answer' }));
  });
}

/** RabbitMQ answers the AMQP 0-9-1 header with a Connection.Start method frame. */
function amqpAnswers(service = rabbit) {
  return exchange(service, Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1]), (reply) => {
    if (reply[0] === 1) return { ok: true };
    if (reply.subarray(0, 4).toString() === 'AMQP') return { ok: false, final: true, detail: 'speaks another AMQP version' };
    return { ok: false, final: true, detail: 'does not speak AMQP' };
  });
}

/** A Redis command as a RESP array. */
function respCommand(...args) {
  return `*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`;
}

/** Redis answers PING with +PONG (after AUTH when the URL has a password). */
function redisAnswers(service = redis) {
  const { username, password } = service.url;
  const auth = password
    ? username
      ? respCommand('AUTH', decodeURIComponent(username), decodeURIComponent(password))
      : respCommand('AUTH', decodeURIComponent(password))
    : '';
  return exchange(service, auth + respCommand('PING'), (reply) => {
    // AUTH and PING answer with a status (+) or an error (-) line.
    if (reply[0] !== 0x2b && reply[0] !== 0x2d) return { ok: false, final: true, detail: 'does not speak Redis' };
    const lines = reply.toString('latin1').split('\r\n').slice(0, -1);
    for (const line of lines) {
      if (line === '+PONG') return { ok: true };
      // A password the server does not ask for: ioredis warns and goes on, so do we.
      if (/^-ERR.*(no password is set|without any password configured)/i.test(line)) continue;
      // LOADING passes; a refused password or a protected-mode DENIED does not.
      if (line.startsWith('-')) return { ok: false, final: !line.startsWith('-LOADING'), detail: `answered ${line.slice(1)}` };
    }
    if (lines.length >= 2 || (lines.length === 1 && !auth)) return { ok: false, final: true, detail: 'does not speak Redis' };
    return undefined;
  });
}

function portOpen(service) {
  return exchange(service, undefined, undefined, 1000).then(({ open }) => open);
}

async function waitUntil(check, seconds) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(250);
  }
}

/** Probes until the service answers, says something that will not change, or `seconds` pass: the last state. */
async function waitForAnswer(service, seconds) {
  let state;
  await waitUntil(async () => {
    state = await service.answers();
    return state.ok || state.final;
  }, seconds);
  return state;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs a command to its exit: { code, output } (code null when it could not run or timed out). */
function run(command, args, { env, timeout = 60 } = {}) {
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
function which(name, extra = []) {
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
const binary = (name) => which(name, SBIN);
const installed = (service) => service.binaries.every((name) => binary(name) !== undefined);

async function celeryImportable() {
  return (await run(PYTHON, ['-c', 'import celery, redis'], { timeout: 30 })).code === 0;
}

/** Why the tests' `rabbitmqctl` (from PATH) is not there, or undefined. */
function rabbitmqctlProblem() {
  if (which('rabbitmqctl')) return undefined;
  const elsewhere = binary('rabbitmqctl');
  return elsewhere ? `rabbitmqctl is in ${elsewhere} but not on PATH` : 'rabbitmqctl is not installed';
}

async function dockerProblem() {
  if (!which('docker')) return 'Docker is not installed';
  const info = await run('docker', ['info'], { timeout: 20 });
  if (info.code !== 0) return 'no Docker engine answers: `docker info` failed';
  const compose = await run('docker', ['compose', 'version'], { timeout: 20 });
  if (compose.code !== 0) return 'Docker has no Compose plugin: `docker compose version` failed';
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// What to do

function lastLines(text, count) {
  return text.split('\n').filter(Boolean).slice(-count).join('\n');
}

function die(message) {
  console.error(message);
  process.exit(1);
}

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
async function startLocal(service) {
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

async function startWithCompose(list) {
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

// ---------------------------------------------------------------------------------------------
// Main

// Probe everything at once.
const [rabbitState, redisState, celeryOk] = await Promise.all([amqpAnswers(), redisAnswers(), celeryImportable()]);
rabbit.state = rabbitState;
redis.state = redisState;

const remoteDown = [];
const toStart = []; // local, installed (or about to be), or listening already but not answering yet
const toInstall = new Map(); // package → why
const notInstalled = []; // local, not installed, and we cannot install
const cannotStart = []; // Debian's RabbitMQ, installed and stopped, and we are not root
for (const service of services) {
  if (service.state.ok) continue;
  if (!service.local) {
    remoteDown.push(
      `${service.name} does not answer at ${service.address} (${service.variable}=${service.raw}): ${service.state.detail}. Start it there, or unset ${service.variable} to use a local one.`,
    );
  } else if (service.state.open || installed(service)) {
    if (service === rabbit && !service.state.open && uid !== 0 && binary('rabbitmq-server') === '/usr/sbin/rabbitmq-server') {
      cannotStart.push(service); // Debian's wrapper: "Only root or rabbitmq should run rabbitmq-server"
    } else {
      toStart.push(service);
    }
  } else if (canApt) {
    for (const name of service.packages) toInstall.set(name, `${service.name} is not installed`);
    toStart.push(service);
  } else {
    notInstalled.push(service);
  }
}

let celerySkipped = false;
if (!celeryOk) {
  if (canApt && PYTHON === DEBIAN_PYTHON) {
    for (const name of CELERY_PACKAGES) toInstall.set(name, `Python Celery is not importable by ${PYTHON}`);
  } else {
    celerySkipped = true;
  }
}

// What we can neither install nor start ourselves goes to Docker, or into one message.
let toCompose = [];
const unavailable = [...notInstalled, ...cannotStart];
if (unavailable.length > 0 || remoteDown.length > 0) {
  // A remote service that does not answer stops us anyway: no point starting containers then.
  const docker = remoteDown.length === 0 ? await dockerProblem() : undefined;
  if (remoteDown.length === 0 && docker === undefined) {
    toCompose = unavailable;
  } else {
    const lines = [...remoteDown];
    if (unavailable.length > 0) {
      const why = [
        ...notInstalled.map((service) => `${service.name} is not running on ${service.address} and is not installed`),
        ...cannotStart.map(
          (service) => `${service.name} is installed but not running on ${service.address}, and only root starts Debian's`,
        ),
      ];
      const cannot = [uid !== 0 ? 'not root' : undefined, aptGet ? undefined : 'no apt-get', docker].filter(Boolean);
      lines.push(
        `The tests need RabbitMQ and Redis: ${why.join('; ')}. This script cannot install or start them here (${cannot.join('; ')}). Run one of:`,
      );
      const packages = [
        ...notInstalled.flatMap((service) => service.packages),
        ...(!celeryOk && PYTHON === DEBIAN_PYTHON ? CELERY_PACKAGES : []),
      ];
      if (notInstalled.length > 0) {
        lines.push(
          aptGet
            ? `  sudo apt-get install -y ${packages.join(' ')}    (then npm test starts them)`
            : `  install ${packages.join(' ')} with your package manager    (then npm test starts them)`,
        );
      }
      if (cannotStart.length > 0) lines.push('  sudo rabbitmq-server -detached    (or: sudo systemctl start rabbitmq-server)');
      const names = unavailable.length < services.length ? ` ${unavailable.map((service) => service.composeService).join(' ')}` : '';
      lines.push(`  docker compose up -d --wait${names}    (in ${ROOT}, with a Docker engine running)`);
    }
    die(lines.join('\n'));
  }
}

const aptEnv = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
const aptLock = ['-o', 'DPkg::Lock::Timeout=300'];
let aptUpdated = false;

/** `apt-get update` (once), then `apt-get install` of `packages`: an error message, or undefined when installed. */
async function aptInstall(packages) {
  if (!aptUpdated) {
    const update = await run(aptGet, ['update', '-qq', ...aptLock], { env: aptEnv, timeout: APT_TIMEOUT });
    if (update.code !== 0) return `apt-get update failed (exit ${update.code}):\n${lastLines(update.output, 20)}`;
    aptUpdated = true;
  }
  const install = await run(aptGet, ['install', '-y', '-qq', ...aptLock, ...packages], { env: aptEnv, timeout: APT_TIMEOUT });
  if (install.code !== 0) return `apt-get install ${packages.join(' ')} failed (exit ${install.code}):\n${lastLines(install.output, 30)}`;
  return undefined;
}

if (toInstall.size > 0) {
  for (const [name, why] of toInstall) console.log(`installing ${name} with apt-get (${why})…`);
  const problem = await aptInstall([...toInstall.keys()]);
  if (problem) die(problem);
  if (!celeryOk && PYTHON === DEBIAN_PYTHON && !(await celeryImportable())) celerySkipped = 'still';
}

// Not needed by the other tests: a Chromium that cannot be had skips its test and stops nothing.
let chromiumSkipped;
if (!existsSync(CHROMIUM)) {
  if (CHROMIUM !== DEBIAN_CHROMIUM) {
    chromiumSkipped = `CHROMIUM=${CHROMIUM} does not exist`;
  } else if (!canApt) {
    chromiumSkipped = `${uid !== 0 ? 'not root' : 'no apt-get'}; as root: apt-get install chromium`;
  } else {
    console.log('installing chromium with apt-get (the monitor page test drives a headless Chromium)…');
    const problem = await aptInstall(['chromium']);
    if (problem) chromiumSkipped = problem;
    else if (!existsSync(CHROMIUM)) chromiumSkipped = `apt-get install chromium left no ${CHROMIUM}`;
  }
}
if (chromiumSkipped) console.log(`No Chromium at ${CHROMIUM} (${chromiumSkipped}): the monitor page's browser test will be skipped.`);

const problems = (
  await Promise.all([...toStart.map((service) => startLocal(service)), toCompose.length > 0 ? startWithCompose(toCompose) : []])
)
  .flat()
  .filter(Boolean);
if (problems.length > 0) die(problems.join('\n'));

if (celerySkipped) {
  const how =
    celerySkipped === 'still'
      ? 'even after apt-get install python3-celery python3-redis'
      : PYTHON === DEBIAN_PYTHON
        ? '(as root: apt-get install python3-celery python3-redis)'
        : '(pip install celery redis for it, or unset CELERY_PYTHON)';
  console.log(`Python Celery is not importable by ${PYTHON} ${how}: the Python interop tests will be skipped.`);
}

// The tests drive the broker with rabbitmqctl (force-closing connections, reading queue counts).
// (The host's rabbitmqctl does not reach a broker in Docker.)
if (toCompose.includes(rabbit)) {
  console.warn(
    'RabbitMQ runs in Docker, where the host\'s rabbitmqctl does not reach it: the tests that drive the broker with rabbitmqctl will fail. Put on PATH a `rabbitmqctl` script that runs `docker compose exec -T rabbitmq rabbitmqctl "$@"`.',
  );
} else if (rabbit.local && rabbitmqctlProblem()) {
  console.warn(`${rabbitmqctlProblem()}: the tests that drive the broker with rabbitmqctl will fail.`);
}
