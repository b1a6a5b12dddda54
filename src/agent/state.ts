/**
 * Opens the agent's state: the journal and the outbox under `STATE_DIR` when the program may
 * read and write there, in memory otherwise (with a notice naming the flags that make them
 * durable).
 *
 * @module
 */
import { lockWithin } from "../clock.ts";
import { DEFAULT_STATE_DIR } from "../defaults.ts";
import {
  canReadWrite,
  isNoSpace,
  readStateTextSync,
  removeFileDurableSync,
  volatileFileSystem,
  writeFileAtomicSync,
} from "./fs.ts";
import { logger } from "../log/mod.ts";
import { NotOwnFileError, openOwnFileSync, sharedDirectoryProblem } from "../own_files.ts";
import { writeAllSync } from "../write_all.ts";
import { Journal, type JournalOptions } from "./journal.ts";
import { Outbox } from "./outbox.ts";
import { INSTANCE_ID_FILE } from "./instance.ts";

const log = logger("agent", "state");

/** The agent's journal and outbox. */
export interface AgentState extends Disposable {
  /** The execution journal. */
  journal: Journal;
  /** The result outbox. */
  outbox: Outbox;
  /** Whether both are on disk. */
  durable: boolean;
  /** Why they are in memory and how to fix it, when they are. */
  notice?: string;
  /**
   * Writes what waits in memory because the directory could not be written, and checks that a
   * small file can be written.
   *
   * @returns Whether the state directory can be written again.
   */
  retry?(): boolean;
}

/** Options of {@link openAgentState}. */
export interface AgentStateOptions
  extends Pick<JournalOptions, "maxEntries" | "retentionMs" | "maxBytes"> {
  /**
   * The state directory, created with mode 0700 when missing.
   * @default {"./.status-state"}
   */
  dir?: string;
  /** Decides whether the directory may be used; defaults to a `Deno.permissions` query. */
  canUse?: (dir: string) => boolean;
  /** Clock for timestamps; for tests. */
  now?: () => number;
  /**
   * Who the journal and the outbox belong to: the agent id and the dashboard their results go to.
   * Kept in `STATE_DIR/owner.json`; a directory holding undelivered results of another agent id or
   * dashboard is refused (they would be sent as this agent's, to this dashboard). Absent: not
   * checked.
   */
  owner?: StateOwner;
}

/** The agent id and the dashboard an on-disk journal and outbox belong to. */
export interface StateOwner {
  /** The agent id. */
  agentId: string;
  /** The dashboard's URL. */
  dashboardUrl: string;
}

/** Name of the file that says whose journal and outbox the state directory holds. */
export const STATE_OWNER_FILE = "owner.json";

/** The most bytes {@link STATE_OWNER_FILE} may hold: an agent id and a URL. */
const OWNER_FILE_MAX_BYTES = 64 * 1024;

/**
 * Opens the journal and the outbox: on disk under `dir` when `--allow-read` and `--allow-write`
 * cover it, in memory otherwise. Never throws `NotCapable`.
 *
 * @param options Directory and journal limits.
 * @returns The state; close it with `using` or `[Symbol.dispose]()`.
 * @throws {Error} When the directory is permitted but cannot be created or read (an I/O error
 *   such as a file in its place or EACCES); losing durability silently would be worse.
 */
export function openAgentState(options: AgentStateOptions = {}): AgentState {
  const dir = options.dir ?? DEFAULT_STATE_DIR;
  const canUse = options.canUse ?? canReadWrite;
  const memory = (notice: string): AgentState => {
    const journal = Journal.open({ ...options, dir: undefined });
    const outbox = Outbox.open({ now: options.now });
    return {
      journal,
      outbox,
      durable: false,
      notice,
      retry: () => true,
      [Symbol.dispose]: () => journal.close(),
    };
  };
  if (!canUse(dir)) {
    return memory(
      `the execution journal and the result outbox are kept in memory only, because ${dir} ` +
        `may not be read and written; run with --allow-read=${dir} --allow-write=${dir} ` +
        `to keep them on disk across restarts`,
    );
  }
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) {
      return memory(
        `the execution journal and the result outbox are kept in memory only (${
          (error as Error).message
        }); run with --allow-read=${dir} --allow-write=${dir} to keep them on disk`,
      );
    }
    const why = error instanceof Deno.errors.AlreadyExists
      ? "it exists and is not a directory"
      : error instanceof Deno.errors.NotADirectory
      ? "a part of the path above it is not a directory"
      : (error as Error).message;
    // A read-only file system, a parent this user may not write: say what to do too.
    throw new Error(
      `cannot create the state directory ${dir}: ${why} (create it for this user, or set ` +
        "STATE_DIR to another directory)",
      { cause: error },
    );
  }
  // Created 0700 when missing; one that was there already (made by another user in /tmp, say)
  // must be this user's alone: its journal tells a restarted agent which processes to kill.
  const shared = sharedDirectoryProblem(dir);
  if (shared !== undefined) {
    throw new Error(
      `the state directory ${dir} cannot be used: ${shared} (another user could read or change ` +
        "the journal and the outbox); give the agent a directory of its own",
    );
  }
  const lock = lockStateDir(dir);
  removeInterruptedWrites(dir);
  const volatile = volatileFileSystem(dir);
  if (volatile !== undefined) {
    log.warning(
      "the state directory {dir} is on {fileSystem}, which a restart of the machine empties: " +
        "a command running then would be run again when the dashboard delivers it again (its " +
        "journal entry lost); set STATE_DIR to a directory on a disk, such as /var/lib/status",
      { dir, fileSystem: volatile },
    );
  }
  let journal: Journal | undefined;
  try {
    journal = Journal.open({ ...options, dir });
    const outbox = Outbox.open({ dir, now: options.now });
    // Recorded later when the disk is full now (retried with the rest).
    let recordOwner = options.owner ? claimState(dir, options.owner, journal, outbox) : undefined;
    const opened = journal;
    return {
      journal,
      outbox,
      durable: true,
      retry: () => {
        if (!(opened.retry() && outbox.retry())) return false;
        if (recordOwner && !recordOwner()) return false;
        recordOwner = undefined;
        return canWriteProbe(dir);
      },
      [Symbol.dispose]: () => {
        opened.close();
        lock.close();
      },
    };
  } catch (error) {
    journal?.close();
    lock.close();
    if (error instanceof StateOwnerError) throw error;
    // E.g. `outbox` is a file or `journal.jsonl` a directory: say where, not only the system call.
    throw new Error(
      `cannot open the journal and outbox in the state directory ${dir}: ${
        (error as Error).message
      } (move what is in the way, or set STATE_DIR to another directory)`,
      { cause: error },
    );
  }
}

/** The state directory holds undelivered results of another agent id or dashboard. */
export class StateOwnerError extends Error {
  /** How many commands' results are not delivered yet. */
  readonly pending: number;
  /** The agent id they belong to, when the directory names it. */
  readonly previousAgentId: string | undefined;
  /**
   * When the directory's owner file is damaged (it names no agent): how to claim the results as
   * this agent's, `put {...} in <dir>/owner.json and start it again`.
   */
  readonly claimFix: string | undefined;

  /**
   * Creates the error.
   *
   * @param message What is refused and how to go on.
   * @param pending How many results are not delivered yet.
   * @param previousAgentId The agent id they belong to.
   * @param claimFix How to claim them, when the owner file is damaged.
   */
  constructor(
    message: string,
    pending: number,
    previousAgentId: string | undefined,
    claimFix?: string,
  ) {
    super(message);
    this.name = "StateOwnerError";
    this.pending = pending;
    this.previousAgentId = previousAgentId;
    this.claimFix = claimFix;
  }
}

/** The form of a dashboard URL that two spellings of one address share. */
function normalUrl(url: string): string {
  return (URL.parse(url)?.href ?? url).replace(/\/+$/, "");
}

/**
 * Checks that the journal and the outbox belong to `owner` and records it. Those of another agent
 * id or dashboard are taken over only when nothing is left to deliver: their results would be
 * sent as this agent's to this dashboard (refused there, so lost, or taken as the result of a
 * command of the same id), and their command ids would mark this dashboard's as run already.
 */
function claimState(
  dir: string,
  owner: StateOwner,
  journal: Journal,
  outbox: Outbox,
): (() => boolean) | undefined {
  const path = `${dir}/${STATE_OWNER_FILE}`;
  const wanted = { agent_id: owner.agentId, dashboard_url: normalUrl(owner.dashboardUrl) };
  // Never a named pipe (the agent would hang at start) nor through a symlink.
  const text = readStateTextSync(path, OWNER_FILE_MAX_BYTES);
  let kept: { agent_id?: unknown; dashboard_url?: unknown } | undefined;
  if (text !== undefined) {
    try {
      kept = JSON.parse(text);
    } catch {
      kept = {};
    }
    if (typeof kept !== "object" || kept === null) kept = {};
  }
  if (kept?.agent_id === wanted.agent_id && kept?.dashboard_url === wanted.dashboard_url) {
    return undefined;
  }
  if (kept !== undefined) {
    const unsettled = journal.entries().filter((entry) => entry.state !== "accepted");
    const pending = new Set([
      ...outbox.pending().map((r) => r.command_id),
      ...unsettled.map((e) => e.id),
    ]);
    const whose = typeof kept.agent_id === "string" && typeof kept.dashboard_url === "string"
      ? `agent ${JSON.stringify(kept.agent_id)} of the dashboard ${kept.dashboard_url}`
      : `an agent ${path} does not name (it is damaged)`;
    if (pending.size > 0) {
      const named = typeof kept.agent_id === "string" && typeof kept.dashboard_url === "string";
      // A damaged file names no old AGENT_ID to start with: say how to say whose they are.
      const claimFix = named
        ? undefined
        : `put ${JSON.stringify(wanted)} in ${path} and start it again`;
      const howToDeliver = claimFix === undefined
        ? "Start the agent with its old AGENT_ID and DASHBOARD_URL until they are delivered"
        : `If they are this agent's, ${claimFix}`;
      throw new StateOwnerError(
        `the state directory ${dir} holds ${pending.size} result(s) not yet delivered of ${whose}; ` +
          `this agent is ${JSON.stringify(wanted.agent_id)} of the dashboard ` +
          `${wanted.dashboard_url} and would send them as its own. ${howToDeliver}, or give it ` +
          `another STATE_DIR (--state-dir); remove ${dir} only if those results may be lost`,
        pending.size,
        typeof kept.agent_id === "string" ? kept.agent_id : undefined,
        claimFix,
      );
    }
    // Everything was delivered: the old entries only guard the old dashboard's ids.
    for (const entry of journal.entries()) journal.forget(entry.id);
    log.info("the state directory was another agent's, with nothing left to deliver; taken over", {
      dir,
      previous: whose,
    });
  }
  const record = () => {
    try {
      writeFileAtomicSync(path, JSON.stringify(wanted) + "\n");
      return true;
    } catch (error) {
      if (!isNoSpace(error)) {
        throw new Error(`cannot write ${path}: ${(error as Error).message}`, { cause: error });
      }
      return false;
    }
  };
  if (record()) return undefined;
  log.warning("the owner of the state directory could not be recorded for now", { file: path });
  return () => {
    try {
      return record();
    } catch {
      return false;
    }
  };
}

/**
 * Writes and removes a small file: whether the directory has room for a journal entry. Its name
 * is new each time: under a fixed one, a directory made there by hand failed every probe, and an
 * agent that had once found the disk full took no command again.
 */
function canWriteProbe(dir: string): boolean {
  const path = `${dir}/space-probe.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    writeFileAtomicSync(path, "x".repeat(4096));
    removeFileDurableSync(path);
    return true;
  } catch {
    try {
      Deno.removeSync(path);
    } catch {
      // not there
    }
    return false;
  }
}

/**
 * The temporary files of writes a crash interrupted before their rename, and space probes it
 * interrupted before their removal: each has a name of its own, so none is ever written over.
 * (The journal and the outbox remove their own.)
 */
const INTERRUPTED_WRITE = new RegExp(
  `^(?:(?:${STATE_OWNER_FILE.replace(".", "\\.")}|${INSTANCE_ID_FILE})\\.[0-9a-f]{8}\\.tmp|` +
    "space-probe\\.[0-9a-f]{8}\\.tmp(?:\\.[0-9a-f]{8}\\.tmp)?)$",
);

/** Removes what {@link INTERRUPTED_WRITE} names from the (locked) state directory. */
function removeInterruptedWrites(dir: string): void {
  try {
    for (const entry of Deno.readDirSync(dir)) {
      if (entry.isFile && INTERRUPTED_WRITE.test(entry.name)) {
        Deno.removeSync(`${dir}/${entry.name}`);
      }
    }
  } catch (error) {
    log.debug("interrupted writes not removed", { dir, error: (error as Error).message });
  }
}

/** How long a lock that another process holds is tried again before the agent gives up. */
export const LOCK_RELEASE_WAIT_MS = 500;

/** Name of the lock file inside the state directory. */
export const STATE_LOCK_FILE = "agent.lock";

/**
 * Takes an exclusive lock on the state directory so that two agents never share one journal
 * and outbox (each would report the other's commands as interrupted): on its lock file, which
 * names the holder's pid, and on the directory itself, which still refuses a second agent when
 * the lock file was removed while the first one ran (a second agent would make and lock a new
 * one). The operating system releases the locks when the process ends, however it ends.
 *
 * @param dir The state directory.
 * @returns What holds the locks; closing it releases them.
 * @throws {Error} When another process holds either lock.
 */
function lockStateDir(dir: string): { close(): void } {
  const path = `${dir}/${STATE_LOCK_FILE}`;
  let file: Deno.FsFile;
  try {
    // Never through a symlink, nor into another user's file: the pid written below would first
    // empty whatever it names.
    file = openOwnFileSync(path, { mode: 0o600 });
  } catch (error) {
    if (error instanceof NotOwnFileError) {
      throw new Error(`cannot use the state directory ${dir}: ${error.message}`, { cause: error });
    }
    // A directory this user may not write, or a read-only file system: say which setting.
    throw new Error(
      `cannot use the state directory ${dir}: ${(error as Error).message} (make it writable ` +
        "for this user, or set STATE_DIR to another directory)",
      { cause: error },
    );
  }
  let locked = false;
  try {
    // A lock just released may still be held for a moment: a process being spawned holds a copy
    // of every open file until it starts its program, and with it the lock (flock(2) belongs to
    // the open file, not to the descriptor). A short, bounded wait tells that apart from an
    // agent that really holds it.
    locked = lockWithin(file, LOCK_RELEASE_WAIT_MS);
  } catch (error) {
    file.close();
    throw new Error(`cannot lock ${path}: ${(error as Error).message}`, { cause: error });
  }
  if (!locked) {
    let holder = "";
    try {
      // A pid, and nothing else: what else the file holds (megabytes, control characters) is not
      // read whole nor put in the error.
      const text = readStateTextSync(path, 64)?.trim() ?? "";
      if (/^[1-9][0-9]{0,9}$/.test(text)) holder = text;
    } catch {
      // The holder's pid is only a hint.
    }
    file.close();
    throw new Error(
      `another agent${holder ? ` (pid ${holder})` : ""} is using the state directory ${dir}; ` +
        "give each agent its own STATE_DIR (--state-dir)",
    );
  }
  let dirLock: Deno.FsFile | undefined;
  let dirLocked = true;
  try {
    dirLock = Deno.openSync(dir, { read: true });
    dirLocked = lockWithin(dirLock, LOCK_RELEASE_WAIT_MS);
  } catch (error) {
    // A platform or file system that cannot open or lock a directory: the lock file alone.
    dirLock?.close();
    dirLock = undefined;
    log.debug("the state directory itself cannot be locked", {
      dir,
      error: (error as Error).message,
    });
  }
  if (!dirLocked) {
    dirLock?.close();
    file.close();
    throw new Error(
      `another agent is using the state directory ${dir} (its ${STATE_LOCK_FILE} was removed ` +
        "while it ran); give each agent its own STATE_DIR (--state-dir)",
    );
  }
  try {
    file.truncateSync(0);
    writeAllSync(file, new TextEncoder().encode(`${Deno.pid}\n`));
  } catch {
    // The pid is only a hint for the error above; a full disk must not stop the agent.
  }
  return {
    close() {
      dirLock?.close();
      file.close();
    },
  };
}
