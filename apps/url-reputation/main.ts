import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { AsyncMicroserviceOptions } from '@nestjs/microservices';
import { BatchClient, BatchesModule, BatchesServer } from 'nestjs-batches';
import { ReputationApi } from './reputation-api.js';
import { REPUTATION_API_URL, UrlReputation } from './url-reputation.service.js';

const SITES = ['example.com', 'example.org', 'nestjs.com', 'rabbitmq.com', 'redis.io', 'celeryq.dev', 'nodejs.org', 'python.org'];
const URLS = Number(process.env.URLS ?? 250);

async function main(): Promise<void> {
  const api = new ReputationApi();
  const apiUrl = await api.start();

  @Module({
    imports: [
      BatchesModule.forRoot({ broker: process.env.BROKER_URL ?? 'memory://', resultBackend: process.env.RESULT_BACKEND ?? 'memory://' }),
    ],
    providers: [UrlReputation, { provide: REPUTATION_API_URL, useValue: apiUrl }],
  })
  class UrlReputationModule {}

  const app = await NestFactory.createMicroservice<AsyncMicroserviceOptions>(UrlReputationModule, {
    inject: [BatchesServer],
    useFactory: (server: BatchesServer) => ({ strategy: server }),
    logger: ['warn', 'error'],
  });
  await app.listen();

  const client = app.get(BatchClient);
  const sent = await Promise.all(
    Array.from({ length: URLS }, (_, i) => client.delay('url_reputation', `https://${SITES[i % SITES.length]}/page/${i}`)),
  );
  console.log(`sent ${sent.length} URLs`);
  // Print each result as it arrives.
  await Promise.all(
    sent.map(async (result) => {
      const reputation = (await result.get({ timeout: 30_000 })) as { url: string; trustworthiness: number; childSafety: number };
      console.log(`${reputation.url}: trustworthiness ${reputation.trustworthiness}, child safety ${reputation.childSafety}`);
    }),
  );
  console.log(`${URLS} URLs looked up in ${api.calls} API calls`);
  await app.close();
  await api.stop();
}

await main();
