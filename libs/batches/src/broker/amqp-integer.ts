/**
 * An integer header as py-amqp writes one (`I`, signed 32-bit; `l` beyond). amqplib's own guess
 * writes 128…32767 as `s`, RabbitMQ's signed short, which py-amqp reads as a short string: kombu
 * then fails to decode the whole message.
 */
export function amqpInteger(value: number): { '!': 'int' | 'long'; value: number } {
  return { '!': value >= -0x80000000 && value < 0x80000000 ? 'int' : 'long', value };
}

/** `value` as amqplib should write it for Python: small integers (a signed byte) as they are, others typed. */
export function pythonSafeInteger(value: number): number | { '!': 'int' | 'long'; value: number } {
  return value >= -128 && value <= 127 ? value : amqpInteger(value);
}

type HeaderValue = unknown;

function safeValue(value: HeaderValue): HeaderValue {
  if (typeof value === 'number') return Number.isInteger(value) ? pythonSafeInteger(value) : value;
  if (Array.isArray(value)) return value.some(needsTyping) ? value.map(safeValue) : value;
  return value;
}

function needsTyping(value: HeaderValue): boolean {
  if (typeof value === 'number') return Number.isInteger(value) && (value < -128 || value > 127);
  return Array.isArray(value) && value.some(needsTyping);
}

/**
 * Headers whose integers Python reads back as integers (`retries`, `group_index`, a `timelimit`
 * of `[300, 600]`…): the same object when nothing needs typing, which is the common case.
 */
export function pythonSafeHeaders(headers: Record<string, HeaderValue> | undefined): Record<string, HeaderValue> | undefined {
  if (!headers) return headers;
  let safe: Record<string, HeaderValue> | undefined;
  for (const name in headers) {
    const value = headers[name];
    if (!needsTyping(value)) continue;
    safe ??= { ...headers };
    safe[name] = safeValue(value);
  }
  return safe ?? headers;
}
