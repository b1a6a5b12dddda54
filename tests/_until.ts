/**
 * The one poll helper of the tests: wait for a condition instead of sleeping a fixed time.
 *
 * @module
 */

/**
 * Polls `condition` every `everyMs` until it holds; rejects after `ms` of real time.
 *
 * @param condition What to wait for.
 * @param what Said in the error.
 * @param ms How long to wait at most.
 * @param everyMs How often to look.
 */
export async function until(
  condition: () => boolean | Promise<boolean>,
  what = "condition",
  ms = 10_000,
  everyMs = 5,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
