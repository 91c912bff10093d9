import './support/no-network.js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BATCHES_DEFAULTS, type BatchesModuleOptions, type BatchHandlerOptions } from '../../libs/batches/src/batches.options.js';
import { BatchesConfigError } from '../../libs/batches/src/options/option-checks.js';
import { derivePrefetch, MAX_PREFETCH, narrowGroupWindows } from '../../libs/batches/src/options/prefetch.js';
import { resolveHandlerOptions, type ResolvedHandlerOptions } from '../../libs/batches/src/options/resolve-handler-options.js';
import { resolveModuleOptions } from '../../libs/batches/src/options/resolve-module-options.js';

/** Asserts that resolving throws a BatchesConfigError whose message matches every pattern. */
function refuses(resolve: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(resolve, (error: unknown) => {
    assert.ok(error instanceof BatchesConfigError, `expected a BatchesConfigError, got ${String(error)}`);
    for (const pattern of patterns) assert.match(error.message, pattern);
    return true;
  });
}

function moduleOptions(options: Record<string, unknown>) {
  return () => resolveModuleOptions(options as BatchesModuleOptions);
}

function handlerOptions(options: BatchHandlerOptions, module: BatchesModuleOptions = {}) {
  return resolveHandlerOptions('unit.task', options, resolveModuleOptions(module));
}

describe('module options: defaults', () => {
  it('runs on the embedded broker and memory results, with Celery’s defaults, when nothing is set', () => {
    const resolved = resolveModuleOptions();
    assert.deepEqual(resolved.brokerUrls, ['memory://']);
    assert.equal(resolved.resultBackend, 'memory://');
    assert.equal(resolved.defaultQueue, 'celery');
    assert.equal(resolved.flushEvery, BATCHES_DEFAULTS.flushEvery);
    assert.equal(resolved.flushInterval, BATCHES_DEFAULTS.flushInterval);
    assert.equal(resolved.maxRetries, 3);
    assert.equal(resolved.retryDelay, 1_000);
    assert.equal(resolved.resultExpires, 86_400_000);
    assert.equal(resolved.publishTimeout, 30_000);
    assert.equal(resolved.shutdownTimeout, 20_000);
    assert.equal(resolved.messageFormat, 'lean');
    assert.equal(resolved.sendEvents, false);
    assert.equal(resolved.eager, false);
    assert.equal(resolved.waitForBroker, false);
    assert.equal(resolved.tracing, undefined);
    assert.equal(resolved.metrics, undefined);
    assert.equal(resolved.route('any.task'), 'celery');
  });

  it('takes a list of AMQP URLs for failover', () => {
    const urls = ['amqp://a:5672', 'amqps://b:5671'];
    assert.deepEqual(resolveModuleOptions({ broker: urls }).brokerUrls, urls);
  });

  it('gives a handler the module’s defaults, its own queue, concurrency 1 and no prefetch of its own', () => {
    const resolved = handlerOptions({}, { flushEvery: 50, flushInterval: 200, defaultQueue: 'work', maxRetries: 1, retryDelay: 5 });
    assert.deepEqual(resolved, {
      flushEvery: 50,
      flushInterval: 200,
      queue: 'work',
      concurrency: 1,
      maxRetries: 1,
      retryDelay: 5,
      ignoreResult: false,
      flush: 'fixed',
      coalesceMs: 0,
    });
  });

  it('lets a handler’s own options win over the module’s', () => {
    const resolved = handlerOptions({ flushEvery: 3, queue: 'mine', concurrency: 4, maxRetries: 0, prefetch: 30, ignoreResult: true });
    assert.equal(resolved.flushEvery, 3);
    assert.equal(resolved.queue, 'mine');
    assert.equal(resolved.concurrency, 4);
    assert.equal(resolved.maxRetries, 0);
    assert.equal(resolved.prefetch, 30);
    assert.equal(resolved.ignoreResult, true);
  });
});

describe('option errors name the option and the fix', () => {
  it('flushEvery: 0 on the module', () => {
    refuses(
      moduleOptions({ flushEvery: 0 }),
      /BatchesModule\.forRoot\(\)/,
      /`flushEvery` must be a positive integer, got 0/,
      /Leave it unset/,
    );
  });

  it('flushEvery: 0 on a handler', () => {
    refuses(
      () => handlerOptions({ flushEvery: 0 }),
      /@BatchHandler\('unit\.task'\)/,
      /`flushEvery` must be a positive integer, got 0/,
      /A batch holds at most this many requests/,
    );
  });

  it('a fractional flushInterval', () => {
    refuses(() => handlerOptions({ flushInterval: 1.5 }), /`flushInterval` must be a positive integer, got 1\.5/, /milliseconds/);
  });

  it('a negative maxRetries', () => {
    refuses(() => handlerOptions({ maxRetries: -1 }), /`maxRetries` must be an integer of 0 or more, got -1/, /Use 0 to dead-letter/);
  });

  it('an unknown broker scheme', () => {
    refuses(
      moduleOptions({ broker: 'redis://127.0.0.1:6379' }),
      /`broker` "redis:\/\/127\.0\.0\.1:6379" has an unknown scheme/,
      /'memory:\/\/'/,
      /'amqp:\/\/'/,
    );
  });

  it('an empty broker list', () => {
    refuses(moduleOptions({ broker: [] }), /`broker` is an empty list/, /Give at least one URL/);
  });

  it('memory:// among failover URLs', () => {
    refuses(moduleOptions({ broker: ['amqp://a', 'memory://'] }), /'memory:\/\/' among failover URLs/, /AMQP URLs only/);
  });

  it('an unknown result backend scheme', () => {
    refuses(moduleOptions({ resultBackend: 'mongodb://db' }), /`resultBackend` "mongodb:\/\/db" has an unknown scheme/, /'redis:\/\/'/);
  });

  it('a prefetch below flushEvery', () => {
    refuses(
      () => handlerOptions({ flushEvery: 100, prefetch: 50 }),
      /`prefetch` 50 is below `flushEvery` 100, so a full batch could never arrive/,
      /Raise prefetch to at least 100, or leave it unset/,
    );
  });

  it('a prefetch of 0', () => {
    refuses(
      () => handlerOptions({ prefetch: 0 }),
      /`prefetch` must be a positive integer, got 0/,
      /Leave it unset to let the library derive it/,
    );
  });

  it('publishTimeout that is not a positive integer', () => {
    refuses(moduleOptions({ publishTimeout: 0 }), /`publishTimeout` must be a positive integer, got 0/, /milliseconds/);
    refuses(moduleOptions({ publishTimeout: -5 }), /`publishTimeout` must be a positive integer, got -5/);
  });

  it('an unknown messageFormat', () => {
    refuses(
      moduleOptions({ messageFormat: 'compact' }),
      /`messageFormat` must be 'lean' or 'full', got "compact"/,
      /leave it unset for 'lean'/,
    );
  });

  it('taskRoutes mapping a pattern to something other than a queue name', () => {
    refuses(moduleOptions({ taskRoutes: { 'py.*': 42 } }), /`taskRoutes` maps "py\.\*" to 42/, /map each pattern to a queue name/);
    refuses(moduleOptions({ taskRoutes: { 'py.*': '' } }), /`taskRoutes` maps "py\.\*" to ""/);
  });

  it('a queue name that RabbitMQ cannot take', () => {
    refuses(moduleOptions({ defaultQueue: '' }), /`defaultQueue` must be a queue name of 1 to 255 characters/);
    refuses(() => handlerOptions({ queue: 'q'.repeat(256) }), /`queue` must be a queue name of 1 to 255 characters/);
  });

  it('sendEvents that is not a boolean', () => {
    refuses(moduleOptions({ sendEvents: 'yes' }), /`sendEvents` must be true or false, got "yes"/);
  });
});

const groupBy = (): string => 'k';

/** A handler's resolved options with defaults but for `options`. */
function handler(options: Partial<ResolvedHandlerOptions>): ResolvedHandlerOptions {
  return { ...handlerOptions({}), ...options };
}

describe('derivePrefetch', () => {
  it('never derives less than 1000, so the broker keeps streaming while batches run', () => {
    assert.equal(derivePrefetch('q', [handler({ flushEvery: 10, concurrency: 1 })]), 1_000);
  });

  it('is Σ flushEvery × (concurrency + 1) over the queue’s handlers once that is above 1000', () => {
    const handlers = [handler({ flushEvery: 500, concurrency: 1 }), handler({ flushEvery: 100, concurrency: 3 })];
    assert.equal(derivePrefetch('q', handlers), 500 * 2 + 100 * 4);
  });

  it('counts a handler’s own prefetch in the sum when others derive theirs', () => {
    const handlers = [handler({ flushEvery: 10, prefetch: 1_200 }), handler({ flushEvery: 100, concurrency: 1 })];
    assert.equal(derivePrefetch('q', handlers), 1_200 + 200);
  });

  it('takes the sum of the prefetches as given when every handler sets one, even below 1000', () => {
    const handlers = [handler({ flushEvery: 10, prefetch: 20 }), handler({ flushEvery: 5, prefetch: 5 })];
    assert.equal(derivePrefetch('q', handlers), 25);
  });

  it('accepts exactly RabbitMQ’s limit of 65,535', () => {
    assert.equal(derivePrefetch('q', [handler({ prefetch: MAX_PREFETCH })]), 65_535);
  });

  it('refuses a queue whose handlers need more than 65,535, naming the queue and the fix', () => {
    refuses(
      () => derivePrefetch('bulk', [handler({ flushEvery: 20_000, concurrency: 3 })]),
      /Queue 'bulk': its handlers need a prefetch of 80000, above RabbitMQ's limit of 65535/,
      /Lower `flushEvery`, `concurrency` or `maxGroups`, or move a handler to its own `queue`/,
    );
  });

  it('gives a groupBy handler a filling buffer per key: flushEvery × (concurrency + maxGroups)', () => {
    assert.equal(derivePrefetch('q', [handler({ flushEvery: 100, concurrency: 2, groupBy, maxGroups: 40 })]), 100 * 42);
    assert.equal(handlerOptions({ groupBy }).maxGroups, 32, 'maxGroups defaults to 32');
  });

  it('warns about a groupBy handler whose own prefetch is below a filling buffer per key, naming the task and the fix', () => {
    const narrow = { task: 'bulk.insert', options: handler({ flushEvery: 100, concurrency: 1, groupBy, maxGroups: 8, prefetch: 500 }) };
    const [warning, ...others] = narrowGroupWindows([narrow]);
    assert.equal(others.length, 0);
    assert.match(warning, /@BatchHandler\('bulk.insert'\): `prefetch` 500 is below flushEvery × \(concurrency \+ maxGroups\) = 900/);
    assert.match(warning, /Raise `prefetch` to that, lower `maxGroups`, or leave `prefetch` unset/);
    const wide = { task: 'bulk.wide', options: handler({ flushEvery: 100, concurrency: 1, groupBy, maxGroups: 8, prefetch: 900 }) };
    const derived = { task: 'bulk.derived', options: handler({ flushEvery: 100, groupBy }) };
    const ungrouped = { task: 'plain', options: handler({ flushEvery: 100, prefetch: 100 }) };
    assert.deepEqual(narrowGroupWindows([wide, derived, ungrouped]), []);
  });
});

describe('flush policy options', () => {
  it('takes adaptive with a coalescing window, and groupBy with maxGroups', () => {
    const resolved = handlerOptions({ flush: 'adaptive', coalesceMs: 5, groupBy, maxGroups: 4 });
    assert.equal(resolved.flush, 'adaptive');
    assert.equal(resolved.coalesceMs, 5);
    assert.equal(resolved.groupBy, groupBy);
    assert.equal(resolved.maxGroups, 4);
  });

  it('refuses what would be silently ignored or cannot work, naming the option and the fix', () => {
    refuses(() => handlerOptions({ flush: 'eager' as never }), /`flush` must be 'fixed' or 'adaptive', got "eager"/);
    refuses(
      () => handlerOptions({ coalesceMs: 5 }),
      /`coalesceMs` only applies to `flush: 'adaptive'`/,
      /Set `flush: 'adaptive'` or remove `coalesceMs`/,
    );
    refuses(() => handlerOptions({ maxGroups: 5 }), /`maxGroups` only applies with `groupBy`/);
    refuses(() => handlerOptions({ groupBy: 'tenant' as never }), /`groupBy` must be a function of the request/);
    refuses(() => handlerOptions({ groupBy: () => 'k', maxGroups: 0 }), /`maxGroups` must be a positive integer/);
    refuses(() => handlerOptions({ flushInterval: 2 ** 31 }), /`flushInterval` 2147483648 is longer than a timer can wait/);
  });
});
