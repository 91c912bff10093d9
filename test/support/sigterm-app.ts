// A worker process for the SIGTERM tests: prints READY once started, HANDLED <n> per batch.
// EXIT_ZERO=1 uses the README's recipe for exit status 0 instead of enableShutdownHooks().
import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { AsyncMicroserviceOptions } from '@nestjs/microservices';
import { BatchClient, BatchesModule, BatchesServer, BatchHandler, type SimpleRequest } from 'nestjs-batches';

@Injectable()
class Handler {
  @BatchHandler('sigterm.task', { flushEvery: 100, flushInterval: 60_000 })
  handle(requests: SimpleRequest[]): void {
    console.log(`HANDLED ${requests.length}`);
  }
}

@Module({ imports: [BatchesModule.forRoot({ broker: process.env.BROKER_URL ?? 'memory://' })], providers: [Handler] })
class AppModule {}

const app = await NestFactory.createMicroservice<AsyncMicroserviceOptions>(AppModule, {
  inject: [BatchesServer],
  useFactory: (server: BatchesServer) => ({ strategy: server }),
  logger: ['error'],
});
if (process.env.EXIT_ZERO) {
  process.once('SIGTERM', () => {
    void app.close().then(() => process.exit(0));
  });
} else {
  app.enableShutdownHooks();
}
await app.listen();
for (let i = 0; i < 3; i++) await app.get(BatchClient).delay('sigterm.task', i);
console.log('READY');
