/**
 * Running the agent as a daemon: the pid file (refusing a second live agent, removed on exit),
 * re-spawning the program detached with the permissions it was granted, and stopping a daemon
 * by its pid file.
 *
 * @module
 */
import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import { abortableSleep } from "../clock.ts";
import { removeFileDurableSync } from "../agent/fs.ts";
import { isGranted } from "../permissions.ts";
import { writeAllSync } from "../write_all.ts";
import { readTextFileBounded } from "../read_bounded.ts";
import { ConfigError } from "../errors.ts";
import { logger } from "../log/mod.ts";
import { permissionFlags, type PermissionNeeds } from "./permission_flags.ts";

/** The hidden flag that tells a re-spawned process it is the daemon. */
export const DAEMON_CHILD_FLAG = "--daemon-child";

/**
 * The largest process id: Linux's `PID_MAX_LIMIT` (2^22; other systems' are lower). A larger
 * number names no process, and `Deno.kill` would wrap it: 4294967295 is -1, every process this
 * user may signal; 4294967296 is 0, this process's own group.
 */
const MAX_PID = 4_194_304;

/** Refuses what is not a process id another process may have (nor 1, init). */
function checkPid(pid: number): void {
  if (!Number.isInteger(pid) || pid <= 1 || pid > MAX_PID) {
    throw new DaemonError(`${pid} is not a process id of another process`);
  }
}

/** A daemon that is running already, or a pid file problem the user must resolve. */
export class DaemonError extends Error {
  /** Exit code the CLI uses for this error. */
  readonly exitCode = 1;
  /**
   * Creates the error.
   *
   * @param message What went wrong.
   * @param options The cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DaemonError";
  }
}

/**
 * Reads a pid file.
 *
 * @param path The pid file.
 * @returns The pid, or `undefined` when the file does not exist.
 * @throws {DaemonError} When the file holds something other than a pid, or cannot be read.
 * @throws {ConfigError} When Deno may not read it (no `--allow-read`), or it is a directory, a
 *   device or a socket.
 */
export function readPidFile(path: string): number | undefined {
  let text: string;
  try {
    // A symlink is refused: where others may write (/tmp), one could point the pid file at
    // another file, for the daemon to write its pid through and for status stop to read.
    const info = Deno.lstatSync(path);
    if (info.isSymlink) {
      throw new DaemonError(
        `the pid file ${path} is a symlink; refusing (remove it, and give the pid file a ` +
          "path in a directory only this user may write)",
      );
    }
    if (info.isDirectory) {
      throw new ConfigError(
        `the pid file ${path} is a directory, not a file (give the pid file's own path with ` +
          "--pid-file or PID_FILE)",
      );
    }
    // Opening a named pipe waits until something writes to it: the daemon and status stop
    // would hang without a word.
    if (info.isFifo) {
      throw new DaemonError(
        `the pid file ${path} is a named pipe, not a file; refusing (remove it, or give ` +
          "another --pid-file)",
      );
    }
    // A device or a socket (--pid-file /dev/null) is no one's pid file: not to be removed.
    if (!info.isFile) {
      throw new ConfigError(
        `the pid file ${path} is a device or a socket, not a file (give the pid file's own ` +
          "path with --pid-file or PID_FILE)",
      );
    }
    // A pid is at most 10 digits: a larger file (`/dev/zero`) is not read to its end.
    const read = readTextFileBounded(path, 64);
    if (read === undefined) {
      throw new DaemonError(
        `the pid file ${path} does not hold a process id (it holds more than 64 bytes)`,
      );
    }
    text = read;
  } catch (error) {
    if (error instanceof DaemonError || error instanceof ConfigError) throw error;
    if (error instanceof Deno.errors.NotFound) return undefined;
    if (error instanceof Deno.errors.NotCapable) {
      throw new ConfigError(
        `cannot read the pid file ${path} without --allow-read (the daemon and status stop ` +
          `read and write it: --allow-read=${path} --allow-write=${path})`,
        { cause: error },
      );
    }
    throw new DaemonError(`cannot read the pid file ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const trimmed = text.trim();
  // Neither status stop nor --daemon gets past such a file: say what to do with it.
  if (trimmed === "") {
    throw new DaemonError(
      `the pid file ${path} is empty (an agent stopped while writing it?): no agent can be ` +
        "found or stopped through it; remove it",
    );
  }
  if (!/^\d{1,10}$/.test(trimmed) || Number(trimmed) <= 1 || Number(trimmed) > MAX_PID) {
    // Not "remove it": --pid-file may name another file by mistake (config.json, the log).
    throw new DaemonError(
      `the pid file ${path} does not hold a process id (${
        JSON.stringify(trimmed.slice(0, 20))
      }); is it the daemon's pid file? (remove it if it is)`,
    );
  }
  return Number(trimmed);
}

/** Runs `ps -o <field>= -p <pid>`; `undefined` when no such process (or `ps` failed). */
function ps(field: "stat" | "args" | "uid", pid: number): string | undefined {
  try {
    const output = new Deno.Command("ps", {
      args: [
        // The whole command line, never cut at COLUMNS (the daemon flag comes last).
        ...(field === "args" ? ["-ww"] : []),
        "-o",
        `${field}=`,
        "-p",
        String(pid),
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    const text = new TextDecoder().decode(output.stdout).trim();
    return output.success && text !== "" ? text : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Reads a file of `/proc/<pid>/` (Linux; no `ps` needed): Deno reads them under `--allow-all`
 * only.
 *
 * @returns Its text, or `undefined` when there is no such process or it cannot be read.
 */
function procFile(pid: number, name: "cmdline" | "stat"): string | undefined {
  const path = `/proc/${pid}/${name}`;
  if (!isGranted({ name: "read", path })) return undefined;
  try {
    return readTextFileBounded(path, 1024 * 1024);
  } catch {
    return undefined;
  }
}

/** The state of a process from `/proc/<pid>/stat` (`Z` for a zombie), or `undefined`. */
function procState(pid: number): string | undefined {
  const stat = procFile(pid, "stat");
  // "<pid> (<name, which may hold spaces and parentheses>) <state> ...".
  const state = stat?.slice(stat.lastIndexOf(")") + 1).trim()[0];
  return state === "" ? undefined : state;
}

/**
 * A process's arguments: from `ps` when it may run, else from `/proc/<pid>/cmdline`.
 *
 * @returns The arguments, or `undefined` when neither can tell.
 */
function commandLine(pid: number): string[] | undefined {
  if (isGranted({ name: "run", command: "ps" })) {
    const args = ps("args", pid);
    if (args !== undefined) return args.split(/\s+/);
  }
  const cmdline = procFile(pid, "cmdline");
  return cmdline === undefined || cmdline === "" ? undefined : cmdline.split("\0");
}

/**
 * Whether a process exists and has not exited: signal 0 with `--allow-run`, then `ps` (or
 * `/proc/<pid>/stat`) to tell a zombie (exited, not yet reaped: common in containers whose init
 * does not reap) from a live process. With only `--allow-run=ps`, `ps` alone decides.
 *
 * @param pid The process id.
 * @returns `true` when it exists and is not a zombie (even if owned by another user).
 * @throws {DaemonError} When neither check is permitted, or `pid` is no process id (1 and
 *   below, or above the largest).
 */
export function isProcessAlive(pid: number): boolean {
  checkPid(pid);
  const canPs = isGranted({ name: "run", command: "ps" });
  if (isGranted({ name: "run" })) {
    const exists = () => {
      try {
        Deno.kill(pid, 0);
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) return false;
        if (!(error instanceof Deno.errors.PermissionDenied)) throw error;
      }
      return true;
    };
    if (!exists()) return false;
    const stat = ps("stat", pid) ?? procState(pid);
    if (stat !== undefined) return !stat.startsWith("Z");
    // No answer from ps: the process may have been reaped since (a zombie a moment ago), or ps
    // may be missing; the signal says which.
    return exists();
  }
  if (canPs) {
    const stat = ps("stat", pid) ?? procState(pid);
    return stat !== undefined && !stat.startsWith("Z");
  }
  throw new DaemonError("cannot tell whether a process is running without --allow-run");
}

/**
 * What a pid names: `gone` (no live process), `agent` (started with {@link DAEMON_CHILD_FLAG}),
 * `other` (a live process that was not: the agent's pid used again), or `unknown` when its command
 * line can be read neither with `ps` nor from `/proc/<pid>/cmdline`.
 */
function whoIs(pid: number): "gone" | "agent" | "other" | "unknown" {
  if (!isProcessAlive(pid)) return "gone";
  const args = commandLine(pid);
  if (args === undefined) return isProcessAlive(pid) ? "unknown" : "gone";
  return args.includes(DAEMON_CHILD_FLAG) ? "agent" : "other";
}

/**
 * Whether a pid may name a running agent: alive and started with {@link DAEMON_CHILD_FLAG} (so a
 * recycled pid is not mistaken for the agent), or alive when its command line cannot be read.
 *
 * @param pid The process id.
 * @returns `true` for a live agent daemon, or a live process that cannot be told from one.
 */
export function isLiveAgent(pid: number): boolean {
  const who = whoIs(pid);
  return who === "agent" || who === "unknown";
}

/**
 * Writes this process's pid file and holds a lock on it while the daemon runs, refusing when a
 * daemon holds it or it names a live agent. A stale pid file (no daemon holds it, its process is
 * dead or another program) is replaced.
 *
 * Two daemons started at once with one pid file (and different state directories) both found no
 * live agent in it, and each replaced it: one ran with no pid file naming it. The lock makes the
 * replacement one daemon's: a file is replaced only by the daemon holding its lock, and the new
 * file is locked before its pid is written.
 *
 * @param path The pid file.
 * @param pid The pid to write.
 * @returns The open, locked pid file: close it after {@link releasePidFile} (the lock also ends
 *   with the process).
 * @throws {DaemonError} When a daemon holds the pid file or a live agent is named in it, or the
 *   file cannot be written.
 * @throws {ConfigError} When the pid file cannot be where it is (a read-only file system, a
 *   missing or forbidden directory).
 */
export function acquirePidFile(path: string, pid: number = Deno.pid): Deno.FsFile {
  const running = (holder: number | undefined) =>
    new DaemonError(
      `an agent is running already${holder === undefined ? "" : ` with pid ${holder}`} (pid ` +
        `file ${path}); stop it with: status stop --pid-file ${path}`,
    );
  try {
    // A few turns: each ends only when another daemon changed the file meanwhile.
    for (let turn = 0; turn < 5; turn++) {
      // A file being written (empty for a moment) is told by its lock, below.
      const existing = isEmptyFile(path) ? undefined : readPidFile(path);
      // A daemon of an earlier version holds no lock: a live agent named in the file is one.
      if (existing !== undefined && existing !== pid && isLiveAgent(existing)) {
        throw running(existing);
      }
      // Replaced, never written into: another user may have left it where others may write
      // (/tmp); it would stay theirs, and so would the pid it names. Only under its lock, which
      // a running daemon holds.
      const old = lockExisting(path);
      if (old === "held") throw running(existing);
      if (old === "changed") continue;
      try {
        if (old !== undefined) removeUnlessGone(path);
        let file: Deno.FsFile;
        try {
          file = Deno.openSync(path, { write: true, createNew: true, mode: 0o644 });
        } catch (error) {
          // Another daemon made it first: look at it again.
          if (error instanceof Deno.errors.AlreadyExists) continue;
          throw error;
        }
        // Written in place (not through a temporary file) so that permission for the pid file
        // alone is enough; readers retry a file that is still empty.
        // Locked by another daemon first, or replaced by it before this lock: look again.
        if (!file.tryLockSync(true) || !isAt(file, path)) {
          file.close();
          continue;
        }
        try {
          writeAllSync(file, new TextEncoder().encode(`${pid}\n`));
          file.syncSync();
        } catch (error) {
          file.close();
          throw error;
        }
        return file;
      } finally {
        if (old !== "unopened") old?.close();
      }
    }
    throw new DaemonError(
      `the pid file ${path} kept changing while this daemon took it (another daemon starting ` +
        "with it?); start this one again, or give each daemon its own --pid-file",
    );
  } catch (error) {
    if (error instanceof DaemonError || error instanceof ConfigError) throw error;
    const message = `cannot write the pid file ${path}: ${(error as Error).message}`;
    // Where the pid file cannot be (a read-only file system, a missing or forbidden directory)
    // is a matter of configuration, exit 2, as the same problems of the log file are.
    if (isWrongPlace(error)) throw new ConfigError(message, { cause: error });
    throw new DaemonError(message, { cause: error });
  }
}

/** Whether a regular file (not a symlink) is at `path` and empty. */
function isEmptyFile(path: string): boolean {
  try {
    const info = Deno.lstatSync(path);
    return info.isFile && info.size === 0;
  } catch {
    return false;
  }
}

/** Whether a daemon holds the lock of the pid file at `path` (`false` when that cannot be told). */
function isHeld(path: string): boolean {
  try {
    using file = Deno.openSync(path, { read: true });
    return !file.tryLockSync(true);
  } catch {
    return false;
  }
}

/** Removes a file; one that is gone already is not an error. */
function removeUnlessGone(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/** Whether `path` names the open file still (not removed nor replaced). */
function isAt(file: Deno.FsFile, path: string): boolean {
  try {
    const opened = file.statSync();
    const now = Deno.lstatSync(path);
    return now.ino === opened.ino && now.dev === opened.dev;
  } catch {
    return false;
  }
}

/**
 * Opens the pid file at `path` and takes its lock: `undefined` when there is none, `"held"` when
 * a running daemon holds it, `"changed"` when another file took its place meanwhile, and
 * `"unopened"` when it cannot be opened (another user's, replaced as it is, without the lock).
 */
function lockExisting(path: string): Deno.FsFile | "held" | "changed" | "unopened" | undefined {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    if (error instanceof Deno.errors.PermissionDenied) return "unopened";
    throw error;
  }
  if (!file.tryLockSync(true)) {
    file.close();
    return "held";
  }
  if (!isAt(file, path)) {
    file.close();
    return "changed";
  }
  return file;
}

function isWrongPlace(error: unknown): boolean {
  return error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotFound ||
    error instanceof Deno.errors.NotADirectory || error instanceof Deno.errors.IsADirectory ||
    error instanceof Deno.errors.NotCapable || (error as { code?: unknown }).code === "EROFS";
}

/**
 * Removes the pid file when it still names `pid`.
 *
 * @param path The pid file.
 * @param pid The pid it should name.
 * @returns Whether it was removed.
 */
export function releasePidFile(path: string, pid: number = Deno.pid): boolean {
  try {
    if (readPidFile(path) !== pid) return false;
    return removeFileDurableSync(path);
  } catch {
    return false;
  }
}

/**
 * Until disposed, an error that nothing caught (an exception thrown from a timer or callback, a
 * rejection nothing handled: a bug) is written to the log before it ends the process, and the pid
 * file is released. A daemon's standard error reaches no one once it runs: without this it would
 * end with no word in its log file, and its pid file left behind. The error still ends the
 * process.
 *
 * @example In the daemon, once its log file is set up
 * ```ts ignore
 * using _crash = logDaemonCrash("status.pid");
 * ```
 *
 * @param pidFile The daemon's pid file.
 * @param pid The pid it names.
 * @returns Dispose it to stop listening.
 */
export function logDaemonCrash(pidFile: string, pid: number = Deno.pid): Disposable {
  const log = logger("agent", "cli");
  const onError = (error: unknown) => {
    log.fatal("the agent ended on an error nothing handled: {reason}", {
      reason: error instanceof Error ? error.message : String(error),
      error,
    });
    releasePidFile(pidFile, pid);
  };
  const onUncaught = (event: ErrorEvent) => onError(event.error);
  const onRejection = (event: PromiseRejectionEvent) => onError(event.reason);
  globalThis.addEventListener("error", onUncaught);
  globalThis.addEventListener("unhandledrejection", onRejection);
  return {
    [Symbol.dispose]() {
      globalThis.removeEventListener("error", onUncaught);
      globalThis.removeEventListener("unhandledrejection", onRejection);
    },
  };
}

/** How to start this same program again. */
export interface ProgramCommand {
  /** The executable. */
  command: string;
  /** Arguments before the program's own arguments. */
  prefix: string[];
  /** Whether it is a `deno compile` binary (which carries its permissions itself). */
  compiled: boolean;
}

/**
 * Finds how to start this program again: `deno run <permission flags> <main module>` under the
 * Deno CLI, or the binary itself when compiled with `deno compile`.
 *
 * @param needs Items for narrowing the permission flags (see {@link permissionFlags}).
 * @returns The command and the arguments that precede the program's own.
 */
export function currentProgram(needs: PermissionNeeds = {}): ProgramCommand {
  const exec = Deno.execPath();
  const name = basename(exec).toLowerCase();
  if (name === "deno" || name === "deno.exe") {
    const main = Deno.mainModule;
    const script = main.startsWith("file:") ? fileURLToPath(main) : main;
    return {
      command: exec,
      prefix: ["run", "--no-prompt", ...permissionFlags(needs), script],
      compiled: false,
    };
  }
  return { command: exec, prefix: [], compiled: true };
}

/** Options of {@link spawnDaemon}. */
export interface SpawnDaemonOptions {
  /** The program's own arguments for the daemon (without `--daemon`; the child flag is added). */
  args: string[];
  /** The pid file the daemon writes once it runs. */
  pidFile: string;
  /** How to start the program; defaults to {@link currentProgram}. */
  program?: ProgramCommand;
  /**
   * How long to wait for the pid file, in milliseconds.
   * @default {30000}
   */
  timeoutMs?: number;
}

/**
 * Starts the daemon: re-spawns this program detached (own session, no stdio) with the daemon
 * child flag, then waits until it wrote its pid file, or failed.
 *
 * @param options Arguments, pid file and timeout.
 * @returns The daemon's pid.
 * @throws {DaemonError} When the daemon exits early or does not write its pid file in time.
 */
export async function spawnDaemon(options: SpawnDaemonOptions): Promise<number> {
  const program = options.program ?? currentProgram();
  if (!isGranted({ name: "run", command: program.command })) {
    throw new DaemonError(
      `--daemon starts ${program.command} again and needs --allow-run ` +
        `(or ${program.command} in the --allow-run list)`,
    );
  }
  const child = new Deno.Command(program.command, {
    args: [...program.prefix, ...options.args, DAEMON_CHILD_FLAG],
    stdin: "null",
    stdout: "null",
    // Read until the daemon runs: why it failed at start (a setting, the pid file) is said
    // there, before its log file may exist. Once it runs it logs to its file; a line it still
    // writes to standard error then meets a closed pipe and is dropped.
    stderr: "piped",
    detached: true,
  }).spawn();
  const early = readEarly(child.stderr);
  const timeoutMs = options.timeoutMs ?? 30_000;
  const stop = new AbortController();
  let exited: Deno.CommandStatus | undefined;
  child.status.then((status) => {
    exited = status;
    stop.abort();
  });
  const deadline = Date.now() + timeoutMs;
  try {
    while (Date.now() < deadline) {
      let pid: number | undefined;
      try {
        pid = readPidFile(options.pidFile);
      } catch {
        pid = undefined;
      }
      if (pid === child.pid) {
        await early.stop();
        child.unref();
        return pid;
      }
      if (exited) {
        const said = await early.text();
        const why = said === ""
          ? "; see its log file for why"
          : `: ${said.replace(/^status: /, "").replaceAll("\nstatus: ", "\n")}`;
        const message = `the daemon exited at start with code ${exited.code}${why}`;
        // A daemon that found its settings bad exits 2, and so does the command that started it.
        throw exited.code === 2 ? new ConfigError(message) : new DaemonError(message);
      }
      await abortableSleep(100, stop.signal);
    }
    try {
      child.kill("SIGKILL");
    } catch {
      // Gone.
    }
    await child.status;
    await early.stop();
    throw new DaemonError(
      `the daemon did not write its pid file ${options.pidFile} within ${timeoutMs / 1000} s`,
    );
  } finally {
    stop.abort();
  }
}

/** At most this much of what a daemon says at start is kept. */
const EARLY_STDERR_LIMIT = 8192;

/**
 * Collects the first bytes of a child's standard error.
 *
 * @param stream The child's standard error.
 * @returns `text()`: what it said, trimmed, once the stream ended (or after a second);
 *   `stop()`: stops reading and closes the stream.
 */
function readEarly(stream: ReadableStream<Uint8Array>): {
  text(): Promise<string>;
  stop(): Promise<void>;
} {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const done = (async () => {
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) return;
        if (size < EARLY_STDERR_LIMIT) chunks.push(value.subarray(0, EARLY_STDERR_LIMIT - size));
        size += value.length;
      }
    } catch {
      // Cancelled.
    }
  })();
  const decode = () => {
    const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const chunk of chunks) {
      bytes.set(chunk, at);
      at += chunk.length;
    }
    return new TextDecoder().decode(bytes).trim();
  };
  return {
    async text() {
      // A process the daemon started could hold the pipe open: wait a second at most.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([done, new Promise((resolve) => timer = setTimeout(resolve, 1000))]);
      clearTimeout(timer);
      await reader.cancel().catch(() => {});
      await done;
      return decode();
    },
    async stop() {
      await reader.cancel().catch(() => {});
      await done;
    },
  };
}

/**
 * Signals a process: `Deno.kill` with `--allow-run`, else the `kill` program when
 * `--allow-run=kill` allows it.
 */
function sendSignal(pid: number, signal: Deno.Signal): void {
  checkPid(pid);
  try {
    if (isGranted({ name: "run" })) {
      Deno.kill(pid, signal);
      return;
    }
    if (isGranted({ name: "run", command: "kill" })) {
      const output = new Deno.Command("kill", {
        args: ["-s", signal.replace(/^SIG/, ""), String(pid)],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).outputSync();
      if (!output.success && isProcessAlive(pid)) {
        throw new Error(new TextDecoder().decode(output.stderr).trim());
      }
      return;
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw new DaemonError(`cannot signal pid ${pid}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  throw new DaemonError(
    `cannot signal pid ${pid} without --allow-run (or --allow-run=kill,ps)`,
  );
}

/**
 * Why a pid file cannot be trusted to name its process: a daemon writes its own pid file, so
 * the file belongs to the user the process runs as (or to root). `undefined` when it does, or
 * when either owner cannot be told.
 */
function foreignWriter(path: string, pid: number): string | undefined {
  let fileUid: number | null;
  try {
    fileUid = Deno.lstatSync(path).uid;
  } catch {
    return undefined;
  }
  if (fileUid === null || fileUid === 0) return undefined;
  const processUid = Number(ps("uid", pid));
  if (!Number.isInteger(processUid) || processUid === fileUid) return undefined;
  return `the pid file ${path} belongs to uid ${fileUid} but pid ${pid} runs as uid ${processUid}`;
}

/** Seconds {@link stopDaemon} waits by default: above the default shutdown grace of 30 s. */
export const DEFAULT_STOP_TIMEOUT_SECS = 60;

/** Options of {@link stopDaemon}. */
export interface StopDaemonOptions {
  /** The daemon's pid file. */
  pidFile: string;
  /**
   * How long to wait for it to exit, in milliseconds.
   * @default {60000}
   */
  timeoutMs?: number;
  /**
   * Signal to send.
   * @default {"SIGTERM"}
   */
  signal?: Deno.Signal;
}

/** Whether a file is still there (`true` when that cannot be told). */
function stillThere(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch (error) {
    return !(error instanceof Deno.errors.NotFound);
  }
}

/**
 * Stops a daemon: sends SIGTERM to the pid in its pid file and waits until the process is gone.
 *
 * @param options Pid file, timeout and signal.
 * @returns The pid that was stopped.
 * @throws {DaemonError} When there is no pid file, it names no running agent (no process, or
 *   another program that holds the pid now: nothing is signalled; a file naming no process is
 *   removed, one naming another program left as it is),
 *   or the process is still running at the timeout.
 */
export async function stopDaemon(options: StopDaemonOptions): Promise<number> {
  const pid = readPidFile(options.pidFile);
  if (pid === undefined) {
    throw new DaemonError(
      `no pid file ${options.pidFile}: no agent daemon is running from it ` +
        "(give the daemon's --pid-file)",
    );
  }
  // Written by another user (where others may write): it may name any agent, root's included.
  const foreign = foreignWriter(options.pidFile, pid);
  if (foreign !== undefined) {
    throw new DaemonError(
      `${foreign}: refusing to signal it (another user may have written the pid file; give ` +
        "the daemon a pid file in a directory only its user may write)",
    );
  }
  // A daemon that ended without removing its pid file (SIGKILL, a reboot) leaves a pid that
  // another program may hold by now: only a process known to be the agent is signalled.
  let who = whoIs(pid);
  // A daemon holds a lock on its pid file while it runs, and wrote its own pid in it: a held file
  // names the agent even where its command line cannot be read.
  if (who === "unknown" && isHeld(options.pidFile)) who = "agent";
  if (who === "unknown") {
    throw new DaemonError(
      `cannot tell whether pid ${pid} of the pid file ${options.pidFile} is the agent or another ` +
        `program that got its pid since: its command line can be read neither with ps nor from ` +
        `/proc/${pid}/cmdline; nothing was signalled (install ps, or run status stop under ` +
        "--allow-all, with which Deno reads /proc)",
    );
  }
  if (who !== "agent") {
    if (who === "other") {
      // Left as it is: the file may be that program's own, named by mistake (`--pid-file
      // /run/nginx.pid`). A daemon started later replaces a pid file that names no agent.
      throw new DaemonError(
        `pid ${pid} of the pid file ${options.pidFile} is another program, not the agent (the ` +
          "agent ended without removing the file and its pid was used again, or the file is " +
          "that program's own); nothing was signalled, and the file is left as it is",
      );
    }
    let removed = "removed the stale pid file";
    try {
      removeFileDurableSync(options.pidFile);
    } catch (error) {
      // Gone when only the directory's sync failed; else said as it is: the next daemon start
      // would stop on the file left behind.
      if (stillThere(options.pidFile)) {
        removed = `could not remove the stale pid file (${
          error instanceof Deno.errors.NotCapable
            ? `not permitted without --allow-write=${options.pidFile}`
            : (error as Error).message
        }); remove it`;
      }
    }
    throw new DaemonError(
      `the agent with pid ${pid} (pid file ${options.pidFile}) is not running; ${removed}`,
    );
  }
  sendSignal(pid, options.signal ?? "SIGTERM");
  const timeoutMs = options.timeoutMs ?? DEFAULT_STOP_TIMEOUT_SECS * 1000;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isProcessAlive(pid)) return pid;
    await abortableSleep(100);
  }
  // The agent takes a second SIGTERM for "stop at once"; a process that ignores both needs SIGKILL.
  throw new DaemonError(
    `the agent with pid ${pid} is still running after ${timeoutMs / 1000} s (a command it ` +
      "runs may have up to SHUTDOWN_GRACE_SECS to finish); stop it at once with: status stop " +
      `--pid-file ${options.pidFile} (a second SIGTERM), or end it with: kill -KILL ${pid}`,
  );
}
