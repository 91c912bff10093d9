import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckService, type HealthCheckResult } from '@nestjs/terminus';
import { BatchesHealthIndicator } from 'nestjs-batches';

/** `GET /health` (Terminus): the broker connected, every queue consumed, results reachable, the worker not wedged. */
@Controller()
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly batches: BatchesHealthIndicator,
  ) {}

  @Get('health')
  @HealthCheck()
  check(): Promise<HealthCheckResult> {
    return this.health.check([() => this.batches.isHealthy()]);
  }
}
