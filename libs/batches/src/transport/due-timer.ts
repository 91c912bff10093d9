/** The longest wait Node's timers take: beyond it (about 24.8 days) `setTimeout` fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Calls `fire` at `due` (epoch ms), however far ahead: a wait longer than a timer can hold is
 * re-armed in steps, so an ETA, countdown or retry backoff of months waits its full length.
 */
export class DueTimer {
  private timer: NodeJS.Timeout;

  constructor(
    private readonly due: number,
    private readonly fire: () => void,
  ) {
    this.timer = this.arm();
  }

  cancel(): void {
    clearTimeout(this.timer);
  }

  private arm(): NodeJS.Timeout {
    const wait = Math.min(Math.max(this.due - Date.now(), 0), MAX_TIMER_MS);
    return setTimeout(() => {
      if (this.due - Date.now() > 0) this.timer = this.arm();
      else this.fire();
    }, wait);
  }
}
