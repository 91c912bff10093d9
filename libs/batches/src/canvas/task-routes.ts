import { BatchesConfigError } from '../options/option-checks.js';

/** Compiles Celery-style `task_routes` (glob pattern of task names → queue) into a router. */
export function taskRouter(routes: Readonly<Record<string, string>>, defaultQueue: string): (task: string) => string {
  const compiled = Object.entries(routes).map(([pattern, queue]) => {
    if (typeof queue !== 'string' || queue.length === 0) {
      throw new BatchesConfigError(
        `BatchesModule.forRoot(): \`taskRoutes\` maps ${JSON.stringify(pattern)} to ${JSON.stringify(queue)}; map each pattern to a queue name.`,
      );
    }
    // Celery's glob routes: `*` matches any run of characters; everything else is literal.
    const source = pattern
      .split('*')
      .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*');
    return { match: new RegExp(`^${source}$`), queue };
  });
  if (compiled.length === 0) return () => defaultQueue;
  return (task) => compiled.find((route) => route.match.test(task))?.queue ?? defaultQueue;
}
