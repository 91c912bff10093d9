import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Inject, Injectable, Scope } from '@nestjs/common';
import { REQUEST } from '@nestjs/core';
import { BatchClient, BatchHandler, OnBatchEvent, ResultBackend, type BatchRequest, type SimpleRequest } from 'nestjs-batches';
import { AMQP_URL, rabbitSuite } from './support/rabbitmq.js';
import { startWorker } from './support/worker-app.js';

describe('batch handlers on scoped providers', () => {
  const suite = rabbitSuite();

  it('a request-scoped provider gets a fresh instance per batch, with the batch as its REQUEST', async () => {
    const queue = suite.queue('scoped');
    const instances: ScopedHandler[] = [];
    @Injectable({ scope: Scope.REQUEST })
    class ScopedHandler {
      constructor(@Inject(REQUEST) readonly batch: BatchRequest) {
        instances.push(this);
      }

      @BatchHandler('enh.scoped', { flushEvery: 2, flushInterval: 60_000, queue })
      handle(requests: SimpleRequest[]): number[] {
        assert.equal(this.batch.requests, requests);
        return requests.map(() => instances.indexOf(this));
      }
    }
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue }, [ScopedHandler]);
    try {
      const client = app.get(BatchClient);
      const first = await Promise.all([1, 2].map((n) => client.delay<number>('enh.scoped', n)));
      const second = await Promise.all([3, 4].map((n) => client.delay<number>('enh.scoped', n)));
      const values = await Promise.all([...first, ...second].map((result) => result.get({ timeout: 10_000 })));
      assert.equal(instances.length, 2, 'one instance per batch');
      assert.deepEqual(values, [0, 0, 1, 1]);
      assert.deepEqual(instances[0].batch.context, { task: 'enh.scoped', queue, reason: 'count' });
    } finally {
      await app.close();
    }
  });

  it('a transient provider runs too, and a listener on a scoped provider stops startup naming it', async () => {
    const queue = suite.queue('transient');
    let created = 0;
    @Injectable({ scope: Scope.TRANSIENT })
    class TransientHandler {
      constructor() {
        created++;
      }

      @BatchHandler('enh.transient', { flushEvery: 1, flushInterval: 100, queue })
      handle(requests: SimpleRequest[]): string[] {
        return requests.map(() => 'transient');
      }
    }
    const app = await startWorker({ broker: AMQP_URL, defaultQueue: queue }, [TransientHandler]);
    try {
      const sent = await app.get(BatchClient).delay('enh.transient', 1);
      assert.equal(await sent.get({ timeout: 10_000 }), 'transient');
      assert.ok(created >= 1);
      const results = app.get(ResultBackend);
      assert.equal((await results.getResult(sent.id)).status, 'SUCCESS');
    } finally {
      await app.close();
    }
    @Injectable({ scope: Scope.REQUEST })
    class ScopedListener {
      @OnBatchEvent('batch.flushed')
      onFlush(): void {}
    }
    await assert.rejects(
      startWorker({ broker: 'memory://' }, [ScopedListener]),
      /@OnBatchEvent\('batch\.flushed'\) on ScopedListener\.onFlush: ScopedListener is request-scoped or transient/,
    );
  });
});
