/** Celery 5.2's protocol-2 header table, in `celery.app.amqp.as_task_v2`'s order. */
export const CELERY_HEADERS = [
  'lang',
  'task',
  'id',
  'shadow',
  'eta',
  'expires',
  'group',
  'group_index',
  'retries',
  'timelimit',
  'root_id',
  'parent_id',
  'argsrepr',
  'kwargsrepr',
  'origin',
  'ignore_result',
];

/** How Python's `datetime.isoformat()` writes an aware UTC instant, and so how Celery sends and reads it. */
export function pythonIso(date: Date | null | undefined): string | undefined {
  return date?.toISOString().replace('Z', '000+00:00');
}

/** The names of the headers that are present but null. */
export function nullHeaders(headers: Record<string, unknown> | undefined): string[] {
  return Object.entries(headers ?? {})
    .filter(([, value]) => value === null)
    .map(([name]) => name);
}
