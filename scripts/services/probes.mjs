// Whether a service answers: a raw AMQP header or RESP PING over a socket, and waiting for an answer.
import { createConnection, isIP } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

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
export function amqpAnswers(service) {
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
export function redisAnswers(service) {
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

export function portOpen(service) {
  return exchange(service, undefined, undefined, 1000).then(({ open }) => open);
}

export async function waitUntil(check, seconds) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(250);
  }
}

/** Probes until the service answers, says something that will not change, or `seconds` pass: the last state. */
export async function waitForAnswer(service, seconds) {
  let state;
  await waitUntil(async () => {
    state = await service.answers();
    return state.ok || state.final;
  }, seconds);
  return state;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
