/**
 * Child processes of the benchmark (each in its own process group, with a raised file-descriptor
 * limit, always stopped) and their CPU time and resident memory from `/proc`.
 *
 * @module
 */

const decoder = new TextDecoder();

/** File descriptors asked for by every child: ten thousand sockets and then some. */
export const FD_LIMIT = 65536;

/** Options of {@link spawnChild}. */
export interface ChildOptions {
  /** Working directory. */
  cwd?: string;
  /** The whole environment of the child (nothing is inherited). */
  env: Record<string, string>;
  /** File that standard error is appended to. */
  logFile: string;
  /** Pipe standard output to read its lines with {@link Child.lines}; otherwise it is discarded. */
  readStdout?: boolean;
  /** Keep standard input open as a pipe: closing it tells a load generator to stop. */
  pipeStdin?: boolean;
}

/** Lines of a child's standard output, read as they come. */
export class LineQueue {
  readonly #lines: string[] = [];
  #waiter?: () => void;
  #ended = false;
  /** Resolves when the stream has ended. */
  readonly done: Promise<void>;

  /** @param stream The stream to read. */
  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = this.#pump(stream);
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    let partial = "";
    try {
      for await (const chunk of stream) {
        partial += decoder.decode(chunk, { stream: true });
        const parts = partial.split("\n");
        partial = parts.pop() ?? "";
        this.#lines.push(...parts);
        this.#waiter?.();
      }
    } catch {
      // the child was killed
    } finally {
      if (partial) this.#lines.push(partial);
      this.#ended = true;
      this.#waiter?.();
    }
  }

  /**
   * Takes the next line that matches, dropping the lines before it.
   *
   * @param pattern What the line must match.
   * @param timeoutMs How long to wait.
   * @returns The line.
   * @throws {Error} On timeout or when the stream ends first.
   */
  async take(pattern: RegExp, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      while (this.#lines.length > 0) {
        const line = this.#lines.shift()!;
        if (pattern.test(line)) return line;
      }
      const left = deadline - Date.now();
      if (this.#ended) throw new Error(`output ended before a line matching ${pattern}`);
      if (left <= 0) throw new Error(`no line matching ${pattern} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(finish, left);
        function finish() {
          clearTimeout(timer);
          resolve();
        }
        this.#waiter = finish;
      });
      this.#waiter = undefined;
    }
  }
}

/** A running child process in its own process group. */
export class Child {
  /** Its process id (also its process group id). */
  readonly pid: number;
  /** Its standard output lines, when piped. */
  readonly lines?: LineQueue;
  readonly #process: Deno.ChildProcess;
  #exited = false;
  readonly #status: Promise<Deno.CommandStatus>;

  /**
   * @param name What it is, for error messages.
   * @param process The spawned process.
   * @param readStdout Whether its standard output is piped.
   */
  constructor(readonly name: string, process: Deno.ChildProcess, readStdout: boolean) {
    this.#process = process;
    this.pid = process.pid;
    if (readStdout) this.lines = new LineQueue(process.stdout);
    this.#status = process.status.then((status) => {
      this.#exited = true;
      return status;
    });
  }

  /** Whether it has exited. */
  get exited(): boolean {
    return this.#exited;
  }

  /** Resolves with its exit status. */
  get status(): Promise<Deno.CommandStatus> {
    return this.#status;
  }

  /** Closes its standard input (a load generator stops then). */
  async closeStdin(): Promise<void> {
    try {
      await this.#process.stdin.close();
    } catch {
      // not piped, or already closed
    }
  }

  /**
   * Stops the whole process group: SIGTERM, then SIGKILL after `graceMs`.
   *
   * @param graceMs How long SIGTERM may take.
   */
  async stop(graceMs = 5000): Promise<void> {
    if (!this.#exited) {
      killGroup(this.pid, "SIGTERM");
      const timer: { id?: ReturnType<typeof setTimeout> } = {};
      const timedOut = await Promise.race([
        this.#status.then(() => false),
        new Promise<boolean>((resolve) => {
          timer.id = setTimeout(() => resolve(true), graceMs);
        }),
      ]);
      clearTimeout(timer.id);
      // SIGKILL to the group: the process if SIGTERM was not enough, and whatever it left in
      // its group (sent at once, while the group id is still ours).
      killGroup(this.pid, "SIGKILL");
      if (timedOut) await this.#status;
    }
    await this.#status;
    await this.lines?.done;
  }
}

function killGroup(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(-pid, signal);
  } catch {
    // the group is gone
  }
}

/**
 * Runs `command` in its own process group under `bash`, after raising the open-file limit to
 * {@link FD_LIMIT} (or to the hard limit when that is lower and cannot be raised).
 *
 * @param name What it is, for messages.
 * @param command The program and its arguments.
 * @param options Environment, log file, pipes.
 * @returns The child.
 */
export function spawnChild(name: string, command: readonly string[], options: ChildOptions): Child {
  const script = `ulimit -n ${FD_LIMIT} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; ` +
    `exec "$@" 2>>"$BENCH_CHILD_LOG"`;
  const process = new Deno.Command("bash", {
    args: ["-c", script, name, ...command],
    cwd: options.cwd,
    clearEnv: true,
    env: { ...options.env, BENCH_CHILD_LOG: options.logFile },
    stdin: options.pipeStdin ? "piped" : "null",
    stdout: options.readStdout ? "piped" : "null",
    stderr: "null",
    detached: true,
  }).spawn();
  return new Child(name, process, options.readStdout ?? false);
}

/** Every child started by a benchmark phase; disposing stops them all. */
export class Children implements AsyncDisposable {
  readonly #children: Child[] = [];

  /** The process ids (and process group ids) of the children still remembered. */
  get pids(): number[] {
    return this.#children.map((child) => child.pid);
  }

  /**
   * Starts a child and remembers it.
   *
   * @param name What it is.
   * @param command The program and its arguments.
   * @param options See {@link spawnChild}.
   * @returns The child.
   */
  spawn(name: string, command: readonly string[], options: ChildOptions): Child {
    const child = spawnChild(name, command, options);
    this.#children.push(child);
    return child;
  }

  /** Stops every child, newest first. */
  async stopAll(): Promise<void> {
    while (this.#children.length > 0) {
      await this.#children.pop()!.stop().catch(() => {});
    }
  }

  /** Stops every child. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stopAll();
  }
}

/** The environment every child starts from: PATH, HOME and the Deno cache, no colours. */
export function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/local/bin:/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/tmp",
    NO_COLOR: "1",
  };
  const denoDir = Deno.env.get("DENO_DIR");
  if (denoDir) env.DENO_DIR = denoDir;
  return env;
}

let clockTicks: number | undefined;

/** Clock ticks a second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, usually 100). */
export function clockTicksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      const output = new Deno.Command("getconf", { args: ["CLK_TCK"], stderr: "null" })
        .outputSync();
      const value = Number(decoder.decode(output.stdout).trim());
      clockTicks = Number.isInteger(value) && value > 0 ? value : 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/**
 * Reads files under `/proc/<pid>/`. Deno lets only `--allow-all` read another process's `/proc`
 * entries, so `cat` reads them (the benchmark has `--allow-run`).
 */
function readProcFiles(pid: number, names: readonly string[]): string[] {
  const output = new Deno.Command("cat", {
    args: names.map((name) => `/proc/${pid}/${name}`),
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).outputSync();
  if (!output.success) throw new Error(`process ${pid} is gone`);
  const text = decoder.decode(output.stdout);
  // stat is one line; status follows it.
  if (names.length === 1) return [text];
  const newline = text.indexOf("\n");
  return [text.slice(0, newline), text.slice(newline + 1)];
}

/** CPU time and resident memory of a process at one moment. */
export interface ProcSample {
  /** CPU time (user + system) used so far, in seconds. */
  cpuSeconds: number;
  /** Resident memory (`VmRSS`), in bytes. */
  rssBytes: number;
}

/**
 * Reads a process's CPU time so far and its resident memory.
 *
 * @param pid The process.
 * @returns The sample.
 * @throws {Error} When the process is gone.
 */
export function procSample(pid: number): ProcSample {
  const [stat, status] = readProcFiles(pid, ["stat", "status"]);
  // Fields after the command name, which is in parentheses and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  const rss = /^VmRSS:\s+(\d+) kB/m.exec(status);
  return {
    cpuSeconds: (utime + stime) / clockTicksPerSecond(),
    rssBytes: rss ? Number(rss[1]) * 1024 : NaN,
  };
}

/**
 * Resident memory of a process (`VmRSS`).
 *
 * @param pid The process.
 * @returns Bytes.
 */
export function rssBytes(pid: number): number {
  return procSample(pid).rssBytes;
}

/** CPU and memory of one process over a window. */
export interface Usage {
  /** CPU time over wall time, in percent of one core. */
  cpuPercent: number;
  /** Mean resident memory of the samples, in bytes. */
  rssMeanBytes: number;
  /** Largest resident memory sampled, in bytes. */
  rssMaxBytes: number;
  /** Length of the window, in seconds. */
  seconds: number;
}

/**
 * Samples processes' CPU and resident memory for a while.
 *
 * @param pids The processes by name.
 * @param durationMs The window.
 * @param intervalMs How often memory is sampled.
 * @returns The usage of each process by name.
 */
export async function sampleUsage(
  pids: Record<string, number>,
  durationMs: number,
  intervalMs = 1000,
): Promise<Record<string, Usage>> {
  const names = Object.keys(pids);
  const first = new Map(names.map((name) => [name, procSample(pids[name])]));
  const startCpu = new Map(names.map((name) => [name, first.get(name)!.cpuSeconds]));
  const rss = new Map(names.map((name) => [name, [first.get(name)!.rssBytes]]));
  const started = performance.now();
  while (performance.now() - started < durationMs) {
    const left = durationMs - (performance.now() - started);
    await new Promise((resolve) => setTimeout(resolve, Math.min(intervalMs, left)));
    for (const name of names) rss.get(name)!.push(procSample(pids[name]).rssBytes);
  }
  const last = new Map(names.map((name) => [name, procSample(pids[name])]));
  const seconds = (performance.now() - started) / 1000;
  const out: Record<string, Usage> = {};
  for (const name of names) {
    const samples = rss.get(name)!;
    out[name] = {
      cpuPercent: ((last.get(name)!.cpuSeconds - startCpu.get(name)!) / seconds) * 100,
      rssMeanBytes: samples.reduce((a, b) => a + b, 0) / samples.length,
      rssMaxBytes: Math.max(...samples),
      seconds,
    };
  }
  return out;
}

export { abortableSleep as sleep } from "../src/clock.ts";
