import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { INestApplication, INestMicroservice } from '@nestjs/common';
import type { AsyncMicroserviceOptions } from '@nestjs/microservices';
import { BatchClient, BatchesServer } from 'nestjs-batches';
import { ClickCounterModule } from './click-counter.module.js';
import { ClickCounter } from './click-counter.service.js';

const URLS = ['http://example.com', 'http://example.org', 'https://nestjs.com', 'https://docs.celeryq.dev'];
const CLICKS = Number(process.env.CLICKS ?? 2_550);
/** Set it to serve `GET /metrics` (Prometheus) and `GET /health` (Terminus) from an HTTP server and keep running until Ctrl+C. */
const HTTP_PORT = process.env.HTTP_PORT;

/** The worker alone: a Nest microservice whose transport strategy is the module's BatchesServer. */
async function startWorker(): Promise<INestMicroservice> {
  const app = await NestFactory.createMicroservice<AsyncMicroserviceOptions>(ClickCounterModule, {
    inject: [BatchesServer],
    useFactory: (server: BatchesServer) => ({ strategy: server }),
  });
  app.enableShutdownHooks();
  await app.listen();
  return app;
}

/** With HTTP_PORT: an HTTP app (serving /metrics) with the worker connected to it as a microservice. */
async function startHybrid(port: number): Promise<INestApplication> {
  const app = await NestFactory.create(ClickCounterModule);
  app.connectMicroservice({ strategy: app.get(BatchesServer) });
  app.enableShutdownHooks();
  await app.startAllMicroservices();
  await app.listen(port);
  return app;
}

async function main(): Promise<void> {
  const app = HTTP_PORT ? await startHybrid(Number(HTTP_PORT)) : await startWorker();

  const client = app.get(BatchClient);
  for (let click = 0; click < CLICKS; click++) {
    await client.delay('count_click', URLS[click % URLS.length]);
  }
  console.log(`sent ${CLICKS} clicks`);

  // Full batches flush by count; the last partial one is flushed by the graceful shutdown below.
  const counter = app.get(ClickCounter);
  await counter.whenCounted(CLICKS - (CLICKS % 100));
  if (HTTP_PORT) {
    // Ctrl+C (SIGINT) closes the app gracefully, flushing the partial batch.
    console.log(`metrics: curl http://127.0.0.1:${HTTP_PORT}/metrics; health: curl http://127.0.0.1:${HTTP_PORT}/health (Ctrl+C to stop)`);
    return;
  }
  console.log('closing: the partial batch is flushed before close() resolves');
  await app.close();
  console.log('closed');
}

await main();
