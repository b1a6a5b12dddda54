/**
 * The result outbox: every report is written here before it is sent and removed only when the
 * dashboard accepted it, so a result survives a lost connection, a dashboard outage and an agent
 * restart (docs/protocol.md §6).
 *
 * On disk each pending report is one file `outbox/<sha256 of the id>.json`, written crash-safely
 * (temporary file, fsync, rename); one found under another name is renamed to that one (or, when
 * that one exists, set aside as `.duplicate`), and one that cannot be read is set aside as
 * `.corrupt`. Of each kind set aside, the newest five are kept; older ones are removed at open,
 * named in a warning. Without a directory the outbox lives in memory.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { keptReportSchema, type ReportRequest } from "../protocol/mod.ts";
import { logger } from "../log/mod.ts";
import {
  isNoSpace,
  KEPT_SET_ASIDE_COPIES,
  removeFileDurableSync,
  removeOldCopiesSync,
  writeFileAtomicSync,
} from "./fs.ts";
import { sharedDirectoryProblem } from "../own_files.ts";
import { readTextFileBounded } from "../read_bounded.ts";

/** A report waiting to be accepted. */
export interface OutboxItem {
  /** The report, exactly as it will be sent. */
  report: ReportRequest;
  /** When it was put in the outbox (ISO 8601). */
  queued_at: string;
}

/** Options of {@link Outbox.open}. */
export interface OutboxOptions {
  /** State directory; reports go to its `outbox/` subdirectory. Absent: kept in memory only. */
  dir?: string;
  /** Clock for `queued_at`; for tests. */
  now?: () => number;
}

const log = logger("agent", "outbox");

/**
 * The most bytes one outbox file may hold: far more than any report the agent writes (its output
 * is at most 64 KiB a stream). A larger file is damage or was put there: it is set aside unread,
 * not held whole in memory (a file of gigabytes would stop the agent from starting).
 */
export const MAX_OUTBOX_FILE_BYTES = 16 * 1024 * 1024;

/** Whether something is at a path (a symlink counts). */
function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * Moves a file aside under `<path>.<suffix>`, or `<path>.<suffix>.<random>` when a file set aside
 * before has that name (it is kept, not replaced).
 *
 * @returns Where it went.
 */
function setAside(path: string, suffix: string): string {
  let to = `${path}.${suffix}`;
  if (exists(to)) to = `${to}.${crypto.randomUUID().slice(0, 8)}`;
  Deno.renameSync(path, to);
  return to;
}

/** The kinds of files set aside, by the suffix of their names. */
const SET_ASIDE_KINDS = ["corrupt", "duplicate"] as const;

function fileNameOf(id: string): string {
  return createHash("sha256").update(id).digest("hex") + ".json";
}

/**
 * Pending reports, oldest first.
 *
 * @example An outbox in memory
 * ```ts
 * import assert from "node:assert/strict";
 * import { Outbox } from "./outbox.ts";
 *
 * const outbox = Outbox.open({});
 * outbox.put({ command_id: "cmd-1", status: "success" });
 * assert.equal(outbox.size, 1);
 * outbox.remove("cmd-1");
 * assert.equal(outbox.size, 0);
 * ```
 */
export class Outbox {
  readonly #dir: string | undefined;
  readonly #now: () => number;
  readonly #items = new Map<string, OutboxItem>();
  /** Ids of reports kept in memory only, because writing them failed. */
  readonly #unsaved = new Set<string>();

  private constructor(options: OutboxOptions) {
    this.#dir = options.dir === undefined ? undefined : join(options.dir, "outbox");
    this.#now = options.now ?? Date.now;
  }

  /**
   * Opens (or creates) an outbox and loads the reports it holds.
   *
   * @param options Directory; without it the outbox is in memory.
   * @returns The outbox.
   * @throws {Deno.errors.PermissionDenied} Or another I/O error when the directory is unusable.
   * @throws {Error} When another user owns the directory or every user may write in it.
   */
  static open(options: OutboxOptions = {}): Outbox {
    const outbox = new Outbox(options);
    outbox.#load();
    return outbox;
  }

  /** Whether the outbox is on disk (survives a restart). */
  get durable(): boolean {
    return this.#dir !== undefined;
  }

  /** Number of pending reports. */
  get size(): number {
    return this.#items.size;
  }

  /**
   * Stores a report (replacing one for the same command). Durable before it returns, unless the
   * state directory cannot be written: then the report is kept in memory (and sent from there),
   * written when {@link Outbox.retry} succeeds, and `false` is returned.
   *
   * @param report The report.
   * @returns Whether the report is on disk (always `true` in memory mode).
   */
  put(report: ReportRequest): boolean {
    const item: OutboxItem = {
      report: structuredClone(report),
      queued_at: this.#items.get(report.command_id)?.queued_at ??
        new Date(this.#now()).toISOString(),
    };
    this.#items.set(report.command_id, item);
    this.#unsaved.add(report.command_id);
    if (this.#save(report.command_id)) return true;
    log.warning(
      "the result could not be written to the outbox; it is kept in memory and sent from there " +
        "(it is lost if the agent stops before the dashboard accepts it)",
      { commandId: report.command_id, dir: this.#dir },
    );
    return false;
  }

  /** Number of reports kept in memory only (their files could not be written). */
  get unsaved(): number {
    return this.#unsaved.size;
  }

  /**
   * Writes the reports that could not be written before.
   *
   * @returns Whether every pending report is on disk now.
   */
  retry(): boolean {
    for (const id of [...this.#unsaved]) {
      if (!this.#save(id)) return false;
    }
    return true;
  }

  #save(id: string): boolean {
    const item = this.#items.get(id);
    if (!this.#dir || !item) {
      this.#unsaved.delete(id);
      return true;
    }
    try {
      Deno.mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
      writeFileAtomicSync(join(this.#dir, fileNameOf(id)), JSON.stringify(item));
    } catch (error) {
      log.debug("outbox write failed", { error: (error as Error).message });
      return false;
    }
    this.#unsaved.delete(id);
    return true;
  }

  /**
   * Looks up the pending report of a command.
   *
   * @param id The command id.
   * @returns A copy of the report, or `undefined`.
   */
  get(id: string): ReportRequest | undefined {
    const item = this.#items.get(id);
    return item ? structuredClone(item.report) : undefined;
  }

  /**
   * Removes a report (the dashboard accepted it). Durable before it returns.
   *
   * @param id The command id.
   */
  remove(id: string): void {
    if (!this.#items.has(id)) return;
    this.#items.delete(id);
    // A report kept in memory only may still have an older file (a replacement that could not be
    // written): it goes too, or a restart would send that old report again.
    this.#unsaved.delete(id);
    if (!this.#dir) return;
    try {
      removeFileDurableSync(join(this.#dir, fileNameOf(id)));
    } catch (error) {
      log.warning("an accepted result could not be removed from the outbox", {
        commandId: id,
        error: (error as Error).message,
      });
    }
  }

  /**
   * Every pending report, oldest first.
   *
   * @returns Copies of the reports.
   */
  pending(): ReportRequest[] {
    return [...this.#items.values()]
      .sort((a, b) => a.queued_at.localeCompare(b.queued_at))
      .map((item) => structuredClone(item.report));
  }

  #load(): void {
    if (!this.#dir) return;
    try {
      Deno.mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    } catch (error) {
      // A full disk must not stop the agent: the first report tries again.
      if (!isNoSpace(error)) throw error;
      log.warning("the outbox directory cannot be created for now", {
        dir: this.#dir,
        error: (error as Error).message,
      });
      return;
    }
    // Created 0700: one another user may write in (changed by hand) could hold reports planted
    // there, which the agent would send as its own.
    const shared = sharedDirectoryProblem(this.#dir);
    if (shared !== undefined) {
      throw new Error(
        `the outbox ${this.#dir} cannot be used: ${shared} (another user could put reports ` +
          "in it for the agent to send as its own); check what it holds, then chmod 700 it",
      );
    }
    const loaded: OutboxItem[] = [];
    for (const dirEntry of Deno.readDirSync(this.#dir)) {
      if (!dirEntry.isFile) continue;
      const path = join(this.#dir, dirEntry.name);
      if (dirEntry.name.endsWith(".tmp")) {
        // A write that a crash interrupted before its rename: the old file (if any) is intact.
        removeFileDurableSync(path);
        continue;
      }
      if (!dirEntry.name.endsWith(".json")) continue;
      let item: OutboxItem;
      try {
        const text = readTextFileBounded(path, MAX_OUTBOX_FILE_BYTES);
        if (text === undefined) {
          throw new Error(
            `it holds more than ${MAX_OUTBOX_FILE_BYTES} bytes, more than any report the agent writes`,
          );
        }
        const raw = JSON.parse(text);
        const report = keptReportSchema.parse(raw?.report);
        const queuedAt = typeof raw.queued_at === "string" ? raw.queued_at : "";
        item = { report, queued_at: queuedAt };
      } catch (error) {
        const to = setAside(path, "corrupt");
        log.error("outbox file is unreadable; moved aside", {
          file: path,
          to,
          error: (error as Error).message,
        });
        continue;
      }
      // A report under another name (copied in or renamed by hand) would never be removed, the
      // accepted result removing only its own name, and be sent again after every restart.
      const own = join(this.#dir, fileNameOf(item.report.command_id));
      if (path !== own) {
        if (exists(own)) {
          const to = setAside(path, "duplicate");
          log.warning("outbox file holds a result another outbox file holds; moved aside", {
            file: path,
            to,
            commandId: item.report.command_id,
          });
          continue;
        }
        Deno.renameSync(path, own);
        log.info("outbox file renamed after the command it holds the result of", {
          file: path,
          to: own,
          commandId: item.report.command_id,
        });
      }
      loaded.push(item);
    }
    loaded.sort((a, b) => a.queued_at.localeCompare(b.queued_at));
    for (const item of loaded) this.#items.set(item.report.command_id, item);
    this.#removeOldSetAside();
  }

  /**
   * Removes all but the newest files set aside of each kind (they would otherwise pile up over
   * restarts), naming them in a warning.
   */
  #removeOldSetAside(): void {
    for (const kind of SET_ASIDE_KINDS) {
      const pattern = new RegExp(`\\.json\\.${kind}(?:\\.[0-9a-f]{8})?$`);
      let removed: string[];
      try {
        removed = removeOldCopiesSync(this.#dir!, (name) => pattern.test(name));
      } catch (error) {
        log.debug("old outbox files set aside not removed", { error: (error as Error).message });
        continue;
      }
      if (removed.length === 0) continue;
      log.warning(
        `older outbox files set aside as .${kind} were removed, the newest ` +
          `${KEPT_SET_ASIDE_COPIES} kept: {removed}`,
        { dir: this.#dir, removed },
      );
    }
  }
}
