/** kombu's LamportClock: the logical clock Celery stamps on control replies and events. */
export class LamportClock {
  private current = 0;

  get value(): number {
    return this.current;
  }

  /** Takes a clock value seen on a message. */
  adjust(other: unknown): number {
    const seen = typeof other === 'number' ? other : Number(other);
    this.current = Math.max(this.current, Number.isFinite(seen) ? seen : 0) + 1;
    return this.current;
  }

  /** Ticks for an event or message of our own. */
  forward(): number {
    return ++this.current;
  }
}
