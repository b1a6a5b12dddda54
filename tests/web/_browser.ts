/**
 * Debian's `chromium` driven by `playwright-core` for the console's browser tests: headless, no
 * sandbox (the tests run as root), no background networking, a fresh profile per launch.
 *
 * Where chromium is missing the tests are skipped with one message, except in CI (`CI` set), where
 * `.ci/run` installs it and a missing browser is a failure.
 *
 * playwright-core probes paths such as `/proc/sys/fs/binfmt_misc/WSLInterop` when it loads, which
 * Deno allows only under `--allow-all`; the test suite runs with a list of permissions. So the
 * browser tests run in a child `deno test --allow-all` of their own file when the suite lacks it
 * ({@link HAS_ALL_PERMISSIONS}), and playwright-core is imported only inside that child.
 *
 * @module
 */
import type { Browser } from "playwright-core";

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

/** Whether this process runs under `--allow-all` (playwright-core can be loaded). */
export const HAS_ALL_PERMISSIONS: boolean = (() => {
  try {
    Deno.statSync("/proc/sys/fs/binfmt_misc/WSLInterop");
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) return false;
  }
  return true;
})();

/**
 * Runs a test file again in a child `deno test --allow-all` and fails with its output when it
 * fails.
 *
 * @param file The test file (`import.meta.filename`).
 */
export async function runUnderAllowAll(file: string): Promise<void> {
  const root = new URL("../../", import.meta.url).pathname;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["test", "--allow-all", "--config", `${root}deno.json`, file],
    cwd: root,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  if (!output.success) throw new Error(`the browser tests failed:\n${text}`);
  if (!/\| [1-9]\d* passed/.test(text)) throw new Error(`no browser test ran:\n${text}`);
}

/**
 * Launches headless chromium with a fresh profile.
 *
 * @returns The browser; close it when done.
 */
export async function launchChromium(): Promise<Browser> {
  if (!exists(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: the browser tests need Debian's chromium`);
  }
  const { chromium } = await import("playwright-core");
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

/**
 * Registers a browser test: run here under `--allow-all` (which playwright-core needs), else again
 * in a child `deno test --allow-all`; ignored where chromium is missing.
 *
 * @param name The test's name.
 * @param file The test file (`import.meta.filename`).
 * @param fn The test.
 */
export function browserTest(
  name: string,
  file: string,
  fn: (t: Deno.TestContext) => Promise<void>,
): void {
  if (!HAS_ALL_PERMISSIONS) {
    Deno.test({
      name: `${name} (in a child deno test --allow-all, which playwright-core needs)`,
      ignore: !BROWSER_AVAILABLE,
    }, () => runUnderAllowAll(file));
  } else {
    Deno.test({
      name,
      ignore: !BROWSER_AVAILABLE,
      // playwright-core keeps its connection's timers and pipes until the browser has closed.
      sanitizeOps: false,
      sanitizeResources: false,
    }, fn);
  }
}

/**
 * A stand-in dashboard for the console script in a browser: `/static/console.js`, a running
 * command `c1` (its page, its API record, no event stream, so the page polls) and, at any other
 * path, an agents part refreshing every 0.2 s. `answer` is asked first (after the script) and
 * answers instead when it returns a response.
 *
 * @param answer The test's own answers (a dashboard gone, a session ended).
 * @returns The server; shut it down when done.
 */
export async function fakeConsoleServer(
  answer: (path: string) => Response | undefined,
): Promise<Deno.HttpServer<Deno.NetAddr>> {
  const script = await Deno.readTextFile(
    new URL("../../src/server/web/static/console.js", import.meta.url),
  );
  const page = (body: string) =>
    new Response(
      `<!doctype html><html><body><main id="main"><h1>Title</h1>${body}</main>` +
        `<script src="/static/console.js"></script></body></html>`,
      { headers: { "Content-Type": "text/html" } },
    );
  return Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/static/console.js") {
      return new Response(script, { headers: { "Content-Type": "text/javascript" } });
    }
    if (path === "/login") return page(`<form>login</form>`);
    if (path.endsWith("/events")) return new Response("no stream", { status: 404 });
    const own = answer(path);
    if (own) return own;
    if (path === "/api/v1/commands/c1") {
      return Response.json({ id: "c1", status: "running", attempt: 1 });
    }
    if (path === "/commands/c1") {
      return page(
        `<div id="command-detail" data-command-id="c1" data-status="running" ` +
          `data-final="false">running</div>`,
      );
    }
    return page(`<div id="agents" data-refresh-secs="0.2">agents</div>`);
  });
}
