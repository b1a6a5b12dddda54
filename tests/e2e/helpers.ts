/**
 * Helpers of the end-to-end tests: spawn the real CLI with explicit `--allow-*` flags, read its
 * output lines until a pattern appears, and stop it cleanly.
 *
 * @module
 */

import { FINAL_STATUSES } from "../../src/protocol/mod.ts";

/** The repository root. */
export const ROOT: string = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
/** The CLI entry point. */
export const MAIN: string = `${ROOT}/main.ts`;

/** Permission flags of each role, as the `deno.json` tasks give them. */
export const PERMS = {
  serve: ["--allow-net", "--allow-read", "--allow-write", "--allow-env"],
  agent: [
    "--allow-net",
    "--allow-run",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    "--allow-sys",
  ],
  /** The agent's flags without `--allow-sys` (no load or memory figures). */
  agentWithoutSys: ["--allow-net", "--allow-run", "--allow-read", "--allow-write", "--allow-env"],
  /** Exactly what ARCHITECTURE.md promises works for the agent. */
  agentMinimal: ["--allow-net", "--allow-run"],
  up: ["--allow-net", "--allow-run", "--allow-read", "--allow-write", "--allow-env", "--allow-sys"],
  operator: ["--allow-net"],
} as const;

const decoder = new TextDecoder();

/** Lines one stream of a child has written so far, with waiting for a line. */
export class LineStream {
  /** Every complete line so far. */
  readonly lines: string[] = [];
  #partial = "";
  #waiters = new Set<() => void>();
  #closed = false;
  /** Resolves when the stream has ended. */
  readonly done: Promise<void>;

  constructor(readonly name: string, stream: ReadableStream<Uint8Array>) {
    this.done = this.#pump(stream);
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    try {
      for await (const chunk of stream) {
        this.#partial += decoder.decode(chunk, { stream: true });
        const parts = this.#partial.split("\n");
        this.#partial = parts.pop() ?? "";
        if (parts.length > 0) {
          this.lines.push(...parts);
          this.#wake();
        }
      }
    } catch {
      // The child was killed; what it wrote is kept.
    } finally {
      if (this.#partial) this.lines.push(this.#partial);
      this.#partial = "";
      this.#closed = true;
      this.#wake();
    }
  }

  #wake(): void {
    for (const waiter of this.#waiters) waiter();
  }

  /** The whole output so far. */
  get text(): string {
    return this.lines.join("\n");
  }

  /**
   * Waits until a line matches, starting at line `from`.
   *
   * @param pattern What the line must match (a string: contained in it).
   * @param options How long to wait, where to start, and a signal that stops waiting.
   * @returns The matching line, its index and the regular expression's match.
   * @throws {Error} Naming the pattern and showing the last lines, on timeout or end of stream.
   */
  async waitFor(
    pattern: RegExp | string,
    options: { timeoutMs?: number; from?: number; signal?: AbortSignal } = {},
  ): Promise<{ line: string; index: number; match: RegExpExecArray | null }> {
    const timeoutMs = options.timeoutMs ?? 20_000;
    const regex = typeof pattern === "string"
      ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
      : pattern;
    const test = (line: string) => regex.exec(line);
    const deadline = Date.now() + timeoutMs;
    let scanned = options.from ?? 0;
    while (true) {
      for (; scanned < this.lines.length; scanned++) {
        const match = test(this.lines[scanned]);
        if (match) return { line: this.lines[scanned], index: scanned, match };
      }
      options.signal?.throwIfAborted();
      const left = deadline - Date.now();
      if (this.#closed || left <= 0) {
        throw new Error(
          `${this.name}: no line matching ${String(pattern)} ${
            this.#closed ? "before the stream ended" : `within ${timeoutMs} ms`
          }; last lines:\n${this.lines.slice(-15).join("\n")}`,
        );
      }
      await new Promise<void>((resolve) => {
        const waiters = this.#waiters;
        const signal = options.signal;
        const done = () => {
          clearTimeout(timer);
          waiters.delete(done);
          signal?.removeEventListener("abort", done);
          resolve();
        };
        const timer = setTimeout(done, left);
        waiters.add(done);
        signal?.addEventListener("abort", done, { once: true });
      });
    }
  }
}

/** Options of {@link spawnCli}. */
export interface SpawnOptions {
  /** Permission flags given to `deno run`. */
  perms: readonly string[];
  /** Working directory. */
  cwd?: string;
  /** Extra environment (the child otherwise gets a clean one with PATH and HOME). */
  env?: Record<string, string>;
  /**
   * Run exactly `deno run <perms> main.ts <args>` in the repository root, as a user would
   * (no `--quiet`, no `--config`); `cwd` is ignored.
   */
  plain?: boolean;
}

/** A running CLI process. */
export class CliProcess implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly stdout: LineStream;
  readonly stderr: LineStream;
  #status?: Promise<Deno.CommandStatus>;

  constructor(readonly args: readonly string[], options: SpawnOptions) {
    const command = new Deno.Command(Deno.execPath(), {
      args: options.plain
        ? ["run", ...options.perms, "main.ts", ...args]
        : ["run", "--quiet", "--config", `${ROOT}/deno.json`, ...options.perms, MAIN, ...args],
      cwd: options.plain ? ROOT : options.cwd ?? ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      clearEnv: true,
      env: {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        HOME: Deno.env.get("HOME") ?? "/tmp",
        ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
        NO_COLOR: "1",
        ...options.env,
      },
    });
    this.child = command.spawn();
    this.stdout = new LineStream(`stdout of status ${args[0]}`, this.child.stdout);
    this.stderr = new LineStream(`stderr of status ${args[0]}`, this.child.stderr);
  }

  /** The exit status, once the process and its output have ended. */
  status(): Promise<Deno.CommandStatus> {
    this.#status ??= (async () => {
      const status = await this.child.status;
      await Promise.all([this.stdout.done, this.stderr.done]);
      return status;
    })();
    return this.#status;
  }

  /**
   * Waits for the exit status within a time limit.
   *
   * @param timeoutMs How long to wait.
   * @returns The status.
   * @throws {Error} When the process is still running then (it is left running).
   */
  async exited(timeoutMs = 20_000): Promise<Deno.CommandStatus> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        this.status(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new Error(
                  `status ${this.args[0]} still running after ${timeoutMs} ms; stderr:\n${
                    this.stderr.lines.slice(-15).join("\n")
                  }`,
                ),
              ),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends a signal, ignoring a process that has already ended. */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    try {
      this.child.kill(signal);
    } catch {
      // already gone
    }
  }

  /** Kills the process if it still runs (SIGKILL) and waits for it and its output. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.kill("SIGKILL");
    await this.status();
  }
}

/**
 * Spawns `deno run <perms> main.ts <args>`.
 *
 * @param args CLI arguments.
 * @param options Permissions, working directory, environment.
 * @returns The running process; `await using` it.
 */
export function spawnCli(args: readonly string[], options: SpawnOptions): CliProcess {
  return new CliProcess(args, options);
}

/** What a finished CLI run printed. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the CLI to the end.
 *
 * @param args CLI arguments.
 * @param options Permissions, working directory, environment.
 * @param timeoutMs How long it may take.
 * @returns Its exit code and output.
 */
export async function runCli(
  args: readonly string[],
  options: SpawnOptions = { perms: PERMS.operator },
  timeoutMs = 30_000,
): Promise<CliRun> {
  await using proc = spawnCli(args, options);
  const status = await proc.exited(timeoutMs);
  return { code: status.code, stdout: proc.stdout.text, stderr: proc.stderr.text };
}

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
 * @param options The database file, the port (0: any free one) and extra flags.
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
    { perms: options.perms ?? PERMS.serve, cwd: options.cwd, env: options.env },
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
 * Parses the JSON log lines of a stream, skipping lines that are not JSON objects.
 *
 * @param stream The stream.
 * @returns The records.
 */
export function jsonLogs(stream: LineStream): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of stream.lines) {
    if (!line.startsWith("{")) continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      // not a log record
    }
  }
  return out;
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
