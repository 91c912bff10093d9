// Fixture of test/packaging.test.ts: a consumer's own spec, run with `node --test` inside each app.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { BatchClient, BatchesModule, BatchesServer, EagerResult } from 'nestjs-batches';
import { DoublingService } from './app.module.js';

describe('nestjs-batches in a testing module', () => {
  it('apply() runs the handler eagerly, with no worker started', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [BatchesModule.forRoot()],
      providers: [DoublingService],
    }).compile();
    await moduleRef.init();
    try {
      const result = await moduleRef.get(BatchClient).apply<number>('double', { args: [21] });
      assert.ok(result instanceof EagerResult);
      assert.equal(result.state, 'SUCCESS');
      assert.equal(await result.get(), 42);
    } finally {
      await moduleRef.close();
    }
  });

  it('delay() is consumed by a real worker on memory://', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [BatchesModule.forRoot({ broker: 'memory://' })],
      providers: [DoublingService],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: ['error', 'warn'] });
    app.connectMicroservice({ strategy: app.get(BatchesServer) });
    await app.startAllMicroservices();
    await app.init();
    try {
      const client = app.get(BatchClient);
      const sent = await Promise.all([5, 6, 7].map((n) => client.delay<number>('double', n)));
      assert.deepEqual(await Promise.all(sent.map((result) => result.get({ timeout: 5000 }))), [10, 12, 14]);
      assert.ok(app.get(DoublingService).batchSizes.length >= 1);
    } finally {
      await app.close();
    }
  });

  it('a redis:// result backend without ioredis installed fails at startup, naming the install', async () => {
    @Module({ imports: [BatchesModule.forRoot({ resultBackend: 'redis://127.0.0.1:6379/0' })] })
    class RedisAppModule {}
    await assert.rejects(NestFactory.createApplicationContext(RedisAppModule, { logger: false, abortOnError: false }), (error: Error) => {
      assert.match(error.message, /npm install ioredis/);
      return true;
    });
  });
});
