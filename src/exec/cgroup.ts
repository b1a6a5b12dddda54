/**
 * cgroup v2 for the sandbox: finding the hierarchy and the agent's own group, probing whether the
 * agent may create and move into groups below it, killing and removing a group, and the watchdog
 * that kills the agent's command groups when the agent dies.
 *
 * @module
 */
import { isGranted } from "../permissions.ts";
import { abortableSleep, lockWithin } from "../clock.ts";
import { logger } from "../log/mod.ts";
import { ownUid } from "../own_files.ts";
import { DEFAULT_CHILD_PATH } from "./env.ts";

const log = logger("exec", "sandbox");
const encoder = new TextEncoder();
/**
 * The mount point of the cgroup v2 hierarchy in a `/proc/self/mountinfo` text.
 *
 * @param mountinfo The text.
 * @returns The mount point, or `undefined`.
 */
export function cgroup2Mount(mountinfo: string): string | undefined {
  for (const line of mountinfo.split("\n")) {
    const [left, right] = line.split(" - ");
    if (!right || right.split(" ")[0] !== "cgroup2") continue;
    return left.split(" ")[4]?.replace(/\\040/g, " ");
  }
  return undefined;
}

/**
 * The cgroup v2 path of a process in a `/proc/<pid>/cgroup` text (the `0::` line).
 *
 * @param text The text.
 * @returns The path (starting with `/`), or `undefined`.
 */
export function ownCgroupPath(text: string): string | undefined {
  const line = text.split("\n").find((l) => l.startsWith("0::"));
  return line?.slice(3).trim() || undefined;
}

/** Writes a cgroup control file (one write, as the kernel wants it). */
export function writeText(path: string, text: string): void {
  using file = Deno.openSync(path, { write: true });
  file.writeSync(encoder.encode(text));
}

/** The processes of a cgroup (`cgroup.procs`), none when it cannot be read. */
export function readPids(cgroup: string): number[] {
  try {
    return Deno.readTextFileSync(`${cgroup}/cgroup.procs`).split("\n").filter((l) => l !== "")
      .map(Number);
  } catch {
    return [];
  }
}

/** A file's text, or `undefined` when it cannot be read. */
export function readText(path: string): string | undefined {
  // Not asked for: a read that is not granted would prompt on a terminal.
  if (!isGranted({ name: "read", path })) return undefined;
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

function populated(cgroup: string): boolean | undefined {
  try {
    return /^populated 1$/m.test(Deno.readTextFileSync(`${cgroup}/cgroup.events`));
  } catch {
    return undefined;
  }
}

/** Whether a path exists. */
export function exists(path: string): boolean {
  if (!isGranted({ name: "read", path })) return false;
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Kills every process of a cgroup (`cgroup.kill`), waits until it is empty and removes it.
 *
 * @returns Whether processes were running.
 */
export async function killCgroup(cgroup: string, limitMs = 5000): Promise<boolean> {
  const wasPopulated = populated(cgroup) === true;
  if (wasPopulated) {
    try {
      writeText(`${cgroup}/cgroup.kill`, "1");
    } catch (error) {
      log.warning("could not kill cgroup {cgroup}", { cgroup, error });
    }
  }
  const end = Date.now() + limitMs;
  for (;;) {
    try {
      Deno.removeSync(cgroup);
      return wasPopulated;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return wasPopulated;
      if (Date.now() > end) {
        log.warning("cgroup {cgroup} could not be removed", { cgroup, error });
        return wasPopulated;
      }
    }
    await abortableSleep(10);
  }
}

/**
 * The agent's own cgroup from the path `/proc/self/cgroup` shows now. While another agent of the
 * same process (another thread: a library embedding two agents, parallel tests) starts a command,
 * the whole process is in that command's cgroup (`<own>/status-<tag>/cmd-…`) or in a probe
 * (`…/probe-<pid>`) for a moment; the cgroup above those is the process's own. So is the one
 * above the leaf the process moved into for the memory controller (`<own>/status.agent`).
 *
 * @param path The path, starting with `/`.
 * @returns The own cgroup's path.
 */
export function ownCgroupOf(path: string): string {
  const inside = /^(.*)\/(?:status-[^/]+\/(?:cmd-\d+-\d+-[0-9a-f]+|probe-\d+)|status\.agent)$/
    .exec(path);
  return inside ? inside[1] || "/" : path;
}

/**
 * Runs `step` holding the lock on the own cgroup's directory (`flock`): the steps that move this
 * process into a cgroup of its own and back (a probe, a command's spawn) and the spawns that
 * must not land in a command's cgroup (the watchdog) take turns between the agents of one process,
 * each on its own thread, so that no agent spawns, probes or reads its cgroup while another has
 * moved the process. Agents of other processes sharing the cgroup take turns too (a spawn's
 * moment each). Any process that may read the directory can take the lock, so it is waited for
 * {@link MOVE_LOCK_WAIT_MS} at most, and while a holder keeps it past that (a stuck or hostile
 * process) it is only tried, not waited for: the thread blocks once per such episode, not at
 * every command, and the agent's commands run either way, with one warning.
 *
 * @param own The own cgroup's directory.
 * @param step What runs under the lock (synchronous).
 * @returns What `step` returns.
 */
export function whileMoving<T>(own: string, step: () => T): T {
  using dir = Deno.openSync(own, { read: true });
  const locked = lockWithin(dir, kept.has(own) ? 0 : MOVE_LOCK_WAIT_MS);
  if (locked) kept.delete(own);
  else if (!kept.has(own)) {
    kept.add(own);
    log.warning(
      "another process has held the lock on {cgroup} for {waitMs} ms; going on without it " +
        "until it is free again",
      { cgroup: own, waitMs: MOVE_LOCK_WAIT_MS },
    );
  }
  try {
    return step();
  } finally {
    // Unlocked by name, not by closing: a child being spawned holds a copy of the descriptor
    // until its program starts, and the lock with it.
    if (locked) dir.unlockSync();
  }
}

/** The own cgroups whose lock another process kept past the wait (tried, not waited for). */
const kept = new Set<string>();

/** How long {@link whileMoving} waits for another holder of its lock. */
export const MOVE_LOCK_WAIT_MS = 1000;

/** Where an agent's command cgroups live. */
export interface CgroupHome {
  /** The agent's own cgroup directory. */
  own: string;
  /** This agent's directory of command cgroups, below its own. */
  base: string;
}

/**
 * Finds the agent's cgroup and creates its directory of command cgroups (`status-<tag>`), checking
 * that the agent may move itself into a group below it and back.
 *
 * @param tag Names this agent's directory.
 * @returns Where the command cgroups live, or why there are none.
 */
export function probeCgroups(tag: string): CgroupHome | string {
  let mount: string | undefined;
  let path: string | undefined;
  // Not asked for: a read that is not granted would prompt on a terminal.
  if (!isGranted({ name: "read", path: "/proc/self/mountinfo" })) {
    return "Deno lets a program read /proc and write /sys/fs/cgroup only under --allow-all";
  }
  try {
    mount = cgroup2Mount(Deno.readTextFileSync("/proc/self/mountinfo"));
    path = ownCgroupPath(Deno.readTextFileSync("/proc/self/cgroup"));
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) {
      return "Deno lets a program read /proc and write /sys/fs/cgroup only under --allow-all";
    }
    return `/proc/self is not readable (${(error as Error).message})`;
  }
  if (!mount) return "no cgroup v2 hierarchy is mounted";
  if (!path) return "this process is in no cgroup v2 group";
  const ownPath = ownCgroupOf(path);
  const own = `${mount}${ownPath === "/" ? "" : ownPath}`;
  // Started in the leaf (by a process that lived there): it goes back there, not into its own
  // cgroup, which cgroup v2 may no longer let hold a process.
  if (path.endsWith(`/${LEAF_NAME}`) && !leaves.has(own)) leaves.set(own, `${mount}${path}`);
  try {
    return whileMoving(own, () => probeBelow(own, tag));
  } catch (error) {
    return `cannot lock ${own} (${(error as Error).message})`;
  }
}

/**
 * @internal {@link probeCgroups} once the own cgroup is known and locked.
 *
 * @param own The own cgroup's directory.
 * @param tag Names this agent's directory.
 * @returns Where the command cgroups live, or why there are none.
 */
export function probeBelow(own: string, tag: string): CgroupHome | string {
  const base = `${own}/status-${tag}`;
  try {
    Deno.mkdirSync(base, { recursive: true });
  } catch (error) {
    // Root or a delegated cgroup is the way out only for an agent that is neither; a root agent
    // refused (a container's read-only cgroup file system) is told the reason alone.
    const hint = error instanceof Deno.errors.PermissionDenied && ownUid() !== 0
      ? "; run as root or as a systemd service with Delegate=yes"
      : "";
    return `cannot create ${base} (${(error as Error).message})${hint}`;
  }
  if (!exists(`${base}/cgroup.kill`)) {
    return "the kernel has no cgroup.kill (Linux 5.14 or later is needed)";
  }
  const probe = `${base}/probe-${Deno.pid}`;
  try {
    Deno.mkdirSync(probe);
    writeText(`${probe}/cgroup.procs`, String(Deno.pid));
    writeText(`${homeOf(own)}/cgroup.procs`, String(Deno.pid));
    Deno.removeSync(probe);
  } catch (error) {
    try {
      writeText(`${homeOf(own)}/cgroup.procs`, String(Deno.pid));
      Deno.removeSync(probe);
    } catch {
      // best effort
    }
    return `cannot move processes between cgroups under ${own} (${(error as Error).message})`;
  }
  return { own, base };
}

/** A process beside the agent that stops its commands when the agent dies. */
export interface Watchdog {
  child: Deno.ChildProcess;
  writer: WritableStreamDefaultWriter<Uint8Array>;
}

/**
 * The watchdog's script: it waits for the end of its standard input, which the agent holds open
 * as long as it lives (also a SIGKILLed agent's end closes), then stops every command the agent
 * left running (nothing enforces their deadlines any more): it freezes the cgroup, which stays
 * as the mark that it was stopped (not ended on its own), and kills it.
 */
const WATCHDOG_SCRIPT = 'cat > /dev/null; for d in "$1"/*/; do ' +
  'case "$(cat "$d/cgroup.events")" in *"populated 1"*) ' +
  'echo 1 > "$d/cgroup.freeze"; echo 1 > "$d/cgroup.kill";; esac; done';

/** The shell the watchdog runs in. */
const WATCHDOG_SHELL = "/bin/sh";

/**
 * Whether the watchdog's shell may run here (an executable file, and the permission to run it).
 *
 * @returns `true` when {@link startWatchdog} can start it.
 */
export function watchdogRunnable(): boolean {
  try {
    if (Deno.permissions.querySync({ name: "run", command: WATCHDOG_SHELL }).state !== "granted") {
      return false;
    }
    const info = Deno.statSync(WATCHDOG_SHELL);
    return info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/**
 * Starts the watchdog of an agent's command cgroups.
 *
 * @param base The agent's directory of command cgroups.
 * @returns The watchdog, or `undefined` when `/bin/sh` cannot be run.
 */
export function startWatchdog(base: string): Watchdog | undefined {
  try {
    const child = new Deno.Command(WATCHDOG_SHELL, {
      args: ["-c", WATCHDOG_SCRIPT, "status-watchdog", base],
      // Not the agent's environment: it holds the token, and the script's `cat` would be looked
      // up on the agent's PATH (a "." there, and root would run a cat of the working directory).
      clearEnv: true,
      env: { PATH: DEFAULT_CHILD_PATH },
      stdin: "piped",
      stdout: "null",
      stderr: "null",
      // Its own session: a Ctrl-C meant for the agent's graceful stop does not reach it.
      detached: true,
    }).spawn();
    child.unref();
    return { child, writer: child.stdin.getWriter() };
  } catch (error) {
    log.warning("no watchdog: commands run on if the agent dies, until it restarts", { error });
    return undefined;
  }
}

/** The largest `pids.max` the kernel takes (`PID_MAX_LIMIT`, 2^22). */
export const MAX_PIDS_LIMIT = 4_194_304;

/** Whether a cgroup's space-separated list of controllers names `name`. */
function listsController(text: string, name: string): boolean {
  return text.split(/\s+/).includes(name);
}

/**
 * Turns the pids controller on for the command cgroups below `home.base`: in the
 * `cgroup.subtree_control` of the agent's own cgroup (where its children, `status-<tag>` among
 * them, get `pids.*` files) and of `home.base` (where each command's cgroup gets its
 * `pids.max`). A threaded controller, it may be turned on in a cgroup that holds processes (the
 * agent's own). Nothing is done where it is on already.
 *
 * @param home Where the command cgroups live.
 * @returns Why it cannot be turned on (a clause: "it is not available in ..."), or `undefined`
 *   when it is on.
 */
export function enablePids(home: CgroupHome): string | undefined {
  return enableController(home, "pids");
}

/**
 * Turns the memory controller on for the command cgroups below `home.base`, as
 * {@link enablePids} does the pids controller. A domain controller, cgroup v2 passes it down only
 * from a cgroup that holds no process of its own ("no internal processes"): the agent's own
 * cgroup, which holds the agent, is refused it (EBUSY) unless it is the root. When the agent's
 * process is the only one there, it moves into a leaf of its own cgroup ({@link LEAF_NAME}), where
 * it stays, and the controller is turned on; when others are there too, the agent stays and says
 * so. Called with the own cgroup locked ({@link whileMoving}).
 *
 * @param home Where the command cgroups live.
 * @returns Why it cannot be turned on (a clause: "it is not available in ..."), or `undefined`
 *   when it is on.
 */
export function enableMemory(
  home: CgroupHome,
  ours: readonly number[] = [],
): string | undefined {
  return enableDomain(home, "memory", ours);
}

/**
 * @internal {@link enableMemory} of any domain controller (a test takes one this machine's
 * cgroup v2 has).
 *
 * @param home Where the command cgroups live.
 * @param name The controller.
 * @param ours The agent's own processes beside it in its cgroup (its watchdog, started there
 *   before the controller could be turned on): moved into the leaf with it, not counted as others.
 * @returns Why it cannot be turned on, or `undefined` when it is on.
 */
export function enableDomain(
  home: CgroupHome,
  name: string,
  ours: readonly number[] = [],
): string | undefined {
  const why = enableController(home, name);
  if (why !== busyIn(home.own)) return why;
  const present = readPids(home.own);
  const others = present.filter((pid) => pid !== Deno.pid && !ours.includes(pid));
  if (others.length > 0) {
    return `${heldByOthers(home.own)} (${others.slice(0, 5).join(", ")}${
      others.length > 5 ? ", ..." : ""
    }): cgroup v2 passes it down only from a cgroup that holds no processes; run the agent in a ` +
      "cgroup of its own";
  }
  const moving = [Deno.pid, ...ours.filter((pid) => present.includes(pid))];
  const leaf = `${home.own}/${LEAF_NAME}`;
  try {
    try {
      Deno.mkdirSync(leaf);
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    }
    for (const pid of moving) writeText(`${leaf}/cgroup.procs`, String(pid));
  } catch (error) {
    backInto(home.own, moving);
    return `it cannot be turned on in ${home.own}, which holds the agent, and the agent cannot ` +
      `move into ${leaf} (${(error as Error).message})`;
  }
  leaves.set(home.own, leaf);
  const again = enableController(home, name);
  if (again === undefined) return undefined;
  // Back where it was: nothing changed.
  if (backInto(home.own, moving)) leaves.delete(home.own);
  // Else it stays in the leaf, where it moves back to after each spawn.
  return again;
}

/**
 * Moves `pids` into the cgroup `dir`, as many as it can (one that has ended is no loss).
 *
 * @returns Whether this process is there.
 */
function backInto(dir: string, pids: readonly number[]): boolean {
  let self = false;
  for (const pid of pids) {
    try {
      writeText(`${dir}/cgroup.procs`, String(pid));
      if (pid === Deno.pid) self = true;
    } catch {
      // best effort
    }
  }
  return self;
}

/**
 * The start of what {@link enableDomain} says when other processes than the agent's share its own
 * cgroup: they may end (the process that started a `--daemon`), and a later try succeed.
 *
 * @param own The own cgroup's directory.
 * @returns The clause.
 */
export function heldByOthers(own: string): string {
  return `it cannot be turned on in ${own}, which holds other processes than the agent`;
}

/**
 * The leaf cgroup below its own that the agent's process moves into when cgroup v2 would not
 * pass the memory controller down from a cgroup holding it (see {@link enableMemory}); a name
 * no `status-<tag>` directory of command cgroups can have.
 */
export const LEAF_NAME = "status.agent";

/** The leaf each own cgroup's process moved into ({@link enableMemory}). */
const leaves = new Map<string, string>();

/**
 * Where this process belongs while it is not spawning a command: its own cgroup, or the leaf
 * below it it moved into ({@link enableMemory}). The cgroup a spawn or a probe moves it back to.
 *
 * @param own The own cgroup's directory.
 * @returns The directory.
 */
export function homeOf(own: string): string {
  return leaves.get(own) ?? own;
}

/** What {@link enableController} says when the kernel refused the own cgroup a controller (EBUSY). */
function busyIn(dir: string): string {
  return `it cannot be turned on in ${dir}, which holds processes (cgroup v2 passes it down ` +
    "only from a cgroup that holds none)";
}

/**
 * Whether an error is the kernel's EBUSY (which Deno gives as a plain `Error` whose `code` is
 * `"EBUSY"`): a cgroup that holds processes refused a domain controller, a cgroup v1 memory
 * limit below what the group uses.
 */
export function isBusy(error: unknown): boolean {
  return error instanceof Deno.errors.Busy || (error as { code?: unknown })?.code === "EBUSY";
}

function enableController(home: CgroupHome, name: string): string | undefined {
  for (const dir of [home.own, home.base]) {
    const enabled = readText(`${dir}/cgroup.subtree_control`);
    if (enabled === undefined) return `${dir}/cgroup.subtree_control cannot be read`;
    if (listsController(enabled, name)) continue;
    if (!listsController(readText(`${dir}/cgroup.controllers`) ?? "", name)) {
      return `it is not available in ${dir} (a cgroup v1 hierarchy holds it, or the cgroup ` +
        "above does not pass it down)";
    }
    try {
      writeText(`${dir}/cgroup.subtree_control`, `+${name}`);
    } catch (error) {
      if (isBusy(error) && dir === home.own) return busyIn(dir);
      return `it cannot be turned on in ${dir}: ${(error as Error).message}`;
    }
  }
  return undefined;
}

/**
 * How many times a fork in a cgroup failed at its `pids.max` (`max` in `pids.events`).
 *
 * @param cgroup The cgroup directory.
 * @returns The count; 0 when there is no such file.
 */
export function pidsMaxEvents(cgroup: string): number {
  const count = /^max (\d+)$/m.exec(readText(`${cgroup}/pids.events`) ?? "")?.[1];
  return count === undefined ? 0 : Number(count);
}

/** The controllers the agent looks for in a cgroup v1 hierarchy (a hybrid system). */
export type V1Controller = "pids" | "memory";

/**
 * The mount point of a cgroup v1 hierarchy that holds a controller, in a `/proc/self/mountinfo`
 * text (a hybrid system: `cgroup` mounted with the option `pids` or `memory`).
 *
 * @param mountinfo The text.
 * @param controller The controller.
 * @returns The mount point, or `undefined`.
 */
export function v1Mount(mountinfo: string, controller: V1Controller): string | undefined {
  for (const line of mountinfo.split("\n")) {
    const [left, right] = line.split(" - ");
    const [type, , options] = right?.split(" ") ?? [];
    if (type !== "cgroup" || !options?.split(",").includes(controller)) continue;
    return left.split(" ")[4]?.replace(/\\040/g, " ");
  }
  return undefined;
}

/**
 * The path of a process in the cgroup v1 hierarchy of a controller, in a `/proc/<pid>/cgroup`
 * text (the `N:pids:/path` or `N:memory:/path` line).
 *
 * @param text The text.
 * @param controller The controller.
 * @returns The path (starting with `/`), or `undefined`.
 */
export function v1Path(text: string, controller: V1Controller): string | undefined {
  const line = text.split("\n").find((l) => l.split(":")[1]?.split(",").includes(controller));
  return line?.slice(line.indexOf(":", line.indexOf(":") + 1) + 1).trim() || undefined;
}

/** {@link v1Mount} of the pids controller. */
export function pidsV1Mount(mountinfo: string): string | undefined {
  return v1Mount(mountinfo, "pids");
}

/** {@link v1Path} of the pids controller. */
export function pidsV1Path(text: string): string | undefined {
  return v1Path(text, "pids");
}

/** The file of a cgroup v1 group that holds each controller's limit. */
const V1_LIMIT_FILES: Record<V1Controller, string> = {
  pids: "pids.max",
  memory: "memory.limit_in_bytes",
};

/**
 * On a hybrid system, whose cgroup v2 hierarchy lacks a controller because a cgroup v1
 * hierarchy holds it: the agent's group there and its directory of command groups
 * (`status-<tag>`, made here), where each command gets a group of the same name as its cgroup v2
 * one, for its limit alone (cgroup v2 still finds and stops its processes). Called with the
 * own cgroup v2 locked ({@link whileMoving}): the process's path is then its own.
 *
 * @param controller The controller (`pids.max`, `memory.limit_in_bytes`).
 * @param tag Names this agent's directory.
 * @returns Where the command groups live, or why there are none (a clause: "it is not ...").
 */
export function probeV1(controller: V1Controller, tag: string): CgroupHome | string {
  let mount: string | undefined;
  let path: string | undefined;
  try {
    mount = v1Mount(Deno.readTextFileSync("/proc/self/mountinfo"), controller);
    path = v1Path(Deno.readTextFileSync("/proc/self/cgroup"), controller);
  } catch (error) {
    return `/proc/self is not readable (${(error as Error).message})`;
  }
  if (!mount || !path) return "no cgroup v1 hierarchy holds it either";
  const ownPath = ownCgroupOf(path);
  const own = `${mount}${ownPath === "/" ? "" : ownPath}`;
  const base = `${own}/status-${tag}`;
  try {
    Deno.mkdirSync(base, { recursive: true });
  } catch (error) {
    return `the cgroup v1 hierarchy that holds it refuses ${base} (${(error as Error).message})`;
  }
  const file = V1_LIMIT_FILES[controller];
  if (!exists(`${base}/${file}`)) return `${base} has no ${file}`;
  return { own, base };
}

/** {@link probeV1} of the pids controller. */
export function probePidsV1(tag: string): CgroupHome | string {
  return probeV1("pids", tag);
}

/** The most bytes `COMMAND_MAX_MEMORY` may name: 1024 TiB. */
export const MAX_MEMORY_LIMIT = 1024 ** 5;

/**
 * The fewest bytes `COMMAND_MAX_MEMORY` may name (other than 0, no limit): 1 MiB, below which no
 * program starts; a bare number that small is most likely a size whose unit was left out.
 */
export const MIN_MEMORY_LIMIT = 1024 ** 2;

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
};

/**
 * Reads a memory size as `COMMAND_MAX_MEMORY` takes it: a whole number of bytes, or a number with
 * one of the suffixes K, M, G and T (powers of 1024, as systemd's `MemoryMax=` reads them;
 * `512M`, `1.5G`, `2GiB`), or `0`, `unlimited` or `infinity` for no limit (0). A JSON number is
 * a number of bytes.
 *
 * @param value The text (or number).
 * @returns The bytes (0: no limit), or `undefined` when it is no size or out of range.
 */
export function parseMemorySize(value: unknown): number | undefined {
  let bytes: number;
  if (typeof value === "number") bytes = value;
  else if (typeof value === "string") {
    const text = value.trim().toLowerCase();
    if (text === "unlimited" || text === "infinity") return 0;
    const size = /^(\d+(?:\.\d+)?) ?([kmgt]?)(?:i?b)?$/.exec(text);
    if (!size || (size[1].includes(".") && size[2] === "")) return undefined;
    bytes = Math.floor(Number(size[1]) * SIZE_UNITS[size[2]]);
  } else return undefined;
  if (!Number.isSafeInteger(bytes)) return undefined;
  return bytes === 0 || (bytes >= MIN_MEMORY_LIMIT && bytes <= MAX_MEMORY_LIMIT)
    ? bytes
    : undefined;
}

/**
 * A number of bytes as a size in the largest unit that divides it (`2G`, `1536M`), else in
 * bytes (`1000000 bytes`).
 *
 * @param bytes The bytes.
 * @returns The size in words.
 */
export function describeMemorySize(bytes: number): string {
  for (const unit of ["T", "G", "M", "K"]) {
    const size = SIZE_UNITS[unit.toLowerCase()];
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return `${bytes} bytes`;
}

/**
 * How many of a cgroup's processes the kernel's OOM killer ended at its memory limit: the
 * `oom_kill` count of `memory.events` (cgroup v2) or `memory.oom_control` (a cgroup v1 memory
 * group).
 *
 * @param cgroup The cgroup (or cgroup v1 memory group) directory.
 * @returns The count; 0 when neither file has it.
 */
export function oomKills(cgroup: string): number {
  const text = readText(`${cgroup}/memory.events`) ?? readText(`${cgroup}/memory.oom_control`);
  const count = /^oom_kill (\d+)$/m.exec(text ?? "")?.[1];
  return count === undefined ? 0 : Number(count);
}
