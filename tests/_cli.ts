/**
 * The one way tests run `main.ts` as a process: `deno run <flags> main.ts <args>` with the
 * permission flags of a role ({@link PERMS}, taken from `deno.json`'s tasks and `main.ts`'s
 * first line), its output read line by line until a pattern appears, and a clean stop.
 *
 * @module
 */
import denoJson from "../deno.json" with { type: "json" };

/** The repository root. */
export const ROOT: string = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
/** The CLI entry point. */
export const MAIN: string = `${ROOT}/main.ts`;

/** The `--allow-*` flags of a command line. */
function allowFlags(commandLine: string): string[] {
  return commandLine.split(/\s+/).filter((word) => word.startsWith("--allow-"));
}

/** The permission flags of a `deno.json` task. */
function taskFlags(task: keyof typeof denoJson.tasks): string[] {
  return allowFlags(denoJson.tasks[task]);
}

/**
 * Permission flags of each role: those of its `deno.json` task, or the narrower sets the README
 * promises work.
 */
export const PERMS = {
  /** The `serve` task's. */
  serve: taskFlags("serve"),
  /** The `agent` task's. */
  agent: taskFlags("agent"),
  /** The agent's without `--allow-sys` (no load or memory figures). */
  agentWithoutSys: taskFlags("agent").filter((flag) => flag !== "--allow-sys"),
  /** What `main.ts`'s first line runs it with: the agent works with exactly these. */
  agentMinimal: allowFlags(Deno.readTextFileSync(MAIN).split("\n")[0]),
  /** The `start` task's (`status up`). */
  up: taskFlags("start"),
  /** An operator command needs only the network. */
  operator: ["--allow-net"],
  /** `status stop` reads the pid file and signals through `kill`. */
  stop: ["--allow-read", "--allow-run"],
  /** `status agents --db FILE` works on the SQLite file, reading its settings. */
  agentsOnDisk: ["--allow-read", "--allow-write", "--allow-env"],
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
   * @param pattern What the line must match (a string: contained in it; a function: true for it).
   * @param options How long to wait, where to start, a signal that stops waiting, and what is
   *   waited for (for the error).
   * @returns The matching line, its index and the regular expression's match.
   * @throws {Error} Naming the pattern and showing the last lines, on timeout or end of stream.
   */
  async waitFor(
    pattern: RegExp | string | ((line: string) => boolean),
    options: { timeoutMs?: number; from?: number; signal?: AbortSignal; what?: string } = {},
  ): Promise<{ line: string; index: number; match: RegExpExecArray | null }> {
    const timeoutMs = options.timeoutMs ?? 45_000;
    const regex = typeof pattern === "string"
      ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
      : pattern;
    const test = (line: string) =>
      typeof regex === "function" ? (regex(line) ? /.*/.exec(line) : null) : regex.exec(line);
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
          `${this.name}: no ${options.what ?? `line matching ${String(pattern)}`} ${
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
  /** A program (and its arguments) that runs `deno` in turn, e.g. `["prlimit", "--nofile=64"]`. */
  prefix?: readonly string[];
}

/**
 * The `deno run <perms> main.ts <args>` command line, with a clean environment (`PATH`, `HOME`,
 * `DENO_DIR`, `NO_COLOR` and `options.env`) and piped output; {@link CliProcess} spawns it, and
 * a test that needs the raw child (closing its stdout early) spawns it itself.
 *
 * @param args CLI arguments.
 * @param options Permissions, working directory, environment.
 * @returns The command, not started.
 */
export function cliCommand(args: readonly string[], options: SpawnOptions): Deno.Command {
  const denoArgs = options.plain
    ? ["run", ...options.perms, "main.ts", ...args]
    : ["run", "--quiet", "--config", `${ROOT}/deno.json`, ...options.perms, MAIN, ...args];
  const [program, ...prefixArgs] = options.prefix ?? [Deno.execPath()];
  return new Deno.Command(program, {
    args: options.prefix ? [...prefixArgs, Deno.execPath(), ...denoArgs] : denoArgs,
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
}

/** A running CLI process. */
export class CliProcess implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly stdout: LineStream;
  readonly stderr: LineStream;
  #status?: Promise<Deno.CommandStatus>;

  constructor(readonly args: readonly string[], options: SpawnOptions) {
    const command = cliCommand(args, options);
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
  async exited(timeoutMs = 45_000): Promise<Deno.CommandStatus> {
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

  /** The JSON log records it has written to standard error so far. */
  logs(): Array<Record<string, unknown>> {
    return jsonLogs(this.stderr);
  }

  /**
   * Whether a log record on standard error has this message.
   *
   * @param message The whole message, or a pattern it matches.
   */
  logged(message: string | RegExp): boolean {
    return this.logs().some((record) => messageMatches(record, message));
  }

  /**
   * Waits until a JSON log record on standard error has this message.
   *
   * @param message The whole message, or a pattern it matches.
   * @param timeoutMs How long to wait.
   * @throws {Error} Showing the last lines, on timeout or when the process ended first.
   */
  async waitForLog(message: string | RegExp, timeoutMs = 45_000): Promise<void> {
    const isRecord = (line: string) => {
      if (!line.startsWith("{")) return false;
      try {
        return messageMatches(JSON.parse(line), message);
      } catch {
        return false;
      }
    };
    await this.stderr.waitFor(isRecord, { timeoutMs, what: `log record "${message}"` });
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

function messageMatches(record: Record<string, unknown>, message: string | RegExp): boolean {
  return typeof message === "string"
    ? record.message === message
    : message.test(String(record.message));
}
