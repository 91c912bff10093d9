/** Waits for a condition, not for a fixed time: polls until `check` holds or `timeout` passes. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeout = 15_000, every = 20): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, every));
  }
}
