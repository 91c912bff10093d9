import { Controller, Get, Header, ServiceUnavailableException, Sse, type MessageEvent } from '@nestjs/common';
import { endWith, map, type Observable } from 'rxjs';
import { MONITOR_PAGE, MONITOR_PAGE_CSP } from './monitor-page.js';
import { MonitorSnapshots } from './monitor-snapshots.js';

/** How long (ms) a page waits before reconnecting after its stream broke. */
const RECONNECT_AFTER = 2_000;
/** The stream's last event when the app shuts down: the page then waits before reconnecting (see monitor-page.client.ts). */
const CLOSED: MessageEvent = { type: 'closed', data: 'the app is shutting down' };

/**
 * The monitor's routes, under the module's `path`: `GET <path>` (the page) and `GET <path>/events`
 * (server-sent `MonitorSnapshot`s). An ordinary controller: global guards, interceptors and
 * middleware (`forRoutes(BatchesMonitorController)`) apply to it as to any other.
 */
@Controller()
export class BatchesMonitorController {
  constructor(private readonly snapshots: MonitorSnapshots) {}

  @Get()
  @Header('Content-Type', 'text/html; charset=utf-8')
  @Header('Content-Security-Policy', MONITOR_PAGE_CSP)
  @Header('Cache-Control', 'no-store')
  @Header('X-Content-Type-Options', 'nosniff')
  @Header('Referrer-Policy', 'no-referrer')
  page(): string {
    return MONITOR_PAGE;
  }

  @Sse('events')
  events(): Observable<MessageEvent> {
    // A refusal, unlike an empty stream, stops an EventSource from reconnecting every RECONNECT_AFTER ms,
    // which would keep a keep-alive connection, and so the closing HTTP server, busy for good.
    if (this.snapshots.closed) throw new ServiceUnavailableException('The app is shutting down.');
    return this.snapshots.snapshots$.pipe(
      map((data) => ({ data, retry: RECONNECT_AFTER })),
      endWith(CLOSED),
    );
  }
}
