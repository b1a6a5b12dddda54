/**
 * Debian's `chromium` driven by `playwright-core` for the console's browser tests: headless, no
 * sandbox (the tests run as root), no background networking, a fresh profile per launch.
 *
 * Where chromium is missing the tests are skipped with one message, except in CI (`CI` set), where
 * `.ci/run` installs it and a missing browser is a failure.
 *
 * @module
 */
import { type Browser, chromium } from "playwright-core";

/** The browser binary (`CHROMIUM_PATH` overrides). */
export const CHROMIUM: string = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Whether the browser tests run here; prints why not once. */
export const BROWSER_AVAILABLE: boolean = (() => {
  if (exists(CHROMIUM)) return true;
  if (Deno.env.get("CI")) return true; // fail loudly at launch instead of skipping in CI
  console.warn(
    `skipping the console's browser tests: ${CHROMIUM} is missing (apt-get install chromium, ` +
      `or set CHROMIUM_PATH)`,
  );
  return false;
})();

/**
 * Launches headless chromium with a fresh profile.
 *
 * @returns The browser; close it when done.
 */
export async function launchChromium(): Promise<Browser> {
  if (!exists(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: the browser tests need Debian's chromium`);
  }
  return await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-gpu",
      "--disable-quic",
      "--disable-dev-shm-usage",
    ],
  });
}

/**
 * Where the tests save their screenshots: `STATUS_SCREENSHOTS_DIR` (`deno task screenshots` sets
 * `docs/images`), otherwise the given temporary directory.
 *
 * @param fallback A temporary directory of the test.
 */
export function screenshotDir(fallback: string): string {
  return Deno.env.get("STATUS_SCREENSHOTS_DIR") ?? fallback;
}

/**
 * Polls until `check` returns a value that is not `undefined`/`false`.
 *
 * @param what What is awaited, for the error.
 * @param check The condition.
 * @param timeoutMs How long to wait.
 * @returns What `check` returned.
 */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`not within ${timeoutMs} ms: ${what}${last ? ` (last error: ${last})` : ""}`);
}
