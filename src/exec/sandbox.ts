/**
 * Who a command runs as, where it runs, and how every process it starts is found and stopped.
 *
 * - **User**: when the agent runs as root, commands run as `COMMAND_USER` (default `nobody`) with
 *   that user's own group and no supplementary groups, so the operating system refuses them what
 *   the agent may read (its token, its state, root-only files) however the argument rules are
 *   walked around.
 * - **Working directory**: a new empty directory per command (owned by that user, removed after
 *   the command) inside one of the agent's own (`/tmp/status-cmd-<tag>`, mode 0711, so that the
 *   user cannot rename it), never the agent's own working directory or its state directory. It is
 *   also the command's `HOME`; in a fixed one (`COMMAND_CWD`), a command of another user gets a
 *   new empty `HOME` of its own there instead, so that no command obeys another's `~/.curlrc`.
 * - **Processes**: a cgroup v2 per command where the agent may create one (root, or a delegated
 *   systemd service); `cgroup.kill` then stops every process the command started, also those that
 *   left its process group (`setsid`). Elsewhere the command's process group is signalled, and
 *   when there is a sign of them (a deadline, a cancel, its output still held open) the processes
 *   of its session that moved to another group (job control); those that left the session are
 *   not found.
 * - **How many**: `pids.max` of the command's cgroup, `maxProcesses` (`COMMAND_MAX_PROCESSES`),
 *   set once the agent has left the cgroup after the spawn. Where cgroup v2 has no pids controller
 *   because a cgroup v1 hierarchy holds it (a hybrid system), each command also gets a group of
 *   the same name there, entered and left with its cgroup, for its `pids.max`.
 * - **How much memory**: `memory.max` of the command's cgroup, `maxMemory` (`COMMAND_MAX_MEMORY`),
 *   or, where a cgroup v1 hierarchy holds the memory controller, `memory.limit_in_bytes` of a group
 *   of the same name there, as for `pids.max`. Before the spawn it holds the limit plus the
 *   agent's resident memory and a margin (the kernel's OOM killer picks by resident memory, and
 *   the agent is in the group for that moment), lowered to the limit once the agent has left.
 *   How many of the command's processes the OOM killer ended there is read when it is stopped.
 *
 * How a child gets into its cgroup before it can fork: the agent moves itself into the command's
 * cgroup, spawns the child (which inherits the cgroup at fork), and moves itself back, all in one
 * synchronous step, so no other spawn of its thread (and no `cgroup.kill`) can come in between.
 * Agents on other threads of the same process take turns through a lock on the own cgroup
 * (`whileMoving`); a spawn by other code on another thread in that moment would land in the
 * command's cgroup, so an embedding program that starts processes from other threads passes
 * `cgroups: false`. Deno offers no `clone3(CLONE_INTO_CGROUP)`; a child that moved itself would
 * already be running.
 *
 * @module
 */
import { checkFlag, checkOptionNames } from "../options.ts";
import { createHash } from "node:crypto";
import { basename, dirname, resolve } from "node:path";
import { DEFAULT_COMMAND_MAX_MEMORY, DEFAULT_COMMAND_MAX_PROCESSES } from "../defaults.ts";
import { logger } from "../log/mod.ts";
import { ownUid } from "../own_files.ts";
import { helperPath } from "./env.ts";
import { removeTree } from "./remove_tree.ts";
import {
  type CgroupHome,
  describeMemorySize,
  enableMemory,
  enablePids,
  exists,
  heldByOthers,
  homeOf,
  isBusy,
  killCgroup,
  MAX_MEMORY_LIMIT,
  MAX_PIDS_LIMIT,
  MIN_MEMORY_LIMIT,
  oomKills,
  pidsMaxEvents,
  probeCgroups,
  probePidsV1,
  probeV1,
  readPids,
  readText,
  startWatchdog,
  type Watchdog,
  watchdogRunnable,
  whileMoving,
  writeText,
} from "./cgroup.ts";

export { cgroup2Mount, type CgroupHome, ownCgroupPath } from "./cgroup.ts";

const log = logger("exec", "sandbox");
/**
 * Threads the agent may start while it is in a command's cgroup for the spawn, beyond those it has
 * (Deno's pools grow on demand): the process limit set before the spawn leaves them room, so that
 * the agent never fails to start a thread of its own.
 */
const SPAWN_THREAD_MARGIN = 64;

/**
 * Memory the agent may allocate while it is in a command's cgroup for the spawn, beyond its
 * resident memory: the limit set before the spawn leaves the agent that much room, so that the
 * OOM killer never finds the agent there the largest process of a group at its limit.
 */
const SPAWN_MEMORY_MARGIN = 64 * 1024 ** 2;

/** The unprivileged user commands run as. */
export interface CommandUser {
  /** The name (or the number as given). */
  name: string;
  /** User id. */
  uid: number;
  /** Group id: the user's own primary group. */
  gid: number;
}

/** User commands run as when the agent is root and `COMMAND_USER` is not set. */
export const DEFAULT_COMMAND_USER = "nobody";

/** How the processes of a command are stopped. */
export type KillMode = "cgroup" | "process-group" | "child";

/** What identifies a command's processes after a restart of the agent. */
export interface ProcessRecord {
  /** Pid of the command's first process (also its process group id). */
  pid: number;
  /** Absolute path of its cgroup directory, when it had one. */
  cgroup?: string;
  /** Start time of the process in clock ticks since boot (`/proc/<pid>/stat`), when readable. */
  start_ticks?: number;
  /** When it was spawned, in milliseconds since the epoch. */
  spawned_at_ms?: number;
  /**
   * The boot it was spawned in (`/proc/sys/kernel/random/boot_id`), when readable: after a
   * reboot its pid and start time name nothing of the command.
   */
  boot_id?: string;
}

/**
 * What a command's cgroup counted against its limits: {@link Cell} has them, and
 * {@link Sandbox.leftoverCounts} reads them of a previous run's command.
 */
export interface LimitCounts {
  /** Its process limit (`COMMAND_MAX_PROCESSES`), when its cgroup had one. */
  readonly processLimit: number | undefined;
  /** How many of its forks failed at that limit. */
  readonly forksRefused: number;
  /** Its memory limit in bytes (`COMMAND_MAX_MEMORY`), when its cgroup had one. */
  readonly memoryLimit: number | undefined;
  /** How many of its processes the OOM killer ended for going past that limit. */
  readonly oomKills: number;
}

/** What {@link Sandbox.stopLeftover} found. */
export type LeftoverOutcome =
  /** Processes were still running and have been killed. */
  | "stopped"
  /** Nothing was running any more: the command ended on its own. */
  | "ended"
  /** The agent cannot tell (no permission to look); nothing was signalled. */
  | "unknown"
  /** The machine restarted since the command was spawned: none of it runs; nothing signalled. */
  | "rebooted";

/** This boot's id, read once; `undefined` when `/proc` is not readable. */
let thisBoot: string | null | undefined;

/** @internal The id of this boot of the machine, or `undefined` when it cannot be read. */
export function bootId(): string | undefined {
  if (thisBoot === undefined) {
    thisBoot = readText("/proc/sys/kernel/random/boot_id")?.trim() || null;
  }
  return thisBoot ?? undefined;
}

/** Options of {@link Sandbox.create}. */
export interface SandboxOptions {
  /**
   * `COMMAND_USER`: a user name, a uid, or `uid:gid`. Unset: `nobody` when the agent runs as
   * root, the agent's own user otherwise.
   */
  user?: string;
  /**
   * `COMMAND_CWD`: one fixed working directory for every command. Unset: a new empty directory
   * per command under `workRoot`.
   */
  cwd?: string;
  /**
   * Where the per-command working directories are created.
   * @default {"/tmp"}
   */
  workRoot?: string;
  /**
   * Whether to use a cgroup per command where possible.
   * @default {true}
   */
  cgroups?: boolean;
  /**
   * `COMMAND_MAX_PROCESSES`: the most processes and threads one command may have at once, through
   * its cgroup's `pids.max` (a fork beyond it fails; on a hybrid system, in a group of the cgroup
   * v1 pids hierarchy made beside the cgroup); 0 for no limit. Only with a cgroup per command:
   * without one (or where neither hierarchy lets the agent set it) there is no limit, which
   * {@link Sandbox.describe} says.
   * @default {4096}
   */
  maxProcesses?: number;
  /**
   * `COMMAND_MAX_MEMORY`: the most memory (bytes) one command's processes may use together,
   * through its cgroup's `memory.max` (the kernel's OOM killer ends a process past it; on a hybrid
   * system, `memory.limit_in_bytes` of a group of the cgroup v1 memory hierarchy made beside the
   * cgroup); 0 for no limit. Only with a cgroup per command: without one (or where neither
   * hierarchy lets the agent set it) there is no limit, which {@link Sandbox.describe} says.
   * @default {2147483648}
   */
  maxMemory?: number;
  /**
   * Names this agent's cgroups and working directories, so that a restarted agent finds (and
   * stops, and removes) what its previous run left: two agents must use different tags; the
   * state directory is a good source. Without one, the sandbox has a tag of its own that no other
   * sandbox, in this process or another, shares (there is no previous run to find).
   * @default {"pid-<agent pid>-<random>"}
   */
  tag?: string;
  /**
   * Directories the commands' working directory may be neither nor contain (the agent's own
   * working directory, its state directory).
   */
  protectedDirs?: readonly string[];
  /** @internal The agent's uid; for tests. Default: `Deno.uid()`, else `/proc/self/status`. */
  agentUid?: number | null;
}

/** Whether a permission is granted, never prompting or throwing. */
function granted(descriptor: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(descriptor).state === "granted";
  } catch {
    return false;
  }
}

/** Where Debian and others put util-linux's `setsid`. */
const SETSID_PATHS = ["/usr/bin/setsid", "/bin/setsid"];

let setsidFound: string | null | undefined;

/**
 * The `setsid` program to start commands through, found once: an executable file this process
 * may run; `null` when there is none (commands are then spawned `detached`).
 *
 * @returns Its path or `null`.
 */
export function setsidProgram(): string | null {
  if (setsidFound !== undefined) return setsidFound;
  setsidFound = null;
  for (const path of SETSID_PATHS) {
    // A look that is not granted would prompt on a terminal.
    if (!granted({ name: "run", command: path }) || !granted({ name: "read", path })) continue;
    try {
      const info = Deno.statSync(path);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) {
        setsidFound = path;
        break;
      }
    } catch {
      // not there, or not readable: the next one
    }
  }
  return setsidFound;
}

/**
 * The reason `setsid` gave for not executing the program, when that is what the exit status and
 * the standard error say (status 126 or 127, nothing on standard output, and only util-linux's
 * message `setsid: failed to execute <program>: <reason>` on standard error).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { setsidExecFailure } from "./sandbox.ts";
 *
 * assert.deepEqual(
 *   setsidExecFailure(127, "", "setsid: failed to execute /x: No such file or directory\n", "/x"),
 *   { reason: "No such file or directory", kind: "not_found" },
 * );
 * assert.equal(setsidExecFailure(1, "", "boom\n", "/x"), undefined);
 * ```
 *
 * @param exitCode The exit status.
 * @param stdout What the child printed on standard output.
 * @param stderr What it printed on standard error.
 * @param program The program that was to run.
 * @returns The reason and what kind of start failure it is, or `undefined`.
 */
export function setsidExecFailure(
  exitCode: number | null,
  stdout: string,
  stderr: string,
  program: string,
): { reason: string; kind: "not_found" | "not_executable" } | undefined {
  if ((exitCode !== 126 && exitCode !== 127) || stdout !== "") return undefined;
  const prefix = `setsid: failed to execute ${program}: `;
  const line = stderr.endsWith("\n") ? stderr.slice(0, -1) : stderr;
  if (!line.startsWith(prefix) || line.includes("\n")) return undefined;
  return {
    reason: line.slice(prefix.length),
    kind: exitCode === 127 ? "not_found" : "not_executable",
  };
}

/**
 * The uid this process runs as, or `null` when it may not be read (`--allow-sys=uid`, or read
 * access to `/proc/self/status`).
 *
 * @returns The uid or `null`.
 */
export function agentUid(): number | null {
  return ownUid();
}

/**
 * Resolves `COMMAND_USER`: `uid:gid`, a bare uid (its group from `/etc/passwd`, else the same
 * number), or a name looked up in `/etc/passwd`.
 *
 * @param spec The setting.
 * @param passwd The text of `/etc/passwd`; read when not given.
 * @returns The user.
 * @throws {TypeError} When the user does not exist or cannot be looked up.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveUser } from "./sandbox.ts";
 *
 * const passwd = "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
 * assert.deepEqual(resolveUser("nobody", passwd), { name: "nobody", uid: 65534, gid: 65534 });
 * assert.deepEqual(resolveUser("1000:1001", passwd), { name: "1000:1001", uid: 1000, gid: 1001 });
 * ```
 */
export function resolveUser(spec: string, passwd?: string): CommandUser {
  const pair = /^(\d+):(\d+)$/.exec(spec);
  if (pair) return checkedIds({ name: spec, uid: Number(pair[1]), gid: Number(pair[2]) });
  const readPasswd = (): string | undefined => {
    if (passwd !== undefined) return passwd;
    try {
      return Deno.readTextFileSync("/etc/passwd");
    } catch (error) {
      if (/^\d+$/.test(spec)) return undefined;
      throw new TypeError(
        `COMMAND_USER "${spec}" cannot be looked up: /etc/passwd is not readable (${
          (error as Error).message
        }); grant --allow-read=/etc/passwd or give it as uid:gid`,
      );
    }
  };
  const text = readPasswd();
  const numeric = /^\d+$/.test(spec);
  for (const line of (text ?? "").split("\n")) {
    const fields = line.split(":");
    if (fields.length < 4) continue;
    if (numeric ? fields[2] === spec : fields[0] === spec) {
      return checkedIds({ name: spec, uid: Number(fields[2]), gid: Number(fields[3]) });
    }
  }
  if (numeric) return checkedIds({ name: spec, uid: Number(spec), gid: Number(spec) });
  throw new TypeError(`COMMAND_USER "${spec}" is not a user of this machine (not in /etc/passwd)`);
}

/** The largest user or group id a process can take: 2^32 - 2 (2^32 - 1 stands for "none"). */
const MAX_ID = 2 ** 32 - 2;

/** The user, when its ids are ones a process can run with (else no command could start). */
function checkedIds(user: CommandUser): CommandUser {
  for (const [what, id] of [["uid", user.uid], ["gid", user.gid]] as const) {
    if (!Number.isSafeInteger(id) || id < 0 || id > MAX_ID) {
      throw new TypeError(
        `COMMAND_USER "${user.name}" is not a user commands can run as: ${what} ${id} is ` +
          `beyond ${MAX_ID}`,
      );
    }
  }
  return user;
}

/**
 * @internal Why `user` (its uid and its own group only, as commands run) cannot enter `dir`: the
 * first directory on the way without search permission for it, by the mode bits; `undefined`
 * when every one has it, or when that cannot be told (a path that cannot be read).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { unenterableBy } from "./sandbox.ts";
 *
 * assert.equal(unenterableBy("/", { name: "nobody", uid: 65534, gid: 65534 }), undefined);
 * ```
 *
 * @param dir The directory.
 * @param user The command user.
 * @returns The reason, or `undefined`.
 */
export function unenterableBy(dir: string, user: CommandUser): string | undefined {
  if (user.uid === 0) return undefined;
  let path: string;
  try {
    path = Deno.realPathSync(dir);
  } catch {
    return undefined;
  }
  const parts = path.split("/").filter((part) => part !== "");
  for (let i = 0; i <= parts.length; i++) {
    const at = `/${parts.slice(0, i).join("/")}`;
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(at);
    } catch {
      return undefined;
    }
    const denied = deniedBy(at, info, user);
    if (denied !== undefined) return denied;
  }
  return undefined;
}

/**
 * @internal Why `user` (as {@link unenterableBy}) cannot run `program`: a directory on the way
 * to the file it names (after symbolic links) it may not enter, or the file's own mode without
 * execute permission for it; `undefined` when neither, or when that cannot be told.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { unrunnableBy } from "./sandbox.ts";
 *
 * assert.equal(unrunnableBy("/bin/sh", { name: "nobody", uid: 65534, gid: 65534 }), undefined);
 * ```
 *
 * @param program The program's absolute path.
 * @param user The command user.
 * @returns The reason, or `undefined`.
 */
export function unrunnableBy(program: string, user: CommandUser): string | undefined {
  if (user.uid === 0) return undefined;
  let path: string;
  let info: Deno.FileInfo;
  try {
    path = Deno.realPathSync(program);
    info = Deno.statSync(path);
  } catch {
    return undefined;
  }
  return unenterableBy(dirname(path), user) ?? deniedBy(path, info, user);
}

/**
 * @internal How `user` (as {@link unenterableBy}) can read `path`, by the mode bits of the
 * directories on the way and its own (a directory: read and search): e.g. `mode 0644, owner uid 0,
 * group gid 0`; `undefined` when it cannot, or when that cannot be told (a path that cannot be
 * read).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readableBy } from "./sandbox.ts";
 *
 * assert.match(readableBy("/etc/passwd", { name: "nobody", uid: 65534, gid: 65534 }) ?? "", /0644/);
 * ```
 *
 * @param path The file or directory.
 * @param user The command user.
 * @returns The mode that lets it read, or `undefined`.
 */
export function readableBy(path: string, user: CommandUser): string | undefined {
  let real: string;
  let info: Deno.FileInfo;
  try {
    real = Deno.realPathSync(path);
    info = Deno.statSync(real);
  } catch {
    return undefined;
  }
  if (info.mode === null || info.uid === null || info.gid === null) return undefined;
  if (real !== "/" && unenterableBy(dirname(real), user) !== undefined) return undefined;
  const shift = user.uid === 0 ? -1 : info.uid === user.uid ? 6 : info.gid === user.gid ? 3 : 0;
  const need = info.isDirectory ? 0o5 : 0o4;
  if (shift >= 0 && ((info.mode >> shift) & need) !== need) return undefined;
  return `mode ${(info.mode & 0o7777).toString(8).padStart(4, "0")}, owner uid ${info.uid}, ` +
    `group gid ${info.gid}`;
}

/** The mode of `at` when it gives `user` no search or execute permission, else `undefined`. */
function deniedBy(at: string, info: Deno.FileInfo, user: CommandUser): string | undefined {
  if (info.mode === null || info.uid === null || info.gid === null) return undefined;
  const bit = info.uid === user.uid ? 0o100 : info.gid === user.gid ? 0o010 : 0o001;
  if ((info.mode & bit) !== 0) return undefined;
  return `${at} is mode ${(info.mode & 0o7777).toString(8).padStart(4, "0")}, owner uid ` +
    `${info.uid}, group gid ${info.gid}`;
}

/** `O_CLOEXEC` in the `flags` of `/proc/<pid>/fdinfo/<fd>` (octal). */
const O_CLOEXEC = 0o2000000;

/**
 * @internal The descriptors above standard error that this process holds without close-on-exec:
 * those it inherited from whatever started it (Deno opens its own with close-on-exec). Deno
 * cannot close them, so every child gets them, each command included: through one, a command
 * reads or writes what it names whoever the command runs as (`exec 7</etc/shadow` in the shell
 * that starts a root agent hands every command `/etc/shadow`).
 *
 * @param procSelf Where `fd` and `fdinfo` are read; for tests.
 * @returns Each descriptor and what it names (its `/proc/self/fd` link), or `undefined` when
 *   `fdinfo` cannot be read (Deno reads `/proc` only under `--allow-all`).
 */
export function inheritedDescriptors(
  procSelf = "/proc/self",
): { fd: number; target: string | undefined }[] | undefined {
  let names: string[];
  // Not asked for: a read that is not granted would prompt on a terminal.
  if (!granted({ name: "read", path: `${procSelf}/fdinfo` })) return undefined;
  try {
    names = [...Deno.readDirSync(`${procSelf}/fdinfo`)].map((entry) => entry.name);
  } catch {
    return undefined;
  }
  const found: { fd: number; target: string | undefined }[] = [];
  for (const name of names) {
    if (!/^\d+$/.test(name) || Number(name) <= 2) continue;
    // Gone since the listing (the listing's own descriptor, one closed meanwhile): none.
    const flags = /^flags:\s*([0-7]+)$/m.exec(readText(`${procSelf}/fdinfo/${name}`) ?? "")?.[1];
    if (flags === undefined || (parseInt(flags, 8) & O_CLOEXEC) !== 0) continue;
    let target: string | undefined;
    try {
      target = Deno.readLinkSync(`${procSelf}/fd/${name}`);
    } catch {
      target = undefined;
    }
    found.push({ fd: Number(name), target });
  }
  return found.sort((a, b) => a.fd - b.fd);
}

/**
 * @internal What the start-up log says of the descriptors this process inherited (see
 * {@link inheritedDescriptors}): every command gets them too, whoever it runs as. Told only
 * where `/proc/self/fdinfo` may be read (under `--allow-all`).
 *
 * @param procSelf Where `fd` and `fdinfo` are read; for tests.
 * @returns The sentence, or `undefined` when there are none (or they cannot be seen).
 */
export function inheritedDescriptorsWarning(procSelf = "/proc/self"): string | undefined {
  const inherited = inheritedDescriptors(procSelf) ?? [];
  if (inherited.length === 0) return undefined;
  const shown = inherited.map(({ fd, target }) => target ? `${fd} (${target})` : String(fd));
  const closes = inherited.map(({ fd }) => `${fd}<&-`).join(" ");
  return `file descriptors ${shown.join(", ")} were left open by whatever started the agent, ` +
    "and every command gets them too (Deno cannot close them): through them a command reads or " +
    "writes what they name, whoever it runs as; start the agent without them (in a shell: " +
    `exec ${closes}; systemd passes none)`;
}

/** How signals reach processes other than the direct child. */
export type SignalRoute = "direct" | "kill-program" | "none";

function signalRoute(): SignalRoute {
  if (granted({ name: "run" })) return "direct";
  if (granted({ name: "run", command: "kill" })) return "kill-program";
  return "none";
}

/**
 * What {@link sendSignal} did: `sent` to every target, `missing` some target (none such, or one
 * that may not be signalled), or `unavailable` (no route to send it).
 */
type SignalOutcome = "sent" | "missing" | "unavailable";

/**
 * Sends a signal to processes (positive ids) and process groups (negative ids), ignoring those
 * that are gone: with `Deno.kill` under a plain `--allow-run`, else through the `kill` program
 * (which `--allow-run=...,kill` permits). SIGTERM is followed by SIGCONT: a stopped process (a
 * command may SIGSTOP itself or its group) holds SIGTERM pending until it is continued, and would
 * otherwise sit stopped until SIGKILL.
 */
function sendSignal(targets: number[], signal: Deno.Signal, route: SignalRoute): SignalOutcome {
  const outcome = sendOne(targets, signal, route);
  if (signal === "SIGTERM" && outcome !== "unavailable") sendOne(targets, "SIGCONT", route);
  return outcome;
}

function sendOne(targets: number[], signal: Deno.Signal, route: SignalRoute): SignalOutcome {
  if (targets.length === 0) return "sent";
  if (route === "direct") {
    let outcome: SignalOutcome = "sent";
    for (const target of targets) {
      try {
        Deno.kill(target, signal);
      } catch (error) {
        outcome = "missing";
        if (!(error instanceof Deno.errors.NotFound)) {
          log.warning("could not signal {target}", { target, signal, error });
        }
      }
    }
    return outcome;
  }
  if (route === "kill-program") {
    try {
      const { success } = new Deno.Command("kill", {
        env: { PATH: helperPath() },
        args: ["-s", signal.replace(/^SIG/, ""), "--", ...targets.map(String)],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).outputSync();
      return success ? "sent" : "missing";
    } catch (error) {
      log.warning("could not run kill to signal {targets}", { targets, signal, error });
      return "unavailable";
    }
  }
  return "unavailable";
}

/** The start time of a process in clock ticks since boot, or `undefined` when not readable. */
export function processStartTicks(pid: number): number | undefined {
  return readStat(pid)?.startTicks;
}

interface Stat {
  pgrp: number;
  session: number;
  startTicks: number;
}

function parseStat(text: string): Stat | undefined {
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state): pgrp is field 5, session field 6, starttime field 22.
  if (fields[0] === "Z" || fields[0] === "X") return undefined;
  return { pgrp: Number(fields[2]), session: Number(fields[3]), startTicks: Number(fields[19]) };
}

function readStat(pid: number): Stat | undefined {
  // A read that is not granted would prompt on a terminal.
  if (!granted({ name: "read", path: `/proc/${pid}/stat` })) return undefined;
  try {
    return parseStat(Deno.readTextFileSync(`/proc/${pid}/stat`));
  } catch {
    return undefined;
  }
}

/** {@link readStat} without blocking the thread (right after a spawn the read waits for the exec). */
async function readStatSoon(pid: number): Promise<Stat | undefined> {
  if (!granted({ name: "read", path: `/proc/${pid}/stat` })) return undefined;
  try {
    return parseStat(await Deno.readTextFile(`/proc/${pid}/stat`));
  } catch {
    return undefined;
  }
}

/**
 * One command's confinement: its working directory, its cgroup (when there is one), and the
 * signals that reach all of its processes. Created by {@link Sandbox.open}; close it when the
 * command ended.
 */
export class Cell implements AsyncDisposable {
  /** The command's working directory. */
  readonly cwd: string | undefined;
  /** Whether the working directory is the command's own (created for it). */
  readonly ownDir: boolean;
  /**
   * The command's own `HOME`, a new empty directory made for it (removed with it), when it runs
   * as another user than the agent in a shared working directory (`COMMAND_CWD`).
   */
  readonly home: string | undefined;
  #throughSetsid = false;
  readonly #sandbox: Sandbox;
  #cgroup: string | undefined;
  #child: Deno.ChildProcess | undefined;
  #spawnedAt = 0;
  /** When the first process was spawned on the monotonic clock, which no wall clock step moves. */
  #spawnedAtMono = 0;
  /** The first process's start time (clock ticks since boot), once read. */
  #leaderTicks: number | undefined;
  #closed = false;
  #removed: Promise<void> = Promise.resolve();
  #processLimit: number | undefined;
  #forksRefused = 0;
  /** Its group in the cgroup v1 hierarchy of the pids controller, on a hybrid system. */
  #pidsGroup: string | undefined;
  /** Its group in the cgroup v1 hierarchy of the memory controller, on a hybrid system. */
  #memoryGroup: string | undefined;
  #memoryLimit: number | undefined;
  #oomKills = 0;

  /** @internal */
  constructor(
    sandbox: Sandbox,
    cwd: string | undefined,
    ownDir: boolean,
    cgroup?: string,
    home?: string,
    groups: { pids?: string; memory?: string } = {},
  ) {
    this.#sandbox = sandbox;
    this.cwd = cwd;
    this.ownDir = ownDir;
    this.#cgroup = cgroup;
    this.home = home;
    this.#pidsGroup = groups.pids;
    this.#memoryGroup = groups.memory;
  }

  /** The cgroup directory of the command, when it has one. */
  get cgroup(): string | undefined {
    return this.#cgroup;
  }

  /** The most processes and threads the command may have at once, when its cgroup limits them. */
  get processLimit(): number | undefined {
    return this.#processLimit;
  }

  /**
   * How many of the command's forks failed at {@link Cell.processLimit} (its cgroup's
   * `pids.events`), read by {@link Cell.readCounts} and when it is stopped; 0 before.
   */
  get forksRefused(): number {
    return this.#forksRefused;
  }

  /** The most memory (bytes) the command's processes may use together, when its cgroup limits it. */
  get memoryLimit(): number | undefined {
    return this.#memoryLimit;
  }

  /**
   * How many of the command's processes were killed for going past {@link Cell.memoryLimit} (the
   * kernel's OOM killer, as its cgroup's `memory.events` or `memory.oom_control` count them), read
   * by {@link Cell.readCounts} and when it is stopped; 0 before.
   */
  get oomKills(): number {
    return this.#oomKills;
  }

  /**
   * Reads what the command's cgroup counted against its limits so far ({@link Cell.forksRefused},
   * {@link Cell.oomKills}): the runner does so the moment the first process exited, for the exit
   * it has recorded (`onExit`) to say them as the report will; {@link Cell.stop} reads them once
   * more, for what the rest of the command did after. Nothing once stopped (the cgroup is gone).
   */
  readCounts(): void {
    if (!this.#closed) this.#readCounts();
  }

  #readCounts(): void {
    if (!this.#cgroup) return;
    // The counters only grow: a later read never lowers what an earlier one said.
    if (this.#processLimit !== undefined) {
      this.#forksRefused = Math.max(
        this.#forksRefused,
        pidsMaxEvents(this.#pidsGroup ?? this.#cgroup),
      );
    }
    if (this.#memoryLimit !== undefined) {
      this.#oomKills = Math.max(
        this.#oomKills,
        oomKills(this.#memoryGroup ?? this.#cgroup),
        this.#killedPastLimit ? 1 : 0,
      );
    }
  }

  /**
   * Spawns the command's first process: in its own session and process group, as the command
   * user, in the working directory, inside the cgroup (see the module doc).
   *
   * @param program The program path.
   * @param options Everything else of the spawn.
   * @returns The child.
   */
  spawn(program: string, options: Deno.CommandOptions): Deno.ChildProcess {
    const user = this.#sandbox.user;
    // `detached` makes Deno fork the whole agent (its page tables grow with its memory: 2–4 ms a
    // command here) where a plain spawn uses posix_spawn; `setsid` (util-linux) gives the child
    // the same new session and process group for one more exec (~0.7 ms). It execs the program
    // in place (the child is no group leader), so the pid is the program's. A user to switch to
    // needs the fork anyway.
    const setsid = user ? null : setsidProgram();
    this.#throughSetsid = setsid !== null;
    const command = setsid
      ? new Deno.Command(setsid, {
        ...options,
        args: ["--", program, ...options.args ?? []],
        cwd: this.cwd,
      })
      : new Deno.Command(program, {
        ...options,
        cwd: this.cwd,
        detached: true,
        ...(user ? { uid: user.uid, gid: user.gid } : {}),
      });
    const home = this.#sandbox.cgroupHome;
    this.#spawnedAt = Date.now();
    this.#spawnedAtMono = performance.now();
    if (!this.#cgroup || !home) return this.#child = command.spawn();
    const cgroup = this.#cgroup;
    return whileMoving(home.own, () => this.#spawnInside(command, cgroup, home));
  }

  /** Moves the agent into the command's cgroup, spawns the child there, and moves back. */
  #spawnInside(command: Deno.Command, cgroup: string, home: CgroupHome): Deno.ChildProcess {
    try {
      writeText(`${cgroup}/cgroup.procs`, String(Deno.pid));
    } catch (error) {
      log.warning("could not enter the command's cgroup; signalling its process group", {
        cgroup,
        error,
      });
      try {
        Deno.removeSync(cgroup);
      } catch {
        // the sweep of a later start removes it
      }
      this.#cgroup = undefined;
      return this.#child = command.spawn();
    }
    const pids = this.#enterPidsGroup();
    const memory = this.#enterMemoryGroup();
    this.#limitProcessesForSpawn(this.#pidsGroup ?? cgroup);
    this.#limitMemoryForSpawn(this.#memoryGroup ?? cgroup);
    try {
      return this.#child = command.spawn();
    } finally {
      if (memory) this.#leaveMemoryGroup(memory);
      if (pids) this.#leavePidsGroup(pids);
      try {
        writeText(`${homeOf(home.own)}/cgroup.procs`, String(Deno.pid));
        this.#limitProcesses(this.#pidsGroup ?? cgroup);
        this.#limitMemory(this.#memoryGroup ?? cgroup);
      } catch (error) {
        // The agent is still inside the command's cgroup: never cgroup.kill it.
        log.error("could not move the agent back to its own cgroup; commands are not confined", {
          error,
        });
        this.#cgroup = undefined;
        this.#sandbox.disableCgroups();
      }
    }
  }

  /**
   * Moves the agent into the command's group of the cgroup v1 pids hierarchy (a hybrid system),
   * beside its cgroup v2 one.
   *
   * @returns The agent's own group there, to move back to; `undefined` when there is none.
   */
  #enterPidsGroup(): string | undefined {
    const group = this.#pidsGroup;
    const pidsHome = this.#sandbox.pidsV1Home;
    if (!group || !pidsHome) return undefined;
    try {
      writeText(`${group}/cgroup.procs`, String(Deno.pid));
      return pidsHome.own;
    } catch (error) {
      log.warning("could not enter the command's pids group; it runs without a process limit", {
        group,
        error,
      });
      this.#pidsGroup = undefined;
      try {
        Deno.removeSync(group);
      } catch {
        // the sweep of a later start removes it
      }
      return undefined;
    }
  }

  /** Moves the agent back to its own group of the cgroup v1 pids hierarchy. */
  #leavePidsGroup(own: string): void {
    try {
      writeText(`${own}/cgroup.procs`, String(Deno.pid));
    } catch (error) {
      // Its limit would hold the agent: none is set, here or for later commands.
      log.error(
        "could not move the agent back to its own pids group; commands run without a " +
          "process limit",
        { error },
      );
      this.#pidsGroup = undefined;
      this.#sandbox.disablePidsV1("moving the agent between pids groups failed");
    }
  }

  /**
   * Moves the agent into the command's group of the cgroup v1 memory hierarchy (a hybrid system),
   * beside its cgroup v2 one.
   *
   * @returns The agent's own group there, to move back to; `undefined` when there is none.
   */
  #enterMemoryGroup(): string | undefined {
    const group = this.#memoryGroup;
    const memoryHome = this.#sandbox.memoryV1Home;
    if (!group || !memoryHome) return undefined;
    try {
      writeText(`${group}/cgroup.procs`, String(Deno.pid));
      return memoryHome.own;
    } catch (error) {
      log.warning("could not enter the command's memory group; it runs without a memory limit", {
        group,
        error,
      });
      this.#memoryGroup = undefined;
      try {
        Deno.removeSync(group);
      } catch {
        // the sweep of a later start removes it
      }
      return undefined;
    }
  }

  /** Moves the agent back to its own group of the cgroup v1 memory hierarchy. */
  #leaveMemoryGroup(own: string): void {
    try {
      writeText(`${own}/cgroup.procs`, String(Deno.pid));
    } catch (error) {
      // Its limit would hold the agent (and its OOM killer end it): lifted, and none is set,
      // here or for later commands.
      log.error(
        "could not move the agent back to its own memory group; commands run without a " +
          "memory limit",
        { error },
      );
      try {
        writeText(`${this.#memoryGroup}/memory.limit_in_bytes`, "-1");
      } catch {
        // nothing more to do
      }
      this.#memoryGroup = undefined;
      this.#sandbox.disableMemoryV1("moving the agent between memory groups failed");
    }
  }

  /** The file of the command's memory limit in `group`: cgroup v2's, or cgroup v1's. */
  #memoryFile(group: string): string {
    return `${group}/${group === this.#memoryGroup ? "memory.limit_in_bytes" : "memory.max"}`;
  }

  /**
   * Bounds the command's memory before the spawn already, with room for the agent's resident
   * memory and {@link SPAWN_MEMORY_MARGIN} more: the agent is in the group for the spawn, and the
   * OOM killer of a group at its limit ends its largest process (by resident memory), which
   * would be the agent below that. A command that allocates at once is still bounded.
   */
  #limitMemoryForSpawn(group: string): void {
    const limit = this.#sandbox.memoryLimit;
    if (limit === undefined || (this.#sandbox.memoryV1Home && !this.#memoryGroup)) return;
    const rssKiB = Number(/^VmRSS:\s+(\d+) kB$/m.exec(readText("/proc/self/status") ?? "")?.[1]);
    if (!Number.isSafeInteger(rssKiB)) return;
    try {
      writeText(this.#memoryFile(group), String(limit + rssKiB * 1024 + SPAWN_MEMORY_MARGIN));
    } catch {
      // Said by #limitMemory, which tries again once the agent has left.
    }
  }

  /**
   * Sets the command's memory limit once the agent has left its group. A command already past it
   * is ended: cgroup v2's OOM killer does so as `memory.max` is lowered; cgroup v1 refuses the
   * lower limit (EBUSY), and the agent kills the command's processes, counted as one kill.
   */
  #limitMemory(group: string): void {
    const limit = this.#sandbox.memoryLimit;
    if (limit === undefined || (this.#sandbox.memoryV1Home && !this.#memoryGroup)) return;
    try {
      writeText(this.#memoryFile(group), String(limit));
      this.#memoryLimit = limit;
    } catch (error) {
      if (isBusy(error)) {
        this.#memoryLimit = limit;
        this.#killedPastLimit = true;
        log.warning("the command went past its memory limit as it started; it is killed", {
          group,
          limit,
        });
        this.signal("SIGKILL");
        return;
      }
      log.warning("could not limit the command's memory; it runs without its limit", {
        group,
        limit,
        error,
      });
    }
  }

  /** The agent killed the command as it started, past its memory limit already (cgroup v1). */
  #killedPastLimit = false;

  /**
   * Bounds the command's processes before the spawn already, with room for the agent's own
   * threads (which count while it is in the cgroup) and {@link SPAWN_THREAD_MARGIN} more it may
   * start meanwhile: a command forking at once (a fork bomb) would otherwise fork without bound
   * until {@link Cell.#limitProcesses} runs, which on a busy machine may be milliseconds later.
   */
  #limitProcessesForSpawn(cgroup: string): void {
    const limit = this.#sandbox.processLimit;
    if (limit === undefined || (this.#sandbox.pidsV1Home && !this.#pidsGroup)) return;
    const threads = Number(/^Threads:\s+(\d+)$/m.exec(readText("/proc/self/status") ?? "")?.[1]);
    if (!Number.isSafeInteger(threads)) return;
    try {
      writeText(
        `${cgroup}/pids.max`,
        String(Math.min(limit + threads + SPAWN_THREAD_MARGIN, MAX_PIDS_LIMIT)),
      );
    } catch {
      // Said by #limitProcesses, which tries again once the agent has left.
    }
  }

  /**
   * Sets the command's `pids.max` once the agent has left its cgroup: while the agent was in it
   * for the spawn, its own threads counted, and a limit below their number would have refused
   * the spawn's fork itself.
   */
  #limitProcesses(cgroup: string): void {
    const limit = this.#sandbox.processLimit;
    if (limit === undefined || (this.#sandbox.pidsV1Home && !this.#pidsGroup)) return;
    try {
      writeText(`${cgroup}/pids.max`, String(limit));
      this.#processLimit = limit;
    } catch (error) {
      log.warning("could not limit the command's processes (pids.max); it runs without a limit", {
        cgroup,
        limit,
        error,
      });
    }
  }

  /**
   * Whether the child was started through `setsid`: a program that could not be executed then
   * shows as setsid's exit status 126/127 and message instead of a spawn error
   * (see {@link setsidExecFailure}).
   */
  get throughSetsid(): boolean {
    return this.#throughSetsid;
  }

  /** What identifies the command's processes after a restart. */
  record(): ProcessRecord | undefined {
    const pid = this.#child?.pid;
    return pid === undefined ? undefined : this.#record(pid, processStartTicks(pid));
  }

  /**
   * The same as {@link Cell.record}, reading the start time from `/proc` without blocking: right
   * after the spawn that read waits for the program's exec, which the command's run need not.
   *
   * @returns The record, or `undefined` before the spawn.
   */
  async recordSoon(): Promise<ProcessRecord | undefined> {
    const pid = this.#child?.pid;
    return pid === undefined ? undefined : this.#record(pid, (await readStatSoon(pid))?.startTicks);
  }

  #record(pid: number, ticks: number | undefined): ProcessRecord {
    this.#leaderTicks ??= ticks;
    const record: ProcessRecord = { pid, spawned_at_ms: this.#spawnedAt };
    if (this.#cgroup) record.cgroup = this.#cgroup;
    if (ticks !== undefined) record.start_ticks = ticks;
    const boot = bootId();
    if (boot !== undefined) record.boot_id = boot;
    return record;
  }

  /**
   * Signals every process of the command: those in its cgroup and its process group; SIGKILL to
   * a cgroup goes through `cgroup.kill`. Without a cgroup, also the processes of its session that
   * moved to a process group of their own (a shell's job control, `set -m`). Without a way to
   * signal others, the first process alone. SIGTERM is followed by SIGCONT, so that a stopped
   * process acts on it.
   *
   * @param signal The signal.
   * @param options `strays: false` leaves out the processes in other groups of the session
   *   (looking for them reads every process).
   */
  signal(signal: "SIGTERM" | "SIGKILL", options: { strays?: boolean } = {}): void {
    const strays = options.strays ?? true;
    const child = this.#child;
    if (!child) return;
    if (this.#cgroup && signal === "SIGKILL") {
      try {
        writeText(`${this.#cgroup}/cgroup.kill`, "1");
        return;
      } catch (error) {
        log.warning("cgroup.kill failed; signalling the process group", { error });
      }
    }
    const route = this.#sandbox.signalRoute;
    // Started through `setsid`, the child forms its group only once it runs: a signal sent
    // right after the spawn finds no group yet and goes to the child itself (through its
    // handle, which refuses a child already reaped, so never reaches a pid used again).
    if (sendSignal([-child.pid], signal, route) !== "sent") {
      try {
        child.kill(signal);
        if (signal === "SIGTERM") child.kill("SIGCONT");
      } catch {
        // it is gone
      }
    }
    if (this.#cgroup) sendSignal(readPids(this.#cgroup), signal, route);
    else if (strays) this.#signalStrays(signal, false);
  }

  /**
   * Signals the processes of the command's session (its first process leads it) outside its
   * process group, which the group's signal misses; returns how many there were.
   *
   * @param leaderGone Whether the first process has ended and been reaped: a process whose pid
   *   is the session's id is then another program's (the pid was used again), and nothing is
   *   signalled.
   */
  #signalStrays(signal: "SIGTERM" | "SIGKILL", leaderGone: boolean): number {
    const child = this.#child;
    const route = this.#sandbox.signalRoute;
    if (!child || route === "none") return 0;
    // While the first process runs (a deadline, a cancel), its start time tells it from a
    // program that got its pid later.
    if (!leaderGone) this.#leaderTicks ??= readStat(child.pid)?.startTicks;
    const strays = sessionStrays(child.pid, {
      ticks: this.#leaderTicks,
      spawnedAtMs: this.#spawnedAt,
      spawnedAtMonoMs: this.#spawnedAtMono,
      gone: leaderGone,
    });
    if (strays.length === 0) return 0;
    log.info("signalling {count} processes of the command that left its process group", {
      pid: child.pid,
      count: strays.length,
      strays,
      signal,
    });
    sendSignal(strays, signal, route);
    return strays.length;
  }

  /**
   * Kills the processes of the command's session that left its process group (a shell's job
   * control, `set -m`, puts each background job in a group of its own) once its first process
   * has ended. Looking for them costs a scan of every process, so the runner asks only when there
   * is a sign of them: the command was signalled, or something still holds its output open.
   * Nothing with a cgroup (`cgroup.kill` reached them) or without a way to signal.
   *
   * @returns How many there were.
   */
  stopStrays(): number {
    if (this.#cgroup) return 0;
    return this.#signalStrays("SIGKILL", true);
  }

  /**
   * Stops whatever the command left running (after its first process exited) and removes its
   * cgroup, its own working directory and its own `HOME`.
   */
  async close(): Promise<void> {
    await this.stop();
    await this.#removed;
  }

  /**
   * @internal The first half of {@link Cell.close}: stops whatever the command left running and
   * starts removing its own directories, which {@link Cell.removed} then waits for (and so does
   * {@link Sandbox.close}).
   */
  async stop(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#cgroup) {
      this.#readCounts();
      await killCgroup(this.#cgroup);
      // Empty now (its processes were the cgroup's): removed, as soon as the kernel lets.
      if (this.#pidsGroup) await killCgroup(this.#pidsGroup);
      if (this.#memoryGroup) await killCgroup(this.#memoryGroup);
    } else if (this.#child) {
      this.signal("SIGKILL", { strays: false });
    }
    this.#removed = this.#sandbox.track(this.#removeOwn());
  }

  /** @internal Settles (never rejects) once the directories {@link Cell.stop} removes are gone. */
  get removed(): Promise<void> {
    return this.#removed;
  }

  async #removeOwn(): Promise<void> {
    const own = [this.ownDir ? this.cwd : undefined, this.home];
    for (const dir of own.filter((dir) => dir !== undefined)) {
      try {
        await removeTree(dir);
      } catch (error) {
        log.warning("could not remove the command's {what}", {
          what: dir === this.home ? "HOME" : "working directory",
          dir,
          error,
        });
      }
    }
    if (own.some((dir) => dir !== undefined)) this.#sandbox.releaseCwdParent();
  }

  /** Same as {@link Cell.close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** The names of a directory's subdirectories; none when it cannot be read. */
function subdirectories(dir: string): string[] {
  // Not asked for: a read that is not granted would prompt on a terminal.
  if (!granted({ name: "read", path: dir })) return [];
  try {
    return [...Deno.readDirSync(dir)].filter((e) => e.isDirectory).map((e) => e.name);
  } catch {
    return [];
  }
}

function isWithin(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir === "/" ? "/" : `${dir}/`);
}

function realOrSelf(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    return path;
  }
}

/**
 * The confinement every command of an agent gets: run as `COMMAND_USER` (default `nobody` when
 * the agent is root), in a new empty directory of its own, and stopped through a cgroup of its
 * own where one can be created (else through its process group). Create one per agent with
 * {@link Sandbox.create}, pass it as `sandbox` to {@link runCommand} or a {@link CommandRunner},
 * and {@link Sandbox.close} it at the end. While a command with a cgroup is spawned the whole
 * process is in that cgroup for a moment: a program that starts processes from other threads
 * passes `cgroups: false`.
 *
 * @example Run a command in a directory of its own (without a cgroup)
 * ```ts
 * import assert from "node:assert/strict";
 * import { createPolicy, runCommand, Sandbox } from "../../mod.ts";
 *
 * await using sandbox = Sandbox.create({ cgroups: false });
 * const result = await runCommand("pwd", {
 *   policy: createPolicy({ allowedPrograms: ["pwd"] }),
 *   sandbox,
 * });
 * assert.notEqual(result.stdout.trim(), Deno.cwd());
 * ```
 */
export class Sandbox {
  /** The user commands run as; `undefined`: the agent's own. */
  readonly user: CommandUser | undefined;
  /** Why commands run as the agent's own user, when they do. */
  readonly userNote: string | undefined;
  /** The agent is root and `COMMAND_USER` names root: commands keep all its power. */
  #asRoot = false;
  /** Whether the agent's uid could not be read (whether it is root is not known). */
  #uidUnknown = false;
  /** The fixed working directory, or `undefined` for one per command. */
  readonly fixedCwd: string | undefined;
  /**
   * The directory every command runs in when none gets one of its own: `COMMAND_CWD`, or the work
   * root when no directory may be created there. `undefined` when each command gets a new, empty
   * one (nothing in it to protect) or inherits the agent's working directory.
   */
  get sharedCwd(): string | undefined {
    if (this.fixedCwd !== undefined || this.#inheritCwd) return this.fixedCwd;
    return this.#canCreateDirs ? undefined : this.#workRoot;
  }
  /**
   * The `HOME` every command shares as it runs as another user than the agent: the directory it
   * runs in (`COMMAND_CWD`, or the work root) when no directory of its own may be made in the
   * work root. `undefined` when each command gets a `HOME` of its own, or runs as the agent's
   * own user (and keeps the agent's).
   */
  get sharedHome(): string | undefined {
    if (!this.user || this.#canCreateDirs || this.#inheritCwd) return undefined;
    return this.fixedCwd ?? this.#workRoot;
  }
  /** @internal Where the commands' own directories are made. */
  get workRoot(): string {
    return this.#workRoot;
  }
  readonly #workRoot: string;
  readonly #inheritCwd: boolean;
  /**
   * Names this agent's working directories in the work root as an earlier version made them
   * (`status-cmd-<tag>-XXXX`), so that a restart still removes what a crash of that one left.
   */
  readonly #dirPrefix: string;
  /**
   * This agent's directory of working directories (`<work root>/status-cmd-<tag>`): this
   * process's own, mode 0711, so that a command user, who owns its working directory, cannot
   * rename that directory (which needs write access to the one holding it) in a `/tmp` where it
   * could rename whatever it owns; there while a command runs.
   */
  #cwdParent: string;
  readonly #canCreateDirs: boolean;
  readonly #route: SignalRoute;
  #cgroupHome: CgroupHome | undefined;
  #cgroupNote: string | undefined;
  /** `COMMAND_MAX_PROCESSES`; 0: no limit. */
  #maxProcesses = DEFAULT_COMMAND_MAX_PROCESSES;
  /** Why the commands' cgroups cannot limit their processes (no pids controller), when so. */
  #pidsNote: string | undefined;
  /**
   * On a hybrid system: the agent's group in the cgroup v1 hierarchy of the pids controller and
   * its directory of command groups, where each command's `pids.max` is.
   */
  #pidsV1: CgroupHome | undefined;
  /** `COMMAND_MAX_MEMORY` in bytes; 0: no limit. */
  #maxMemory = DEFAULT_COMMAND_MAX_MEMORY;
  /** Why the commands' cgroups cannot limit their memory (no memory controller), when so. */
  #memoryNote: string | undefined;
  /**
   * Set while the memory controller was refused only because other processes shared the agent's
   * cgroup (the one that started a `--daemon`, which exits a moment later): tried again before
   * each command (see {@link Sandbox.open}) until it is on or refused for another reason. Holds
   * why cgroup v1 has no memory hierarchy for the agent either, for the note then.
   */
  #memoryRetry: string | undefined;
  /**
   * On a hybrid system: the agent's group in the cgroup v1 hierarchy of the memory controller and
   * its directory of command groups, where each command's `memory.limit_in_bytes` is.
   */
  #memoryV1: CgroupHome | undefined;
  /**
   * Started when the first command gets a cgroup, not before: the directory of command cgroups
   * belongs to the tag, and a second agent on the same state directory (refused its lock, or the
   * parent of a daemon) makes a sandbox of the same tag and closes it again; its watchdog, woken
   * by that close, would kill the running agent's commands.
   */
  #watchdog: Watchdog | undefined;
  #watchdogTried = false;
  /** Whether `/bin/sh` may run, so that a watchdog can be started. */
  readonly #watchdogRunnable: boolean;
  #count = 0;
  /** The name of this agent's directory of command cgroups (`status-<tag>`), wherever it lies. */
  readonly #cgroupDirName: string;

  private constructor(
    user: CommandUser | undefined,
    userNote: string | undefined,
    fixedCwd: string | undefined,
    workRoot: string,
    home: CgroupHome | string | undefined,
    tag: string,
    inheritCwd = false,
  ) {
    this.#dirPrefix = `status-cmd-${tag}-`;
    this.#cwdParent = `${workRoot}/status-cmd-${tag}`;
    this.#cgroupDirName = `status-${tag}`;
    this.#inheritCwd = inheritCwd;
    this.#canCreateDirs = granted({ name: "write", path: workRoot });
    this.user = user;
    this.userNote = userNote;
    this.fixedCwd = fixedCwd;
    this.#workRoot = workRoot;
    this.#route = signalRoute();
    if (typeof home === "string") this.#cgroupNote = home;
    else if (home) {
      this.#cgroupHome = home;
    }
    this.#watchdogRunnable = this.#cgroupHome !== undefined && watchdogRunnable();
  }

  /**
   * Checks the settings as {@link Sandbox.create} does, without making or probing anything (no
   * cgroup, no directory): an agent checks them before it takes its state directory, so that a
   * start refused for them leaves nothing behind.
   *
   * @param options The settings.
   * @throws {TypeError} As {@link Sandbox.create}.
   * @throws {RangeError} As {@link Sandbox.create}.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Sandbox } from "./sandbox.ts";
   *
   * assert.throws(() => Sandbox.check({ maxProcesses: -1 }), RangeError);
   * ```
   */
  static check(options: SandboxOptions = {}): void {
    Sandbox.#settle(options);
  }

  /** What {@link Sandbox.create} decides from its settings before it probes anything. */
  static #settle(options: SandboxOptions): {
    uid: number | null;
    user: CommandUser | undefined;
    userNote: string | undefined;
    fixedCwd: string | undefined;
    maxProcesses: number;
    maxMemory: number;
  } {
    if (options === null || typeof options !== "object") {
      throw new TypeError(`Sandbox.create's options must be an object, got ${String(options)}`);
    }
    checkOptionNames("Sandbox.create", options, {
      user: true,
      cwd: true,
      workRoot: true,
      cgroups: true,
      maxProcesses: true,
      maxMemory: true,
      tag: true,
      protectedDirs: true,
      agentUid: true,
    });
    checkFlag("cgroups", options.cgroups);
    const maxProcesses = options.maxProcesses ?? DEFAULT_COMMAND_MAX_PROCESSES;
    if (!Number.isSafeInteger(maxProcesses) || maxProcesses < 0 || maxProcesses > MAX_PIDS_LIMIT) {
      throw new RangeError(
        `COMMAND_MAX_PROCESSES must be a whole number from 0 (no limit) to ${MAX_PIDS_LIMIT}, ` +
          `got ${String(maxProcesses)}`,
      );
    }
    const maxMemory = options.maxMemory ?? DEFAULT_COMMAND_MAX_MEMORY;
    if (
      !Number.isSafeInteger(maxMemory) ||
      (maxMemory !== 0 && (maxMemory < MIN_MEMORY_LIMIT || maxMemory > MAX_MEMORY_LIMIT))
    ) {
      throw new RangeError(
        `COMMAND_MAX_MEMORY must be 0 (no limit) or a whole number of bytes from ` +
          `${MIN_MEMORY_LIMIT} to ${MAX_MEMORY_LIMIT}, got ${String(maxMemory)}`,
      );
    }
    const uid = options.agentUid === undefined ? agentUid() : options.agentUid;
    let user: CommandUser | undefined;
    let userNote: string | undefined;
    if (options.user !== undefined && options.user !== "") {
      user = resolveUser(options.user);
      if (uid !== null && uid !== 0 && uid !== user.uid) {
        userNote = `the agent is not root (uid ${uid}): running as COMMAND_USER ${options.user} ` +
          "needs the CAP_SETUID and CAP_SETGID capabilities";
      }
      if (uid === user.uid) {
        if (uid === 0) userNote = `COMMAND_USER ${options.user} is root`;
        user = undefined;
      }
    } else if (uid === 0) {
      user = resolveUser(DEFAULT_COMMAND_USER);
    } else if (uid === null) {
      userNote = "cannot tell whether the agent runs as root (grant --allow-sys=uid); set " +
        "COMMAND_USER to choose a user";
    } else {
      userNote = `the agent is not root (uid ${uid})`;
    }
    let fixedCwd: string | undefined;
    if (options.cwd !== undefined) {
      fixedCwd = options.cwd;
      const real = realOrSelf(options.cwd);
      for (const dir of options.protectedDirs ?? []) {
        const protectedReal = realOrSelf(dir);
        if (isWithin(protectedReal, real)) {
          throw new TypeError(
            `COMMAND_CWD "${options.cwd}" is or holds the agent's own directory ${dir}; give ` +
              "commands a directory of their own (or leave COMMAND_CWD unset)",
          );
        }
      }
    }
    return { uid, user, userNote, fixedCwd, maxProcesses, maxMemory };
  }

  /**
   * Decides the user, the working directory and the kill mode, probing what this process may
   * do (a cgroup is created and removed to check).
   *
   * @param options The settings.
   * @returns The sandbox.
   * @throws {TypeError} When `options` is not an object or has a key that is not one of its
   *   options, `cgroups` is not a boolean, `COMMAND_USER` is unknown or
   *   `COMMAND_CWD` is or holds a protected directory.
   * @throws {RangeError} When `maxProcesses` or `maxMemory` is out of range.
   */
  static create(options: SandboxOptions = {}): Sandbox {
    const { uid, user, userNote, fixedCwd, maxProcesses, maxMemory } = Sandbox.#settle(options);
    // Unique: another agent of this process (a library, parallel tests) must never sweep this
    // one's working directories as leftovers at its start.
    const tag = options.tag ?? `pid-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
    const home = options.cgroups === false ? "cgroups are turned off" : probeCgroups(tag);
    const sandbox = new Sandbox(user, userNote, fixedCwd, options.workRoot ?? "/tmp", home, tag);
    sandbox.#asRoot = uid === 0 && user === undefined;
    sandbox.#uidUnknown = uid === null;
    sandbox.#maxProcesses = maxProcesses;
    if (maxProcesses > 0 && typeof home === "object") {
      const v2 = enablePids(home);
      if (v2 !== undefined) {
        const v1 = whileMoving(home.own, () => probePidsV1(tag));
        if (typeof v1 === "string") sandbox.#pidsNote = `${v2}; ${v1}`;
        else sandbox.#pidsV1 = v1;
      }
    }
    sandbox.#maxMemory = maxMemory;
    if (maxMemory > 0 && typeof home === "object") {
      // It may move the agent into a leaf of its own cgroup: not while another agent of this
      // process spawns.
      const v2 = whileMoving(home.own, () => enableMemory(home));
      if (v2 !== undefined) {
        const v1 = whileMoving(home.own, () => probeV1("memory", tag));
        if (typeof v1 === "string") {
          sandbox.#memoryNote = `${v2}; ${v1}`;
          if (v2.startsWith(heldByOthers(home.own))) sandbox.#memoryRetry = v1;
        } else sandbox.#memoryV1 = v1;
      }
    }
    return sandbox;
  }

  /**
   * No confinement: the agent's own user, `cwd` (or the agent's working directory), and the
   * process group signalled: what `runCommand` does without a sandbox.
   *
   * @param cwd The working directory; `undefined` inherits the agent's.
   * @returns The sandbox.
   */
  static unconfined(cwd?: string): Sandbox {
    return new Sandbox(
      undefined,
      "no sandbox was asked for",
      cwd,
      "/tmp",
      "not asked for",
      `pid-${Deno.pid}`,
      true,
    );
  }

  /**
   * @internal A tag naming an agent's cgroups, from its state directory (so that a restarted agent finds
   * what its previous run left).
   *
   * @param stateDir The state directory.
   * @returns A short hex tag.
   */
  static tagOf(stateDir: string): string {
    let path = stateDir;
    // Only what may be read is looked at: a look that is not granted would prompt on a terminal.
    try {
      if (!granted({ name: "read", path: stateDir })) throw new Deno.errors.NotCapable();
      path = Deno.realPathSync(stateDir);
    } catch {
      try {
        if (!granted({ name: "read", path: "." })) throw new Deno.errors.NotCapable();
        path = resolve(stateDir);
      } catch {
        // no permission to read the working directory: the path as given
      }
    }
    return createHash("sha256").update(path).digest("hex").slice(0, 16);
  }

  /**
   * What the start-up log should warn of: commands that run as root (`COMMAND_USER` names root
   * for a root agent) can read the agent's token and state and change anything on the machine;
   * commands that run in root's group (`COMMAND_USER=65534:0`) can read and write what that
   * group may; and commands that run as the agent's own user when whether it is root cannot be
   * told (no `--allow-sys=uid`): they run as root if it is.
   *
   * @returns One sentence per concern; none for an unprivileged command user.
   */
  warnings(): string[] {
    // Another user than the agent's that is root: an agent with CAP_SETUID, or one that cannot
    // tell its own uid.
    if (this.user?.uid === 0) {
      return [
        `commands run as root (COMMAND_USER ${this.user.name}, uid 0): they can read the ` +
        "agent's token and state and change anything on this machine; set COMMAND_USER to an " +
        "unprivileged user",
      ];
    }
    if (this.user?.gid === 0) {
      return [
        `commands run in group root (COMMAND_USER ${this.user.name}, gid 0): they can read and ` +
        "write what root's group may (files of mode 0640 or 0660 owned by root:root, say); give " +
        "COMMAND_USER a group of its own (uid:gid)",
      ];
    }
    if (this.#uidUnknown && this.user === undefined) {
      return [
        "cannot tell whether the agent runs as root (grant --allow-sys=uid): if it does, " +
        "commands run as root too, and can read the agent's token and state and change anything " +
        "on this machine; grant --allow-sys=uid (a root agent then runs them as " +
        `${DEFAULT_COMMAND_USER}), or set COMMAND_USER`,
      ];
    }
    if (!this.#asRoot) return [];
    return [
      `commands run as root (${this.userNote}): they can read the agent's token and state ` +
      "and change anything on this machine; set COMMAND_USER to an unprivileged user (the " +
      `default for a root agent is ${DEFAULT_COMMAND_USER})`,
    ];
  }

  /** How the processes of a command are stopped. */
  get killMode(): KillMode {
    if (this.#cgroupHome) return "cgroup";
    return this.#route === "none" ? "child" : "process-group";
  }

  /** @internal The agent's cgroup and its command cgroups' directory. */
  get cgroupHome(): CgroupHome | undefined {
    return this.#cgroupHome;
  }

  /**
   * The most processes and threads each command may have at once (`COMMAND_MAX_PROCESSES`), when
   * the commands' cgroups limit them; `undefined` when nothing does (no cgroups, no pids
   * controller, or a limit of 0).
   */
  get processLimit(): number | undefined {
    return this.#cgroupHome && this.#pidsNote === undefined && this.#maxProcesses > 0
      ? this.#maxProcesses
      : undefined;
  }

  /** @internal How signals are sent. */
  get signalRoute(): SignalRoute {
    return this.#route;
  }

  /** @internal The cgroup v1 pids hierarchy's groups of this agent, on a hybrid system. */
  get pidsV1Home(): CgroupHome | undefined {
    return this.#pidsV1;
  }

  /**
   * The most memory (bytes) each command's processes may use together (`COMMAND_MAX_MEMORY`),
   * when the commands' cgroups limit it; `undefined` when nothing does (no cgroups, no memory
   * controller, or a limit of 0).
   */
  get memoryLimit(): number | undefined {
    return this.#cgroupHome && this.#memoryNote === undefined && this.#maxMemory > 0
      ? this.#maxMemory
      : undefined;
  }

  /** @internal The cgroup v1 memory hierarchy's groups of this agent, on a hybrid system. */
  get memoryV1Home(): CgroupHome | undefined {
    return this.#memoryV1;
  }

  /** @internal Called when moving between groups of the cgroup v1 memory hierarchy failed. */
  disableMemoryV1(why: string): void {
    this.#memoryV1 = undefined;
    this.#memoryNote = why;
  }

  /** @internal Called when moving between groups of the cgroup v1 pids hierarchy failed. */
  disablePidsV1(why: string): void {
    this.#pidsV1 = undefined;
    this.#pidsNote = why;
  }

  /** @internal Called when moving between cgroups failed. */
  disableCgroups(): void {
    this.#cgroupHome = undefined;
    this.#cgroupNote = "moving the agent between cgroups failed";
  }

  /**
   * One sentence for the start-up log: who commands run as, where, and how they are stopped;
   * and which of `programs` the command user cannot run (a root agent's `/root/bin/tool`).
   *
   * @param programs The allowlist (`ALLOWED_PROGRAMS`): its absolute entries are checked.
   * @returns The description.
   */
  describe(programs: readonly string[] = []): string {
    // A user other than the agent's, when the agent is not root: without the capabilities to
    // switch to it no command starts, which the line must say.
    const userCaveat = this.user && this.userNote
      ? `; ${this.userNote}, without which no command starts`
      : "";
    const who = this.user
      ? `commands run as ${this.user.name} (uid ${this.user.uid}, gid ${this.user.gid}, no ` +
        `supplementary groups${userCaveat})`
      : `commands run as the agent's own user (${this.userNote ?? "COMMAND_USER is that user"})`;
    const blocked = this.fixedCwd && this.user
      ? unenterableBy(this.fixedCwd, this.user)
      : undefined;
    const where = this.fixedCwd
      ? `in ${this.fixedCwd} (COMMAND_CWD${
        blocked ? `, which ${this.user!.name} cannot enter, so no command starts: ${blocked}` : ""
      })`
      : this.#inheritCwd
      ? "in the agent's working directory"
      : this.#canCreateDirs
      ? `each in a new empty directory under ${this.#workRoot}`
      : `in ${this.#workRoot} itself (no directory of their own: grant ` +
        `--allow-write=${this.#workRoot})`;
    let how: string;
    if (this.#cgroupHome) {
      how = `stopped with a cgroup of their own (cgroup.kill, under ${this.#cgroupHome.base}), ` +
        "which reaches processes that left the process group" +
        (this.#watchdogRunnable
          ? ", also when the agent dies (a watchdog kills what it left)"
          : "; if the agent dies they run on until it restarts (no watchdog: /bin/sh cannot be run)");
    } else {
      const why = this.#cgroupNote ? ` (no cgroup: ${this.#cgroupNote})` : "";
      how = this.#route === "none"
        ? `stopped by signalling their first process only: add kill to --allow-run to reach ` +
          `their whole process group${why}`
        : `stopped by signalling their process group (and at a deadline or cancel, or while ` +
          `they hold a command's output, the processes of its session in other groups); ` +
          `processes that leave the session (setsid) are not found${why}`;
    }
    const limit = this.processLimit !== undefined
      ? `; at most ${this.#maxProcesses} processes and threads each (pids.max${
        this.#pidsV1 ? `, in cgroup v1's pids hierarchy under ${this.#pidsV1.base}` : ""
      }: a fork beyond fails)`
      : this.#maxProcesses === 0
      ? "; no limit on their processes (COMMAND_MAX_PROCESSES is 0)"
      : this.#cgroupHome
      ? "; no limit on their processes (COMMAND_MAX_PROCESSES needs the pids controller of " +
        `cgroup v2, and ${this.#pidsNote})`
      : "; no limit on their processes (COMMAND_MAX_PROCESSES needs a cgroup of their own)";
    const memory = this.memoryLimit !== undefined
      ? `; at most ${describeMemorySize(this.#maxMemory)} of memory each (${
        this.#memoryV1
          ? `memory.limit_in_bytes, in cgroup v1's memory hierarchy under ${this.#memoryV1.base}`
          : homeOf(this.#cgroupHome!.own) === this.#cgroupHome!.own
          ? "memory.max"
          : `memory.max; the agent moved into ${
            homeOf(this.#cgroupHome!.own)
          } so that its cgroup may pass the memory controller down`
      }: the kernel's OOM killer ends a process past it)`
      : this.#maxMemory === 0
      ? "; no limit on their memory (COMMAND_MAX_MEMORY is 0)"
      : this.#cgroupHome
      ? "; no limit on their memory (COMMAND_MAX_MEMORY needs the memory controller of " +
        `cgroup v2, and ${this.#memoryNote}${
          this.#memoryRetry !== undefined
            ? "; the agent tries again before each command, and logs when the other " +
              "processes have ended and it is on"
            : ""
        })`
      : "; no limit on their memory (COMMAND_MAX_MEMORY needs a cgroup of their own)";
    const user = this.user;
    const unrunnable = user
      ? programs.filter((program) => program.startsWith("/")).flatMap((program) => {
        const why = unrunnableBy(program, user);
        return why === undefined ? [] : [`${program} (${why})`];
      })
      : [];
    const programsNote = unrunnable.length === 0
      ? ""
      : `; ALLOWED_PROGRAMS that ${user!.name} cannot run (their commands fail): ` +
        unrunnable.join(", ");
    return `${who}, ${where}, ${how}${limit}${memory}${programsNote}`;
  }

  /**
   * @internal Prepares one command: its working directory (new and empty unless `COMMAND_CWD` is
   * set), its `HOME` and its cgroup. A command that runs as another user than the agent in
   * `COMMAND_CWD` gets a new, empty `HOME` of its own beside the directories commands get (none
   * when `home` is `false`, or when no directory may be created there): one command's
   * `~/.curlrc` or `~/.gitconfig` is never read by the next.
   *
   * @param options `home: false` when the command's `HOME` is set otherwise (`COMMAND_ENV`).
   * @returns The cell; close it when the command ended.
   * @throws {Error} When the working directory or the `HOME` cannot be created.
   */
  async open(options: { home?: boolean } = {}): Promise<Cell> {
    let cwd = this.fixedCwd;
    let own = false;
    let ownHome: string | undefined;
    // Without a directory of its own a command runs in the work root itself (under the path
    // prefixes by default), never in "/", where any relative path would name the system's files.
    if (cwd === undefined && !this.#inheritCwd && !this.#canCreateDirs) cwd = this.#workRoot;
    else if (cwd === undefined && !this.#inheritCwd) {
      cwd = await this.#ownDirectory("cmd-", "working directory", "set COMMAND_CWD");
      own = true;
    } else if (
      cwd !== undefined && !this.#inheritCwd && this.user && options.home !== false &&
      this.#canCreateDirs
    ) {
      ownHome = await this.#ownDirectory("home-", "HOME", "set HOME in COMMAND_ENV");
    }
    let cgroup: string | undefined;
    const home = this.#cgroupHome;
    if (home) {
      if (this.#memoryRetry !== undefined) this.#retryMemory(home);
      // Not into another agent's command cgroup of this process (see whileMoving).
      if (!this.#watchdogTried) {
        this.#watchdogTried = true;
        this.#watchdog = whileMoving(home.own, () => startWatchdog(home.base));
      }
      const path = `${home.base}/cmd-${Deno.pid}-${++this.#count}-${
        crypto.randomUUID().slice(0, 8)
      }`;
      try {
        try {
          Deno.mkdirSync(path);
        } catch (error) {
          if (!(error instanceof Deno.errors.NotFound)) throw error;
          // Removed while empty by a sandbox of the same tag closing (a second agent that was
          // refused the state directory): made again.
          Deno.mkdirSync(home.base, { recursive: true });
          Deno.mkdirSync(path);
        }
        cgroup = path;
        // A directory of command cgroups made again (above) has the pids and memory
        // controllers off.
        if (this.processLimit !== undefined && !this.#pidsV1 && !exists(`${path}/pids.max`)) {
          enablePids(home);
        }
        if (this.memoryLimit !== undefined && !this.#memoryV1 && !exists(`${path}/memory.max`)) {
          whileMoving(home.own, () => enableMemory(home));
        }
      } catch (error) {
        log.warning("could not create the command's cgroup; signalling its process group", {
          cgroup: path,
          error,
        });
      }
    }
    return new Cell(this, cwd, own, cgroup, ownHome, {
      pids: cgroup && this.processLimit !== undefined
        ? this.#v1GroupFor(this.#pidsV1, cgroup, "pids")
        : undefined,
      memory: cgroup && this.memoryLimit !== undefined
        ? this.#v1GroupFor(this.#memoryV1, cgroup, "memory")
        : undefined,
    });
  }

  /**
   * Tries again to turn the memory controller on (see {@link Sandbox.#memoryRetry}), the
   * watchdog's processes moved with the agent; says once what came of it. Never fails the command: it runs without a
   * memory limit as before.
   */
  #retryMemory(home: CgroupHome): void {
    const watchdog = this.#watchdog?.child.pid;
    let why: string | undefined;
    try {
      why = whileMoving(home.own, () => {
        // The watchdog leads a session of its own, its `cat` in it.
        const ours = watchdog === undefined
          ? []
          : readPids(home.own).filter((pid) => readStat(pid)?.session === watchdog);
        return enableMemory(home, ours);
      });
    } catch (error) {
      why = `it could not be tried again (${(error as Error).message})`;
    }
    const v1 = this.#memoryRetry;
    if (why === undefined) {
      this.#memoryRetry = undefined;
      this.#memoryNote = undefined;
      log.info(
        "the other processes of the agent's cgroup have ended: commands may now use at most " +
          "{limit} of memory each (COMMAND_MAX_MEMORY)",
        { limit: describeMemorySize(this.#maxMemory), agentCgroup: homeOf(home.own) },
      );
    } else if (!why.startsWith(heldByOthers(home.own))) {
      this.#memoryRetry = undefined;
      this.#memoryNote = `${why}; ${v1}`;
      log.warning(
        "commands run without a memory limit: COMMAND_MAX_MEMORY needs the memory controller " +
          "of cgroup v2, and {why}",
        { why },
      );
    }
  }

  /**
   * A command's group in a cgroup v1 hierarchy (of the pids or the memory controller), named as
   * its cgroup, when the limit is set there (a hybrid system); `undefined` (with a warning) when
   * it cannot be made.
   */
  #v1GroupFor(
    v1: CgroupHome | undefined,
    cgroup: string,
    what: "pids" | "memory",
  ): string | undefined {
    if (!v1) return undefined;
    const group = `${v1.base}/${basename(cgroup)}`;
    try {
      try {
        Deno.mkdirSync(group);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
        // Removed while empty by a sandbox of the same tag closing: made again.
        Deno.mkdirSync(v1.base, { recursive: true });
        Deno.mkdirSync(group);
      }
      return group;
    } catch (error) {
      log.warning("could not create the command's {what} group; it runs without a {limit} limit", {
        what,
        limit: what === "pids" ? "process" : "memory",
        group,
        error,
      });
      return undefined;
    }
  }

  /**
   * A new empty directory for one command (its working directory or its `HOME`) in this agent's
   * directory of them, owned by the command user, mode 0700.
   *
   * @param prefix Starts its name.
   * @param what What it is, for the error.
   * @param instead What the operator may do instead, for the error.
   * @throws {Error} When it cannot be created.
   */
  async #ownDirectory(prefix: string, what: string, instead: string): Promise<string> {
    let dir: string | undefined;
    try {
      // Both synchronous: no command's end can remove the parent in between.
      dir = Deno.makeTempDirSync({ dir: this.#ownCwdParent(), prefix });
      await Deno.chmod(dir, 0o700);
      // Given away last: once the command user owns it, that user may rename it in /tmp
      // (sticky) and leave a symlink in its place, and a chmod (which follows symlinks) would
      // then change the mode of whatever the symlink names.
      if (this.user) await Deno.chown(dir, this.user.uid, this.user.gid);
      return dir;
    } catch (error) {
      if (dir) {
        try {
          await removeTree(dir);
        } catch {
          // the sweep of a later start removes it
        }
      }
      // Only a refusal of Deno's own is mended by a flag; a full or read-only /tmp, or a
      // directory the system refuses, is not.
      const hint = error instanceof Deno.errors.NotCapable
        ? `grant --allow-write=${this.#workRoot}, or ${instead}`
        : `or ${instead} to a directory for them`;
      throw new Error(
        `cannot create the command's ${what} under ${this.#workRoot}: ${
          (error as Error).message
        } (${hint})`,
        { cause: error },
      );
    }
  }

  /**
   * @internal Kills whatever a previous run of this agent left in its cgroups (all of this agent's
   * command cgroups are stale when it starts), and starts removing the working directories it
   * left: a tree of millions of files takes minutes, which neither the results the previous run
   * left nor new commands wait for ({@link Sandbox.close} does).
   *
   * @returns How many cgroups still had processes.
   */
  async sweep(): Promise<number> {
    const home = this.#cgroupHome;
    let stopped = 0;
    for (const name of home ? subdirectories(home.base) : []) {
      if (await killCgroup(`${home!.base}/${name}`)) stopped++;
    }
    // Their pids and memory groups, empty once their cgroups are.
    for (const v1 of [this.#pidsV1, this.#memoryV1]) {
      for (const name of v1 ? subdirectories(v1.base) : []) {
        await killCgroup(`${v1!.base}/${name}`);
      }
    }
    // The working directories the previous run could not remove (it was killed): in this
    // agent's directory of them, or, as an earlier version made them, in the work root.
    const left = [
      ...(this.#isOwnDirectory(this.#cwdParent)
        ? subdirectories(this.#cwdParent).map((name) => `${this.#cwdParent}/${name}`)
        : []),
      ...subdirectories(this.#workRoot).filter((name) => name.startsWith(this.#dirPrefix))
        .map((name) => `${this.#workRoot}/${name}`),
    ];
    this.track((async () => {
      for (const cwd of left) {
        try {
          await removeTree(cwd);
        } catch (error) {
          log.warning("could not remove a working directory left by the previous run", {
            cwd,
            error,
          });
        }
      }
      this.releaseCwdParent();
    })());
    return stopped;
  }

  /**
   * This agent's directory of working directories, made (mode 0711) when missing; an existing one
   * must be a directory of this process's user, not a symlink, else one of a random name
   * (`status-cmd-<tag>-XXXX`) is used from then on.
   *
   * @throws {Error} When it cannot be made.
   */
  #ownCwdParent(): string {
    const path = this.#cwdParent;
    try {
      Deno.mkdirSync(path, { mode: 0o711 });
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
      if (!this.#isOwnDirectory(path)) {
        // Its name is known to every user (the tag comes from STATE_DIR): one made first would
        // stop every command. One of a random name, which the sweep finds too, takes its place.
        const other = Deno.makeTempDirSync({ dir: this.#workRoot, prefix: this.#dirPrefix });
        Deno.chmodSync(other, 0o711);
        log.warning(
          "{path} is in the way (not a directory of this user's: another user may have made " +
            "it, or a symlink); commands' directories go in {other} instead",
          { path, other },
        );
        this.#cwdParent = other;
        return other;
      }
    }
    // Ours, and not a symlink (only its owner or root may rename it in a sticky /tmp).
    Deno.chmodSync(path, 0o711);
    return path;
  }

  /**
   * @internal Removes this agent's directory of working directories once it is empty (a
   * command's end, the agent's): nothing is left in the work root while no command runs.
   */
  releaseCwdParent(): void {
    try {
      if (this.#isOwnDirectory(this.#cwdParent)) Deno.removeSync(this.#cwdParent);
    } catch {
      // Another command's directory is in it, or it is gone already.
    }
  }

  /** Whether `path` is a directory (not a symlink) owned by this process's user. */
  #isOwnDirectory(path: string): boolean {
    // A look that is not granted would prompt on a terminal (what may not be read was not made).
    if (!granted({ name: "read", path })) return false;
    try {
      const info = Deno.lstatSync(path);
      if (!info.isDirectory) return false;
      const uid = ownUid();
      return uid === null || info.uid === null || info.uid === uid;
    } catch {
      return false;
    }
  }

  /**
   * @internal Stops what a command of a previous run left running, found by its record.
   *
   * @param record What identified its processes.
   * @returns Whether something was still running.
   */
  async stopLeftover(record: ProcessRecord): Promise<LeftoverOutcome> {
    // After a reboot the pid (and the start time) may be another program's, whose group this
    // would kill.
    const boot = bootId();
    if (typeof record.boot_id === "string" && boot !== undefined && record.boot_id !== boot) {
      return "rebooted";
    }
    if (record.cgroup) {
      // Only one of this agent's command cgroups (`status-<tag>/cmd-...`): a journal is data, and
      // cgroup.kill of any other path would stop whatever runs there.
      if (!this.#isCommandCgroup(record.cgroup)) {
        log.warning("the journal names a cgroup that is not one of this agent's; left alone", {
          cgroup: record.cgroup,
        });
        return "unknown";
      }
      if (!exists(record.cgroup)) return exists(dirname(record.cgroup)) ? "ended" : "unknown";
      // Frozen: the watchdog stopped it when the agent died.
      const frozen = readText(`${record.cgroup}/cgroup.freeze`)?.trim() === "1";
      return await killCgroup(record.cgroup) || frozen ? "stopped" : "ended";
    }
    const members = record.start_ticks !== undefined
      ? groupMembers(record.pid, record.start_ticks)
      : groupMembersByPs(record.pid, record.spawned_at_ms);
    if (members === undefined) return "unknown";
    // And those that moved to another group of its session (a bash script's job control).
    const strays = sessionStrays(record.pid, {
      ticks: record.start_ticks,
      spawnedAtMs: record.spawned_at_ms,
      gone: false,
    });
    if (members.length === 0 && strays.length === 0) return "ended";
    if (
      members.length > 0 && sendSignal([-record.pid], "SIGKILL", this.#route) === "unavailable"
    ) {
      sendSignal(members, "SIGKILL", this.#route);
    }
    sendSignal(strays, "SIGKILL", this.#route);
    return "stopped";
  }

  /**
   * @internal What the cgroup of a command a previous run left (see {@link Sandbox.stopLeftover})
   * counted against its limits, with the limits it had: read before that stops it, which removes
   * the cgroup. On a hybrid system its groups of the same name in cgroup v1's hierarchies are
   * read. Nothing for a record without a cgroup, or whose cgroup is not one of this agent's.
   *
   * @param record What identified the command's processes.
   * @returns The counts.
   */
  leftoverCounts(record: ProcessRecord): LimitCounts {
    const none = { processLimit: undefined, forksRefused: 0, memoryLimit: undefined, oomKills: 0 };
    if (!record.cgroup || !this.#isCommandCgroup(record.cgroup)) return none;
    const name = basename(record.cgroup);
    const pids = this.#pidsV1 ? `${this.#pidsV1.base}/${name}` : record.cgroup;
    const memory = this.#memoryV1 ? `${this.#memoryV1.base}/${name}` : record.cgroup;
    const limit = (file: string, most: number) => {
      const value = Number(readText(file)?.trim() ?? "max");
      return Number.isSafeInteger(value) && value > 0 && value <= most ? value : undefined;
    };
    return {
      processLimit: limit(`${pids}/pids.max`, MAX_PIDS_LIMIT),
      forksRefused: pidsMaxEvents(pids),
      memoryLimit: limit(
        `${memory}/${this.#memoryV1 ? "memory.limit_in_bytes" : "memory.max"}`,
        MAX_MEMORY_LIMIT,
      ),
      oomKills: oomKills(memory),
    };
  }

  /** Whether `path` names a command cgroup this agent (its tag) makes: `…/status-<tag>/cmd-…`. */
  #isCommandCgroup(path: string): boolean {
    return path.startsWith("/") && resolve(path) === path &&
      basename(dirname(path)) === this.#cgroupDirName &&
      /^cmd-\d+-\d+-[0-9a-f]+$/.test(basename(path));
  }

  /** The removals of commands' directories still under way (see {@link Cell.stop}). */
  readonly #removals = new Set<Promise<void>>();

  /** @internal Keeps `removal` until it settles, for {@link Sandbox.close} to wait for. */
  track(removal: Promise<void>): Promise<void> {
    this.#removals.add(removal);
    removal.finally(() => this.#removals.delete(removal));
    return removal;
  }

  /**
   * Waits for the removals of commands' directories still under way, stops the watchdog, when a
   * command started one (it then stops whatever still runs in this agent's cgroups), and removes
   * this agent's directory of command cgroups when it is empty.
   */
  async close(): Promise<void> {
    await Promise.all(this.#removals);
    const watchdog = this.#watchdog;
    this.#watchdog = undefined;
    if (watchdog) {
      try {
        await watchdog.writer.close();
      } catch {
        // it is gone
      }
      watchdog.child.ref();
      await watchdog.child.status;
    }
    // Unless a working directory is still there (a later start sweeps it).
    this.releaseCwdParent();
    for (const dir of [this.#pidsV1?.base, this.#memoryV1?.base, this.#cgroupHome?.base]) {
      if (dir === undefined) continue;
      try {
        Deno.removeSync(dir);
      } catch {
        // A command cgroup is still there (a later start sweeps it).
      }
    }
  }

  /** Closes the sandbox ({@link Sandbox.close}) at the end of an `await using` block. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * The live processes of process group `pgid`, asking `ps` (which `--allow-run=...,ps` permits
 * where Deno may not read `/proc`), or `undefined` when `ps` may not run or nothing tells the
 * group is the command's. A group whose leader (pid = pgid) started more than 2 s away from the
 * spawn is another, newer group: the pid was reused.
 */
function groupMembersByPs(pgid: number, spawnedAtMs: number | undefined): number[] | undefined {
  if (spawnedAtMs === undefined || !granted({ name: "run", command: "ps" })) return undefined;
  let text: string;
  try {
    const output = new Deno.Command("ps", {
      env: { PATH: helperPath() },
      args: ["-e", "-o", "pid=,pgid=,etimes=,stat="],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    if (!output.success) return undefined;
    text = new TextDecoder().decode(output.stdout);
  } catch {
    return undefined;
  }
  const now = { wallMs: Date.now(), monoMs: performance.now() };
  const members = text.split("\n").map((line) => line.trim().split(/\s+/))
    .filter(([pid, group, , stat]) => pid && Number(group) === pgid && !stat?.startsWith("Z"));
  const leader = members.find(([pid]) => Number(pid) === pgid);
  if (leader && startedElsewhen(Number(leader[2]), { spawnedAtMs }, now)) return [];
  return members.map(([pid]) => Number(pid));
}

/**
 * @internal Whether a process that `ps` says has run `etimes` seconds (counted from the boot, on
 * no wall clock) started more than 2 s away from a spawn: then it is another program, which got
 * the pid later. The spawn's time on this process's monotonic clock is compared when known (this
 * process spawned it): a step of the wall clock since (NTP, an operator's `date -s`) moves only
 * the wall time, and judged by it alone, the command's own first process was taken for another
 * and its strays were left running past the deadline. Either clock placing the start within 2 s
 * is enough (a suspend moves the monotonic one).
 *
 * @param etimes Seconds since the process started, as `ps -o etimes` says.
 * @param spawn When the spawn was: wall time (ms since the epoch) and, when known, monotonic ms.
 * @param now The wall and monotonic times now.
 * @returns `true` when it started at another time; `false` when it may be the spawned one, or
 *   nothing tells (no spawn time).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startedElsewhen } from "./sandbox.ts";
 *
 * // The wall clock stepped back an hour while the command ran for 100 s.
 * const spawn = { spawnedAtMs: 1_000_000_000_000, spawnedAtMonoMs: 5_000 };
 * const now = { wallMs: 1_000_000_000_000 - 3_600_000 + 100_000, monoMs: 105_000 };
 * assert.equal(startedElsewhen(100, spawn, now), false);
 * assert.equal(startedElsewhen(30, spawn, now), true);
 * ```
 */
export function startedElsewhen(
  etimes: number,
  spawn: { spawnedAtMs?: number; spawnedAtMonoMs?: number },
  now: { wallMs: number; monoMs: number },
): boolean {
  if (spawn.spawnedAtMs === undefined) return false;
  const ranMs = etimes * 1000;
  if (Math.abs(now.wallMs - ranMs - spawn.spawnedAtMs) <= 2000) return false;
  return spawn.spawnedAtMonoMs === undefined ||
    Math.abs(now.monoMs - ranMs - spawn.spawnedAtMonoMs) > 2000;
}

/** What is known of the first process of a command, which leads its session. */
interface SessionLeader {
  /** Its start time in clock ticks since boot, when read. */
  ticks?: number;
  /** When it was spawned, in milliseconds since the epoch, when known. */
  spawnedAtMs?: number;
  /**
   * When it was spawned on this process's monotonic clock (`performance.now()`), when this process
   * spawned it.
   */
  spawnedAtMonoMs?: number;
  /** Whether it has ended and been reaped (then a process of its pid is another program). */
  gone: boolean;
}

/**
 * The live processes of session `sid` outside process group `sid`: a command's processes that
 * moved to a group of their own. Read from `/proc`, else from `ps` (which `--allow-run=...,ps`
 * permits); none when neither can be read. None either when the process whose pid is `sid` is not
 * the command's first process: it started at another time than recorded, or the first process is
 * gone, so the pid was used again (a pid is not, while a session of that id has members).
 */
function sessionStrays(sid: number, leader: SessionLeader): number[] {
  const strays: number[] = [];
  try {
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      const pid = Number(entry.name);
      const stat = readStat(pid);
      if (!stat || stat.session !== sid) continue;
      if (pid === sid) {
        if (leader.ticks === undefined ? leader.gone : stat.startTicks !== leader.ticks) return [];
        continue;
      }
      if (stat.pgrp === sid) continue;
      if (leader.ticks === undefined || stat.startTicks >= leader.ticks) strays.push(pid);
    }
    return strays;
  } catch {
    return sessionStraysByPs(sid, leader);
  }
}

/** {@link sessionStrays} through `ps`, where `/proc` may not be read. */
function sessionStraysByPs(sid: number, leader: SessionLeader): number[] {
  if (!granted({ name: "run", command: "ps" })) return [];
  let text: string;
  try {
    const output = new Deno.Command("ps", {
      env: { PATH: helperPath() },
      args: ["-s", String(sid), "-o", "pid=,pgid=,etimes=,stat="],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    text = new TextDecoder().decode(output.stdout);
  } catch {
    return [];
  }
  const now = { wallMs: Date.now(), monoMs: performance.now() };
  const members = text.split("\n").map((line) => line.trim().split(/\s+/))
    .filter(([pid, , , stat]) => pid && stat && !stat.startsWith("Z"))
    .map(([pid, pgid, etimes]) => ({
      pid: Number(pid),
      pgid: Number(pgid),
      etimes: Number(etimes),
    }));
  const first = members.find(({ pid }) => pid === sid);
  if (first) {
    // A leader that started more than 2 s away from the spawn is another, newer program.
    const other = startedElsewhen(first.etimes, leader, now);
    if (leader.gone || other) return [];
  }
  return members.filter(({ pid, pgid }) => pid !== sid && pgid !== sid).map(({ pid }) => pid);
}

/**
 * The live processes of process group `pgid` that started no earlier than its leader did, or
 * `undefined` when `/proc` is not readable. None when a leader of that id lives that started at
 * another time: the command's group ended and its id was used again (a pid is not, while a group
 * of that id has members), so the group is another program's.
 */
function groupMembers(pgid: number, leaderTicks: number): number[] | undefined {
  const members: number[] = [];
  try {
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      const pid = Number(entry.name);
      const stat = readStat(pid);
      if (!stat || stat.pgrp !== pgid) continue;
      if (pid === pgid && stat.startTicks !== leaderTicks) return [];
      if (stat.startTicks >= leaderTicks) members.push(pid);
    }
  } catch {
    return undefined;
  }
  return members;
}
