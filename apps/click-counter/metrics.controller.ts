import { Controller, Get, Res } from '@nestjs/common';
import { register } from 'prom-client';

/**
 * `GET /metrics` from the app's own HTTP server: the library registers its metrics on prom-client's
 * default `register` (`metrics: true`) and serves nothing itself.
 */
@Controller()
export class MetricsController {
  @Get('metrics')
  async metrics(@Res({ passthrough: true }) response: { setHeader(name: string, value: string): void }): Promise<string> {
    response.setHeader('Content-Type', register.contentType);
    return register.metrics();
  }
}
