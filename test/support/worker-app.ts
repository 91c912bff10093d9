import 'reflect-metadata';
import { ConsoleLogger, Injectable, type INestApplication, type INestMicroservice, type Provider, type Type } from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import {
  BatchesModule,
  BatchesServer,
  BatchHandler,
  type BatchesModuleOptions,
  type BatchHandlerOptions,
  type SimpleRequest,
} from 'nestjs-batches';
import { waitFor } from './wait.js';

/** Keeps every warning and error the app logs, for tests that assert on them. */
export class RecordingLogger extends ConsoleLogger {
  readonly lines: string[] = [];
  /** Only the errors. */
  readonly errors: string[] = [];

  override log(message: unknown, ...rest: unknown[]): void {
    if (process.env.TEST_LOGS) super.log(message, ...rest);
  }

  override warn(message: unknown, ...rest: unknown[]): void {
    this.lines.push(String(message));
    if (process.env.TEST_LOGS) super.warn(message, ...rest);
  }

  override error(message: unknown, ...rest: unknown[]): void {
    this.lines.push(String(message));
    this.errors.push(String(message));
    if (process.env.TEST_LOGS) super.error(message, ...rest);
  }
}

/** Starts a Nest microservice running the batches worker over `providers`. */
export async function startWorker(
  options: BatchesModuleOptions,
  providers: Provider[],
  logger?: RecordingLogger,
): Promise<INestMicroservice> {
  // Built as a user tests a worker: a testing module, started as a microservice with the batches strategy.
  const moduleRef = await Test.createTestingModule({ imports: [BatchesModule.forRoot(options)], providers })
    .setLogger(logger ?? new ConsoleLogger({ logLevels: process.env.TEST_LOGS ? ['log', 'warn', 'error'] : ['error'] }))
    .compile();
  const app = moduleRef.createNestMicroservice({ strategy: moduleRef.get(BatchesServer) });
  await app.listen();
  return app;
}

/** Starts a compiled module as a hybrid app (HTTP on a free port + the batches worker), as a user serves routes beside the worker. */
export async function startHybrid(moduleRef: TestingModule): Promise<{ app: INestApplication; url: string }> {
  const app = moduleRef.createNestApplication();
  app.connectMicroservice({ strategy: app.get(BatchesServer) });
  await app.startAllMicroservices();
  await app.listen(0, '127.0.0.1');
  return { app, url: (await app.getUrl()).replace('[::1]', '127.0.0.1') };
}

export interface Recorder {
  readonly batches: SimpleRequest[][];
  /** Requests received over all batches. */
  readonly received: number;
  waitForRequests(count: number, timeout?: number): Promise<void>;
}

/**
 * A provider class whose `@BatchHandler(task)` records each batch, then runs `behaviour`
 * (which may mark results, throw, or block until a test lets it go).
 */
export function recorder(
  task: string,
  options: BatchHandlerOptions,
  behaviour?: (requests: SimpleRequest[], self: Recorder) => unknown,
): Type<Recorder> {
  @Injectable()
  class BatchRecorder implements Recorder {
    readonly batches: SimpleRequest[][] = [];

    get received(): number {
      return this.batches.reduce((sum, batch) => sum + batch.length, 0);
    }

    @BatchHandler(task, options)
    async handle(requests: SimpleRequest[]): Promise<unknown> {
      this.batches.push(requests);
      return behaviour?.(requests, this);
    }

    waitForRequests(count: number, timeout?: number): Promise<void> {
      return waitFor(() => this.received >= count, `${count} '${task}' requests (got ${this.received})`, timeout);
    }
  }
  return BatchRecorder;
}
