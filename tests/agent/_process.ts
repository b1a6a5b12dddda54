/**
 * Spawns the real CLI (`deno run <flags> main.ts ...`) for end-to-end agent tests and collects
 * its output line by line.
 *
 * @module
 */
import { MAIN, PERMS } from "../e2e/helpers.ts";

export { MAIN };

/** The permission flags the issue names for the agent. */
export const AGENT_FLAGS: readonly string[] = PERMS.agentWithoutSys;

/** A running CLI process. */
export class CliProcess implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  readonly #reading: Promise<void>[];
  #status: Deno.CommandStatus | undefined;

  constructor(args: string[], options: { flags?: readonly string[]; cwd: string }) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: ["run", ...(options.flags ?? AGENT_FLAGS), MAIN, ...args],
      cwd: options.cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.#reading = [
      collect(this.child.stdout, this.stdout),
      collect(this.child.stderr, this.stderr),
    ];
    this.child.status.then((status) => this.#status = status);
  }

  /** Log records written to stderr as JSON lines. */
  get records(): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const line of this.stderr) {
      try {
        out.push(JSON.parse(line));
      } catch {
        // Not a log record.
      }
    }
    return out;
  }

  /** Whether some log record has this message (or matches it). */
  logged(message: string | RegExp): boolean {
    return this.records.some((r) =>
      typeof message === "string" ? r.message === message : message.test(String(r.message))
    );
  }

  /** Waits until a log record matches, or the process ends, or `ms` pass. */
  async waitForLog(message: string | RegExp, ms = 20_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.logged(message)) {
      if (this.#status) {
        throw new Error(
          `process exited (${this.#status.code}) before logging ${message}:\n${
            this.stderr.join("\n")
          }`,
        );
      }
      if (Date.now() > deadline) {
        throw new Error(`no log line ${message} within ${ms} ms:\n${this.stderr.join("\n")}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  /** Waits for the exit and for all output. */
  async finished(ms = 60_000): Promise<Deno.CommandStatus> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const status = await Promise.race([
        this.child.status,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`process still running after ${ms} ms`)), ms);
        }),
      ]);
      await Promise.all(this.#reading);
      return status;
    } finally {
      clearTimeout(timer);
    }
  }

  kill(signal: Deno.Signal): void {
    try {
      this.child.kill(signal);
    } catch {
      // Already gone.
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#status) this.kill("SIGKILL");
    await this.child.status;
    await Promise.all(this.#reading);
  }
}

async function collect(stream: ReadableStream<Uint8Array>, lines: string[]): Promise<void> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    const parts = rest.split("\n");
    rest = parts.pop()!;
    lines.push(...parts);
  }
  if (rest) lines.push(rest);
}

/** Runs the CLI to completion. */
export async function runCli(
  args: string[],
  options: { flags?: string[]; cwd: string },
): Promise<{ code: number; stdout: string; stderr: string }> {
  await using cli = new CliProcess(args, options);
  const status = await cli.finished();
  return { code: status.code, stdout: cli.stdout.join("\n"), stderr: cli.stderr.join("\n") };
}
