import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { BATCHES_BROKER } from './batches.constants.js';
import type { Broker } from './broker/broker.interface.js';
import { ResultBackend } from './results/result-backend.js';
import { BatchWorker } from './transport/batch-worker.js';

/** Closes the broker and result backend last, after the worker has drained and acked. */
@Injectable()
export class ConnectionsLifecycle implements OnApplicationShutdown {
  constructor(
    private readonly worker: BatchWorker,
    @Inject(BATCHES_BROKER) private readonly broker: Broker,
    private readonly results: ResultBackend,
  ) {}

  async onApplicationShutdown(): Promise<void> {
    await this.worker.stop();
    await this.broker.close();
    await this.results.close();
  }
}
