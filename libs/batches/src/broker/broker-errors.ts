import type { QueueDeclaration } from './broker.interface.js';

/**
 * An error that reconnecting cannot fix (bad credentials, vhost, TLS, a queue declared with other
 * arguments): the broker stops retrying and the message names the cause and the fix.
 */
export class BrokerFailedError extends Error {
  override readonly name = 'BrokerFailedError';

  constructor(
    message: string,
    override readonly cause?: unknown,
  ) {
    super(message);
  }
}

/** A send the broker did not confirm within its timeout. */
export class PublishTimeoutError extends Error {
  override readonly name = 'PublishTimeoutError';
}

/** `promise`, or a `PublishTimeoutError('timeout')` once `ms` have passed. */
export async function withPublishTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_resolve, reject) => (timer = setTimeout(() => reject(new PublishTimeoutError('timeout')), ms)));
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A send RabbitMQ confirmed but could not route to any queue (312 NO_ROUTE): the queue was deleted,
 * or on a cluster its node is down. The message was not stored; sending it again later is safe.
 */
export class PublishUnroutableError extends Error {
  override readonly name = 'PublishUnroutableError';
}

// Node's certificate verification codes (tls.TLSSocket#verifyError) and OpenSSL's own.
const TLS_CODES = /^(ERR_SSL_|ERR_TLS_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$|UNABLE_TO_|HOSTNAME_MISMATCH$)/;

/** Classifies a failed connection attempt: a `BrokerFailedError` when retrying cannot help, else undefined. */
export function unrecoverableConnectError(error: unknown, url: string): BrokerFailedError | undefined {
  if (!(error instanceof Error)) return undefined;
  const { message } = error;
  const code = (error as { code?: unknown }).code;
  if (/ACCESS[-_]REFUSED/.test(message)) {
    return new BrokerFailedError(
      `RabbitMQ at ${url} refused the login (ACCESS_REFUSED). Fix the user name or password in the \`broker\` URL.`,
      error,
    );
  }
  // RabbitMQ answers connection.open for an unknown or forbidden vhost with connection.close (530 NOT_ALLOWED).
  if (/Expected ConnectionOpenOk; got <ConnectionClose|NOT[-_]ALLOWED/.test(message)) {
    return new BrokerFailedError(
      `RabbitMQ at ${url} refused to open the virtual host (NOT_ALLOWED). Fix the vhost in the \`broker\` URL ` +
        `(the path after the port; '/' is the default) or grant the user access with \`rabbitmqctl set_permissions\`.`,
      error,
    );
  }
  if (typeof code === 'string' && TLS_CODES.test(code)) {
    return new BrokerFailedError(`TLS with RabbitMQ at ${url} failed (${code}: ${message.trim()}). ${tlsHint(code)}`, error);
  }
  return undefined;
}

/** What a refused declaration was declaring, so the error can name the option that differs and the fix. */
export interface DeclarationContext {
  /** The queue's declaration as this side sent it (absent: not a task queue, e.g. a broadcast queue). */
  declaration?: QueueDeclaration;
  /** For `<queue>.dead`: the task queue it belongs to. */
  deadLetterOf?: string;
}

const INEQUIVALENT = /inequivalent arg '([^']+)' for (queue|exchange) '([^']*)' in vhost '[^']*': received (.*) but current is (.*)$/;

/** What to do about a TLS failure, by its code. */
function tlsHint(code: string): string {
  if (/CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE|BAD_CERTIFICATE|UNKNOWN_CA$/.test(code)) {
    return 'The broker refused our client certificate: set `brokerTls.cert` and `brokerTls.key` to one its CA trusts.';
  }
  if (/ALTNAME|HOSTNAME_MISMATCH/.test(code)) {
    return "The broker's certificate is not for this host name: connect by the name on the certificate, or set `brokerTls.servername` to it.";
  }
  if (/WRONG_VERSION_NUMBER|PACKET_LENGTH/.test(code)) {
    return 'The port does not speak TLS: amqps:// needs the TLS listener (5671 by default), amqp:// the plain one.';
  }
  return "The broker's certificate is not trusted: set `brokerTls.ca` to the CA that signed it.";
}

/** A queue declaration RabbitMQ refused because the queue exists with other properties (406 PRECONDITION_FAILED). */
export function declarationConflict(error: unknown, queue: string, context: DeclarationContext = {}): BrokerFailedError | undefined {
  if (!(error instanceof Error) || !/PRECONDITION[-_]FAILED/.test(error.message)) return undefined;
  const detail = /PRECONDITION_FAILED - (.*?)"?$/.exec(error.message)?.[1] ?? error.message;
  const difference = describeDifference(detail, queue, context);
  const fix = difference?.fix ?? 'Declare it the same way on both sides';
  const anew = difference?.anew ?? `delete the queue (\`rabbitmqctl delete_queue ${queue}\`)`;
  return new BrokerFailedError(
    `Queue '${queue}' exists on RabbitMQ with other properties than this worker declares (${detail})` +
      (difference ? `: ${difference.what}` : '') +
      `. ${fix}, or ${anew} so it is declared anew.`,
    error,
  );
}

interface Difference {
  what: string;
  fix: string;
  /** What to delete instead of the queue. */
  anew?: string;
}

function describeDifference(detail: string, queue: string, context: DeclarationContext): Difference | undefined {
  const { declaration, deadLetterOf } = context;
  const owner = deadLetterOf ?? queue;
  const option = (name: string): string => `\`queues['${owner}'].${name}\` in BatchesModule.forRoot()`;
  const celery = 'and the same `task_queues` entry on the Celery side';
  const invalid = /invalid arg '([^']+)' for queue '[^']*' in vhost '[^']*' of queue type (\S+)/.exec(detail);
  if (invalid) {
    return {
      what: `RabbitMQ does not accept the argument '${invalid[1]}' on a queue of type ${invalid[2]}`,
      fix: `Remove '${invalid[1]}' from ${option(invalid[1] === 'x-max-priority' ? 'maxPriority' : 'arguments')}`,
    };
  }
  const match = INEQUIVALENT.exec(detail);
  if (!match) return undefined;
  const [, arg, kind, name, received, current] = match;
  const now = valueOf(current);
  const sent = valueOf(received);
  if (kind === 'exchange') {
    if (arg !== 'type') return undefined;
    return {
      what: `its exchange '${name}' is a ${now ?? '?'} exchange, declared here as ${sent ?? '?'}`,
      fix: `Set ${option('exchangeType')} to '${now}' (${celery}), or another \`exchange\` name`,
      anew: `delete the exchange '${name}'`,
    };
  }
  if (arg === 'x-queue-type') {
    const existing = now ?? 'classic';
    const declared = sent ?? 'classic';
    if (deadLetterOf) {
      return {
        what: `it is a ${existing} queue, but the dead-letter queue of '${deadLetterOf}' follows that queue's type, ${declared}`,
        fix: `Set ${option('type')} to '${existing}'`,
        anew: `move its messages elsewhere and delete it (\`rabbitmqctl delete_queue ${queue}\`)`,
      };
    }
    return {
      what: `it is a ${existing} queue, declared here as ${declared}`,
      fix: `Set ${option('type')} to '${existing}'${existing === 'classic' ? ' (or leave it unset)' : ''} (${celery})`,
    };
  }
  if (arg === 'x-max-priority') {
    return {
      what:
        now === undefined
          ? `it has no x-max-priority, declared here with ${sent}`
          : `its x-max-priority is ${now}, declared here as ${sent ?? 'none'}`,
      fix: now === undefined ? `Leave ${option('maxPriority')} unset (${celery})` : `Set ${option('maxPriority')} to ${now} (${celery})`,
    };
  }
  if (arg.startsWith('x-') && declaration) {
    return {
      what: `its argument '${arg}' is ${now ?? 'not set'}, declared here as ${sent ?? 'not set'}`,
      fix:
        now === undefined ? `Remove '${arg}' from ${option('arguments')}` : `Set '${arg}' to ${now} in ${option('arguments')} (${celery})`,
    };
  }
  return undefined;
}

/** `'quorum'`, `the value 'quorum' of type 'longstr'` → quorum; `none` → undefined. */
function valueOf(text: string): string | undefined {
  const trimmed = text.trim();
  if (trimmed === 'none') return undefined;
  return /^(?:the value )?'([^']*)'/.exec(trimmed)?.[1] ?? trimmed;
}

/**
 * Why RabbitMQ cannot reach a queue right now, when that is what `error` says: a classic queue
 * whose home node is down (404 NOT_FOUND … is down or inaccessible), or a quorum queue without a
 * majority of its members (declaring it times out on the broker's side). Retrying later can fix it.
 */
export function unreachableQueue(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined;
  const down = /NOT[-_]FOUND - (home node '[^']+' of durable queue '[^']*' in vhost '[^']*' is down or inaccessible)/.exec(error.message);
  if (down) return down[1];
  if (/NOT[-_]FOUND.*(is down or inaccessible|not running|no quorum|timeout)/i.test(error.message))
    return error.message.replace(/^.*?NOT[-_]FOUND - /, '');
  if (/INTERNAL[-_]ERROR.*(timeout|quorum|leader)/i.test(error.message)) return error.message.replace(/^.*?INTERNAL[-_]ERROR - /, '');
  return undefined;
}

/** The connection (or its socket) went away under a call: the call can be made again on the next one. */
export function isConnectionLoss(error: unknown): boolean {
  return (
    error instanceof Error && (error.name === 'IllegalOperationError' || /Connection closed|Socket closed|ECONNRESET/.test(error.message))
  );
}
