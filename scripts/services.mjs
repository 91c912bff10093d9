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
import { existsSync } from 'node:fs';
import { aptInstall } from './services/apt.mjs';
import { binary, ROOT } from './services/commands.mjs';
import { rabbit, redis, services } from './services/endpoints.mjs';
import {
  aptGet,
  canApt,
  CELERY_PACKAGES,
  celeryImportable,
  CHROMIUM,
  DEBIAN_CHROMIUM,
  DEBIAN_PYTHON,
  dockerProblem,
  installed,
  PYTHON,
  rabbitmqctlProblem,
  uid,
} from './services/machine.mjs';
import { die } from './services/report.mjs';
import { startLocal, startWithCompose } from './services/start.mjs';

// Probe everything at once.
const [rabbitState, redisState, celeryOk] = await Promise.all([rabbit.answers(), redis.answers(), celeryImportable()]);
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
