import 'reflect-metadata';
import type { AddressInfo } from 'node:net';
import { NestFactory } from '@nestjs/core';
import type { INestApplication, INestMicroservice } from '@nestjs/common';
import type { AsyncMicroserviceOptions } from '@nestjs/microservices';
import { BatchClient, BatchesServer } from 'nestjs-batches';
import { ClickCounterModule } from './click-counter.module.js';
import { ClickCounter } from './click-counter.service.js';

const URLS = ['http://example.com', 'http://example.org', 'https://nestjs.com', 'https://docs.celeryq.dev'];
const CLICKS = Number(process.env.CLICKS ?? 2_550);
/**
 * Set it to serve `GET /batches` (the live page), `GET /metrics` (Prometheus) and `GET /health` (Terminus)
 * from an HTTP server and keep running until Ctrl+C (0: any free port).
 */
const HTTP_PORT = process.env.HTTP_PORT;
/** With HTTP_PORT: keep clicking, about this many clicks a second, so /batches has something to show. */
const CLICK_RATE = Number(process.env.CLICK_RATE ?? 0);

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

/** With HTTP_PORT: an HTTP app (serving /batches, /metrics and /health) with the worker connected to it as a microservice. */
async function startHybrid(port: number): Promise<INestApplication> {
  // A browser on /batches keeps spare keep-alive connections open, which would hold app.close() until it drops them.
  const app = await NestFactory.create(ClickCounterModule, { forceCloseConnections: true });
  app.connectMicroservice({ strategy: app.get(BatchesServer) });
  app.enableShutdownHooks();
  await app.startAllMicroservices();
  await app.listen(port);
  return app;
}

/** Sends about `rate` clicks a second, in uneven bursts every 100 ms, until the app is told to stop. */
function keepClicking(client: BatchClient, rate: number): void {
  let click = 0;
  const timer = setInterval(() => {
    const burst = Math.round((rate / 10) * 2 * Math.random());
    for (let i = 0; i < burst; i++) void client.delay('count_click', URLS[click++ % URLS.length]).catch(() => undefined);
  }, 100);
  // Before Nest's own shutdown hook closes the app, so no click is sent while the worker drains.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.prependOnceListener(signal, () => clearInterval(timer));
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
    const { port } = (app as INestApplication).getHttpServer().address() as AddressInfo;
    const base = `http://localhost:${port}`;
    console.log(`monitor: ${base}/batches`);
    console.log(`metrics: curl ${base}/metrics; health: curl ${base}/health (Ctrl+C to stop)`);
    if (CLICK_RATE > 0) keepClicking(client, CLICK_RATE);
    return;
  }
  console.log('closing: the partial batch is flushed before close() resolves');
  await app.close();
  console.log('closed');
}

await main();
