/**
 * Helpers of the end-to-end tests: start `status serve` and `status agent` (through the one
 * spawner of `../_cli.ts`), wait for a command to be final, and temporary directories.
 *
 * @module
 */

import { FINAL_STATUSES } from "../../src/protocol/mod.ts";
import { type CliProcess, PERMS, spawnCli } from "../_cli.ts";

/** A `status serve` process and the URL it listens on. */
export interface ServeProcess extends AsyncDisposable {
  proc: CliProcess;
  url: string;
  port: number;
}

/** A URL in a log line (text or JSON): the first `http://host:port`. */
const LISTEN_URL = /https?:\/\/[\w.\[\]:-]+:(\d+)/;

/**
 * Starts `status serve` and waits until it listens.
 *
 * @param options The database file, the port (0: any free one), extra flags, and a program
 *   that runs `deno` in turn (`prefix`).
 * @returns The process and its URL.
 */
export async function startServe(
  options: {
    db: string;
    port?: number;
    args?: string[];
    perms?: readonly string[];
    cwd?: string;
    env?: Record<string, string>;
    prefix?: readonly string[];
  },
): Promise<ServeProcess> {
  const proc = spawnCli(
    [
      "serve",
      "--db",
      options.db,
      "--port",
      String(options.port ?? 0),
      "--log-format",
      "json",
      ...(options.args ?? []),
    ],
    {
      perms: options.perms ?? PERMS.serve,
      cwd: options.cwd,
      env: options.env,
      prefix: options.prefix,
    },
  );
  try {
    const url = await waitForListenUrl(proc);
    return {
      proc,
      url,
      port: Number(new URL(url).port),
      [Symbol.asyncDispose]: () => proc[Symbol.asyncDispose](),
    };
  } catch (error) {
    await proc[Symbol.asyncDispose]();
    throw error;
  }
}

/**
 * Waits for the line in which a dashboard says where it listens, on stdout or stderr.
 *
 * @param proc The `status serve` or `status up` process.
 * @param timeoutMs How long to wait.
 * @returns The base URL, e.g. `http://127.0.0.1:41234`.
 */
export async function waitForListenUrl(proc: CliProcess, timeoutMs = 30_000): Promise<string> {
  const pattern = /listening|listens/i;
  const stop = new AbortController();
  const found = await Promise.any([
    proc.stderr.waitFor(pattern, { timeoutMs, signal: stop.signal }),
    proc.stdout.waitFor(pattern, { timeoutMs, signal: stop.signal }),
  ]).catch(() => {
    throw new Error(
      `the dashboard never said where it listens; stderr:\n${proc.stderr.text}\nstdout:\n${proc.stdout.text}`,
    );
  }).finally(() => stop.abort());
  let line = found.line;
  try {
    const parsed = JSON.parse(line);
    line = [parsed.url, parsed.message, JSON.stringify(parsed)].filter(Boolean).join(" ");
  } catch {
    // a text line
  }
  const match = LISTEN_URL.exec(line);
  if (!match) throw new Error(`no URL in the listening line: ${found.line}`);
  const url = new URL(match[0]);
  // A dashboard bound to 0.0.0.0 is reached on loopback.
  if (url.hostname === "0.0.0.0" || url.hostname === "[::]") url.hostname = "127.0.0.1";
  return url.origin;
}

/**
 * Starts `status agent` against a dashboard, logging JSON lines on stderr.
 *
 * @param options Dashboard URL, agent id, state directory, permissions and extra flags.
 * @returns The process.
 */
export function startAgent(options: {
  url: string;
  agentId: string;
  stateDir: string;
  args?: string[];
  perms?: readonly string[];
  cwd?: string;
  plain?: boolean;
}): CliProcess {
  return spawnCli(
    [
      "agent",
      "--dashboard-url",
      options.url,
      "--agent-id",
      options.agentId,
      "--state-dir",
      options.stateDir,
      "--log-format",
      "json",
      ...(options.args ?? []),
    ],
    { perms: options.perms ?? PERMS.agent, cwd: options.cwd, plain: options.plain },
  );
}

/**
 * Polls `GET /api/v1/commands/{id}` until the command is final.
 *
 * @param url Dashboard URL.
 * @param id Command id.
 * @param timeoutMs How long to wait.
 * @param headers Extra headers (an admin token).
 * @returns The final command JSON.
 */
export async function waitForFinal(
  url: string,
  id: string,
  timeoutMs = 30_000,
  headers: Record<string, string> = {},
): Promise<Record<string, unknown> & { status: string }> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`${url}/api/v1/commands/${encodeURIComponent(id)}`, { headers });
      const body = await response.json();
      last = body;
      if (response.ok && (FINAL_STATUSES as ReadonlySet<string>).has(body.status)) return body;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(
    `command ${id} not final after ${timeoutMs} ms; last answer: ${JSON.stringify(last)}`,
  );
}

/**
 * Makes a temporary directory removed on dispose.
 *
 * @param prefix Name prefix.
 * @returns The path and a disposer.
 */
export function tempDir(prefix = "status-e2e-"): { path: string } & AsyncDisposable {
  const path = Deno.makeTempDirSync({ prefix });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

/** Whether every directory above `path` and the file itself let anyone search and execute. */
function executableByOthers(path: string): boolean {
  const parts = path.split("/").filter((part) => part !== "");
  for (let i = 1; i <= parts.length; i++) {
    const mode = Deno.statSync("/" + parts.slice(0, i).join("/")).mode ?? 0;
    if ((mode & 0o001) === 0) return false;
  }
  return true;
}

/**
 * A path of this `deno` that the agent's command user can run. A root agent runs commands as
 * `nobody`, who cannot reach a `deno` under root's home (`npx deno` keeps it in `/root/.npm`,
 * mode 0700); then it is linked (or copied) into `dir`, which must be searchable by others.
 */
export function denoForCommands(dir: string): string {
  const deno = Deno.execPath();
  if (Deno.uid() !== 0 || executableByOthers(deno)) return deno;
  const copy = `${dir}/deno`;
  try {
    Deno.linkSync(deno, copy);
  } catch {
    Deno.copyFileSync(deno, copy);
  }
  Deno.chmodSync(copy, 0o755);
  return copy;
}
