/**
 * The agent's view of the command executor: one method that runs a delivered command and returns
 * the fields of its report. {@link createExecutor} binds it to `src/exec`; tests inject fakes.
 *
 * @module
 */
import { resolve } from "node:path";
import type { ExecResultBody, ReportStatus } from "../protocol/mod.ts";
import type { Clock } from "../clock.ts";
import {
  CommandRunner,
  createPolicy,
  effectiveTimeoutSecs,
  envFromAssignments,
  type ExecPolicy,
  type ExitRecord,
  type LeftoverOutcome,
  type OnOutput,
  type ProcessRecord,
  type RunnerOptions,
  Sandbox,
  type SandboxOptions,
  toReportFields,
} from "../exec/mod.ts";
import { unresolvablePrefixes } from "../exec/policy.ts";
import { readableBy } from "../exec/sandbox.ts";
import { limitNotes } from "../exec/runner.ts";
import { everyoneMayReplace, userMayChange } from "../exec/env.ts";

/** What the agent asks the executor to run. */
export interface ExecRequest {
  /** The command line (the delivered command's `name`). */
  name: string;
  /** The deadline the command asks for (`params.timeout_secs`). */
  timeoutSecs?: number;
  /** Aborting it cancels the run: the command's processes are terminated, then killed. */
  signal: AbortSignal;
  /** Called once the command is spawned with what identifies its processes, before `onExit`. */
  onSpawn?: (record: ProcessRecord) => void;
  /** Called the moment the command exited, before its output is collected. */
  onExit?: (exit: ExitRecord) => void;
  /** Receives the command's output as it is printed (live output). */
  onOutput?: OnOutput;
}

/** The fields of a report that a run determines. */
export interface ExecOutcome {
  /** How the run ended. */
  status: ReportStatus;
  /** The wire body of the result, or `null` when no program ran. */
  result: ExecResultBody | null;
  /** Why it did not succeed, or `null`. */
  error: string | null;
  /** When the run started, ISO 8601. */
  started_at: string;
  /** When the run ended, ISO 8601. */
  completed_at: string;
}

/** Runs commands for the agent. */
export interface Executor {
  /**
   * Runs one command. Should not throw for anything the command does; a throw is reported as
   * `failed` with the error's message.
   *
   * @param request The command line, its deadline and the cancel signal.
   * @returns The report fields.
   */
  run(request: ExecRequest): Promise<ExecOutcome>;
  /**
   * The deadline, in seconds, a command that asks for `timeoutSecs` (none: the default) runs
   * under; `undefined` when the executor cannot say (a refused value, say).
   */
  deadlineSecs?(timeoutSecs: number | undefined): number | undefined;
  /** One sentence for the start-up log: who commands run as, where, how they are stopped. */
  describe?(): string;
  /** What the start-up log warns of (commands that run as root), one sentence each. */
  warnings?(): string[];
  /**
   * Stops what a command of a previous run left running.
   *
   * @param record What identified its processes.
   * @returns What was found.
   */
  stopLeftover?(record: ProcessRecord): Promise<LeftoverOutcome>;
  /**
   * What the limits of a command of a previous run did (its forks refused at
   * `COMMAND_MAX_PROCESSES`, its processes the OOM killer ended), as its report says them; asked
   * before {@link Executor.stopLeftover}, which removes what counted them.
   *
   * @param record What identified its processes.
   * @returns The notes, none when nothing was refused or killed.
   */
  leftoverNotes?(record: ProcessRecord): string[];
  /**
   * Stops whatever a previous run left in this executor's cgroups.
   *
   * @returns How many cgroups still had processes.
   */
  sweep?(): Promise<number>;
  /** Releases what the executor holds (its watchdog and cgroup directory). */
  close?(): void | Promise<void>;
}

/**
 * The `exec` settings: how the agent (`AgentOptions.exec`) runs commands.
 */
export interface ExecutorOptions {
  /**
   * Programs commands may run (`ALLOWED_PROGRAMS`).
   * @default {the executor's default allowlist}
   */
  allowedPrograms?: readonly string[];
  /**
   * Directories absolute-path arguments must lie under (`ALLOWED_PATH_PREFIXES`).
   * @default {["/tmp", "/var/tmp"]}
   */
  allowedPathPrefixes?: readonly string[];
  /**
   * Deadline of a command that sets none (`COMMAND_TIMEOUT_SECS`).
   * @default {300}
   */
  defaultTimeoutSecs?: number;
  /**
   * Largest deadline a command may ask for (`COMMAND_TIMEOUT_MAX_SECS`).
   * @default {3600}
   */
  maxTimeoutSecs?: number;
  /** Extra `NAME=value` pairs for the commands' environment (`COMMAND_ENV`). */
  commandEnv?: readonly string[];
  /**
   * Working directory of commands (`COMMAND_CWD`); it may not be or hold the agent's working
   * directory or `stateDir`.
   * @default {a new empty directory per command}
   */
  cwd?: string;
  /**
   * User commands run as (`COMMAND_USER`): a name, a uid or `uid:gid`.
   * @default {"nobody" when the agent runs as root, else the agent's own user}
   */
  user?: string;
  /**
   * Most processes and threads one command may have at once (`COMMAND_MAX_PROCESSES`), through
   * its cgroup's `pids.max`; 0 for no limit. Only with a cgroup per command.
   * @default {4096}
   */
  maxProcesses?: number;
  /**
   * Most memory (bytes) one command's processes may use together (`COMMAND_MAX_MEMORY`), through
   * its cgroup's `memory.max`; 0 for no limit. Only with a cgroup per command.
   * @default {2147483648}
   */
  maxMemory?: number;
  /** The agent's state directory: names its cgroups and is protected from commands. */
  stateDir?: string;
  /**
   * More of the agent's own files and directories (its settings files, pid and log files, a
   * dashboard's database): command arguments may not name them or anything in them, like
   * `stateDir`. Relative paths are taken from the agent's working directory.
   */
  protectedPaths?: readonly string[];
  /**
   * Whether to confine commands (user, own directory, cgroup); `false` runs them as the agent's
   * own user in `cwd` (or the agent's working directory), as `runCommand` does by default.
   * @default {true}
   */
  confine?: boolean;
  /**
   * Whether a confined command gets a cgroup of its own where the agent may create one.
   * @default {true}
   */
  cgroups?: boolean;
  /** Secret values (the agent token) that must never reach a command. */
  secretValues?: readonly string[];
  /**
   * @internal The clock of the deadline phases, the cancel grace and the reported times (see
   * `RunnerOptions.clock`); tests drive the phases with a fake one.
   * @default {systemClock}
   */
  clock?: Clock;
}

/**
 * Builds the executor that runs commands with `src/exec` under the configured policy. Checks the
 * policy and the extra environment up front, and does once what does not depend on the command
 * (one `CommandRunner`: environment and permission reads, the child's environment, the prepared
 * policy with its cached `PATH` lookups, the sandbox).
 *
 * @example Build the agent's executor
 * ```ts ignore
 * import { createExecutor } from "./executor.ts";
 *
 * const executor = createExecutor({ allowedPrograms: ["uname"] });
 * console.log(executor.describe?.());
 * ```
 *
 * @param options The `exec` settings.
 * @returns The executor.
 * @throws {TypeError} When the allowlist, a path prefix, an extra variable, `COMMAND_USER` or
 *   `COMMAND_CWD` is invalid (it may not lie in the agent's own paths, nor be or hold its state
 *   directory).
 * @throws {RangeError} When `maxProcesses` is not a whole number from 0 to 4194304, or
 *   `maxMemory` is neither 0 nor a whole number of bytes from 1 MiB to 1024 TiB.
 */
export function createExecutor(options: ExecutorOptions = {}): Executor {
  const { protectedPaths, policy, extraEnv } = settle(options);
  const sandbox = options.confine === false ? undefined : Sandbox.create(sandboxOptions(options));
  let runner: CommandRunner;
  try {
    runner = new CommandRunner(runnerOptions(options, policy, extraEnv, sandbox));
  } catch (error) {
    // The sandbox made this agent's cgroup directories (and its pids group): a refused start
    // (an extra variable a program loads code from, a deadline out of range) left them behind.
    void sandbox?.close();
    throw error;
  }
  return {
    describe: () => runner.sandbox.describe(policy.allowedPrograms),
    warnings: () => [
      ...runner.sandbox.warnings(),
      ...pathWarning(runner.pathLeftOut),
      ...unresolvedWarning(unresolvablePrefixes(policy)),
      ...replaceablePrograms(policy.allowedPrograms),
      ...sharedHomeWarning(runner.sandbox, extraEnv.HOME),
      ...readableSecrets(runner.sandbox, protectedPaths, options.secretValues ?? []),
    ],
    deadlineSecs(timeoutSecs) {
      try {
        return effectiveTimeoutSecs(
          timeoutSecs,
          options.defaultTimeoutSecs,
          options.maxTimeoutSecs,
        );
      } catch {
        return undefined;
      }
    },
    stopLeftover: (record) => runner.sandbox.stopLeftover(record),
    leftoverNotes: (record) => limitNotes(runner.sandbox.leftoverCounts(record)),
    sweep: () => sandbox?.sweep() ?? Promise.resolve(0),
    close: () => sandbox?.close(),
    async run(request: ExecRequest): Promise<ExecOutcome> {
      const result = await runner.run(request.name, {
        timeoutSecs: request.timeoutSecs,
        signal: request.signal,
        onSpawn: request.onSpawn,
        onExit: request.onExit,
        onOutput: request.onOutput,
      });
      return toReportFields(result);
    },
  };
}

/**
 * Checks the `exec` settings as {@link createExecutor} does, without making anything (no sandbox,
 * no cgroup, no directory): an agent checks them before it takes its state directory, so that a
 * start refused for them leaves nothing behind.
 *
 * @param options The `exec` settings.
 * @throws {TypeError} As {@link createExecutor}.
 * @throws {RangeError} As {@link createExecutor}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkExecutorOptions } from "./executor.ts";
 *
 * assert.throws(() => checkExecutorOptions({ commandEnv: ["LD_PRELOAD=/tmp/x.so"] }), TypeError);
 * ```
 */
export function checkExecutorOptions(options: ExecutorOptions = {}): void {
  const { policy, extraEnv } = settle(options);
  if (options.confine !== false) Sandbox.check(sandboxOptions(options));
  // Its checks only: without a sandbox, a runner makes nothing.
  new CommandRunner(runnerOptions(options, policy, extraEnv, undefined));
}

/** The agent's own paths, the policy and the extra variables of the `exec` settings, checked. */
function settle(options: ExecutorOptions) {
  const protectedPaths = ownPaths([
    ...(options.stateDir === undefined ? [] : [options.stateDir]),
    ...options.protectedPaths ?? [],
  ]);
  if (options.cwd !== undefined) checkCwdOutside(options.cwd, protectedPaths);
  const policy = createPolicy({
    allowedPrograms: options.allowedPrograms ? [...options.allowedPrograms] : undefined,
    allowedPathPrefixes: options.allowedPathPrefixes ? [...options.allowedPathPrefixes] : undefined,
    protectedPaths,
  });
  const extraEnv = envFromAssignments(options.commandEnv ?? []);
  return { protectedPaths, policy, extraEnv };
}

/** The sandbox's settings among the `exec` settings. */
function sandboxOptions(options: ExecutorOptions): SandboxOptions {
  return {
    user: options.user,
    cwd: options.cwd,
    cgroups: options.cgroups,
    maxProcesses: options.maxProcesses,
    maxMemory: options.maxMemory,
    tag: options.stateDir === undefined ? undefined : Sandbox.tagOf(options.stateDir),
    protectedDirs: [agentCwd(), options.stateDir].filter((d): d is string => d !== undefined),
  };
}

/** The runner's settings among the `exec` settings. */
function runnerOptions(
  options: ExecutorOptions,
  policy: ExecPolicy,
  extraEnv: Record<string, string>,
  sandbox: Sandbox | undefined,
): RunnerOptions {
  return {
    policy,
    defaultTimeoutSecs: options.defaultTimeoutSecs,
    maxTimeoutSecs: options.maxTimeoutSecs,
    cwd: options.cwd,
    extraEnv,
    secretValues: options.secretValues ?? [],
    sandbox,
    clock: options.clock,
  };
}

/** What the start-up log says of the entries of the agent's `PATH` that commands do not get. */
function pathWarning(leftOut: readonly string[]): string[] {
  if (leftOut.length === 0) return [];
  const shown = leftOut.map((dir) => dir === "" ? '"" (empty)' : dir).join(", ");
  return [
    `entries of the agent's PATH (or COMMAND_ENV's) that commands do not get, and programs are ` +
    "not looked up in: " +
    `${shown} (a relative one names the command's working directory; others every user, or ` +
    "the command user, may write or rename, so anyone, or a command, could put a program there)",
  ];
}

/**
 * What the start-up log says of the allowed prefixes under which the path rules cannot resolve
 * symbolic links (Deno may not read there): only the lexical checks stand.
 */
function unresolvedWarning(prefixes: readonly string[]): string[] {
  if (prefixes.length === 0) return [];
  return [
    `the path rules cannot resolve symbolic links under ${prefixes.join(", ")} (Deno may not ` +
    `read there): a path through a symbolic link there may lead anywhere, the agent's own ` +
    `files included; grant --allow-read=${prefixes.join(",")}`,
  ];
}

/**
 * What the start-up log says of absolute `ALLOWED_PROGRAMS` entries that every user may replace
 * (`/tmp/tool`, or one in a 0777 directory): a command naming them runs whatever is there then.
 */
function replaceablePrograms(programs: readonly string[]): string[] {
  const replaceable = programs.filter((p) => p.startsWith("/") && everyoneMayReplace(p));
  if (replaceable.length === 0) return [];
  return [
    `ALLOWED_PROGRAMS entries that every user may replace (the file, or a directory on the way, ` +
    `is writable by every user): ${replaceable.join(", ")}; a command naming one runs whatever ` +
    "anyone put there: move them where only root may write",
  ];
}

/**
 * What the start-up log says of a `HOME` that every command gets (set in `COMMAND_ENV`, or, for a
 * command user other than the agent's, `COMMAND_CWD` or the work root they run in when no
 * directory of their own may be made) when the command user, or every user, may write it: one
 * command (or anyone) can leave there the settings that later commands' programs read from `HOME`
 * and obey (`~/.curlrc`, `~/.wgetrc`, `~/.gitconfig`, `~/.ssh/config` name files to send or
 * programs to run), which the allowlist never sees. A command with a `HOME` of its own (a new,
 * empty directory): nothing is said.
 */
function sharedHomeWarning(sandbox: Sandbox, givenHome: string | undefined): string[] {
  const user = sandbox.user;
  const home = givenHome ?? (user ? sandbox.sharedHome : undefined);
  if (home === undefined || !home.startsWith("/")) return [];
  const everyone = everyoneMayReplace(home);
  if (!everyone && !(user && userMayChange(home, user))) return [];
  const source = givenHome !== undefined
    ? "set in COMMAND_ENV"
    : home === sandbox.fixedCwd
    ? "COMMAND_CWD, which is their HOME as they run as another user than the agent and none of " +
      "their own can be made"
    : "the directory they run in, as none of their own can be made there";
  const fix = givenHome !== undefined
    ? ""
    : `, or grant --allow-write=${sandbox.workRoot} (each command then gets a new, empty one)`;
  return [
    `commands share HOME ${home} (${source}), which ${
      everyone ? "every user" : `commands, as ${user!.name},`
    } ` +
    `may write: ${everyone ? "anyone" : "one command"} can leave settings there that later ` +
    "commands' programs read from HOME and obey (~/.curlrc, ~/.wgetrc, ~/.gitconfig, " +
    "~/.ssh/config name files to send or programs to run), which the allowlist never sees; set " +
    `HOME in COMMAND_ENV to a directory that neither they nor others may write${fix}`,
  ];
}

/** The most of a file read to look for the agent's secrets in it (settings files are small). */
const MAX_SECRET_SCAN_BYTES = 1024 * 1024;

/**
 * The agent's own files that hold one of its secrets (the token in `config.json` or `.env`) and
 * that the command user (another user than the agent's) may read: the operating system's wall is
 * gone for them, only the argument rules keep commands from the token.
 */
function readableSecrets(
  sandbox: Sandbox,
  own: readonly string[],
  secrets: readonly string[],
): string[] {
  const user = sandbox.user;
  const values = secrets.filter((secret) => secret !== "");
  if (user === undefined || values.length === 0) return [];
  return own.flatMap((path) => {
    const how = readableBy(path, user);
    if (how === undefined || !holdsAny(path, values)) return [];
    return [
      `commands run as ${user.name} may read the agent's own ${path} (${how}), which holds its ` +
      "token: only the argument rules keep them from it; let only its owner read it " +
      `(chmod go-rwx ${path})`,
    ];
  });
}

/** Whether a regular file holds one of `values` (in its first MiB); `false` when unreadable. */
function holdsAny(path: string, values: readonly string[]): boolean {
  try {
    if (!Deno.statSync(path).isFile) return false;
    using file = Deno.openSync(path);
    const buffer = new Uint8Array(MAX_SECRET_SCAN_BYTES);
    let length = 0;
    for (;;) {
      const n = file.readSync(buffer.subarray(length));
      if (n === null || n === 0) break;
      length += n;
      if (length === buffer.length) break;
    }
    const text = new TextDecoder().decode(buffer.subarray(0, length));
    return values.some((value) => text.includes(value));
  } catch {
    return false;
  }
}

/**
 * Refuses a `COMMAND_CWD` that is or lies in one of the agent's own paths (its state directory, say): every
 * relative argument, even `-la`, would name something commands may not touch, and be refused.
 */
function checkCwdOutside(cwd: string, own: readonly string[]): void {
  const real = realOrSelf(resolve(agentCwd() ?? "/", cwd));
  for (const path of own) {
    const ownReal = realOrSelf(path);
    if (real === ownReal || real.startsWith(ownReal === "/" ? "/" : `${ownReal}/`)) {
      throw new TypeError(
        `COMMAND_CWD "${cwd}" is or lies in the agent's own ${path}, which commands may not touch ` +
          "(every relative argument would be refused); give commands a directory of their own " +
          "(or leave COMMAND_CWD unset)",
      );
    }
  }
}

function realOrSelf(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    return path;
  }
}

/** The agent's own paths made absolute (those that cannot be are left out). */
function ownPaths(paths: readonly string[]): string[] {
  const cwd = agentCwd();
  return paths.filter((path) => path !== "" && (path.startsWith("/") || cwd !== undefined))
    .map((path) => resolve(cwd ?? "/", path));
}

function agentCwd(): string | undefined {
  try {
    return Deno.cwd();
  } catch {
    return undefined;
  }
}
