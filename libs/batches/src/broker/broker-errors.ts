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
    return new BrokerFailedError(
      `TLS with RabbitMQ at ${url} failed (${code}: ${message.trim()}). Check that the port speaks TLS (5671 by default for amqps://) ` +
        `and that the broker's certificate is trusted for this host name.`,
      error,
    );
  }
  return undefined;
}

/** A queue declaration RabbitMQ refused because the queue exists with other properties (406 PRECONDITION_FAILED). */
export function declarationConflict(error: unknown, queue: string): BrokerFailedError | undefined {
  if (!(error instanceof Error) || !/PRECONDITION[-_]FAILED/.test(error.message)) return undefined;
  const detail = /PRECONDITION_FAILED - (.*?)"?$/.exec(error.message)?.[1] ?? error.message;
  return new BrokerFailedError(
    `Queue '${queue}' exists on RabbitMQ with other properties than this worker declares (${detail}). ` +
      `Declare it the same way on both sides, or delete the queue (\`rabbitmqctl delete_queue ${queue}\`) so it is declared anew.`,
    error,
  );
}
