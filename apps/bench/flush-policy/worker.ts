import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { AsyncMicroserviceOptions } from '@nestjs/microservices';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { BatchesModule, BatchesServer, BatchHandler, type BatchRunContext, type FlushReason, type SimpleRequest } from 'nestjs-batches';
import { AMQP_URL } from '../measurement.js';
import {
  batchCostMs,
  CONCURRENCY,
  FLUSH_EVERY,
  FLUSH_INTERVAL_MS,
  now,
  REDIS_URL,
  TASK,
  type ChildMessage,
  type ParentMessage,
  type RunSpec,
  type Window,
  type WorkerReport,
} from './scenario.js';
import { percentile } from './stats.js';

/**
 * The worker of one run, in a process of its own: a nestjs-batches app whose handler costs what a
 * bulk insert would (a timer, so the cost is the same whatever else the machine runs), results in
 * Redis. It records when its handler sees each request and the size of each batch.
 */
const spec = JSON.parse(process.argv[2]) as RunSpec;
const send = (message: ChildMessage): void => void process.send?.(message);

/** Per request: sent (epoch ms, from kwargs) and handler start; per batch: start, size, reason. */
const sentAts: number[] = [];
const startAts: number[] = [];
const batches: Array<{ at: number; size: number; reason: FlushReason }> = [];
const loopDelay = monitorEventLoopDelay({ resolution: 5 });

@Injectable()
class BulkInsert {
  @BatchHandler(TASK, {
    flushEvery: FLUSH_EVERY,
    flushInterval: FLUSH_INTERVAL_MS,
    concurrency: CONCURRENCY,
    queue: spec.queue,
    flush: spec.policy,
  })
  async insert(requests: SimpleRequest[], context: BatchRunContext): Promise<void> {
    const at = now();
    batches.push({ at, size: requests.length, reason: context.reason });
    for (const request of requests) {
      sentAts.push(request.kwargs.sentAt as number);
      startAts.push(at);
    }
    await sleep(batchCostMs(requests.length));
  }
}

@Module({
  imports: [
    BatchesModule.forRoot({
      broker: AMQP_URL,
      resultBackend: REDIS_URL,
      resultExpires: 600_000,
      defaultQueue: spec.queue,
      // Its own node name, so it never shares a remote-control mailbox with another worker on this broker.
      hostname: `flush-bench-${spec.runTag}@localhost`,
      waitForBroker: true,
    }),
  ],
  providers: [BulkInsert],
})
class WorkerModule {}

function report({ from, to }: Window): WorkerReport {
  const latencies: number[] = [];
  sentAts.forEach((sentAt, index) => {
    if (sentAt >= from && sentAt < to) latencies.push(startAts[index] - sentAt);
  });
  latencies.sort((a, b) => a - b);
  const measured = batches.filter(({ at }) => at >= from && at < to);
  const reasons: WorkerReport['reasons'] = {};
  for (const { reason } of measured) reasons[reason] = (reasons[reason] ?? 0) + 1;
  return {
    handlerStartP50Ms: percentile(latencies, 50),
    handlerStartP99Ms: percentile(latencies, 99),
    requests: latencies.length,
    batches: measured.length,
    meanBatchSize: measured.reduce((sum, { size }) => sum + size, 0) / measured.length,
    reasons,
    loopDelayP99Ms: loopDelay.percentile(99) / 1e6,
    loopDelayMaxMs: loopDelay.max / 1e6,
  };
}

try {
  const app = await NestFactory.createMicroservice<AsyncMicroserviceOptions>(WorkerModule, {
    inject: [BatchesServer],
    useFactory: (server: BatchesServer) => ({ strategy: server }),
    logger: ['error', 'warn'],
  });
  // With waitForBroker, listen resolves once the queue is declared and consumed.
  await app.listen();
  loopDelay.enable();
  process.on('message', (message: ParentMessage) => {
    if (message.type !== 'stop') return;
    void app.close().then(() => {
      send({ type: 'worker-report', report: report(message.window) });
      process.disconnect();
    });
  });
  send({ type: 'ready' });
} catch (error) {
  send({ type: 'error', message: `worker: ${String(error)}` });
  process.exitCode = 1;
  process.disconnect();
}
