import { Inject, Injectable } from '@nestjs/common';
import { BatchHandler, ResultBackend, type SimpleRequest } from 'nestjs-batches';
import type { Reputation } from './reputation-api.js';

export const REPUTATION_API_URL = Symbol('REPUTATION_API_URL');

/** celery-batches' second example: many URLs, one API call per batch, one stored result per request. */
@Injectable()
export class UrlReputation {
  constructor(
    private readonly results: ResultBackend,
    @Inject(REPUTATION_API_URL) private readonly apiUrl: string,
  ) {}

  @BatchHandler('url_reputation', { flushEvery: 100, flushInterval: 1_000 })
  async lookUp(requests: SimpleRequest<[string]>[]): Promise<void> {
    const hosts = requests.map((request) => new URL(request.args[0]).hostname);
    const response = await fetch(`${this.apiUrl}?hosts=${[...new Set(hosts)].join('/')}/`);
    if (!response.ok) throw new Error(`reputation API answered ${response.status}`);
    const reputations = (await response.json()) as Record<string, Reputation>;
    // Mark each request with its own answer, as celery-batches' mark_as_done does.
    await Promise.all(
      requests.map((request, index) => this.results.markAsDone(request.id, { url: request.args[0], ...reputations[hosts[index]] })),
    );
  }
}
