/**
 * The embedded {@link CommandStore}: one SQLite file through `node:sqlite`, in WAL mode, created on
 * first start and migrated by `PRAGMA user_version`.
 *
 * **Group commit.** Writes share transactions: the first write opens `BEGIN IMMEDIATE`, every
 * call made until the event loop's next check phase (`setImmediate`) joins it, each write in a
 * savepoint of its own (a write that fails undoes only its changes and fails only its call), and
 * one `COMMIT` (one fsync with `synchronous=full`) ends the group. No call is answered before the
 * commit of the group it ran in, reads included (they may have seen its writes); a failed commit
 * fails exactly the calls of that group. `node:sqlite` is synchronous, so a call runs to its end
 * within one turn of the event loop: two claims can never take the same command.
 *
 * What the dashboard asks on every request is kept cheap:
 *
 * - **Agents are cached** in memory. Another process (`status agents add/rotate/remove`) may
 *   change them in the same file while the dashboard runs; `PRAGMA data_version` (a counter read
 *   from memory that moves when another connection commits) is checked by
 *   {@link SqliteStore.getAgent} (at most once every quarter millisecond while no other store of
 *   this process commits), and the cache is dropped when it moved. This connection's own
 *   writes update the cache directly.
 * - **A claim on an empty queue writes nothing**: the queue is read first, and `BEGIN IMMEDIATE`
 *   (with its commit and fsync) only follows when a command matches.
 * - **An enqueue can claim in the same transaction** for a wait that it wakes (one commit on the
 *   wake-up path), and last-seen times are written in one transaction for many agents.
 *
 * @module
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import { dirname, join } from "node:path";
import { logger } from "../log/mod.ts";
import { notOwnPathProblem, openOwnFileSync } from "../own_files.ts";
import { clearImmediate, setImmediate } from "node:timers";
import { type CommandStatus, PRIORITIES } from "../protocol/mod.ts";
import { APPLICATION_ID, MIGRATIONS } from "./_migrations.ts";
import { StoreError, StoreFullError, StoreUnavailableError } from "./errors.ts";
import {
  type AckOutcome,
  type AckRequest,
  AGENT_SCOPES,
  type AgentPage,
  type AgentRecord,
  type AgentScope,
  type AgentSeen,
  type AgentSummary,
  type AppendOutputOutcome,
  type CancelOutcome,
  type ClaimRequest,
  type CommandQuery,
  type CommandRecord,
  type CommandStore,
  type EnqueueOutcome,
  EXECUTION_LEASE_GRACE_SECS,
  type ExpireOutcome,
  type HeartbeatInput,
  type KeptRequestId,
  type NewCommand,
  type OutputChunk,
  type OutputChunkInput,
  type OutputQuery,
  type OutputStream,
  type PruneCommandsOutcome,
  type PruneOutputOutcome,
  type RemovedAgent,
  type ReportInput,
  type ReportOutcome,
  type RequestIdJournal,
} from "./types.ts";
import type {
  AdvanceRunOutcome,
  CancelRunOutcome,
  CreateRunOutcome,
  NewRun,
  RunCommandState,
  RunQuery,
  RunRecord,
  RunState,
  RunStepOutcome,
  RunSummary,
  RunTargetOfCommand,
  RunTargetRecord,
  RunTargetState,
} from "./types.ts";
import { planRun, targetFinal } from "./runs.ts";
import { checkBounds, checkChunkEnd, parseHeartbeat, planAppend } from "./_output.ts";
import {
  checkAgentPage,
  checkCountLimit,
  checkPruneLimit,
  COMMAND_COLUMNS,
  COMMAND_COLUMNS_WITHOUT_OUTPUT,
  COMMAND_CORE_COLUMNS,
  encodingOrNull,
  IDS_PER_STATEMENT,
  num,
  numOrNull,
  parseLabelsColumn,
  parseScopes,
  priorityRank,
  reportRefusal,
  reportText,
  strOrNull,
  TARGET_COLUMNS,
  TARGET_FROM,
  TARGET_GROUPS_SELECT,
  TARGET_STATE_COLUMNS,
  TARGET_STATE_FROM,
  toAgent,
  toCommand,
  toCommandState,
  toRun,
  toRunState,
  toRunSummary,
  toTarget,
  toTargetState,
} from "./_rows.ts";

/** Options of {@link openSqliteStore}. */
export interface SqliteStoreOptions {
  /**
   * `full` syncs every commit to disk (survives power loss); `normal` syncs at WAL checkpoints
   * (survives a crash of the process, not of the machine).
   * @default {"full"}
   */
  synchronous?: "full" | "normal";
  /**
   * How long a write waits for another process holding the lock (e.g. `status agents add` while
   * the dashboard runs), in milliseconds.
   * @default {5000}
   */
  busyTimeoutMs?: number;
  /**
   * Whether a missing database file is created (in an existing directory; a missing directory is
   * always an error). `false` refuses a missing file, naming it: commands that only read or
   * manage an existing dashboard's store use it so that a mistyped path creates nothing.
   * @default {true}
   */
  create?: boolean;
  /**
   * Whether this store is a dashboard's: the file is then locked (`flock`) while the store is
   * open, and a file another dashboard has open this way is refused. Two dashboards on one SQLite
   * file would each decide alone what the other must know: the request ids it accepted (a signed
   * request accepted by one could be replayed to the other), the waits to wake at an enqueue, the
   * cancels to pass on. Commands that manage the file (`status agents ... --db`) do not lock it.
   * @default {false}
   */
  serving?: boolean;
}

type Row = Record<string, SQLInputValue>;

/** A call answered when the group transaction it ran in commits. */
interface GroupWaiter {
  resolve(): void;
  reject(error: unknown): void;
}

/** Agents cached in memory at most; beyond it the cache starts again empty. */
const AGENT_CACHE_MAX = 50_000;

/**
 * How long one look at `PRAGMA data_version` stands for the agent cache, in ms. Outside a
 * transaction the pragma takes and drops a read lock (a few µs, on every request that names an
 * agent); a commit by another process that ended less than this before a read may be seen by the
 * next read instead, far less than any process takes to commit and then have a request sent.
 */
const LOOK_REUSE_MS = 0.25;

/**
 * Moves when a {@link SqliteStore} of this process commits, or runs a call after another one did:
 * a look is not reused once another store here may have written (its writer and the reader may be
 * one program, in order).
 */
let storeEpoch = 0;
/** The number of the store that ran the last call in this process (none kept alive by it). */
let lastStore = 0;
let storesOpened = 0;

/** Pages in the write-ahead log before it is copied into the database (SQLite's default: 1000). */
const WAL_AUTOCHECKPOINT_PAGES = 256;

/**
 * Commits after which the store copies the write-ahead log into the database itself, once their
 * answers are out (see {@link SqliteStore.checkpoints}); well before SQLite's own checkpoint at
 * {@link WAL_AUTOCHECKPOINT_PAGES}, which runs inside the commit that crosses it.
 */
export const CHECKPOINT_AFTER_COMMITS = 16;

/**
 * Size of the reserve file kept beside the database (`<db>-reserve`): room for one checkpoint of a
 * full write-ahead log (256 pages of up to 8 KiB), given back when the disk fills up.
 */
const RESERVE_BYTES = 2 * 1024 * 1024;

/** SQLite's result code `SQLITE_BUSY`: another connection holds the lock it needs. */
const SQLITE_BUSY = 5;

function isBusy(error: unknown): boolean {
  const e = error as { errcode?: number; message?: string } | null;
  if (e?.errcode !== undefined) return e.errcode % 256 === SQLITE_BUSY;
  // Deno's node:sqlite gives the message alone.
  return /^database is locked$/.test(String(e?.message ?? ""));
}

/** Why a database that can be read but not written is refused. */
const READ_ONLY_PROBLEM = "it can be read but not written by this user (the file's or its -wal " +
  "or -shm file's mode or owner, or a read-only mount); give the user that runs status write " +
  "access to them";

/** SQLite's result code `SQLITE_FULL`. */
const SQLITE_FULL = 13;
/** SQLite's primary result code of an error, or 0; an `exec()` error has the message alone. */
function primaryCode(error: unknown): number {
  const e = error as { errcode?: number; message?: string } | null;
  if (typeof e?.errcode === "number") return e.errcode & 0xff;
  const message = String(e?.message ?? "");
  if (/^database disk image is malformed/.test(message)) return SQLITE_CORRUPT;
  if (/^file is not a database/.test(message)) return SQLITE_NOTADB;
  if (/^disk I\/O error/.test(message)) return SQLITE_IOERR;
  if (/^attempt to write a readonly database/.test(message)) return SQLITE_READONLY;
  if (/^unable to open database file/.test(message)) return SQLITE_CANTOPEN;
  return 0;
}

/** SQLite's result code `SQLITE_READONLY`. */
const SQLITE_READONLY = 8;
/** SQLite's result code `SQLITE_IOERR`. */
const SQLITE_IOERR = 10;
/** SQLite's result code `SQLITE_CANTOPEN`. */
const SQLITE_CANTOPEN = 14;

/** SQLite's result code `SQLITE_CORRUPT`. */
const SQLITE_CORRUPT = 11;
/** SQLite's result code `SQLITE_NOTADB`: a file whose header is not SQLite's. */
const SQLITE_NOTADB = 26;

/**
 * What a runtime failure of SQLite says of the store, by its primary result code: these fail the
 * store itself (other calls may fail the same way until the cause is mended), not one call.
 */
const FAILURES = new Map<number, string>([
  [
    SQLITE_IOERR,
    "a disk I/O error (the disk or the filesystem under it failed, or a file-size limit such as " +
    "ulimit -f or systemd's LimitFSIZE= was reached)",
  ],
  [
    SQLITE_CORRUPT,
    "the file is damaged (database disk image is malformed); restore it from a backup, or " +
    "recover what it holds with sqlite3's .recover into a new file",
  ],
  [
    SQLITE_NOTADB,
    "the file is no longer a SQLite database (something overwrote it); stop the dashboard and " +
    "restore it from a backup",
  ],
  [SQLITE_READONLY, READ_ONLY_PROBLEM],
  [SQLITE_CANTOPEN, "a file it needs (its -wal or -shm file) cannot be opened"],
]);

/**
 * A runtime failure of SQLite that fails the store (see {@link FAILURES}) as a {@link StoreError}
 * naming the file and the cause; any other error as it is.
 */
function storeFailure(error: unknown, path: string): unknown {
  if (error instanceof StoreError) return error;
  const what = FAILURES.get(primaryCode(error));
  if (what === undefined) return error;
  const said = (error as { errstr?: unknown })?.errstr ?? (error as Error)?.message;
  return new StoreError(`the database ${path} failed: ${what} (SQLite: ${said})`, {
    cause: error,
  });
}

function isDiskFull(error: unknown): boolean {
  const e = error as { errcode?: number; message?: string } | null;
  if (!e || typeof e !== "object") return false;
  if (e.errcode !== undefined && (e.errcode & 0xff) === SQLITE_FULL) return true;
  return /database or disk is full|no space left on device|os error 28|quota exceeded/i.test(
    String(e.message ?? ""),
  );
}

const COMMAND_FROM = `FROM commands c LEFT JOIN results r ON r.command_id = c.id`;

const log = logger("store");

/**
 * Opens (and creates or migrates) the SQLite store at `path`.
 *
 * @param path A file path, or `":memory:"` for a private in-memory store (tests).
 * @param options Durability and lock waiting.
 * @returns The open store; close it with {@link SqliteStore.close} or `await using`.
 * @throws {StoreError} When the file cannot be opened or created, is not a `status` database, or
 *   was written by a newer version of this program.
 *
 * @example Enqueue and claim a command
 * ```ts
 * import assert from "node:assert/strict";
 * import { openSqliteStore } from "./sqlite.ts";
 *
 * await using store = openSqliteStore(":memory:");
 * const now = Date.now();
 * await store.enqueue({ id: "c1", agentId: "a1", name: "echo hi", params: {}, fingerprint: "f", now });
 * const claimed = await store.claimNext({
 *   agentId: "a1",
 *   deploymentHash: "default",
 *   now,
 *   deliveryLeaseMs: 30_000,
 * });
 * assert.equal(claimed?.status, "delivered");
 * ```
 */
export function openSqliteStore(path: string, options: SqliteStoreOptions = {}): SqliteStore {
  return new SqliteStore(path, options);
}

/** The embedded {@link CommandStore} on `node:sqlite`. See {@link openSqliteStore}. */
export class SqliteStore implements CommandStore, RequestIdJournal {
  /** The database path, or `":memory:"`. */
  readonly path: string;
  readonly #db: DatabaseSync;
  readonly #statements = new Map<string, StatementSync>();
  /**
   * Agents read or written through this connection. Only agents that exist are kept (a miss is
   * looked up again: ids from requests must not grow memory), at most {@link AGENT_CACHE_MAX}.
   */
  readonly #agents = new Map<string, AgentRecord>();
  /** `PRAGMA data_version` when {@link SqliteStore.#agents} was last known to be current. */
  #dataVersion = -1;
  /** How often `data_version` was seen to move (see {@link SqliteStore.otherCommits}). */
  #otherCommits = 0;
  /** This store's number among those of the process (see {@link lastStore}). */
  readonly #number = ++storesOpened;
  /** When the last look was taken (`performance.now()`), and {@link storeEpoch} then. */
  #lookedAt = -Infinity;
  #lookedAtEpoch = -1;
  #closed = false;
  /** `<db>-reserve`, or `null` for an in-memory store or where it cannot be written. */
  #reservePath: string | null = null;
  /** The file held locked while a dashboard serves it (see {@link SqliteStoreOptions.serving}). */
  #servingLock: Deno.FsFile | null = null;
  /** A write failed for lack of space and none has succeeded since. */
  #full = false;
  /**
   * The device and inode of the file opened and of its write-ahead log, to see either removed or
   * replaced; `null` in memory (or where they cannot be told).
   */
  #fileIds: { db: FileId; wal: FileId | null } | null = null;
  /** The `-shm` file opened, until it is found removed or replaced (then told once). */
  #shmId: FileId | null = null;
  /** The open group transaction: calls that ran inside it wait for its commit. */
  #group: { waiting: GroupWaiter[] } | null = null;
  #groupTimer: ReturnType<typeof setImmediate> | null = null;
  #commits = 0;
  /** Commits since this store's last checkpoint, and the checkpoint scheduled after them. */
  #uncheckpointed = 0;
  #checkpointTimer: ReturnType<typeof setImmediate> | null = null;
  #checkpoints = 0;
  #logRestarts = 0;
  readonly #busyTimeoutMs: number;
  /** When expired request ids were last deleted (see {@link SqliteStore.keepRequestId}). */
  #requestIdsSweptAt = -Infinity;
  /**
   * The request ids this store committed, in batches in the order written (a second's commits at
   * most each): the last rowid of each and when its last id expires. Expired batches are deleted
   * by rowid range.
   */
  #requestIdBatches: Array<{ lastRowid: number; expiresAt: number }> = [];
  /** The latest `now` a kept request id came with: what the next sweep deletes up to. */
  #requestIdsNow = -Infinity;
  /** Request ids to keep, written with the next commit (see {@link SqliteStore.keepRequestId}). */
  #pendingRequestIds: Array<{ id: KeptRequestId; waiter: GroupWaiter }> = [];
  /** Commits the request ids kept when no other write came within a second. */
  #requestIdTimer: ReturnType<typeof setTimeout> | null = null;

  /**
   * Opens the store; prefer {@link openSqliteStore}.
   *
   * @param path A file path, or `":memory:"`.
   * @param options Durability and lock waiting.
   * @throws {StoreError} When the database cannot be opened or migrated.
   */
  constructor(path: string, options: SqliteStoreOptions = {}) {
    if (typeof path !== "string" || path.length === 0) {
      throw new TypeError(`database path must be a non-empty string, got ${JSON.stringify(path)}`);
    }
    const synchronous = options.synchronous ?? "full";
    if (synchronous !== "full" && synchronous !== "normal") {
      throw new TypeError(
        `synchronous must be "full" or "normal", got ${JSON.stringify(synchronous)}`,
      );
    }
    const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
    if (!Number.isInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
      throw new RangeError(`busyTimeoutMs must be a whole number >= 0, got ${busyTimeoutMs}`);
    }
    this.#busyTimeoutMs = busyTimeoutMs;
    this.path = path;
    const memory = path === ":memory:";
    if (path.startsWith("file:")) {
      // node:sqlite reads such a name as a URI (file:x.db opens x.db), so the file SQLite opened
      // would not be the one the mode, owner and symlink checks and the reserve looked at.
      throw new StoreError(
        `cannot open database ${path}: a name that begins with "file:" is read by SQLite as a ` +
          `URI, not as this path; give the file's path (./${path} for a file of that name)`,
      );
    }
    // An empty file is a new database to SQLite: said, in case it was one truncated by accident.
    const emptyFile = !memory && isEmpty(path);
    if (!memory) checkDatabasePath(path, options.create ?? true);
    if (!memory && !options.serving) checkServedShm(path);
    // A dashboard started again on a full disk: SQLite cannot even read without room for its
    // -shm file. The reserve kept beside the database is given back once for that room.
    for (let attempt = 1;; attempt++) {
      let db: DatabaseSync;
      try {
        db = new DatabaseSync(path);
      } catch (error) {
        throw new StoreError(`cannot open database ${path}: ${describeOpenError(error, path)}`, {
          cause: error,
        });
      }
      this.#db = db;
      try {
        if (options.serving && !memory) this.#lockServing();
        db.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
        const version = this.#checkOurs();
        if (!memory) {
          const mode = db.prepare("PRAGMA journal_mode = WAL").get() as Row | undefined;
          if (String(mode?.journal_mode).toLowerCase() !== "wal") {
            throw new StoreError(`cannot open database ${path}: WAL mode is not available`);
          }
        }
        if (!memory) {
          // A short write-ahead log, cut back to the reserve's size after each checkpoint: its
          // space is given back instead of kept for good once its pages are in the database.
          db.exec(`PRAGMA wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
          db.exec(`PRAGMA journal_size_limit = ${RESERVE_BYTES}`);
        }
        db.exec(`PRAGMA synchronous = ${synchronous.toUpperCase()}`);
        db.exec("PRAGMA foreign_keys = ON");
        this.#migrate(version);
        if (!memory) this.#checkWritable();
        // The migrations' commits are counted from the first write on.
        this.#uncheckpointed = 0;
        if (!memory) {
          this.#reservePath = `${path}-reserve`;
          this.#keepReserve();
          const db = fileIdOf(path);
          const wal = fileIdOf(`${path}-wal`);
          this.#fileIds = typeof db === "object" && db !== null
            ? { db, wal: typeof wal === "object" ? wal : null }
            : null;
          const shm = fileIdOf(`${path}-shm`);
          this.#shmId = typeof shm === "object" ? shm : null;
        }
        if (emptyFile) {
          log.warning(
            "database {path} was an empty file: it is now a new database, with no agents and no " +
              "commands; if it held a dashboard's database (truncated by accident, or a copy " +
              "that failed), stop and restore it from a backup",
            { path },
          );
        }
        if (!memory) warnIfEveryoneMayRead(path);
        break;
      } catch (error) {
        // Nothing of this connection is kept: a migration that failed inside its transaction
        // left the group open.
        if (this.#groupTimer !== null) clearImmediate(this.#groupTimer);
        this.#groupTimer = null;
        this.#group = null;
        db.close();
        this.#servingLock?.close();
        this.#servingLock = null;
        this.#statements.clear();
        this.#full = false;
        if (!noRoomToOpen(error)) {
          if (error instanceof StoreError) throw error;
          if (isBusy(error)) {
            // Nothing was changed: a migration waiting for the lock was not begun.
            throw new StoreUnavailableError(
              `cannot open database ${path}: another process holds its lock (waited ` +
                `${busyTimeoutMs} ms): a script or sqlite3 in the middle of a transaction, or ` +
                "one that opened it in exclusive locking mode; end it and start again",
              { cause: error },
            );
          }
          if (/readonly database/i.test((error as Error)?.message ?? "")) {
            // Opened read-only by SQLite, and a write it needed (WAL mode, a migration) failed.
            throw new StoreError(`cannot open database ${path}: ${READ_ONLY_PROBLEM}`, {
              cause: error,
            });
          }
          throw new StoreError(`cannot open database ${path}: ${describeOpenError(error, path)}`, {
            cause: error,
          });
        }
        if (attempt === 1 && !memory && giveBackReserve(`${path}-reserve`)) continue;
        throw new StoreFullError(
          `cannot open database ${path}: no space is left on its disk (SQLite needs some even ` +
            `to read it); free some space and start again`,
          { cause: error },
        );
      }
    }
  }

  /** Takes the lock of a dashboard serving the file, or refuses the file another one holds. */
  #lockServing(): void {
    const file = Deno.openSync(this.path, { read: true });
    let locked = false;
    try {
      locked = file.tryLockSync(true);
    } finally {
      // Kept open while SQLite has the file open: closing a descriptor of it ends every lock this
      // process holds on it, SQLite's own included (here the store is not opened anyway).
      if (locked) this.#servingLock = file;
      else file.close();
    }
    if (!locked) {
      throw new StoreError(
        `cannot open database ${this.path}: another dashboard (status serve) is using it; a ` +
          "SQLite file serves one dashboard (several instances share a PostgreSQL database)",
      );
    }
  }

  /** The schema version this program writes. */
  static get schemaVersion(): number {
    return MIGRATIONS.length;
  }

  /**
   * Refuses a file SQLite opened read-only (its mode, its owner, a read-only mount: SQLite falls
   * back to reading without a word, and every write would fail later). The version is written
   * again as it is: the one write that changes nothing. A file another process holds the write
   * lock of, or one on a full disk, cannot be told from a writable one here and is taken.
   */
  #checkWritable(): void {
    try {
      // Not waited for: a lock held now says nothing of the file's mode.
      this.#db.exec("PRAGMA busy_timeout = 0");
      this.#db.exec(`PRAGMA user_version = ${MIGRATIONS.length}`);
    } catch (error) {
      if (isBusy(error) || isDiskFull(error)) return;
      if (!/readonly database/i.test((error as Error)?.message ?? "")) throw error;
      throw new StoreError(`cannot open database ${this.path}: ${READ_ONLY_PROBLEM}`, {
        cause: error,
      });
    } finally {
      this.#db.exec(`PRAGMA busy_timeout = ${this.#busyTimeoutMs}`);
    }
  }

  /**
   * Checks that the file is a database of this program (or empty) and not newer than it, before
   * anything is changed in it (WAL mode, a reserve, migrations): another program's database is
   * left as it was.
   *
   * @returns The schema version.
   */
  #checkOurs(): number {
    const db = this.#db;
    const version = num((db.prepare("PRAGMA user_version").get() as Row).user_version);
    const appId = num((db.prepare("PRAGMA application_id").get() as Row).application_id);
    if (appId !== 0 && appId !== APPLICATION_ID) {
      throw new StoreError(`${this.path} is not a status database (application id ${appId})`);
    }
    if (appId === 0 && version !== 0) {
      // Every migration sets the application id with the version: another program's schema.
      throw new StoreError(
        `${this.path} is not a status database (schema version ${version}, but not status's ` +
          "application id)",
      );
    }
    if (version > MIGRATIONS.length) {
      throw new StoreError(
        `${this.path} has schema version ${version}, newer than this program's ` +
          `${MIGRATIONS.length}; use a newer version of status`,
      );
    }
    if (version === 0) {
      const tables = db.prepare(
        "SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table'",
      ).get() as Row;
      if (num(tables.n) > 0) {
        throw new StoreError(`${this.path} is not a status database (it has foreign tables)`);
      }
    }
    return version;
  }

  #migrate(version: number): void {
    const db = this.#db;
    for (let v = version; v < MIGRATIONS.length; v++) {
      try {
        this.#tx(() => {
          // Another process opening the database at the same time may have applied it since the
          // version was read (this transaction holds the write lock: what it reads now stands).
          if (num((db.prepare("PRAGMA user_version").get() as Row).user_version) > v) return;
          db.exec(MIGRATIONS[v]);
          db.exec(`PRAGMA user_version = ${v + 1}`);
          db.exec(`PRAGMA application_id = ${APPLICATION_ID}`);
        });
      } catch (error) {
        const message = (error as Error)?.message ?? String(error);
        // A lock, a full disk, a read-only or a damaged file is told as such by the caller.
        const code = primaryCode(error);
        if (
          isBusy(error) || noRoomToOpen(error) || /readonly database/i.test(message) ||
          code === SQLITE_CORRUPT || code === SQLITE_NOTADB
        ) {
          throw error;
        }
        // The migration's statements were rolled back together: the schema is as it was.
        throw new StoreError(
          `cannot migrate database ${this.path} from schema version ${v} to ${v + 1}: ` +
            // node:sqlite quotes the whole migration after " in".
            `${message.replace(/ in\s*\n[\s\S]*$/, "")}; it is left at version ${v}, as it ` +
            "was (was its schema changed by another program or by hand?)",
          { cause: error },
        );
      }
      const failure = this.#commitGroup();
      if (failure !== null) throw failure;
    }
  }

  /**
   * Runs `fn` now and settles with its value once nothing it saw or wrote can be lost: while a
   * group transaction is open (its own write or another's), that is after the group's commit.
   */
  #run<T>(fn: () => T): Promise<T> {
    if (lastStore !== this.#number) {
      lastStore = this.#number;
      storeEpoch++;
    }
    let value: T;
    try {
      value = fn();
    } catch (thrown) {
      if (isDiskFull(thrown)) return Promise.reject(this.#diskFullInGroup(thrown));
      const error = isBusy(thrown) ? this.#lockedError(thrown) : storeFailure(thrown, this.path);
      if (this.#group !== null && !this.#db.isTransaction) {
        // The failure took the whole transaction with it: every call of the group fails.
        for (const waiter of this.#dropGroup()) waiter.reject(error);
      }
      return Promise.reject(error);
    }
    const group = this.#group;
    if (group === null) return Promise.resolve(value);
    return new Promise<T>((resolve, reject) => {
      group.waiting.push({ resolve: () => resolve(value), reject });
    });
  }

  /**
   * Another process (`status agents add --db`, a script, a second dashboard) held the file's write
   * lock for the whole busy timeout: nothing was written, and the call may be retried later.
   */
  #lockedError(error: unknown): StoreUnavailableError {
    return new StoreUnavailableError(
      `database ${this.path} is locked by another process (waited ${this.#busyTimeoutMs} ms ` +
        "for its write lock)",
      { cause: error },
    );
  }

  /** A write failed for lack of space: the whole group fails with it, then space is sought. */
  #diskFullInGroup(error: unknown): StoreFullError {
    const waiting = this.#dropGroup();
    const failure = this.#diskFull(error);
    for (const waiter of waiting) waiter.reject(failure);
    return failure;
  }

  /** Whether the last write failed for lack of space (and none has succeeded since). */
  get full(): boolean {
    return this.#full;
  }

  /**
   * A write failed for lack of space. Gives back the reserve so that the write-ahead log can be
   * copied into the database and cut to nothing (its space freed), then takes the reserve again if
   * it fits: the store sits at its smallest size until space comes back.
   */
  #diskFull(error: unknown): StoreFullError {
    this.#full = true;
    if (this.#reservePath !== null && !this.#closed) {
      giveBackReserve(this.#reservePath);
      try {
        this.#db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
      } catch {
        // still no room: the next failure tries again
      }
      this.#keepReserve();
    }
    return new StoreFullError(
      `the database ${this.path} is full: no space is left on its disk; writes are refused ` +
        `until space is freed, then resume by themselves`,
      { cause: error },
    );
  }

  /**
   * Grows the reserve file to its size; on a full disk it keeps what fit (the next failure gives it
   * back).
   */
  #keepReserve(): void {
    const path = this.#reservePath;
    if (path === null) return;
    let file: Deno.FsFile | undefined;
    try {
      // Never through a symlink, nor into another user's file: beside a database in /tmp, one
      // left there would have this process append 2 MiB of zeros to whatever it names.
      file = openOwnFileSync(path, { append: true, mode: 0o600 });
      let size = file.statSync().size;
      const chunk = new Uint8Array(64 * 1024);
      while (size < RESERVE_BYTES) {
        size += file.writeSync(chunk.subarray(0, Math.min(chunk.length, RESERVE_BYTES - size)));
      }
    } catch (error) {
      // Not writable at all (not a lack of space): do without a reserve.
      if (!isDiskFull(error)) this.#reservePath = null;
    } finally {
      file?.close();
    }
  }

  #stmt(sql: string): StatementSync {
    if (this.#closed) throw new StoreError(`database ${this.path} is closed`);
    let statement = this.#statements.get(sql);
    if (!statement) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  /**
   * Runs `fn` inside the open group transaction (opening one if none is), in a savepoint of its
   * own: when `fn` throws, only its changes are undone and the other writes of the group stay.
   */
  #tx<T>(fn: () => T): T {
    if (this.#closed) throw new StoreError(`database ${this.path} is closed`);
    this.#joinGroup();
    this.#stmt("SAVEPOINT w").run();
    try {
      const result = fn();
      this.#stmt("RELEASE w").run();
      return result;
    } catch (error) {
      if (this.#db.isTransaction) {
        try {
          this.#db.exec("ROLLBACK TO w");
          this.#db.exec("RELEASE w");
        } catch {
          // the transaction is gone: #run fails the whole group
        }
      }
      throw error;
    }
  }

  /** Opens the group transaction when none is open, and schedules its commit. */
  #joinGroup(): void {
    if (this.#group !== null) return;
    this.#db.exec("BEGIN IMMEDIATE");
    this.#group = { waiting: [] };
    // What other connections committed before the write lock was taken (see #checkOtherWriters).
    this.#lookAtOtherWriters();
    if (this.#groupTimer === null) {
      // After the requests read in this turn of the event loop have had their turn to join
      // (`setImmediate` runs right after the poll for I/O; a `setTimeout` would wait about 2 ms).
      this.#groupTimer = setImmediate(() => {
        this.#groupTimer = null;
        this.#commitGroup();
      });
    }
  }

  /**
   * Commits the group transaction (one fsync with `synchronous=full`) and only then answers every
   * call that ran while it was open; a failed commit fails exactly those calls.
   *
   * @returns The commit's failure, or `null`.
   */
  #commitGroup(): unknown {
    if (this.#groupTimer !== null) {
      // Committed now (at open, or on close): the scheduled commit has nothing left to do.
      clearImmediate(this.#groupTimer);
      this.#groupTimer = null;
    }
    const group = this.#group;
    if (group === null) return null;
    let batch: { lastRowid: number; expiresAt: number } | null = null;
    try {
      if (this.#pendingRequestIds.length > 0) batch = this.#writeRequestIds(group);
      // After the kept request ids joined the group: refused, they fail with it (not kept for good).
      this.#checkFile();
      this.#db.exec("COMMIT");
    } catch (error) {
      if (isDiskFull(error)) return this.#diskFullInGroup(error);
      const failure = storeFailure(error, this.path);
      for (const waiter of this.#dropGroup()) waiter.reject(failure);
      // A file found gone (#checkFile): what was committed before is kept if it can be.
      if (error instanceof StoreUnavailableError) this.#copyLog();
      // As SQLite said it: a migration at open tells it as a file that cannot be opened.
      return error;
    }
    this.#group = null;
    this.#commits++;
    if (batch !== null) this.#rememberRequestIdBatch(batch);
    // This connection's own commit does not move data_version: its last look still stands.
    const current = this.#lookedAtEpoch === storeEpoch;
    storeEpoch++;
    if (current) this.#lookedAtEpoch = storeEpoch;
    if (this.#full) {
      // Space came back: take the reserve again.
      this.#full = false;
      this.#keepReserve();
    }
    for (const waiter of group.waiting) waiter.resolve();
    if (
      ++this.#uncheckpointed >= CHECKPOINT_AFTER_COMMITS && this.#checkpointTimer === null &&
      this.path !== ":memory:"
    ) {
      // A turn later: the answers of this group's calls are written first.
      this.#checkpointTimer = setImmediate(() => {
        this.#checkpointTimer = null;
        this.#checkpoint();
      });
    }
    return null;
  }

  /**
   * Copies the write-ahead log into the database (`PASSIVE`: it waits for no one) when no group
   * is open; with one open, the commit that ends it schedules the next try. A checkpoint that
   * fails (no room on the disk) is left to SQLite's own, inside a later commit, which reports it.
   *
   * When the whole log was copied, the next commit starts it over from its beginning, and with
   * `synchronous=full` that commit syncs the log twice (its new header, then its pages). The
   * store makes that commit itself, here, with a write that changes nothing (the application id,
   * to the value it has): the first request after a checkpoint pays one sync like every other.
   */
  #checkpoint(): void {
    if (this.#closed || this.#group !== null) return;
    let copied: Row | undefined;
    try {
      copied = this.#stmt("PRAGMA wal_checkpoint(PASSIVE)").get() as Row | undefined;
      this.#uncheckpointed = 0;
      this.#checkpoints++;
    } catch {
      // Left to SQLite's checkpoint at WAL_AUTOCHECKPOINT_PAGES, which fails the write it is in.
      return;
    }
    if (copied?.busy === 0 && Number(copied.log) > 0 && copied.log === copied.checkpointed) {
      // Without waiting for another process's write lock: no request waits for this write.
      this.#db.exec("PRAGMA busy_timeout = 0");
      try {
        this.#stmt(`PRAGMA application_id = ${APPLICATION_ID}`).run();
        this.#logRestarts++;
      } catch {
        // No room, or another process writes: the next commit starts the log over instead.
      } finally {
        this.#db.exec(`PRAGMA busy_timeout = ${this.#busyTimeoutMs}`);
      }
    }
  }

  /** Times the store started the write-ahead log over itself, after a checkpoint (tests). */
  get logRestarts(): number {
    return this.#logRestarts;
  }

  /**
   * Checkpoints this store made itself. SQLite copies the write-ahead log into the database inside
   * the commit that makes it longer than {@link WAL_AUTOCHECKPOINT_PAGES} (a millisecond or more,
   * before that commit's calls are answered); the store does it first, every
   * {@link CHECKPOINT_AFTER_COMMITS} commits, a turn of the event loop after the answers.
   */
  get checkpoints(): number {
    return this.#checkpoints;
  }

  /**
   * Rolls the group transaction back (whatever is left of it) and forgets it.
   *
   * @returns The calls that were waiting for it: the caller fails them.
   */
  #dropGroup(): GroupWaiter[] {
    const group = this.#group;
    this.#group = null;
    try {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
    } catch {
      // the transaction is already gone; the first error is the one that matters
    }
    // Cached agents may hold changes that were just undone.
    this.#agents.clear();
    return group?.waiting ?? [];
  }

  /** Transactions committed by this connection since it was opened (a group counts once). */
  get commits(): number {
    return this.#commits;
  }

  #command(id: string): CommandRecord | null {
    const row = this.#stmt(`SELECT ${COMMAND_COLUMNS} ${COMMAND_FROM} WHERE c.id = ?`).get(id) as
      | Row
      | undefined;
    return row ? toCommand(row) : null;
  }

  /**
   * A command without its result (`result: null`), and whether it has one: ack and report read
   * only this on their usual path (a command delivered or running has no result yet).
   */
  #commandCore(id: string): { command: CommandRecord; hasResult: boolean } | null {
    const row = this.#stmt(
      `SELECT ${COMMAND_CORE_COLUMNS},
         EXISTS (SELECT 1 FROM results r WHERE r.command_id = c.id) AS has_result
       FROM commands c WHERE c.id = ?`,
    ).get(id) as Row | undefined;
    return row ? { command: toCommand(row), hasResult: num(row.has_result) !== 0 } : null;
  }

  #mustCommand(id: string): CommandRecord {
    const command = this.#command(id);
    if (!command) throw new StoreError(`command ${id} vanished inside a transaction`);
    return command;
  }

  /**
   * Drops the agent cache when another connection committed since the last look
   * (`PRAGMA data_version` moved; it does not move for this connection's own commits). While this
   * connection's group transaction is open it holds the write lock, so no other connection can
   * commit: the look taken when the group began (in {@link SqliteStore.#joinGroup}) holds until its
   * commit, and reads inside the group skip it (outside a transaction the pragma takes and drops a
   * read lock each time). Outside a group, one look stands for {@link LOOK_REUSE_MS} while no
   * other store of this process commits.
   */
  #checkOtherWriters(): void {
    if (this.#group !== null) return;
    const now = performance.now();
    if (now - this.#lookedAt < LOOK_REUSE_MS && this.#lookedAtEpoch === storeEpoch) return;
    this.#lookAtOtherWriters();
    this.#lookedAt = now;
    this.#lookedAtEpoch = storeEpoch;
  }

  #lookAtOtherWriters(): void {
    const version = num(
      (this.#stmt("PRAGMA data_version").get() as Row).data_version,
    );
    if (version !== this.#dataVersion) {
      if (this.#dataVersion !== -1) this.#otherCommits++;
      this.#agents.clear();
      this.#dataVersion = version;
    }
  }

  /**
   * Counts the commits of other connections to this file seen so far (another process's
   * `status agents rotate --db`, say): it moves when one committed since the last look. Looks now,
   * unless this store's own transaction is open (no other connection can commit meanwhile). The
   * dashboard calls it once a second to end the waits opened with a token changed that way.
   *
   * @returns A count that only grows; compare it with an earlier one.
   * @throws {StoreUnavailableError} When the file was removed or replaced since it was opened
   *   (every write is refused then).
   * @throws {StoreError} When SQLite fails to look (a disk I/O error, a damaged file).
   */
  otherCommits(): number {
    if (!this.#closed && this.#group === null) {
      this.#checkShm();
      this.#checkFile();
      try {
        this.#lookAtOtherWriters();
      } catch (error) {
        throw storeFailure(error, this.path);
      }
    }
    return this.#otherCommits;
  }

  /**
   * Warns, once, when the `-shm` file was removed or replaced: this store goes on with the one it
   * mapped, but another process that opens the file now makes a new one, and the two do not see
   * each other's writes (`status agents --db` refuses the file then; other programs do not).
   */
  #checkShm(): void {
    if (this.#shmId === null) return;
    const shm = changedFile(`${this.path}-shm`, this.#shmId);
    if (shm === null) return;
    this.#shmId = null;
    log.warning(
      "the -shm file of database {path} was {shm} while the dashboard had it open: restart the " +
        "dashboard; until then a write by another process (sqlite3, a script) would be lost, " +
        "and status agents --db refuses the file",
      { path: this.path, shm },
    );
  }

  /** Before a write that SQLite commits at once, on its own (no group transaction is open). */
  #beforeOwnCommit(): void {
    if (this.#group === null) this.#checkFile();
  }

  /**
   * Refuses to go on with a file that is no longer at the store's path: removed (SQLite would go
   * on writing to a file no one can open again, every write lost when the dashboard stops) or
   * replaced (another process, `status agents add --db` say, writes to the new one meanwhile).
   * The same for its write-ahead log: removed, the commits it holds are lost if the process stops
   * before they are copied into the database; they are copied at once (outside a transaction).
   * Whether a path can be looked at is not the store's concern: only a file found gone or
   * different refuses.
   *
   * @throws {StoreUnavailableError} When a path names no file, or another file.
   */
  #checkFile(): void {
    const opened = this.#fileIds;
    if (opened === null) return;
    const db = changedFile(this.path, opened.db);
    if (db !== null) {
      throw new StoreUnavailableError(
        `the database ${this.path} was ${db} while the store had it open: writes are refused ` +
          "until that same file is moved back to its path (a copy is another file), or the " +
          "store is opened again on the file there now (restart)",
      );
    }
    const wal = opened.wal === null ? null : changedFile(`${this.path}-wal`, opened.wal);
    if (wal !== null) {
      if (!this.#db.isTransaction) this.#copyLog();
      throw new StoreUnavailableError(
        `the write-ahead log ${this.path}-wal was ${wal} while the store had it open: writes ` +
          "are refused (what it held is copied into the database); stop the dashboard and " +
          "start it again",
      );
    }
  }

  /** Copies what the write-ahead log holds into the database, if it can (best effort). */
  #copyLog(): void {
    try {
      this.#db.exec("PRAGMA wal_checkpoint(PASSIVE)");
    } catch {
      // another process writes, or no room: its close copies it
    }
  }

  #readAgent(id: string): AgentRecord | null {
    const row = this.#stmt("SELECT * FROM agents WHERE id = ?").get(id) as Row | undefined;
    if (!row) return null;
    const agent = toAgent(row);
    if (this.#agents.size >= AGENT_CACHE_MAX) this.#agents.clear();
    this.#agents.set(id, agent);
    return agent;
  }

  /** How many agents are cached in memory (bounded; for tests and diagnostics). */
  get cachedAgents(): number {
    return this.#agents.size;
  }

  /** Moves a cached agent's `lastSeenAt` forward after a write of it. */
  #cacheSeen(id: string, at: number): void {
    const agent = this.#agents.get(id);
    if (agent && (agent.lastSeenAt === null || agent.lastSeenAt < at)) {
      this.#agents.set(id, { ...agent, lastSeenAt: at });
    }
  }

  // -- agents

  /** {@inheritDoc CommandStore.addAgent} */
  addAgent(
    agent: { id: string; token: string | null; scopes: readonly AgentScope[]; now: number },
  ): Promise<boolean> {
    return this.#run(() => {
      this.#beforeOwnCommit();
      const result = this.#stmt(
        `INSERT INTO agents (id, token, scopes, created_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (id) DO NOTHING`,
      ).run(agent.id, agent.token, JSON.stringify([...agent.scopes]), agent.now);
      this.#agents.delete(agent.id);
      return num(result.changes) === 1;
    });
  }

  /** {@inheritDoc CommandStore.ensureAgent} */
  ensureAgent(id: string, now: number): Promise<AgentRecord> {
    return this.#run(() => {
      return this.#tx(() => {
        this.#stmt(
          `INSERT INTO agents (id, token, scopes, created_at, last_seen_at)
         VALUES (?, NULL, ?, ?, NULL)
         ON CONFLICT (id) DO NOTHING`,
        ).run(id, JSON.stringify(AGENT_SCOPES), now);
        return this.#readAgent(id) as AgentRecord;
      });
    });
  }

  /** {@inheritDoc CommandStore.getAgent} */
  getAgent(id: string): Promise<AgentRecord | null> {
    return this.#run(() => {
      this.#checkOtherWriters();
      return this.#agents.get(id) ?? this.#readAgent(id);
    });
  }

  /** {@inheritDoc CommandStore.listAgents} */
  listAgents(page?: AgentPage): Promise<AgentSummary[]> {
    return this.#run(() => {
      checkAgentPage(page);
      const args: SQLInputValue[] = [];
      if (page?.after !== undefined) args.push(page.after);
      if (page?.limit !== undefined) args.push(page.limit);
      // Ids compare as bytes (the BINARY collation of the primary key), as in JavaScript.
      const rows = this.#stmt(
        `SELECT a.id, a.token IS NOT NULL AS has_token, a.scopes, a.created_at, a.last_seen_at,
         a.version, a.deployment_hash, a.instance_id, a.heartbeat, a.heartbeat_at, a.labels,
         (SELECT count(*) FROM commands c WHERE c.agent_id = a.id AND c.status = 'queued') AS queued
       FROM agents a ${page?.after !== undefined ? "WHERE a.id > ?" : ""} ORDER BY a.id
       ${page?.limit !== undefined ? "LIMIT ?" : ""}`,
      ).all(...args) as Row[];
      return rows.map((row) => ({
        id: String(row.id),
        hasToken: num(row.has_token) !== 0,
        scopes: parseScopes(String(row.scopes)),
        createdAt: num(row.created_at),
        lastSeenAt: numOrNull(row.last_seen_at),
        queued: num(row.queued),
        version: strOrNull(row.version),
        deploymentHash: strOrNull(row.deployment_hash),
        instanceId: strOrNull(row.instance_id),
        heartbeat: parseHeartbeat(row.heartbeat),
        heartbeatAt: numOrNull(row.heartbeat_at),
        labels: parseLabelsColumn(row.labels),
      }));
    });
  }

  /** {@inheritDoc CommandStore.countAgents} */
  countAgents(through?: string): Promise<number> {
    return this.#run(() => {
      // By the primary key, its BINARY collation the byte order listAgents pages in.
      const row = through === undefined
        ? this.#stmt("SELECT count(*) AS n FROM agents").get() as Row
        : this.#stmt("SELECT count(*) AS n FROM agents WHERE id <= ?").get(through) as Row;
      return num(row.n);
    });
  }

  /** {@inheritDoc CommandStore.listAgentsSeen} */
  listAgentsSeen(): Promise<AgentSeen[]> {
    return this.#run(() => {
      const rows = this.#stmt("SELECT id, last_seen_at FROM agents").all() as Row[];
      return rows.map((row) => ({ id: String(row.id), lastSeenAt: numOrNull(row.last_seen_at) }));
    });
  }

  /** {@inheritDoc CommandStore.setAgentToken} */
  setAgentToken(id: string, token: string): Promise<boolean> {
    return this.#run(() => {
      this.#beforeOwnCommit();
      const result = this.#stmt("UPDATE agents SET token = ? WHERE id = ?").run(token, id);
      this.#agents.delete(id);
      return num(result.changes) === 1;
    });
  }

  /** {@inheritDoc CommandStore.removeAgent} */
  removeAgent(id: string, now: number): Promise<RemovedAgent | null> {
    return this.#run(() => {
      const removed = this.#tx((): RemovedAgent | null => {
        const result = this.#stmt("DELETE FROM agents WHERE id = ?").run(id);
        if (num(result.changes) !== 1) return null;
        return { ended: this.#endCommandsOf(id, now) };
      });
      this.#agents.delete(id);
      return removed;
    });
  }

  /** {@inheritDoc CommandStore.endCommandsOfRemovedAgent} */
  endCommandsOfRemovedAgent(agentId: string, now: number): Promise<CommandRecord[]> {
    return this.#run(() => {
      return this.#tx((): CommandRecord[] => {
        if (this.#stmt("SELECT 1 AS x FROM agents WHERE id = ?").get(agentId)) return [];
        return this.#endCommandsOf(agentId, now);
      });
    });
  }

  /** Cancels the agent's commands not final as its removal does, inside a transaction. */
  #endCommandsOf(agentId: string, now: number): CommandRecord[] {
    const rows = this.#stmt(
      `SELECT id FROM commands
       WHERE agent_id = ? AND status IN ('queued', 'delivered', 'running') ORDER BY seq`,
    ).all(agentId) as Row[];
    const end = this.#stmt(
      `UPDATE commands SET status = 'cancelled', lease_expires_at = NULL, completed_at = ?,
       updated_at = ?, end_cause = 'agent_removed' WHERE id = ?`,
    );
    return rows.map((row) => {
      end.run(now, now, String(row.id));
      return this.#mustCommand(String(row.id));
    });
  }

  /** {@inheritDoc CommandStore.touchAgent} */
  touchAgent(id: string, now: number): Promise<void> {
    return this.touchAgents([[id, now]]);
  }

  /** {@inheritDoc CommandStore.touchAgents} */
  touchAgents(seen: Iterable<readonly [string, number]>): Promise<void> {
    return this.#run(() => {
      const entries = [...seen];
      if (entries.length === 0) return;
      this.#tx(() => {
        const update = this.#stmt(
          "UPDATE agents SET last_seen_at = ? WHERE id = ? AND (last_seen_at IS NULL OR last_seen_at < ?)",
        );
        for (const [id, at] of entries) update.run(at, id, at);
      });
      for (const [id, at] of entries) this.#cacheSeen(id, at);
    });
  }

  /** {@inheritDoc CommandStore.hasAgentWithToken} */
  hasAgentWithToken(): Promise<boolean> {
    return this.#run(() => {
      const row = this.#stmt("SELECT 1 AS x FROM agents WHERE token IS NOT NULL LIMIT 1").get();
      return row !== undefined;
    });
  }

  // -- commands

  /** {@inheritDoc CommandStore.enqueue} */
  enqueue(
    command: NewCommand,
    claim?: Pick<ClaimRequest, "deploymentHash" | "deliveryLeaseMs">,
  ): Promise<EnqueueOutcome> {
    return this.#run(() => {
      return this.#tx((): EnqueueOutcome => {
        const params = JSON.stringify(command.params);
        const rank = priorityRank(command.params.priority);
        const deploymentHash = command.params.deployment_hash ?? null;
        const expiresAt = command.expiresAt ?? null;
        const now = command.now;
        const request: ClaimRequest | undefined = claim && {
          agentId: command.agentId,
          deploymentHash: claim.deploymentHash,
          now,
          deliveryLeaseMs: claim.deliveryLeaseMs,
        };
        // The wait takes the new command itself when it matches and no queued one comes first
        // (`ORDER BY priority, seq`): then it is written delivered at once, not queued and then
        // updated (one statement and two queue index entries fewer on the wake-up path).
        // A run's part whose run was cancelled is stored cancelled, never queued (as the
        // PostgreSQL store does: a step that read the run before the cancel hands out none after).
        // A part's id is `<run id>:<agent id>`: an id without a colon (every other enqueue) is
        // none, and costs the wake-up path no statement.
        const cancelled = command.id.includes(":") && this.#stmt(
              `SELECT 1 FROM run_targets t JOIN runs r ON r.id = t.run_id
           WHERE t.command_id = ? AND r.cancel_requested = 1`,
            ).get(command.id) !== undefined;
        let takesNew = false;
        if (
          request && !cancelled &&
          (deploymentHash === null || deploymentHash === request.deploymentHash)
        ) {
          const first = this.#firstQueued(request);
          takesNew = (expiresAt === null || expiresAt > now) &&
            (first === null || rank < first.priority);
        }
        const leaseExpiresAt = takesNew ? now + request!.deliveryLeaseMs : null;
        // No read first: an id that exists already is the rare case (a retried enqueue).
        const completedAt = cancelled ? now : null;
        const inserted = this.#stmt(
          `INSERT INTO commands (id, agent_id, deployment_hash, name, params, priority, fingerprint,
           status, attempt, created_at, updated_at, expires_at, lease_expires_at, delivered_at,
           delivered_attempt, completed_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO NOTHING`,
        ).run(
          command.id,
          command.agentId,
          deploymentHash,
          command.name,
          params,
          rank,
          command.fingerprint,
          cancelled ? "cancelled" : takesNew ? "delivered" : "queued",
          now,
          now,
          expiresAt,
          leaseExpiresAt,
          takesNew ? now : null,
          takesNew ? 1 : 0,
          completedAt,
        );
        if (num(inserted.changes) === 0) {
          const existing = this.#mustCommand(command.id);
          const same = existing.fingerprint === command.fingerprint &&
            existing.agentId === command.agentId;
          return { outcome: same ? "duplicate" : "conflict", command: existing };
        }
        // The row as written, without reading it back (what `toCommand` would make of it).
        const created: CommandRecord = {
          id: command.id,
          agentId: command.agentId,
          deploymentHash,
          name: command.name,
          params: JSON.parse(params),
          priority: PRIORITIES[rank] ?? "normal",
          status: cancelled ? "cancelled" : "queued",
          attempt: 1,
          deliveredAttempt: 0,
          leaseExpiresAt: null,
          cancelRequested: false,
          fingerprint: command.fingerprint,
          seq: num(inserted.lastInsertRowid),
          createdAt: command.now,
          deliveredAt: null,
          ackedAt: null,
          completedAt,
          expiresAt,
          updatedAt: command.now,
          result: null,
          endCause: null,
        };
        if (!request) return { outcome: "created", command: created };
        const claimed = takesNew
          ? {
            ...created,
            status: "delivered" as const,
            leaseExpiresAt,
            deliveredAt: now,
            deliveredAttempt: 1,
          }
          : this.#claimIn(request, created);
        return { outcome: "created", command: created, claimed };
      });
    });
  }

  /** {@inheritDoc CommandStore.claimNext} */
  claimNext(request: ClaimRequest): Promise<CommandRecord | null> {
    return this.#run(() => {
      // A read first: an empty queue (most waits) costs no write transaction and no fsync.
      if (this.#nextQueued(request) === null) return null;
      return this.#tx(() => this.#claimIn(request));
    });
  }

  /** The id of the agent's next queued command for a wait on the hash, or `null`. */
  #nextQueued(request: ClaimRequest): string | null {
    return this.#firstQueued(request)?.id ?? null;
  }

  /**
   * The agent's next queued command for a wait on the hash (its id and priority rank); a part of
   * a run whose cancel was recorded is passed over (the cancel's step cancels it).
   */
  #firstQueued(request: ClaimRequest): { id: string; priority: number } | null {
    const row = this.#stmt(
      `SELECT id, priority FROM commands
     WHERE agent_id = ? AND status = 'queued' AND (deployment_hash IS NULL OR deployment_hash = ?)
       AND (expires_at IS NULL OR expires_at > ?)
       AND NOT EXISTS (SELECT 1 FROM run_targets t JOIN runs r ON r.id = t.run_id
         WHERE t.command_id = commands.id AND r.cancel_requested = 1)
     ORDER BY priority, seq LIMIT 1`,
    ).get(request.agentId, request.deploymentHash, request.now) as Row | undefined;
    return row ? { id: String(row.id), priority: num(row.priority) } : null;
  }

  /**
   * Claims inside a transaction. `fresh` is a command this transaction just wrote (its record
   * is not read again when it is the one claimed).
   */
  #claimIn(request: ClaimRequest, fresh?: CommandRecord): CommandRecord | null {
    const id = this.#nextQueued(request);
    if (id === null) return null;
    const before = fresh?.id === id ? fresh : this.#mustCommand(id);
    const leaseExpiresAt = request.now + request.deliveryLeaseMs;
    this.#stmt(
      `UPDATE commands SET status = 'delivered', lease_expires_at = ?, delivered_at = ?,
       delivered_attempt = attempt, acked_at = NULL, updated_at = ?
     WHERE id = ?`,
    ).run(leaseExpiresAt, request.now, request.now, id);
    return {
      ...before,
      status: "delivered",
      leaseExpiresAt,
      deliveredAt: request.now,
      deliveredAttempt: before.attempt,
      ackedAt: null,
      updatedAt: request.now,
    };
  }

  /** {@inheritDoc CommandStore.release} */
  release(commandId: string, attempt: number, now: number): Promise<boolean> {
    return this.#run(() => {
      this.#beforeOwnCommit();
      const result = this.#stmt(
        `UPDATE commands SET status = 'queued', lease_expires_at = NULL,
         delivered_attempt = attempt - 1, updated_at = ?
       WHERE id = ? AND status = 'delivered' AND attempt = ?`,
      ).run(now, commandId, attempt);
      return num(result.changes) === 1;
    });
  }

  /** {@inheritDoc CommandStore.ack} */
  ack(request: AckRequest): Promise<AckOutcome> {
    return this.#run(() => {
      return this.#tx((): AckOutcome => {
        const core = this.#commandCore(request.commandId);
        if (!core) return { outcome: "not_found" };
        const usual = core.command.agentId === request.agentId &&
          core.command.attempt === request.attempt && !core.hasResult &&
          (core.command.status === "delivered" || core.command.status === "running");
        // Anything else is answered with the whole command, result included.
        const command = usual ? core.command : this.#mustCommand(request.commandId);
        if (command.agentId !== request.agentId) return { outcome: "forbidden", command };
        if (command.attempt !== request.attempt) return { outcome: "stale", command };
        if (command.status === "running") return { outcome: "acked", command };
        if (command.status !== "delivered") return { outcome: "stale", command };
        const timeoutSecs = command.params.timeout_secs ?? request.defaultTimeoutSecs;
        const lease = request.now + (timeoutSecs + EXECUTION_LEASE_GRACE_SECS) * 1000;
        this.#stmt(
          `UPDATE commands SET status = 'running', lease_expires_at = ?, acked_at = ?, updated_at = ?
         WHERE id = ?`,
        ).run(lease, request.now, request.now, command.id);
        return {
          outcome: "acked",
          command: {
            ...command,
            status: "running",
            leaseExpiresAt: lease,
            ackedAt: request.now,
            updatedAt: request.now,
          },
        };
      });
    });
  }

  /** {@inheritDoc CommandStore.report} */
  report(input: ReportInput): Promise<ReportOutcome> {
    return this.#run(() => {
      return this.#tx((): ReportOutcome => {
        const core = this.#commandCore(input.commandId);
        if (!core) return { outcome: "not_found" };
        // A command with a result is answered with it (a duplicate); else it has none to read.
        const command = core.hasResult ? this.#mustCommand(input.commandId) : core.command;
        const refused = reportRefusal(command, input);
        if (refused) return refused;
        const r = input.result;
        this.#stmt(
          `INSERT INTO results (command_id, attempt, status, has_output, exit_code, signal,
           duration_secs, stdout, stderr, stdout_truncated_bytes, stderr_truncated_bytes, error,
           started_at, completed_at, reported_at, output_escaped, stdout_encoding,
           stderr_encoding)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)`,
        ).run(
          command.id,
          input.attempt,
          input.status,
          r ? 1 : 0,
          r?.exitCode ?? null,
          reportText(r?.signal ?? null),
          r?.durationSecs ?? null,
          r ? JSON.stringify(r.stdout) : null,
          r ? JSON.stringify(r.stderr) : null,
          r?.stdoutTruncatedBytes ?? null,
          r?.stderrTruncatedBytes ?? null,
          reportText(input.error),
          input.startedAt,
          input.completedAt,
          input.now,
          r?.stdoutEncoding ?? null,
          r?.stderrEncoding ?? null,
        );
        this.#stmt(
          `UPDATE commands SET status = ?, lease_expires_at = NULL, completed_at = ?, updated_at = ?,
           end_cause = NULL WHERE id = ?`,
        ).run(input.status, input.now, input.now, command.id);
        return {
          outcome: "accepted",
          command: {
            ...command,
            status: input.status,
            leaseExpiresAt: null,
            completedAt: input.now,
            updatedAt: input.now,
            endCause: null,
            result: {
              status: input.status,
              attempt: input.attempt,
              hasOutput: r !== null,
              exitCode: r?.exitCode ?? null,
              signal: reportText(r?.signal ?? null),
              durationSecs: r?.durationSecs ?? null,
              stdout: r ? r.stdout : null,
              stderr: r ? r.stderr : null,
              stdoutEncoding: encodingOrNull(r?.stdoutEncoding),
              stderrEncoding: encodingOrNull(r?.stderrEncoding),
              stdoutTruncatedBytes: r?.stdoutTruncatedBytes ?? null,
              stderrTruncatedBytes: r?.stderrTruncatedBytes ?? null,
              error: reportText(input.error),
              startedAt: input.startedAt,
              completedAt: input.completedAt,
              reportedAt: input.now,
            },
          },
        };
      });
    });
  }

  /** {@inheritDoc CommandStore.cancel} */
  cancel(commandId: string, now: number): Promise<CancelOutcome> {
    return this.#run(() => {
      return this.#tx((): CancelOutcome => {
        const command = this.#command(commandId);
        if (!command) return { outcome: "not_found" };
        if (command.status === "queued") {
          this.#stmt(
            `UPDATE commands SET status = 'cancelled', completed_at = ?, updated_at = ? WHERE id = ?`,
          ).run(now, now, commandId);
          return { outcome: "cancelled", command: this.#mustCommand(commandId) };
        }
        if (command.status === "delivered" || command.status === "running") {
          if (!command.cancelRequested) {
            this.#stmt(
              "UPDATE commands SET cancel_requested = 1, updated_at = ? WHERE id = ?",
            ).run(now, commandId);
          }
          return { outcome: "requested", command: this.#mustCommand(commandId) };
        }
        return { outcome: "final", command };
      });
    });
  }

  /** {@inheritDoc CommandStore.requeueExpired} */
  requeueExpired(now: number, maxAttempts: number): Promise<ExpireOutcome> {
    return this.#run(() => {
      return this.#tx(() => {
        const rows = this.#stmt(
          `SELECT id, attempt, cancel_requested FROM commands
         WHERE lease_expires_at IS NOT NULL AND lease_expires_at <= ?
           AND status IN ('delivered', 'running')
         ORDER BY lease_expires_at, seq`,
        ).all(now) as Row[];
        const outcome: ExpireOutcome = { requeued: [], lost: [], cancelled: [], expired: [] };
        for (const row of rows) {
          const id = String(row.id);
          if (num(row.cancel_requested) !== 0) {
            this.#stmt(
              `UPDATE commands SET status = 'cancelled', lease_expires_at = NULL, completed_at = ?,
               updated_at = ? WHERE id = ?`,
            ).run(now, now, id);
            outcome.cancelled.push(this.#mustCommand(id));
          } else if (num(row.attempt) >= maxAttempts) {
            this.#stmt(
              `UPDATE commands SET status = 'lost', lease_expires_at = NULL, completed_at = ?,
               updated_at = ? WHERE id = ?`,
            ).run(now, now, id);
            outcome.lost.push(this.#mustCommand(id));
          } else {
            this.#stmt(
              `UPDATE commands SET status = 'queued', attempt = attempt + 1, lease_expires_at = NULL,
               acked_at = NULL, updated_at = ? WHERE id = ?`,
            ).run(now, id);
            outcome.requeued.push(this.#mustCommand(id));
          }
        }
        const due = this.#stmt(
          `SELECT id FROM commands
         WHERE status = 'queued' AND expires_at IS NOT NULL AND expires_at <= ?
         ORDER BY expires_at, seq`,
        ).all(now) as Row[];
        for (const row of due) {
          const id = String(row.id);
          this.#stmt(
            `UPDATE commands SET status = 'expired', completed_at = ?, updated_at = ? WHERE id = ?`,
          ).run(now, now, id);
          outcome.expired.push(this.#mustCommand(id));
        }
        // A command requeued and expired in this pass is reported once, as expired.
        const expired = new Set(outcome.expired.map((c) => c.id));
        outcome.requeued = outcome.requeued.filter((c) => !expired.has(c.id));
        return outcome;
      });
    });
  }

  /** {@inheritDoc CommandStore.nextLeaseExpiry} */
  nextLeaseExpiry(): Promise<number | null> {
    return this.#run(() => {
      const lease = this.#stmt(
        `SELECT min(lease_expires_at) AS at FROM commands
       WHERE lease_expires_at IS NOT NULL AND status IN ('delivered', 'running')`,
      ).get() as Row;
      const expiry = this.#stmt(
        `SELECT min(expires_at) AS at FROM commands
       WHERE status = 'queued' AND expires_at IS NOT NULL`,
      ).get() as Row;
      const times = [numOrNull(lease.at), numOrNull(expiry.at)].filter((t) => t !== null);
      return times.length === 0 ? null : Math.min(...times);
    });
  }

  /** {@inheritDoc CommandStore.getCommand} */
  getCommand(id: string): Promise<CommandRecord | null> {
    return this.#run(() => {
      return this.#command(id);
    });
  }

  /** {@inheritDoc CommandStore.getCommandState} */
  getCommandState(id: string): Promise<RunCommandState | null> {
    return this.#run(() => {
      const row = this.#stmt(
        `SELECT status AS c_status, cancel_requested AS c_cancel_requested,
         updated_at AS c_updated_at FROM commands WHERE id = ?`,
      ).get(id) as Row | undefined;
      return row ? toCommandState(row) : null;
    });
  }

  /** {@inheritDoc CommandStore.existingCommandIds} */
  existingCommandIds(ids: readonly string[]): Promise<string[]> {
    return this.#run(() => {
      const found = new Set<string>();
      // The ids as one JSON array a statement: one statement text, whatever their number.
      const select = this.#stmt(
        "SELECT id FROM commands WHERE id IN (SELECT value FROM json_each(?))",
      );
      for (let start = 0; start < ids.length; start += IDS_PER_STATEMENT) {
        const chunk = ids.slice(start, start + IDS_PER_STATEMENT);
        for (const row of select.all(JSON.stringify(chunk)) as Row[]) found.add(String(row.id));
      }
      return ids.filter((id) => found.has(id));
    });
  }

  /** {@inheritDoc CommandStore.listCommands} */
  listCommands(query: CommandQuery): Promise<CommandRecord[]> {
    return this.#run(() => {
      const where: string[] = [];
      const args: SQLInputValue[] = [];
      if (query.agentId !== undefined) {
        where.push("c.agent_id = ?");
        args.push(query.agentId);
      }
      if (query.status !== undefined) {
        where.push("c.status = ?");
        args.push(query.status);
      }
      if (query.before !== undefined) {
        where.push("c.seq < ?");
        args.push(query.before);
      }
      const columns = query.withoutOutput ? COMMAND_COLUMNS_WITHOUT_OUTPUT : COMMAND_COLUMNS;
      const sql = `SELECT ${columns} ${COMMAND_FROM}
      ${where.length ? "WHERE " + where.join(" AND ") : ""} ORDER BY c.seq DESC LIMIT ?`;
      args.push(Math.max(0, Math.floor(query.limit)));
      return (this.#stmt(sql).all(...args) as Row[]).map(toCommand);
    });
  }

  /** {@inheritDoc CommandStore.countCommandsByStatus} */
  countCommandsByStatus(): Promise<Partial<Record<CommandStatus, number>>> {
    return this.#run(() => {
      const rows = this.#stmt(
        "SELECT status, count(*) AS n FROM commands GROUP BY status",
      ).all() as Row[];
      const counts: Partial<Record<CommandStatus, number>> = {};
      for (const row of rows) counts[String(row.status) as CommandStatus] = num(row.n);
      return counts;
    });
  }

  /** {@inheritDoc CommandStore.countOpenCommands} */
  countOpenCommands(agentId: string, upTo: number): Promise<number> {
    return this.#run(() => {
      checkCountLimit(upTo);
      // The queued ones by the queue's index, the delivered and running ones by the index of
      // commands in hand: neither through the agent's history nor the fleet's commands in hand.
      const row = this.#stmt(
        `SELECT
           (SELECT count(*) FROM (SELECT 1 FROM commands
              WHERE agent_id = ? AND status = 'queued' LIMIT ?)) +
           (SELECT count(*) FROM (SELECT 1 FROM commands
              WHERE agent_id = ? AND status IN ('delivered', 'running') LIMIT ?)) AS n`,
      ).get(agentId, upTo, agentId, upTo) as Row;
      return Math.min(upTo, num(row.n));
    });
  }

  /** {@inheritDoc CommandStore.commandsInHand} */
  commandsInHand(agentIds: readonly string[]): Promise<CommandRecord[]> {
    return this.#run(() => {
      // By the index of commands in hand: each agent's few, not every agent's. The
      // `status IN (...)` term is the index's own, which lets SQLite use it.
      const select = this.#stmt(
        `SELECT ${COMMAND_COLUMNS_WITHOUT_OUTPUT} ${COMMAND_FROM}
         WHERE c.seq IN (
           SELECT coalesce(
             (SELECT h.seq FROM commands h
              WHERE h.agent_id = j.value AND h.status IN ('delivered', 'running')
                AND h.status = 'running' ORDER BY h.seq LIMIT 1),
             (SELECT h.seq FROM commands h
              WHERE h.agent_id = j.value AND h.status IN ('delivered', 'running')
                AND h.status = 'delivered' ORDER BY h.seq DESC LIMIT 1))
           FROM json_each(?) j)`,
      );
      const byAgent = new Map<string, CommandRecord>();
      const ids = [...new Set(agentIds)];
      for (let start = 0; start < ids.length; start += IDS_PER_STATEMENT) {
        const chunk = JSON.stringify(ids.slice(start, start + IDS_PER_STATEMENT));
        for (const row of select.all(chunk) as Row[]) {
          const command = toCommand(row);
          byAgent.set(command.agentId, command);
        }
      }
      return ids.flatMap((id) => byAgent.get(id) ?? []);
    });
  }

  // -- live output and heartbeats

  /** {@inheritDoc CommandStore.appendOutput} */
  appendOutput(chunk: OutputChunkInput): Promise<AppendOutputOutcome> {
    return this.#run(() => {
      const { headBytes } = checkBounds(chunk.keep);
      checkChunkEnd(chunk);
      return this.#tx((): AppendOutputOutcome => {
        const key = [chunk.commandId, chunk.attempt, chunk.stream] as const;
        // The stored chunks of a stream are apart and in order: the last one ends it. (A max()
        // over them read every chunk of the stream, up to tens of thousands, at each append.)
        const end = num(
          (this.#stmt(
            `SELECT coalesce((SELECT byte_offset + length(data) FROM output_chunks
               WHERE command_id = ? AND attempt = ? AND stream = ?
               ORDER BY byte_offset DESC LIMIT 1), 0) AS e`,
          ).get(...key) as Row).e,
        );
        const plan = planAppend(end, chunk.offset, chunk.data, chunk.keep);
        if (plan.duplicate) return { outcome: "duplicate" };
        const { cut, pieces, offset, bytes, gapBytes } = plan;
        // Stored tail chunks that fell out of the tail go; one that straddles the cut is cut.
        this.#stmt(
          `DELETE FROM output_chunks WHERE command_id = ? AND attempt = ? AND stream = ?
           AND byte_offset >= ? AND byte_offset + length(data) <= ?`,
        ).run(...key, headBytes, cut);
        this.#stmt(
          `UPDATE output_chunks SET data = substr(data, ? - byte_offset + 1), byte_offset = ?
           WHERE command_id = ? AND attempt = ? AND stream = ?
           AND byte_offset >= ? AND byte_offset < ? AND byte_offset + length(data) > ?`,
        ).run(cut, cut, ...key, headBytes, cut, cut);
        let seq = 0;
        const insert = this.#stmt(
          `INSERT INTO output_chunks (command_id, attempt, stream, byte_offset, data, created_at)
           VALUES (?, ?, ?, ?, ?, ?)`,
        );
        for (const [at, bytes] of pieces) {
          seq = num(insert.run(...key, at, bytes, chunk.now).lastInsertRowid);
        }
        return { outcome: "stored", seq, offset, bytes, gapBytes };
      });
    });
  }

  /** {@inheritDoc CommandStore.listOutput} */
  listOutput(commandId: string, query: OutputQuery = {}): Promise<OutputChunk[]> {
    return this.#run(() => {
      const where = ["command_id = ?", "seq > ?"];
      const args: SQLInputValue[] = [commandId, query.afterSeq ?? 0];
      if (query.attempt !== undefined) {
        where.push("attempt = ?");
        args.push(query.attempt);
      }
      args.push(Math.max(0, Math.floor(query.limit ?? 1_000_000)));
      const rows = this.#stmt(
        `SELECT seq, command_id, attempt, stream, byte_offset, data, created_at FROM output_chunks
         WHERE ${where.join(" AND ")} ORDER BY seq LIMIT ?`,
      ).all(...args) as Row[];
      return rows.map((row) => ({
        seq: num(row.seq),
        commandId: String(row.command_id),
        attempt: num(row.attempt),
        stream: String(row.stream) as OutputStream,
        offset: num(row.byte_offset),
        data: row.data instanceof Uint8Array ? row.data : new Uint8Array(),
        createdAt: num(row.created_at),
      }));
    });
  }

  /** {@inheritDoc CommandStore.pruneOutput} */
  pruneOutput(completedBefore: number, limit: number): Promise<PruneOutputOutcome> {
    return this.#run(() => {
      checkPruneLimit(limit);
      this.#beforeOwnCommit();
      // The chunks in the order they came, each command found by its id: not through every
      // command final before the time (the whole retained history, most with no chunk left).
      const result = this.#stmt(
        `DELETE FROM output_chunks WHERE seq IN (
           SELECT o.seq FROM output_chunks o
           WHERE (SELECT c.completed_at FROM commands c WHERE c.id = o.command_id) < ?
           ORDER BY o.seq LIMIT ?)`,
      ).run(completedBefore, limit);
      const chunks = num(result.changes);
      return { chunks, more: chunks >= limit };
    });
  }

  /** {@inheritDoc CommandStore.pruneCommands} */
  pruneCommands(completedBefore: number, limit: number): Promise<PruneCommandsOutcome> {
    return this.#run(() => {
      checkPruneLimit(limit);
      return this.#tx(() => {
        let left = limit;
        // Commands of no run, oldest first.
        const ids = (this.#stmt(
          `SELECT c.id FROM commands c
           WHERE c.completed_at < ?
             AND NOT EXISTS (SELECT 1 FROM run_targets t WHERE t.command_id = c.id)
           ORDER BY c.completed_at LIMIT ?`,
        ).all(completedBefore, left) as Row[]).map((row) => row.id as string);
        let commands = this.#deleteCommands(ids);
        left -= ids.length;
        let runs = 0;
        // Runs completed before the cutoff whose every command was final before it too.
        while (left > 0) {
          const run = this.#stmt(
            `SELECT r.id FROM runs r
             WHERE r.completed_at < ?
               AND NOT EXISTS (
                 SELECT 1 FROM run_targets t JOIN commands c ON c.id = t.command_id
                 WHERE t.run_id = r.id AND (c.completed_at IS NULL OR c.completed_at >= ?))
             ORDER BY r.completed_at LIMIT 1`,
          ).get(completedBefore, completedBefore) as Row | undefined;
          if (run === undefined) break;
          const runId = run.id as string;
          const targets = (this.#stmt(
            "SELECT command_id FROM run_targets WHERE run_id = ? ORDER BY position LIMIT ?",
          ).all(runId, left) as Row[]).map((row) => row.command_id as string);
          commands += this.#deleteCommands(targets);
          this.#stmt(
            `DELETE FROM run_targets
             WHERE run_id = ? AND command_id IN (SELECT value FROM json_each(?))`,
          ).run(runId, JSON.stringify(targets));
          left -= targets.length;
          if (left === 0) break; // the run may have more targets: the next call takes them
          this.#stmt("DELETE FROM runs WHERE id = ?").run(runId);
          runs++;
          left--;
        }
        return { commands, runs, more: left <= 0 };
      });
    });
  }

  /**
   * Deletes commands with their results and live output.
   *
   * @returns How many commands existed.
   */
  #deleteCommands(ids: readonly string[]): number {
    if (ids.length === 0) return 0;
    const list = JSON.stringify(ids);
    this.#stmt("DELETE FROM output_chunks WHERE command_id IN (SELECT value FROM json_each(?))")
      .run(list);
    this.#stmt("DELETE FROM results WHERE command_id IN (SELECT value FROM json_each(?))")
      .run(list);
    return num(
      this.#stmt("DELETE FROM commands WHERE id IN (SELECT value FROM json_each(?))").run(list)
        .changes,
    );
  }

  /** {@inheritDoc CommandStore.recordHeartbeat} */
  recordHeartbeat(agentId: string, heartbeat: HeartbeatInput): Promise<boolean> {
    return this.#run(() => {
      this.#beforeOwnCommit();
      const result = this.#stmt(
        `UPDATE agents SET version = ?, deployment_hash = ?, instance_id = ?, heartbeat = ?,
         heartbeat_at = ?, last_seen_at = max(coalesce(last_seen_at, 0), ?),
         labels = coalesce(?, labels) WHERE id = ?`,
      ).run(
        heartbeat.version,
        heartbeat.deploymentHash,
        heartbeat.instanceId,
        heartbeat.sample === null ? null : JSON.stringify(heartbeat.sample),
        heartbeat.now,
        heartbeat.now,
        heartbeat.labels === undefined ? null : JSON.stringify(heartbeat.labels),
        agentId,
      );
      this.#cacheSeen(agentId, heartbeat.now);
      return num(result.changes) === 1;
    });
  }

  // -- fan-out runs (decisions: planRun in runs.ts)

  #runTargets(runId: string): RunTargetRecord[] {
    const rows = this.#stmt(
      `SELECT ${TARGET_COLUMNS} ${TARGET_FROM}
       WHERE t.run_id = ? ORDER BY t.position`,
    ).all(runId) as Row[];
    return rows.map(toTarget);
  }

  #getRunRow(id: string): RunRecord | null {
    const row = this.#stmt("SELECT * FROM runs WHERE id = ?").get(id) as Row | undefined;
    return row ? toRun(row, this.#runTargets(id)) : null;
  }

  /** The run as a step reads it: each target's command as its status and cancel flag. */
  #runState(id: string): RunState | null {
    const row = this.#stmt("SELECT * FROM runs WHERE id = ?").get(id) as Row | undefined;
    if (!row) return null;
    const targets = this.#stmt(
      `SELECT ${TARGET_STATE_COLUMNS} ${TARGET_STATE_FROM}
       WHERE t.run_id = ? ORDER BY t.position`,
    ).all(id) as Row[];
    return toRunState(row, targets.map(toTargetState));
  }

  /** {@inheritDoc CommandStore.createRun} */
  createRun(run: NewRun): Promise<CreateRunOutcome> {
    return this.#run(() => {
      return this.#tx((): CreateRunOutcome => {
        const existing = this.#getRunRow(run.id);
        if (existing) {
          return {
            outcome: existing.fingerprint === run.fingerprint ? "duplicate" : "conflict",
            run: existing,
          };
        }
        this.#stmt(
          `INSERT INTO runs (id, name, params, target, fingerprint, max_concurrency,
           max_concurrency_spec, max_errors, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        ).run(
          run.id,
          run.name,
          JSON.stringify(run.params),
          JSON.stringify(run.target),
          run.fingerprint,
          run.maxConcurrency,
          run.maxConcurrencySpec === null ? null : JSON.stringify(run.maxConcurrencySpec),
          run.maxErrors,
          run.now,
          run.now,
        );
        const insert = this.#stmt(
          `INSERT INTO run_targets (run_id, position, agent_id, command_id, offline_at_creation)
           VALUES (?, ?, ?, ?, ?)`,
        );
        run.targets.forEach((t, position) => {
          insert.run(run.id, position, t.agentId, t.commandId, t.offlineAtCreation ? 1 : 0);
        });
        return { outcome: "created", run: this.#getRunRow(run.id) as RunRecord };
      });
    });
  }

  /** {@inheritDoc CommandStore.getRun} */
  getRun(id: string): Promise<RunRecord | null> {
    return this.#run(() => this.#getRunRow(id));
  }

  /** {@inheritDoc CommandStore.listRuns} */
  listRuns(query: RunQuery): Promise<RunRecord[]> {
    return this.#run(() => {
      const rows = this.#stmt(
        `SELECT * FROM runs WHERE (? = 0 OR completed_at IS NULL) ORDER BY seq DESC LIMIT ?`,
      ).all(query.open ? 1 : 0, Math.max(0, Math.floor(query.limit))) as Row[];
      return rows.map((row) => toRun(row, this.#runTargets(String(row.id))));
    });
  }

  /** {@inheritDoc CommandStore.listRunSummaries} */
  listRunSummaries(query: RunQuery): Promise<RunSummary[]> {
    return this.#run(() => {
      // One statement: each run's groups from its own targets (the primary key's run_id first).
      const rows = this.#stmt(
        `SELECT r.*, (SELECT json_group_array(json_object('skipped', g.skipped,
             'started', g.started, 'status', g.status, 'count', g.count, 'first', g.first))
           FROM (${TARGET_GROUPS_SELECT} WHERE t.run_id = r.id GROUP BY 1, 2, 3) g)
           AS target_groups
         FROM runs r WHERE (? = 0 OR r.completed_at IS NULL) ORDER BY r.seq DESC LIMIT ?`,
      ).all(query.open ? 1 : 0, Math.max(0, Math.floor(query.limit))) as Row[];
      return rows.map(toRunSummary);
    });
  }

  /** {@inheritDoc CommandStore.listOpenRunIds} */
  listOpenRunIds(limit: number): Promise<string[]> {
    return this.#run(() => {
      const rows = this.#stmt(
        `SELECT id FROM runs WHERE completed_at IS NULL ORDER BY seq DESC LIMIT ?`,
      ).all(Math.max(0, Math.floor(limit))) as Row[];
      return rows.map((row) => String(row.id));
    });
  }

  /** {@inheritDoc CommandStore.advanceRun} */
  advanceRun(id: string, now: number): Promise<AdvanceRunOutcome | null> {
    return this.#run(() =>
      this.#tx(() => this.#advance(id, now, (runId) => this.#getRunRow(runId)))
    );
  }

  /** {@inheritDoc CommandStore.stepRun} */
  stepRun(id: string, now: number): Promise<RunStepOutcome | null> {
    return this.#run(() =>
      this.#tx(() => this.#advance(id, now, (runId) => this.#runState(runId)))
    );
  }

  /** {@inheritDoc CommandStore.getRunState} */
  getRunState(id: string): Promise<RunState | null> {
    return this.#run(() => this.#runState(id));
  }

  /** {@inheritDoc CommandStore.getRunTarget} */
  getRunTarget(commandId: string): Promise<RunTargetOfCommand | null> {
    return this.#run(() => {
      // By the unique index of the targets' command ids: the one target, not the run's others.
      const row = this.#stmt(
        `SELECT t.run_id AS t_run_id, ${TARGET_STATE_COLUMNS} ${TARGET_STATE_FROM}
         WHERE t.command_id = ?`,
      ).get(commandId) as Row | undefined;
      return row ? { runId: String(row.t_run_id), ...toTargetState(row) } : null;
    });
  }

  /**
   * One step of the run (inside a transaction), deciding from the run as `read` reads it (the
   * decision needs only each command's status) and answering it so.
   */
  #advance<T extends RunTargetState>(
    id: string,
    now: number,
    read: (id: string) => (RunState & { targets: T[] }) | null,
  ): { run: RunState & { targets: T[] }; toEnqueue: T[] } | null {
    const run = read(id);
    if (!run) return null;
    // The run as read, unless the step changed it: most steps (every sweep of every open run)
    // change nothing.
    let after = run;
    if (run.completedAt === null) {
      const plan = planRun(run);
      const mark = (column: "started_at" | "skipped_at", positions: number[]) => {
        const update = this.#stmt(
          `UPDATE run_targets SET ${column} = ? WHERE run_id = ? AND position = ?
           AND started_at IS NULL AND skipped_at IS NULL`,
        );
        for (const position of positions) update.run(now, id, position);
      };
      mark("started_at", plan.start);
      mark("skipped_at", plan.skip);
      const changed = plan.start.length + plan.skip.length > 0 || plan.complete;
      if (changed) {
        this.#stmt(
          `UPDATE runs SET updated_at = ?, completed_at = ? WHERE id = ?`,
        ).run(now, plan.complete ? now : null, id);
        after = read(id)!;
      }
    }
    const targets: T[] = after.targets;
    const toEnqueue = targets.filter((t) =>
      t.startedAt !== null && t.skippedAt === null && t.command === null
    );
    return { run: after, toEnqueue };
  }

  /** {@inheritDoc CommandStore.cancelRun} */
  cancelRun(id: string, now: number): Promise<CancelRunOutcome> {
    return this.#run(() => {
      return this.#tx((): CancelRunOutcome => {
        const run = this.#getRunRow(id);
        if (!run) return { outcome: "not_found" };
        if (run.completedAt !== null) return { outcome: "final", run };
        if (run.targets.every(targetFinal)) {
          // Every part had ended, the step that says so not taken yet: the run ends as it would.
          this.#stmt("UPDATE runs SET updated_at = ?, completed_at = ? WHERE id = ?")
            .run(now, now, id);
          return { outcome: "final", run: this.#getRunRow(id) as RunRecord };
        }
        this.#stmt(
          "UPDATE runs SET cancel_requested = 1, updated_at = ? WHERE id = ?",
        ).run(now, id);
        this.#stmt(
          `UPDATE run_targets SET skipped_at = ? WHERE run_id = ?
           AND started_at IS NULL AND skipped_at IS NULL`,
        ).run(now, id);
        return { outcome: "cancelled", run: this.#getRunRow(id) as RunRecord };
      });
    });
  }

  /**
   * {@inheritDoc RequestIdJournal.keepRequestId}
   *
   * Kept ids are written with the next group commit, whatever it is for, all in one statement;
   * when none comes within a second, a commit of their own. So a request that changes a command
   * (an enqueue, an ack, a report, output) has its id committed with that change or before it, and
   * a crash forgets at most the last second's ids of requests that change no command (waits,
   * pings, heartbeats), which change nothing of note when sent again. A fleet's waits cost one
   * commit a second instead of one each.
   */
  keepRequestId(id: KeptRequestId, now: number): Promise<void> {
    if (this.#closed) return Promise.reject(new StoreError(`database ${this.path} is closed`));
    this.#requestIdsNow = Math.max(this.#requestIdsNow, now);
    return new Promise<void>((resolve, reject) => {
      this.#pendingRequestIds.push({ id, waiter: { resolve, reject } });
      if (this.#requestIdTimer === null) {
        this.#requestIdTimer = setTimeout(() => {
          this.#requestIdTimer = null;
          if (this.#closed || this.#pendingRequestIds.length === 0) return;
          this.#run(() => this.#joinGroup()).catch(() => {
            // the ids' own promises carry the failure
          });
        }, 1_000);
      }
    });
  }

  /**
   * Writes the request ids kept since the last commit into the open group, whose commit then
   * answers them; once a second deletes the batches of ids committed before that have expired.
   *
   * @returns The batch written, to be remembered once it is committed.
   */
  #writeRequestIds(group: { waiting: GroupWaiter[] }): { lastRowid: number; expiresAt: number } {
    const pending = this.#pendingRequestIds;
    this.#pendingRequestIds = [];
    for (const { waiter } of pending) group.waiting.push(waiter);
    const written = this.#stmt(
      `INSERT INTO request_ids (key, expires_at, sent_at)
       SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]')
       FROM json_each(?)`,
    ).run(JSON.stringify(pending.map(({ id }) => [id.key, id.expiresAt, id.sentAtMs])));
    // Every id expires a window after it was accepted, so the batches expire in the order they were
    // written; ids the store kept before it was opened have lower rowids and expire sooner still.
    const now = this.#requestIdsNow;
    if (now - this.#requestIdsSweptAt >= 1_000) {
      this.#requestIdsSweptAt = now;
      let upTo: number | null = null;
      while (this.#requestIdBatches.length > 0 && this.#requestIdBatches[0].expiresAt <= now) {
        upTo = this.#requestIdBatches.shift()!.lastRowid;
      }
      if (upTo !== null) this.#stmt("DELETE FROM request_ids WHERE rowid <= ?").run(upTo);
    }
    let expiresAt = -Infinity;
    for (const { id } of pending) expiresAt = Math.max(expiresAt, id.expiresAt);
    return { lastRowid: Number(written.lastInsertRowid), expiresAt };
  }

  /**
   * Remembers a committed batch of request ids for the sweep. Batches that expire within a second
   * of the last one are merged into it (deleted up to a second later): a busy store commits
   * hundreds of times a second, and the window is 660 s.
   */
  #rememberRequestIdBatch(batch: { lastRowid: number; expiresAt: number }): void {
    const last = this.#requestIdBatches.at(-1);
    if (last !== undefined && batch.expiresAt - last.expiresAt < 1_000) {
      last.lastRowid = batch.lastRowid;
      last.expiresAt = Math.max(last.expiresAt, batch.expiresAt);
    } else {
      this.#requestIdBatches.push(batch);
    }
  }

  /** {@inheritDoc RequestIdJournal.keptRequestIds} */
  keptRequestIds(now: number): Promise<KeptRequestId[]> {
    return this.#run(() => {
      const kept = (this.#stmt(
        "SELECT key, expires_at, sent_at FROM request_ids WHERE expires_at > ? ORDER BY expires_at",
      ).all(now) as Row[]).map((row) => ({
        key: String(row.key),
        expiresAt: num(row.expires_at),
        sentAtMs: row.sent_at === null ? null : num(row.sent_at),
      }));
      // Read once, at start: the ids expired since the last run go now (later ones by rowid).
      // A file another process holds the write lock of keeps them a while longer (the next id
      // kept deletes them), rather than the dashboard starting without the ids it must refuse.
      try {
        this.#tx(() => this.#stmt("DELETE FROM request_ids WHERE expires_at <= ?").run(now));
      } catch (error) {
        if (!isBusy(error)) throw error;
      }
      return kept;
    });
  }

  /** {@inheritDoc CommandStore.close} */
  close(): Promise<void> {
    return this.#run(() => {
      if (this.#closed) return;
      // Writes still waiting for their commit get it (or its failure) before the file closes,
      // and so do the request ids kept since the last one.
      if (this.#pendingRequestIds.length > 0) this.#joinGroup();
      this.#commitGroup();
      if (this.#requestIdTimer !== null) clearTimeout(this.#requestIdTimer);
      this.#requestIdTimer = null;
      this.#closed = true;
      if (this.#checkpointTimer !== null) clearImmediate(this.#checkpointTimer);
      this.#checkpointTimer = null;
      this.#statements.clear();
      if (this.#db.isOpen) this.#db.close();
      this.#servingLock?.close();
      this.#servingLock = null;
    });
  }

  /** Closes the store. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** A file's identity: its device and inode. */
interface FileId {
  dev: number;
  ino: number;
}

/**
 * The device and inode of the file at `path`: `"missing"` when nothing is there, `null` when that
 * cannot be told (no permission to look, no inode on this system).
 */
function fileIdOf(path: string): FileId | "missing" | null {
  try {
    const info = Deno.statSync(path);
    return info.ino === null ? null : { dev: info.dev, ino: info.ino };
  } catch (error) {
    return error instanceof Deno.errors.NotFound ? "missing" : null;
  }
}

/** How the file at `path` is no longer the one `opened` was, if it can be told. */
function changedFile(path: string, opened: FileId): "removed" | "replaced by another file" | null {
  const now = fileIdOf(path);
  if (now === null) return null;
  if (now === "missing") return "removed";
  return now.dev === opened.dev && now.ino === opened.ino ? null : "replaced by another file";
}

function kindOf(path: string): "file" | "directory" | "other" | "missing" {
  try {
    const info = Deno.statSync(path);
    return info.isFile ? "file" : info.isDirectory ? "directory" : "other";
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "missing";
    throw new StoreError(`cannot open database ${path}: ${describeOpenError(error, path)}`, {
      cause: error,
    });
  }
}

/**
 * Warns of a database every user may read: one an earlier status created as the umask said
 * (0644) is kept at that mode (a database keeps the mode its owner gave it), so a command run as
 * `nobody` could read every command, output and token hash in it.
 */
function warnIfEveryoneMayRead(path: string): void {
  let mode: number | null;
  try {
    mode = Deno.statSync(path).mode;
  } catch {
    return; // not to be looked at: nothing to tell
  }
  if (mode === null || (mode & 0o004) === 0) return;
  log.warning(
    "database {path} may be read by every user (mode {mode}; an earlier status created it so): " +
      "any local user, and every command an agent on this machine runs, can read its commands, " +
      "their output and the agents' token hashes; stop the dashboard, chmod 600 {path} and start " +
      "it again",
    { path, mode: `0${(mode & 0o777).toString(8)}` },
  );
}

/** Whether every user may write in `dir` (`/tmp`); `false` when it cannot be looked at. */
function everyoneMayWriteIn(dir: string): boolean {
  try {
    const mode = Deno.statSync(dir).mode;
    return mode !== null && (mode & 0o002) !== 0;
  } catch {
    return false;
  }
}

/**
 * Refuses a database that a dashboard serves (its lock is held) while its `-shm` file is gone
 * (removed under the dashboard): SQLite would make a new one, and this process and the dashboard
 * would each keep their own index of the write-ahead log, neither seeing the other's writes. The
 * dashboard would write over this process's commits in the log (`status agents add --db` said it
 * added an agent, and the agent was gone). Looked at before SQLite opens the file: a descriptor of
 * it closed later would end the locks SQLite holds on it.
 */
function checkServedShm(path: string): void {
  if (fileIdOf(`${path}-shm`) !== "missing") return;
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch {
    return; // missing, or not to be read: SQLite says why
  }
  let served: boolean;
  try {
    served = !file.tryLockSync(false);
  } catch {
    served = false; // no locks here: nothing to tell
  } finally {
    file.close();
  }
  if (served) {
    throw new StoreError(
      `cannot open database ${path}: its -shm file was removed while a dashboard (status serve) ` +
        "has it open; a write made now would be lost (the dashboard would not see it, and would " +
        "write over it): restart the dashboard, then try again",
    );
  }
}

/** Refuses a missing file (unless `create`) or a missing directory before SQLite creates one. */
function checkDatabasePath(path: string, create: boolean): void {
  // In a directory every user may write (/tmp), a database file or symlink another user made
  // first would be read and written by this process: theirs to read, or to point elsewhere.
  // Elsewhere a database of another user is one an administrator opens on purpose (root's
  // `status agents add --db` on the dashboard user's file). A symlink in place of a companion
  // file is refused wherever it is: SQLite and the reserve would write through it.
  const problem =
    (everyoneMayWriteIn(dirname(path)) ? notOwnPathProblem(path, { symlink: "own" }) : undefined) ??
      [`${path}-wal`, `${path}-shm`, `${path}-reserve`]
        .map((companion) => notOwnPathProblem(companion, { symlink: "never" }))
        .find((found) => found !== undefined);
  if (problem !== undefined) {
    throw new StoreError(
      `cannot open database ${path}: ${problem}; refusing (remove it, or keep the database in ` +
        "a directory only this user may write)",
    );
  }
  const kind = kindOf(path);
  if (kind === "directory") {
    throw new StoreError(
      `cannot open database ${path}: it is a directory, not a file (give the database file's own ` +
        `path, such as ${join(path, "status.db")})`,
    );
  }
  if (kind === "other") {
    // /dev/null, a pipe: SQLite would fail with "disk I/O error", after creating its journal
    // beside it (/dev/null-journal).
    throw new StoreError(
      `cannot open database ${path}: it is not a regular file (a device, a pipe or a socket)`,
    );
  }
  if (kind === "file" && isEmpty(path) && leftLog(`${path}-wal`)) {
    // A database in WAL mode always has its first page in the file: this one was emptied (or
    // replaced by an empty file), and SQLite would start over from it and delete the log.
    throw new StoreError(
      `cannot open database ${path}: the file is empty, but ${path}-wal is left beside it and ` +
        "holds the last writes of the database that was there; put that database back, or move " +
        "the -wal file away to start with an empty database",
    );
  }
  if (kind !== "missing") return;
  if (!create) {
    throw new StoreError(
      `database ${path} does not exist; check --db (or DB), or create it by starting the ` +
        `dashboard once: status serve --db ${path}`,
    );
  }
  if (leftLog(`${path}-wal`)) {
    // SQLite would make an empty database and delete the log, with the last writes in it.
    throw new StoreError(
      `cannot create database ${path}: ${path}-wal is left from a database of that name that ` +
        "is gone, and holds its last writes; put the database back beside it, or move the -wal " +
        "file away to start with an empty database",
    );
  }
  const dir = dirname(path);
  let dirKind: ReturnType<typeof kindOf> | undefined;
  try {
    dirKind = kindOf(dir);
  } catch {
    // The directory may not be looked at (read permission for the database files only, as under
    // `-P=serve`): the file is still created below, or SQLite says why it cannot be.
  }
  if (dirKind === "missing") {
    throw new StoreError(
      `cannot create database ${path}: the directory ${dir} does not exist (create it first, or ` +
        `check --db)`,
    );
  }
  if (dirKind !== undefined && dirKind !== "directory") {
    throw new StoreError(`cannot create database ${path}: ${dir} is not a directory`);
  }
  // Readable by its owner only (the agents' token hashes, every command and its output): SQLite
  // would create it as the umask says (0644), and its -wal and -shm files take its mode.
  try {
    Deno.openSync(path, { createNew: true, write: true, mode: 0o600 }).close();
  } catch {
    // Created meanwhile, or not permitted: SQLite opens or creates it, or says why not.
  }
}

/** SQLite's extended result code `SQLITE_IOERR_SHMSIZE`: the -shm file could not be grown. */
const SQLITE_IOERR_SHMSIZE = 4874;

/** Whether opening failed for lack of space (a write, or the -shm file SQLite needs to read). */
function noRoomToOpen(error: unknown): boolean {
  if (error instanceof StoreFullError) return true;
  if (isDiskFull((error as { cause?: unknown })?.cause ?? error)) return true;
  return (error as { errcode?: number } | null)?.errcode === SQLITE_IOERR_SHMSIZE;
}

/**
 * Cuts the reserve beside a database to nothing, then removes it (never through a symlink: it was
 * refused before). Removing alone frees nothing while another process holds the file open (a
 * backup reading it, or a process another thread is starting, until its program runs); cutting it
 * frees its blocks at once.
 *
 * @returns Whether there was one to give back.
 */
function giveBackReserve(path: string): boolean {
  let file: Deno.FsFile | undefined;
  try {
    if (!Deno.lstatSync(path).isFile) return false;
    file = openOwnFileSync(path, { truncate: true, mode: 0o600 });
  } catch {
    // Not ours, or gone: removed below if it is there at all.
  } finally {
    file?.close();
  }
  try {
    Deno.removeSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Whether a write-ahead log with frames in it is at `path` (one that cannot be looked at is not). */
function leftLog(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && info.size > 0;
  } catch {
    return false;
  }
}

/** Whether the file at `path` is empty (one that cannot be looked at is not). */
function isEmpty(path: string): boolean {
  try {
    return Deno.statSync(path).size === 0;
  } catch {
    return false;
  }
}

/** Whether the file at `path` exists and may not be opened for writing (its mode, a read-only mount). */
function cannotWrite(path: string): boolean {
  try {
    Deno.openSync(path, { write: true }).close();
    return false;
  } catch (error) {
    return error instanceof Deno.errors.PermissionDenied || /os error 30\b/.test(String(error));
  }
}

function describeOpenError(error: unknown, path: string): string {
  if (error instanceof Deno.errors.NotCapable || (error as Error)?.name === "NotCapable") {
    return "permission denied by Deno; run with --allow-read and --allow-write for this path";
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return "permission denied by the operating system";
  }
  const message = error instanceof Error ? error.message : String(error);
  const code = primaryCode(error);
  if (code === SQLITE_NOTADB) {
    return "it is not a SQLite database (another kind of file, or an encrypted one); give the " +
      "path of a status database, or of a file that does not exist yet to create one";
  }
  if (code === SQLITE_CORRUPT) {
    return "the file is damaged (database disk image is malformed); restore it from a backup, " +
      "or recover what it holds with sqlite3's .recover into a new file";
  }
  if (/^unable to open database file/.test(message) && cannotWrite(path)) {
    // A database in WAL mode with no -shm file: SQLite cannot make one where it may not write.
    return READ_ONLY_PROBLEM;
  }
  return message.replace(
    /^unable to open database file.*$/,
    "unable to open the file (does " +
      "its directory exist and is it writable?)",
  );
}
