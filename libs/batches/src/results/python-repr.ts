import { exceptionInfo, isExceptionInfo } from './task-result.js';

/** Celery's `resultrepr_maxsize` and kombu's `safe_repr` limit for event fields. */
export const REPR_MAXSIZE = 1024;

/** Python's `repr()` of a str: single quotes unless only double quotes avoid escaping. */
export function pythonStrRepr(text: string): string {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  let out = quote;
  for (const char of text) {
    const code = char.codePointAt(0) ?? 0;
    if (char === quote || char === '\\') out += `\\${char}`;
    else if (char === '\n') out += '\\n';
    else if (char === '\r') out += '\\r';
    else if (char === '\t') out += '\\t';
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else out += char;
  }
  return out + quote;
}

/** Python's `repr()` of what a JSON body decodes to (None, True, 1.5, 'str', [..], {'k': v}). */
export function pythonRepr(value: unknown, depth = 0): string {
  if (value === null || value === undefined) return 'None';
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  if (typeof value === 'number') {
    if (Number.isNaN(value)) return 'nan';
    if (!Number.isFinite(value)) return value > 0 ? 'inf' : '-inf';
    return String(value);
  }
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'string') return pythonStrRepr(value);
  if (value instanceof Date) return pythonStrRepr(value.toISOString());
  if (depth > 20) return '...';
  if (Array.isArray(value)) return `[${value.map((each) => pythonRepr(each, depth + 1)).join(', ')}]`;
  if (typeof value === 'object') {
    const json = (value as { toJSON?: () => unknown }).toJSON;
    if (typeof json === 'function') return pythonRepr(json.call(value), depth + 1);
    const entries = Object.entries(value).map(([key, each]) => `${pythonStrRepr(key)}: ${pythonRepr(each, depth + 1)}`);
    return `{${entries.join(', ')}}`;
  }
  return pythonStrRepr(String(value));
}

/** Celery's `saferepr(value, maxlen)`: the repr, cut to `maxlen` characters with `...`. */
export function safeRepr(value: unknown, maxlen = REPR_MAXSIZE): string {
  let text: string;
  try {
    text = pythonRepr(value);
  } catch {
    text = pythonStrRepr(String(value));
  }
  return text.length > maxlen ? `${text.slice(0, maxlen - 3)}...` : text;
}

/** `safe_repr(exc)` as Celery's events carry it: `ValueError('bad input')`, with the class name Celery would store. */
export function exceptionRepr(error: unknown): string {
  const info = isExceptionInfo(error) ? error : exceptionInfo(error);
  const args = Array.isArray(info.exc_message) ? info.exc_message : [info.exc_message];
  return `${info.exc_type}(${args.map((arg) => pythonRepr(arg)).join(', ')})`;
}

/** The traceback text of an event: the JS stack (Celery sends Python's formatted traceback). */
export function tracebackText(error: unknown): string {
  if (error instanceof Error && typeof error.stack === 'string') return error.stack;
  if (isExceptionInfo(error)) {
    const traceback = (error as { traceback?: unknown }).traceback;
    if (typeof traceback === 'string') return traceback;
  }
  return '';
}
