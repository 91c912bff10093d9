// Fixture of test/packaging.test.ts: a hybrid app (HTTP + batches worker) that calls its own route.
import 'reflect-metadata';
import type { AddressInfo } from 'node:net';
import { NestFactory } from '@nestjs/core';
import { BatchesServer } from 'nestjs-batches';
import { AppModule } from './app.module.js';

async function main(): Promise<void> {
  const app = await NestFactory.create(AppModule, { logger: ['error', 'warn'] });
  app.connectMicroservice({ strategy: app.get(BatchesServer) });
  await app.startAllMicroservices();
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as AddressInfo;
  const results = await Promise.all(
    [1, 2, 3, 4, 5].map(async (n) => {
      const response = await fetch(`http://127.0.0.1:${port}/double/${n}`);
      const text = await response.text();
      if (!response.ok) throw new Error(`GET /double/${n}: ${response.status} ${text}`);
      return JSON.parse(text) as unknown;
    }),
  );
  console.log(`RESULTS ${JSON.stringify(results)}`);
  await app.close();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
