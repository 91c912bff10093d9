import { Module } from '@nestjs/common';
import { BatchesModule } from 'nestjs-batches';
import { ClickCounter } from './click-counter.service.js';

@Module({
  imports: [
    BatchesModule.forRoot({ broker: process.env.BROKER_URL ?? 'memory://', resultBackend: process.env.RESULT_BACKEND ?? 'memory://' }),
  ],
  providers: [ClickCounter],
})
export class ClickCounterModule {}
