import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { BatchesModule } from 'nestjs-batches';
import { ClickCounter } from './click-counter.service.js';
import { HealthController } from './health.controller.js';
import { MetricsController } from './metrics.controller.js';

@Module({
  imports: [
    TerminusModule,
    BatchesModule.forRoot({
      broker: process.env.BROKER_URL ?? 'memory://',
      resultBackend: process.env.RESULT_BACKEND ?? 'memory://',
      // Prometheus metrics on prom-client's default registry, served by MetricsController (with HTTP_PORT).
      metrics: true,
    }),
  ],
  controllers: [MetricsController, HealthController],
  providers: [ClickCounter],
})
export class ClickCounterModule {}
