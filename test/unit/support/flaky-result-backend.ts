import { MemoryResultBackend } from '../../../libs/batches/src/results/memory.result-backend.js';
import type { TaskMeta } from '../../../libs/batches/src/results/task-result.js';

/** A memory backend whose writes can be made to fail, as a Redis backend does when Redis is gone. */
export class FlakyResultBackend extends MemoryResultBackend {
  failWrites?: Error;

  protected override async store(meta: TaskMeta): Promise<void> {
    if (this.failWrites) throw this.failWrites;
    return super.store(meta);
  }

  protected override async storeMany(metas: TaskMeta[]): Promise<void> {
    if (this.failWrites) throw this.failWrites;
    return super.storeMany(metas);
  }
}
