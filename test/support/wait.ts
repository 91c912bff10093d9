/** Waits for a condition, not for a fixed time: polls until `check` holds or `timeout` passes. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeout = 15_000, every = 20): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, every));
  }
}

/** A promise a test opens by hand: a handler awaits `wait` to stay busy until the test calls `open()`. */
export function gate(): { wait: Promise<void>; open(): void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}
