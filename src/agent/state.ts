/**
 * Opens the agent's state: the journal and the outbox under `STATE_DIR` when the program may
 * read and write there, in memory otherwise (with a notice naming the flags that make them
 * durable).
 *
 * @module
 */
import { canReadWrite } from "./fs.ts";
import { Journal, type JournalOptions } from "./journal.ts";
import { Outbox } from "./outbox.ts";

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
}

/** Options of {@link openAgentState}. */
export interface AgentStateOptions extends Pick<JournalOptions, "maxEntries" | "retentionMs"> {
  /**
   * The state directory, created with mode 0700 when missing.
   * @default {"./.status-state"}
   */
  dir?: string;
  /** Decides whether the directory may be used; defaults to a `Deno.permissions` query. */
  canUse?: (dir: string) => boolean;
  /** Clock for timestamps; for tests. */
  now?: () => number;
}

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
  const dir = options.dir ?? "./.status-state";
  const canUse = options.canUse ?? canReadWrite;
  const memory = (notice: string): AgentState => {
    const journal = Journal.open({ ...options, dir: undefined });
    const outbox = Outbox.open({ now: options.now });
    return {
      journal,
      outbox,
      durable: false,
      notice,
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
    throw new Error(`cannot create the state directory ${dir}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const journal = Journal.open({ ...options, dir });
  try {
    const outbox = Outbox.open({ dir, now: options.now });
    return { journal, outbox, durable: true, [Symbol.dispose]: () => journal.close() };
  } catch (error) {
    journal.close();
    throw error;
  }
}
