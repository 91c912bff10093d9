import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { AsyncMicroserviceOptions } from '@nestjs/microservices';
import { BatchClient, BatchesServer } from 'nestjs-batches';
import { ClickCounterModule } from './click-counter.module.js';
import { ClickCounter } from './click-counter.service.js';

const URLS = ['http://example.com', 'http://example.org', 'https://nestjs.com', 'https://docs.celeryq.dev'];
const CLICKS = Number(process.env.CLICKS ?? 2_550);

async function main(): Promise<void> {
  // The worker is a Nest microservice whose transport strategy is the module's BatchesServer.
  const app = await NestFactory.createMicroservice<AsyncMicroserviceOptions>(ClickCounterModule, {
    inject: [BatchesServer],
    useFactory: (server: BatchesServer) => ({ strategy: server }),
  });
  app.enableShutdownHooks();
  await app.listen();

  const client = app.get(BatchClient);
  for (let click = 0; click < CLICKS; click++) {
    await client.delay('count_click', URLS[click % URLS.length]);
  }
  console.log(`sent ${CLICKS} clicks`);

  // Full batches flush by count; the last partial one is flushed by the graceful shutdown below.
  const counter = app.get(ClickCounter);
  await counter.whenCounted(CLICKS - (CLICKS % 100));
  console.log('closing: the partial batch is flushed before close() resolves');
  await app.close();
  console.log('closed');
}

await main();
