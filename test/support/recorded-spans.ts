import { type Span } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { waitFor } from './wait.js';

/** Every span `provider` finished: a suite registers `provider` as the global one and reads its spans here. */
export const exporter = new InMemorySpanExporter();
export const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = provider.getTracer('tracing-test');

/** Spans exported so far whose name is `name`. */
export function spansNamed(name: string, from: InMemorySpanExporter = exporter): ReadableSpan[] {
  return from.getFinishedSpans().filter((span) => span.name === name);
}

export async function waitForSpans(name: string, count: number, from: InMemorySpanExporter = exporter): Promise<ReadableSpan[]> {
  await waitFor(() => spansNamed(name, from).length >= count, `${count} span(s) '${name}' (got ${spansNamed(name, from).length})`);
  return spansNamed(name, from);
}

/** Runs `fn` inside a new active span `name` (the producer), ending it afterwards. */
export async function inSpan<T>(name: string, fn: (span: Span) => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(name, async (span) => {
    try {
      return await fn(span);
    } finally {
      span.end();
    }
  });
}
