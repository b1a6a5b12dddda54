/**
 * The execution journal: which commands this agent has started, finished and had accepted, so
 * that a command delivered again is never run twice (docs/protocol.md §4).
 *
 * On disk it is a JSON-lines log (`journal.jsonl`) under the state directory: every change is one
 * appended line, fsynced before the method returns; a torn last line (a crash mid-write), or a
 * line that is not a journal change (a damaged disk, a hand edit), is skipped on the next open,
 * with a warning for each of the first ten and a count of all. Before the log is rewritten
 * without such a line (other than a torn last one), the log as it was is kept beside it as
 * `journal.jsonl.damaged-<time>`, named in a warning. The log is read a piece at a time,
 * so damage of any size never stops the agent from starting. The log is compacted into a snapshot
 * by writing a temporary file, fsyncing it and renaming it over the log. It never grows past
 * `maxBytes`: a change that would take it past them is refused like one on a full disk (when a
 * snapshot cannot make room), and a log holding more changes than that (which the agent did not
 * write) is not read but set aside as `journal.jsonl.oversized-<time>`, with an error. Of the
 * copies set aside, the newest five are kept; older ones are removed, named in a warning. Without
 * a directory the journal lives in memory.
 *
 * @module
 */
import { join } from "node:path";
import {
  keptReportSchema,
  type ReportRequest,
  type ReportStatus,
  shortForm,
} from "../protocol/mod.ts";
import { logger } from "../log/mod.ts";
import { type ExitRecord, MAX_COMMAND_LINE_LENGTH, type ProcessRecord } from "../exec/mod.ts";
import {
  isNoSpace,
  KEPT_SET_ASIDE_COPIES,
  openStateFileSync,
  removeOldCopiesSync,
  StateWriteError,
  writeFileAtomicSync,
} from "./fs.ts";
import { writeAllSync } from "../write_all.ts";
import { openOwnFileSync } from "../own_files.ts";

/** Where a journaled command stands. */
export type JournalState = "running" | "done" | "accepted";

/** One journaled command. */
export interface JournalEntry {
  /** The command id. */
  id: string;
  /** The command line (its first 4096 characters and its length, when longer). */
  name: string;
  /** The delivery attempt that started it. */
  attempt: number;
  /** `running` from before the start until a result exists; then `done`; `accepted` once the dashboard took the result. */
  state: JournalState;
  /** When it was started (ISO 8601). */
  started_at: string;
  /** When its result was recorded. */
  completed_at?: string;
  /** Its final status once done. */
  status?: ReportStatus;
  /**
   * The report without its output (the byte counts say what was dropped): what is re-sent when
   * the command is delivered again after its full result left the outbox.
   */
  summary?: ReportRequest;
  /** When the dashboard accepted the result. */
  accepted_at?: string;
  /** What identifies its processes, recorded right after the spawn. */
  process?: ProcessRecord;
  /** How it ended, recorded the moment it exited (before its output was collected). */
  exit?: JournaledExit;
}

/**
 * How a command ended, as journaled the moment it exited: the executor's record, whose status is
 * `interrupted` when the agent's own stop cancelled it.
 */
export type JournaledExit = Omit<ExitRecord, "status"> & { status: ReportStatus };

/** Options of {@link Journal.open}. */
export interface JournalOptions {
  /** State directory; the journal is `journal.jsonl` in it. Absent: kept in memory only. */
  dir?: string;
  /**
   * Accepted entries beyond this many are pruned, oldest first (down to 90 %).
   * @default {10000}
   */
  maxEntries?: number;
  /**
   * Accepted entries older than this (since acceptance) are pruned, in milliseconds.
   * @default {604800000} (7 days)
   */
  retentionMs?: number;
  /**
   * The most bytes the log may hold: far more than the snapshot of `maxEntries` entries. A change
   * that would take it past them is written only after a snapshot made room (else it is refused as
   * on a full disk); a log holding more changes than that is set aside unread at open.
   * @default {134217728} (128 MiB)
   */
  maxBytes?: number;
  /** Clock for timestamps and pruning; for tests. */
  now?: () => number;
}

/** Default of {@link JournalOptions.maxEntries}. */
export const DEFAULT_JOURNAL_MAX_ENTRIES = 10_000;
/** Default of {@link JournalOptions.retentionMs}: 7 days. */
export const DEFAULT_JOURNAL_RETENTION_MS = 7 * 24 * 3600 * 1000;
/** Default of {@link JournalOptions.maxBytes}: 128 MiB. */
export const DEFAULT_JOURNAL_MAX_BYTES = 128 * 1024 * 1024;

const FILE_NAME = "journal.jsonl";
/** The names of the copies of the log set aside for an operator to look at. */
const SET_ASIDE = new RegExp(`^${FILE_NAME.replace(".", "\\.")}\\.(?:damaged|oversized)-`);
const encoder = new TextEncoder();
const log = logger("agent", "journal");

/**
 * The most characters of one journal line: far more than any change the journal writes (a command
 * line is kept to its first 4096 characters, a result without its output). A longer line is
 * damage, skipped without being held whole.
 */
const MAX_LINE_LENGTH = 16 * 1024 * 1024;

/**
 * Room a change that starts a command may need (its command line of up to 4096 characters, each
 * written as up to six): new commands are taken again once the log has it.
 */
const START_ROOM = 32 * 1024;

/** How many skipped lines are logged one by one on open; the rest are counted. */
const SHOWN_SKIPPED_LINES = 10;

/**
 * The lines of an open file, read 1 MiB at a time; a line longer than {@link MAX_LINE_LENGTH} is
 * `null`. Sets `tail.torn` when the file does not end with a newline.
 */
function* readLines(file: Deno.FsFile, tail: { torn: boolean }): Generator<string | null> {
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(1024 * 1024);
  let carry = "";
  let overlong = false;
  let last = 0x0a;
  for (;;) {
    const n = file.readSync(buffer);
    if (n === null) break;
    if (n === 0) continue;
    last = buffer[n - 1];
    const pieces = decoder.decode(buffer.subarray(0, n), { stream: true }).split("\n");
    const rest = pieces.pop()!;
    for (const piece of pieces) {
      yield overlong || carry.length + piece.length > MAX_LINE_LENGTH ? null : carry + piece;
      carry = "";
      overlong = false;
    }
    if (overlong || carry.length + rest.length > MAX_LINE_LENGTH) {
      overlong = true;
      carry = "";
    } else carry += rest;
  }
  carry += decoder.decode();
  tail.torn = last !== 0x0a;
  if (tail.torn) yield overlong ? null : carry;
}

type JournalOp =
  | { op: "start"; id: string; name: string; attempt: number; at: string }
  | { op: "done"; id: string; status: ReportStatus; summary: ReportRequest; at: string }
  | { op: "accepted"; id: string; at: string }
  | { op: "forget"; id: string }
  | { op: "spawned"; id: string; process: ProcessRecord }
  | { op: "exited"; id: string; exit: JournaledExit }
  | { op: "entry"; entry: JournalEntry };

const STATES: ReadonlySet<unknown> = new Set<JournalState>(["running", "done", "accepted"]);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isId(value: unknown): value is string {
  return typeof value === "string" && value !== "";
}

function isReport(value: unknown): value is ReportRequest {
  return keptReportSchema.safeParse(value).success;
}

/** A process record a restarted agent may signal: its pid at least names a process. */
function isProcess(value: unknown): value is ProcessRecord {
  return isRecord(value) && Number.isSafeInteger(value.pid) && (value.pid as number) > 1;
}

/** Whether a parsed journal line has the fields its operation needs (a damaged one is skipped). */
function isJournalOp(op: unknown): op is JournalOp {
  if (!isRecord(op)) return false;
  if (op.op === "entry") {
    const entry = op.entry;
    return isRecord(entry) && isId(entry.id) && typeof entry.name === "string" &&
      typeof entry.attempt === "number" && STATES.has(entry.state) &&
      typeof entry.started_at === "string" &&
      (entry.summary === undefined || isReport(entry.summary)) &&
      (entry.process === undefined || isProcess(entry.process));
  }
  if (!isId(op.id)) return false;
  switch (op.op) {
    case "start":
      return typeof op.name === "string" && typeof op.attempt === "number" &&
        typeof op.at === "string";
    case "done":
      // The summary goes to the outbox after a restart: it must be a report that one takes.
      return typeof op.status === "string" && isReport(op.summary) && typeof op.at === "string";
    case "accepted":
      return typeof op.at === "string";
    case "forget":
      return true;
    case "spawned":
      return isProcess(op.process);
    case "exited":
      return isRecord(op.exit) && typeof op.exit.status === "string";
    default:
      return false;
  }
}

/**
 * Drops a report's captured output, adding the dropped bytes to the truncation counts, so that a
 * journal entry stays small.
 *
 * @param report A full report.
 * @returns The same report without stdout and stderr text.
 */
export function summarizeReport(report: ReportRequest): ReportRequest {
  const result = report.result;
  if (!result) return { ...report };
  return {
    ...report,
    result: {
      ...result,
      stdout: "",
      stderr: "",
      stdout_truncated_bytes: result.stdout_truncated_bytes +
        keptBytes(result.stdout, result.stdout_encoding),
      stderr_truncated_bytes: result.stderr_truncated_bytes +
        keptBytes(result.stderr, result.stderr_encoding),
    },
  };
}

/** How many bytes of output a stream's field carries: base64 stands for 3 bytes in 4 characters. */
function keptBytes(text: string, encoding: string | undefined): number {
  if (encoding !== "base64") return encoder.encode(text).length;
  const padding = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
  return Math.max(0, Math.floor(text.length / 4) * 3 - padding);
}

/**
 * The execution journal. Every mutating method is durable when it returns (for an on-disk
 * journal).
 *
 * @example A journal in memory
 * ```ts
 * import assert from "node:assert/strict";
 * import { Journal } from "./journal.ts";
 *
 * using journal = Journal.open({});
 * journal.start({ id: "cmd-1", name: "echo hi", attempt: 1 });
 * assert.equal(journal.get("cmd-1")?.state, "running");
 * ```
 */
export class Journal implements Disposable {
  readonly #dir: string | undefined;
  readonly #path: string | undefined;
  readonly #maxEntries: number;
  readonly #retentionMs: number;
  readonly #maxBytes: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, JournalEntry>();
  #file: Deno.FsFile | undefined;
  #backlog: string[] = [];
  #linesSinceCompaction = 0;
  /**
   * The log ends in a line torn by a crash (no newline) that could not be compacted away: the next
   * write starts with a newline, or its first line would be joined to the torn one and lost.
   */
  #tornTail = false;
  #lastRetentionPrune = 0;
  /** The log holds damaged lines that are not kept aside yet: no snapshot may replace it. */
  #damaged = false;
  /**
   * Why the log could not be compacted, once said in a warning (said again only for another
   * reason, or after a compaction succeeded); cleared by a compaction.
   */
  #compactionProblem: "keep" | "write" | "size" | undefined;
  /** A failed compaction is tried again only once the log has this many more lines. */
  #compactAgainAt = 0;
  /** A change was refused because the log would have passed `maxBytes`. */
  #capped = false;
  /** The warning that changes wait in memory was given, and nothing was written since. */
  #toldUnsaved = false;

  private constructor(options: JournalOptions) {
    this.#dir = options.dir;
    this.#path = options.dir === undefined ? undefined : join(options.dir, FILE_NAME);
    this.#maxEntries = options.maxEntries ?? DEFAULT_JOURNAL_MAX_ENTRIES;
    this.#retentionMs = options.retentionMs ?? DEFAULT_JOURNAL_RETENTION_MS;
    this.#maxBytes = options.maxBytes ?? DEFAULT_JOURNAL_MAX_BYTES;
    this.#now = options.now ?? Date.now;
    if (!Number.isSafeInteger(this.#maxEntries) || this.#maxEntries < 1) {
      throw new RangeError(`maxEntries must be a positive integer, got ${this.#maxEntries}`);
    }
    if (!(this.#retentionMs >= 0)) {
      throw new RangeError(`retentionMs must be a non-negative number, got ${this.#retentionMs}`);
    }
    if (!Number.isSafeInteger(this.#maxBytes) || this.#maxBytes < 1) {
      throw new RangeError(`maxBytes must be a positive integer, got ${this.#maxBytes}`);
    }
  }

  /**
   * Opens (or creates) a journal and replays what it holds.
   *
   * @param options Directory and pruning limits; without `dir` the journal is in memory.
   * @returns The journal.
   * @throws {RangeError} On bad limits.
   * @throws {Deno.errors.PermissionDenied} Or another I/O error when the directory is unusable.
   */
  static open(options: JournalOptions = {}): Journal {
    const journal = new Journal(options);
    journal.#load();
    return journal;
  }

  /** Whether the journal is on disk (survives a restart). */
  get durable(): boolean {
    return this.#path !== undefined;
  }

  /** The directory of an on-disk journal. */
  get dir(): string | undefined {
    return this.#dir;
  }

  /** Number of entries. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Looks a command up.
   *
   * @param id The command id.
   * @returns A copy of its entry, or `undefined`.
   */
  get(id: string): JournalEntry | undefined {
    const entry = this.#entries.get(id);
    return entry ? structuredClone(entry) : undefined;
  }

  /**
   * Every entry, in the order the commands were started.
   *
   * @returns Copies of the entries.
   */
  entries(): JournalEntry[] {
    return [...this.#entries.values()].map((entry) => structuredClone(entry));
  }

  /**
   * Records that a command is about to run. Durable before it returns.
   *
   * @param command Id, command line and attempt.
   * @returns The new entry.
   * @throws {Error} When the id is journaled already.
   * @throws {StateWriteError} When the entry cannot be written (the command must not run).
   */
  start(command: { id: string; name: string; attempt: number }): JournalEntry {
    if (this.#entries.has(command.id)) {
      throw new Error(`command "${command.id}" is in the journal already`);
    }
    const op: JournalOp = {
      op: "start",
      id: command.id,
      // Kept for the logs only; a longer command line is never run (a broken or hostile
      // dashboard's 4 MiB ones would otherwise fill the journal and the memory that holds it).
      name: shortForm(command.name, MAX_COMMAND_LINE_LENGTH),
      attempt: command.attempt,
      at: new Date(this.#now()).toISOString(),
    };
    this.#record(op, true);
    return this.get(command.id)!;
  }

  /**
   * Records a command's result (its summary; the full result lives in the outbox).
   *
   * @param id The command id.
   * @param report The full report; only its summary is kept.
   */
  complete(id: string, report: ReportRequest): void {
    const op: JournalOp = {
      op: "done",
      id,
      status: report.status,
      summary: summarizeReport(report),
      at: report.completed_at ?? new Date(this.#now()).toISOString(),
    };
    this.#record(op);
  }

  /**
   * Records what identifies a running command's processes.
   *
   * @param id The command id.
   * @param process The record from the executor.
   */
  spawned(id: string, process: ProcessRecord): void {
    if (!this.#entries.has(id)) return;
    const op: JournalOp = { op: "spawned", id, process };
    this.#record(op);
  }

  /**
   * Records how a command ended, the moment it exited.
   *
   * @param id The command id.
   * @param exit The exit record from the executor (`interrupted` when the agent's stop ended it).
   */
  exited(id: string, exit: JournaledExit): void {
    if (!this.#entries.has(id)) return;
    const op: JournalOp = { op: "exited", id, exit };
    this.#record(op);
  }

  /**
   * Whether everything recorded is on disk (nothing waits for space).
   *
   * @returns `false` while changes wait in memory.
   */
  get saved(): boolean {
    return this.#backlog.length === 0;
  }

  /**
   * Writes the changes that could not be written before.
   *
   * @returns Whether everything is on disk now.
   */
  retry(): boolean {
    try {
      this.#flush([]);
    } catch {
      return false;
    }
    if (this.#capped) {
      // A change was refused at the limit: new commands wait until a snapshot leaves room.
      const room = Math.min(START_ROOM, Math.floor(this.#maxBytes / 4));
      if (this.#sizeOnDisk() + room > this.#maxBytes) this.#compact();
      if (this.#sizeOnDisk() + room > this.#maxBytes) return false;
      this.#capped = false;
    }
    this.#maybeCompact();
    return true;
  }

  /**
   * Records that the dashboard accepted a command's result; prunes old entries.
   *
   * @param id The command id.
   */
  accept(id: string): void {
    const entry = this.#entries.get(id);
    if (!entry || entry.state === "accepted") return;
    const op: JournalOp = { op: "accepted", id, at: new Date(this.#now()).toISOString() };
    this.#record(op);
    this.#maybePrune();
  }

  /**
   * Removes a command from the journal (it was never run, e.g. its delivery went stale).
   *
   * @param id The command id.
   */
  forget(id: string): void {
    if (!this.#entries.has(id)) return;
    const op: JournalOp = { op: "forget", id };
    this.#record(op);
  }

  /**
   * Removes accepted entries older than the retention and, beyond `maxEntries`, the oldest
   * accepted ones. Entries whose result was not accepted are never pruned.
   *
   * @returns How many entries were removed.
   */
  prune(): number {
    const now = this.#now();
    this.#lastRetentionPrune = now;
    const removed: string[] = [];
    for (const entry of this.#entries.values()) {
      if (
        entry.state === "accepted" && entry.accepted_at &&
        now - Date.parse(entry.accepted_at) > this.#retentionMs
      ) removed.push(entry.id);
    }
    for (const id of removed) this.#entries.delete(id);
    if (this.#entries.size > this.#maxEntries) {
      const target = Math.floor(this.#maxEntries * 0.9);
      const accepted = [...this.#entries.values()]
        .filter((entry) => entry.state === "accepted")
        .sort((a, b) => Date.parse(a.accepted_at!) - Date.parse(b.accepted_at!));
      for (const entry of accepted) {
        if (this.#entries.size <= target) break;
        this.#entries.delete(entry.id);
        removed.push(entry.id);
      }
    }
    if (removed.length > 0) {
      log.debug("journal pruned", { removed: removed.length, kept: this.#entries.size });
      this.#compact();
    }
    return removed.length;
  }

  /** Closes the journal file. */
  close(): void {
    this.#file?.close();
    this.#file = undefined;
  }

  /** Closes the journal file. */
  [Symbol.dispose](): void {
    this.close();
  }

  #maybePrune(): void {
    const now = this.#now();
    if (this.#entries.size > this.#maxEntries || now - this.#lastRetentionPrune > 3600_000) {
      this.prune();
    }
  }

  #apply(op: JournalOp): void {
    switch (op.op) {
      case "start":
        this.#entries.set(op.id, {
          id: op.id,
          name: op.name,
          attempt: op.attempt,
          state: "running",
          started_at: op.at,
        });
        break;
      case "done": {
        const entry = this.#entries.get(op.id) ?? {
          id: op.id,
          name: "",
          attempt: op.summary.attempt ?? 1,
          state: "running" as JournalState,
          started_at: op.summary.started_at ?? op.at,
        };
        entry.state = entry.state === "accepted" ? "accepted" : "done";
        entry.status = op.status;
        entry.summary = op.summary;
        entry.completed_at = op.at;
        this.#entries.set(op.id, entry);
        break;
      }
      case "accepted": {
        const entry = this.#entries.get(op.id);
        if (entry) {
          entry.state = "accepted";
          entry.accepted_at = op.at;
        }
        break;
      }
      case "forget":
        this.#entries.delete(op.id);
        break;
      case "spawned": {
        const entry = this.#entries.get(op.id);
        if (entry) entry.process = op.process;
        break;
      }
      case "exited": {
        const entry = this.#entries.get(op.id);
        if (entry) entry.exit = op.exit;
        break;
      }
      case "entry":
        this.#entries.set(op.entry.id, op.entry);
        break;
    }
  }

  /**
   * Writes an operation and applies it. A required one (a start) is written or throws (and is
   * not applied); any other is kept in memory when it cannot be written, and written with the next
   * write that succeeds. A compaction comes only after the operation is applied: the snapshot
   * replaces the log, so it must hold the operation just written.
   */
  #record(op: JournalOp, required = false): void {
    if (this.#path) {
      const line = JSON.stringify(op) + "\n";
      if (required) {
        this.#flush([line]);
      } else {
        this.#backlog.push(line);
        try {
          this.#flush([]);
        } catch (error) {
          // Said once until a write succeeds: on a full disk every change would say it again.
          const level = this.#toldUnsaved ? "debug" : "warning";
          this.#toldUnsaved = true;
          log[level](
            "the journal could not be written; the change is kept in memory and written when " +
              "space returns",
            { file: this.#path, pending: this.#backlog.length, error: (error as Error).message },
          );
        }
      }
    }
    this.#apply(op);
    this.#maybeCompact();
  }

  /**
   * Compacts the log once it holds far more lines than there are entries; after a compaction that
   * failed, only once as many lines again were written (not on every change).
   */
  #maybeCompact(): void {
    if (
      this.#linesSinceCompaction > Math.max(1000, 2 * this.#entries.size) &&
      this.#linesSinceCompaction >= this.#compactAgainAt
    ) this.#compact();
  }

  /** The backlog and `extra` as the bytes one append writes. */
  #pendingBytes(extra: string[]): Uint8Array {
    return encoder.encode((this.#tornTail ? "\n" : "") + this.#backlog.join("") + extra.join(""));
  }

  /** The size of the log on disk (0 when it cannot be told: the write says why). */
  #sizeOnDisk(): number {
    try {
      return Deno.lstatSync(this.#path!).size;
    } catch {
      return 0;
    }
  }

  /**
   * Appends the backlog and `extra` in one write and fsyncs it; on failure the file is cut back
   * to where it was (no torn line) and {@link StateWriteError} is thrown.
   */
  #flush(extra: string[]): void {
    if (this.#backlog.length + extra.length === 0 || !this.#path) return;
    let bytes = this.#pendingBytes(extra);
    if (this.#sizeOnDisk() + bytes.length > this.#maxBytes) {
      // A snapshot holds every change but `extra`, in fewer lines: it may make room.
      this.#compact();
      bytes = this.#pendingBytes(extra);
      if (this.#sizeOnDisk() + bytes.length > this.#maxBytes) {
        this.#capped = true;
        throw new StateWriteError(
          `cannot write the journal ${this.#path}: it would hold more than ${this.#maxBytes} ` +
            "bytes, the most it may, and a snapshot cannot make room now",
        );
      }
    }
    const lines = this.#backlog.length + extra.length;
    let size = 0;
    try {
      if (!this.#file) this.#openForAppend();
      size = this.#file!.statSync().size;
      writeAllSync(this.#file!, bytes);
      this.#file!.syncSync();
    } catch (error) {
      try {
        this.#file?.truncateSync(size);
      } catch {
        // The next open starts from a torn line at worst, which loading skips.
      }
      // Opened again by the next write: the file system may have been fixed or replaced.
      try {
        this.#file?.close();
      } catch {
        // closed already
      }
      this.#file = undefined;
      throw new StateWriteError(
        `cannot write the journal ${this.#path}: ${(error as Error).message}`,
        { cause: error },
      );
    }
    this.#backlog = [];
    this.#tornTail = false;
    this.#toldUnsaved = false;
    this.#linesSinceCompaction += lines;
  }

  #load(): void {
    if (!this.#path) return;
    this.#removeInterruptedSnapshots();
    this.#removeOldCopies();
    // Never a named pipe (the agent would hang at start) nor through a symlink. Read a piece at a
    // time: a journal of hundreds of megabytes (a region zeroed by a crash, a hand edit) is never
    // held whole, nor made one string (past 512 MiB none can be, and the agent would not start).
    const file = openStateFileSync(this.#path);
    const tail = { torn: false };
    let lines = 0;
    let skipped = 0;
    let lastSkipped = false;
    // Characters of the changes read (never more than their bytes): past `maxBytes`, the log is
    // not one the agent wrote, and holding what it says could take all the memory there is.
    let read = 0;
    let oversized = false;
    const skip = (why: string, line?: string) => {
      skipped++;
      lastSkipped = true;
      if (skipped > SHOWN_SKIPPED_LINES) return;
      log.warning(`journal line skipped: ${why}`, {
        file: this.#path,
        ...(line === undefined ? {} : { line: line.slice(0, 200) }),
      });
    };
    try {
      for (const line of file ? readLines(file, tail) : []) {
        if (line === null) {
          lines++;
          skip(`longer than ${MAX_LINE_LENGTH} characters (no change the journal writes is)`);
          continue;
        }
        lastSkipped = false;
        if (line.trim() === "") continue;
        lines++;
        // Every line the journal writes is a JSON object: anything else is not parsed (a throw
        // per line would take minutes over millions of lines of damage).
        let op: JournalOp | undefined;
        if (/^\s*\{/.test(line)) {
          try {
            op = JSON.parse(line);
          } catch {
            // skipped below
          }
        }
        if (op === undefined) {
          skip("not JSON (a write torn by a crash)");
          continue;
        }
        if (!isJournalOp(op)) {
          skip("JSON, but not a change the journal writes", line);
          continue;
        }
        read += line.length + 1;
        if (read > this.#maxBytes) {
          oversized = true;
          break;
        }
        this.#apply(op);
      }
    } finally {
      file?.close();
    }
    if (oversized) this.#setAsideOversized();
    else this.#replayed(lines, skipped, tail.torn && lastSkipped, tail.torn);
    if (!this.#file) {
      try {
        this.#openForAppend();
      } catch (error) {
        // A full disk must not stop the agent: the next write tries again.
        if (!isNoSpace(error)) throw error;
        log.warning("the journal cannot be opened for now", { error: (error as Error).message });
      }
    }
  }

  /** After the log was read: says what was skipped, and compacts a log with skipped lines. */
  #replayed(lines: number, skipped: number, tornLastSkipped: boolean, torn: boolean): void {
    if (skipped > SHOWN_SKIPPED_LINES) {
      log.warning("journal lines skipped in all (only the first ones are shown)", {
        file: this.#path,
        skipped,
      });
    }
    this.#tornTail = torn;
    // A last line torn by a crash is a change that was never made (its write never returned);
    // any other skipped line is damage, kept aside before a snapshot rewrites the log without it.
    this.#damaged = skipped - (tornLastSkipped ? 1 : 0) > 0;
    const needsCompaction = torn || skipped > 0;
    this.#linesSinceCompaction = lines;
    const pruned = this.prune() > 0;
    if (needsCompaction && !pruned) this.#compact();
  }

  /**
   * Sets aside a log holding more changes than `maxBytes` (not one the agent wrote: it never lets
   * the log pass them) as `journal.jsonl.oversized-<time>`, unread, and starts an empty one.
   *
   * @throws {Error} When it cannot be moved aside: the agent must not start without its journal.
   */
  #setAsideOversized(): void {
    this.#entries.clear();
    const kept = this.#copyName("oversized");
    try {
      Deno.renameSync(this.#path!, kept);
    } catch (error) {
      throw new Error(
        `${this.#path} holds more than ${this.#maxBytes} bytes of changes, more than the agent ` +
          `ever writes to it, and cannot be moved aside (${(error as Error).message}); move it ` +
          "away (look at what it holds first), then start the agent again",
        { cause: error },
      );
    }
    log.error(
      `the journal holds more than ${this.#maxBytes} bytes of changes, more than the agent ever ` +
        "writes to it; it is not read, but kept as {kept} (look at it, then remove it), and a " +
        "new journal is started: the commands it recorded are forgotten (one delivered again " +
        "runs again), and processes of commands it recorded as running are not stopped",
      { file: this.#path, kept },
    );
    this.#removeOldCopies();
  }

  /** A new name for a copy of the log set aside: `journal.jsonl.<why>-<time>-<random>`. */
  #copyName(why: "damaged" | "oversized"): string {
    const stamp = new Date(this.#now()).toISOString().replace(/[:.]/g, "-");
    return `${this.#path}.${why}-${stamp}-${crypto.randomUUID().slice(0, 8)}`;
  }

  /** Removes all but the newest copies of the log set aside, naming them in a warning. */
  #removeOldCopies(): void {
    let removed: string[];
    try {
      removed = removeOldCopiesSync(this.#dir!, (name) => SET_ASIDE.test(name));
    } catch (error) {
      log.debug("old journal copies not removed", { error: (error as Error).message });
      return;
    }
    if (removed.length === 0) return;
    log.warning(
      `older copies of the journal set aside were removed, the newest ${KEPT_SET_ASIDE_COPIES} ` +
        "kept: {removed}",
      { file: this.#path, removed },
    );
  }

  /**
   * Removes the temporary files of compactions that a crash interrupted before their rename (the
   * log they would have replaced is intact); each would otherwise stay, as large as the journal.
   */
  #removeInterruptedSnapshots(): void {
    try {
      for (const entry of Deno.readDirSync(this.#dir!)) {
        if (entry.isFile && entry.name.startsWith(`${FILE_NAME}.`) && entry.name.endsWith(".tmp")) {
          Deno.removeSync(join(this.#dir!, entry.name));
        }
      }
    } catch (error) {
      log.debug("interrupted journal snapshots not removed", { error: (error as Error).message });
    }
  }

  #openForAppend(): void {
    this.#file?.close();
    this.#file = undefined;
    // Never through a symlink, nor into another user's file (the agent may run as root).
    this.#file = openOwnFileSync(this.#path!, { append: true, mode: 0o600 });
  }

  /**
   * Keeps the log as it is, damaged lines included, under a name of its own beside it
   * (`journal.jsonl.damaged-<time>`), before a snapshot replaces it: a hard link (no copy, the
   * damage may be gigabytes of zeros), else a copy.
   *
   * @returns Whether the log is kept; when not, the log stays in use as it is.
   */
  #keepDamaged(): boolean {
    const kept = this.#copyName("damaged");
    try {
      try {
        Deno.linkSync(this.#path!, kept);
      } catch (error) {
        if (error instanceof Deno.errors.NotCapable) throw error;
        Deno.copyFileSync(this.#path!, kept);
      }
    } catch (error) {
      this.#compactionFailed(
        "keep",
        "the journal holds lines that cannot be read, and they cannot be kept aside; the journal " +
          `is kept as it is (and grows, up to ${this.#maxBytes} bytes) until they can`,
        error,
      );
      return false;
    }
    this.#damaged = false;
    log.warning(
      "the journal held lines that cannot be read; the journal as it was, those lines included, " +
        "is kept in {kept}, and the journal is rewritten without them",
      { file: this.#path, kept },
    );
    this.#removeOldCopies();
    return true;
  }

  /**
   * Notes a compaction that could not be made: warned once per reason (not on every change), and
   * tried again once as many lines again were written, or when a write needs the room.
   */
  #compactionFailed(problem: "keep" | "write" | "size", message: string, error?: unknown): void {
    this.#compactAgainAt = this.#linesSinceCompaction +
      Math.max(1000, 2 * this.#entries.size);
    const level = this.#compactionProblem === problem ? "debug" : "warning";
    this.#compactionProblem = problem;
    log[level](message, {
      file: this.#path,
      ...(error === undefined ? {} : { error: (error as Error).message }),
    });
  }

  /** Rewrites the log as a snapshot; when that cannot be written the old log stays in use. */
  #compact(): void {
    if (!this.#path) return;
    if (this.#damaged && !this.#keepDamaged()) return;
    const text = [...this.#entries.values()]
      .map((entry) => JSON.stringify({ op: "entry", entry } satisfies JournalOp) + "\n")
      .join("");
    // A snapshot past the limit would be set aside unread by the next start.
    if (
      text.length > this.#maxBytes ||
      (text.length * 3 > this.#maxBytes && encoder.encode(text).length > this.#maxBytes)
    ) {
      this.#compactionFailed(
        "size",
        `the journal's entries take more than ${this.#maxBytes} bytes, the most the journal may ` +
          "hold: it is not compacted, and takes no new command once full, until accepted " +
          "results are pruned",
      );
      return;
    }
    try {
      writeFileAtomicSync(this.#path, text);
    } catch (error) {
      this.#compactionFailed(
        "write",
        `the journal could not be compacted; it keeps growing (up to ${this.#maxBytes} bytes) ` +
          "until space returns",
        error,
      );
      return;
    }
    if (this.#compactionProblem !== undefined) {
      log.info("the journal is compacted again", { file: this.#path });
      this.#compactionProblem = undefined;
    }
    this.#compactAgainAt = 0;
    this.#toldUnsaved = false;
    // The snapshot holds every change, also those that waited for space.
    this.#backlog = [];
    this.#tornTail = false;
    this.#linesSinceCompaction = this.#entries.size;
    try {
      this.#openForAppend();
    } catch (error) {
      log.warning("the journal could not be reopened", { error: (error as Error).message });
    }
  }
}
