import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  Catch,
  Injectable,
  UseFilters,
  UseGuards,
  UseInterceptors,
  type ArgumentsHost,
  type CallHandler,
  type CanActivate,
  type ExceptionFilter,
  type ExecutionContext,
  type NestInterceptor,
  type PipeTransform,
} from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { map, type Observable } from 'rxjs';
import {
  BatchClient,
  BatchContext,
  BatchHandler,
  Requests,
  TaskFailedError,
  type BatchRunContext,
  type SimpleRequest,
} from 'nestjs-batches';
import { AMQP_URL, rabbitSuite } from './support/rabbitmq.js';
import { waitFor } from './support/wait.js';
import { startWorker } from './support/worker-app.js';

/** What guards and interceptors saw of the batch's ExecutionContext. */
const seen: Array<{ type: string; data: unknown; context: unknown; handler: string }> = [];

@Injectable()
class RecordingGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const rpc = context.switchToRpc();
    seen.push({ type: context.getType(), data: rpc.getData(), context: rpc.getContext(), handler: context.getHandler().name });
    return true;
  }
}

@Injectable()
class DenyAll implements CanActivate {
  canActivate(): boolean {
    return false;
  }
}

@Injectable()
class PlusOne implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler<number[]>): Observable<number[]> {
    return next.handle().pipe(map((values) => values.map((value) => value + 1)));
  }
}

@Injectable()
class Explodes implements NestInterceptor {
  intercept(): Observable<unknown> {
    throw new RangeError('interceptor refused the batch');
  }
}

@Catch(TypeError)
class FallbackFilter implements ExceptionFilter {
  catch(_error: TypeError, host: ArgumentsHost): unknown {
    const requests = host.switchToRpc().getData<SimpleRequest[]>();
    return requests.map(() => 'fallback');
  }
}

/** A pipe on `@Requests()`: hands the handler the first argument of each request. */
class FirstArgs implements PipeTransform<SimpleRequest[], unknown[]> {
  transform(requests: SimpleRequest[]): unknown[] {
    return requests.map((request) => request.args[0]);
  }
}

describe('Nest enhancers on batch handlers', () => {
  const suite = rabbitSuite();

  it('a guard sees an rpc ExecutionContext: data is the SimpleRequest[], context the task, queue and flush reason', async () => {
    const queue = suite.queue('guarded');
    seen.length = 0;
    @Injectable()
    class Guarded {
      @BatchHandler('enh.guarded', { flushEvery: 2, flushInterval: 60_000, queue })
      @UseGuards(RecordingGuard)
      handle(requests: SimpleRequest[]): number[] {
        return requests.map((request) => (request.args[0] as number) * 10);
      }
    }
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue }, [Guarded, RecordingGuard]);
    try {
      const sent = await Promise.all([1, 2].map((n) => app.get(BatchClient).delay<number>('enh.guarded', n)));
      assert.deepEqual(await Promise.all(sent.map((result) => result.get({ timeout: 10_000 }))), [10, 20]);
      assert.equal(seen.length, 1);
      assert.equal(seen[0].type, 'rpc');
      assert.equal(seen[0].handler, 'handle');
      assert.deepEqual(
        (seen[0].data as SimpleRequest[]).map((request) => request.args),
        [[1], [2]],
      );
      assert.deepEqual(seen[0].context, { task: 'enh.guarded', queue, reason: 'count' });
    } finally {
      await app.close();
    }
  });

  it('a global guard that denies fails the batch: its requests are retried, then stored FAILURE Forbidden and dead-lettered; the handler never runs', async () => {
    const queue = suite.queue('denied');
    let calls = 0;
    @Injectable()
    class Denied {
      @BatchHandler('enh.denied', { flushEvery: 1, flushInterval: 100, queue, maxRetries: 1, retryDelay: 10 })
      handle(): void {
        calls++;
      }
    }
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue }, [Denied, { provide: APP_GUARD, useClass: DenyAll }]);
    try {
      const sent = await app.get(BatchClient).delay('enh.denied', 1);
      await assert.rejects(sent.get({ timeout: 10_000 }), (error: unknown) => {
        assert.ok(error instanceof TaskFailedError, String(error));
        assert.equal(error.excType, 'ForbiddenException');
        assert.match(error.excMessage, /Forbidden resource/);
        return true;
      });
      await waitFor(async () => (await suite.rabbit.takeAll(`${queue}.dead`)).length === 1, 'the dead letter');
      assert.equal(calls, 0);
    } finally {
      await app.close();
    }
  });

  it('interceptors wrap the batch: one maps the returned values, one that throws fails the batch', async () => {
    const queue = suite.queue('intercepted');
    @Injectable()
    class Intercepted {
      @BatchHandler('enh.plus', { flushEvery: 2, flushInterval: 60_000, queue })
      @UseInterceptors(PlusOne)
      plus(requests: SimpleRequest[]): number[] {
        return requests.map((request) => request.args[0] as number);
      }

      @BatchHandler('enh.explodes', { flushEvery: 1, flushInterval: 100, queue, maxRetries: 0 })
      @UseInterceptors(Explodes)
      explodes(): string[] {
        return ['never'];
      }
    }
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue }, [Intercepted]);
    try {
      const client = app.get(BatchClient);
      const sent = await Promise.all([5, 6].map((n) => client.delay<number>('enh.plus', n)));
      assert.deepEqual(await Promise.all(sent.map((result) => result.get({ timeout: 10_000 }))), [6, 7]);
      const refused = await client.delay('enh.explodes', 1);
      await assert.rejects(refused.get({ timeout: 10_000 }), { name: 'TaskFailedError', excType: 'RangeError' });
    } finally {
      await app.close();
    }
  });

  it('an exception filter that catches the error decides the batch outcome with what it returns', async () => {
    const queue = suite.queue('filtered');
    @Injectable()
    class Filtered {
      @BatchHandler('enh.filtered', { flushEvery: 2, flushInterval: 60_000, queue, maxRetries: 0 })
      @UseFilters(FallbackFilter)
      handle(): never {
        throw new TypeError('the remote API is down');
      }
    }
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue }, [Filtered]);
    try {
      const sent = await Promise.all([1, 2].map((n) => app.get(BatchClient).delay('enh.filtered', n)));
      assert.deepEqual(await Promise.all(sent.map((result) => result.get({ timeout: 10_000 }))), ['fallback', 'fallback']);
    } finally {
      await app.close();
    }
  });

  it('@Requests() takes pipes and @BatchContext() gives the task, queue and flush reason', async () => {
    const queue = suite.queue('params');
    const contexts: BatchRunContext[] = [];
    @Injectable()
    class WithParams {
      @BatchHandler('enh.params', { flushEvery: 3, flushInterval: 100, queue })
      handle(@BatchContext() context: BatchRunContext, @Requests(new FirstArgs()) firsts: number[]): number[] {
        contexts.push(context);
        return firsts.map((first) => first + 100);
      }
    }
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue }, [WithParams]);
    try {
      const sent = await Promise.all([1, 2].map((n) => app.get(BatchClient).delay<number>('enh.params', n)));
      assert.deepEqual(await Promise.all(sent.map((result) => result.get({ timeout: 10_000 }))), [101, 102]);
      assert.deepEqual(contexts, [{ task: 'enh.params', queue, reason: 'interval' }]);
    } finally {
      await app.close();
    }
  });
});
