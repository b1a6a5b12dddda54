/**
 * Shared helpers of the executor tests: scripts in a temporary directory under `/tmp`, and
 * process liveness by pid.
 *
 * @module
 */
import {
  createPolicy,
  type ExecPolicy,
  type ExecResult,
  runCommand,
  type RunOptions,
  Sandbox,
} from "../../src/exec/mod.ts";
import { FakeClock } from "../../src/clock.ts";
import { until } from "../_until.ts";

/** A temporary directory of executable scripts, removed on dispose. */
export interface Scripts extends AsyncDisposable {
  /** The directory. */
  dir: string;
  /** Writes an executable `/bin/sh` script and returns its absolute path. */
  script(name: string, body: string): Promise<string>;
  /** A policy allowing the defaults plus the given programs (script paths, names). */
  policy(...programs: string[]): ExecPolicy;
}

/**
 * Creates a directory under `/tmp` for test scripts.
 *
 * @returns The directory, to be used with `await using`.
 */
export async function scripts(): Promise<Scripts> {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "status-exec-test-" });
  return {
    dir,
    async script(name, body) {
      const path = `${dir}/${name}`;
      await Deno.writeTextFile(path, `#!/bin/sh\n${body}\n`);
      await Deno.chmod(path, 0o755);
      return path;
    },
    policy(...programs) {
      return createPolicy({ extraPrograms: programs });
    },
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/**
 * The processes among `pids` that are alive: they exist and are not zombies. Asks `ps`, because
 * Deno reads `/proc` only under `--allow-all`.
 *
 * @param pids The process ids.
 * @returns The live ones.
 */
export async function alive(pids: number[]): Promise<number[]> {
  if (pids.length === 0) return [];
  const output = await new Deno.Command("ps", {
    args: ["-o", "pid=,stat=", "-p", pids.join(",")],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(output.stdout).split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter(([pid, stat]) => pid && stat && !stat.startsWith("Z") && !stat.startsWith("X"))
    .map(([pid]) => Number(pid));
}

/**
 * The state letter `ps` shows for a process (`S` sleeping, `T` stopped, `Z` zombie, ...), or
 * `undefined` when there is no such process.
 *
 * @param pid The process id.
 * @returns The state.
 */
export async function processState(pid: number): Promise<string | undefined> {
  const output = await new Deno.Command("ps", {
    args: ["-o", "stat=", "-p", String(pid)],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(output.stdout).trim()[0];
}

/**
 * Waits until none of the processes is alive, up to a limit.
 *
 * @param pids The process ids.
 * @param limitMs How long to wait.
 * @returns The pids still alive after the limit.
 */
export async function survivors(pids: number[], limitMs = 1000): Promise<number[]> {
  const end = Date.now() + limitMs;
  for (;;) {
    const living = await alive(pids);
    if (living.length === 0 || Date.now() > end) return living;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Every whole number on its own line of a text (pids printed by a script). */
export function pidsIn(text: string): number[] {
  return text.split("\n").filter((line) => /^\d+$/.test(line.trim())).map(Number);
}

/**
 * Whether this process may read `/proc` (Deno allows it only under `--allow-all`), which the
 * cgroup and `/proc` tests need. When it may not, registers one test that runs `file` again in a
 * child `deno test --allow-all` and fails with its output; the caller then ignores its own tests.
 *
 * @param file The test file (`import.meta.filename`).
 * @returns Whether the file's tests run in this process.
 */
export function runsHereOrUnderAllowAll(file: string): boolean {
  try {
    Deno.readTextFileSync("/proc/self/cgroup");
    return true;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotCapable)) return true;
  }
  const name = file.slice(file.lastIndexOf("/") + 1);
  Deno.test(`${name}, again under --allow-all (cgroups and /proc need it)`, async () => {
    const root = new URL("../../", import.meta.url).pathname;
    const child = await new Deno.Command(Deno.execPath(), {
      args: ["test", "--allow-all", "--config", `${root}deno.json`, file],
      cwd: root,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const said = [child.stdout, child.stderr].map((b) => new TextDecoder().decode(b)).join("");
    if (!child.success) throw new Error(`${name} failed under --allow-all:\n${said}`);
    if (!/\| [1-9]\d* passed/.test(said)) throw new Error(`no test of ${name} ran:\n${said}`);
  });
  return false;
}

/** A run whose deadline phases, cancel grace and times are on a fake clock the test advances. */
export interface FakeClockRun {
  /** The clock; it starts at 0, the moment of the spawn as far as the run is concerned. */
  clock: FakeClock;
  /** The result. */
  result: Promise<ExecResult>;
  /**
   * Waits (in real time, polling) until the command runs under its deadline timers and has
   * printed `text` on stdout (a script prints a marker once its traps are set).
   */
  ready(text?: string): Promise<void>;
}

/**
 * Starts {@link runCommand} on a {@link FakeClock}: the command runs in real time, its phases
 * happen when the test advances the clock.
 *
 * @param name The command line.
 * @param options The run's options (its `clock` is replaced).
 * @param clock The fake clock (one whose wall time the test can step).
 * @returns The clock, the result and a way to wait until the command runs.
 */
export function runOnFakeClock(
  name: string,
  options: RunOptions,
  clock: FakeClock = new FakeClock(0),
): FakeClockRun {
  const decoder = new TextDecoder();
  let stdout = "";
  let settled = false;
  const result = runCommand(name, {
    ...options,
    clock,
    onOutput: (stream, chunk) => {
      if (stream === "stdout") stdout += decoder.decode(chunk, { stream: true });
    },
  }).finally(() => settled = true);
  return {
    clock,
    result,
    async ready(text = "") {
      // The warning, SIGTERM and SIGKILL timers are set once the command runs.
      await until(() => settled || (clock.pending >= 3 && stdout.includes(text)), "the run starts");
      if (settled) throw new Error(`the run ended early: ${JSON.stringify(await result)}`);
    },
  };
}

/** A sandbox whose commands do not obey signals, and what it saw. */
export interface DeafSandbox {
  /** The sandbox: unconfined, but no signal sent through a cell reaches the process. */
  sandbox: Sandbox;
  /** The children it spawned, for the test to stop itself. */
  children: Deno.ChildProcess[];
  /** The signals the runner sent, in order. */
  signals: string[];
}

/**
 * A sandbox whose cells drop every signal, as a process in uninterruptible sleep (state D: a
 * hung NFS mount, a dying disk) holds them pending: neither SIGTERM nor SIGKILL ends it. The test
 * must kill the children itself and await their status.
 *
 * @returns The sandbox, its children and the signals it dropped.
 */
export function deafSandbox(): DeafSandbox {
  const sandbox = Sandbox.unconfined();
  const children: Deno.ChildProcess[] = [];
  const signals: string[] = [];
  const open = sandbox.open.bind(sandbox);
  sandbox.open = async () => {
    const cell = await open();
    const spawn = cell.spawn.bind(cell);
    cell.spawn = (program, options) => {
      const child = spawn(program, options);
      children.push(child);
      return child;
    };
    cell.signal = (signal) => {
      signals.push(signal);
    };
    return cell;
  };
  return { sandbox, children, signals };
}
