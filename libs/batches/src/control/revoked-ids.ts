/** Celery's `worker.state.REVOKES_MAX` and `REVOKE_EXPIRES` (seconds). */
export const REVOKES_MAX = 50_000;
export const REVOKE_EXPIRES_MS = 10_800_000;

/**
 * Task ids revoked by remote control, kept like Celery's `revoked` LimitedSet: at most
 * `maxSize` ids, each for `expiresMs` after it was (last) revoked; the oldest go first. One per
 * module (`app.get(RevokedIds)`); the worker skips the requests whose id it holds.
 */
export class RevokedIds {
  /** id → time revoked; Map order is revocation order, since re-revoking moves an id to the end. */
  private readonly ids = new Map<string, number>();

  constructor(
    private readonly maxSize = REVOKES_MAX,
    private readonly expiresMs = REVOKE_EXPIRES_MS,
    private readonly now: () => number = Date.now,
  ) {}

  add(...ids: string[]): void {
    const now = this.now();
    for (const id of ids) {
      this.ids.delete(id);
      this.ids.set(id, now);
    }
    this.purge(now);
  }

  has(id: string): boolean {
    // Most workers never see a revoke: the common case is one lookup in an empty map.
    if (this.ids.size === 0) return false;
    const at = this.ids.get(id);
    if (at === undefined) return false;
    if (this.now() - at < this.expiresMs) return true;
    this.purge(this.now());
    return false;
  }

  get size(): number {
    // Checked for every batch: no clock read while nothing is revoked.
    if (this.ids.size > 0) this.purge(this.now());
    return this.ids.size;
  }

  /** The ids still revoked, oldest first (the `revoked` inspect command). */
  list(): string[] {
    this.purge(this.now());
    return [...this.ids.keys()];
  }

  private purge(now: number): void {
    for (const [id, at] of this.ids) {
      if (this.ids.size <= this.maxSize && now - at < this.expiresMs) break;
      this.ids.delete(id);
    }
  }
}
