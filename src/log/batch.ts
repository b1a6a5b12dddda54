/**
 * Log lines written together: the lines of one turn of the event loop go out in one write at its
 * end, instead of one write each.
 *
 * A busy dashboard logs three lines per command. Written one by one, each is a system call on the
 * request path, and one that can wait: appending to a file on the disk that the store is
 * `fsync`ing may wait for that disk's journal. Batched, a turn that answers many requests writes
 * once. A warning or an error is written at once (after the lines before it), and so is a batch
 * that has grown past {@link BATCH_FLUSH_LENGTH}; {@link LineBatcher.flush} writes what is left
 * (on close, and when the program ends normally).
 *
 * @module
 */
import { setImmediate } from "node:timers";

/** A batch this long (its string length: UTF-16 code units, not bytes) is written at once. */
export const BATCH_FLUSH_LENGTH = 64 * 1024;

/** Collects log lines and writes them at the end of the turn (see the module doc). */
export class LineBatcher {
  readonly #write: (text: string) => void;
  #lines: string[] = [];
  #length = 0;
  #scheduled = false;
  readonly #flushLater = () => {
    this.#scheduled = false;
    this.flush();
  };

  /**
   * Makes a batcher.
   *
   * @param write Writes text (whole lines, each ending in `\n`); what it throws is dropped with
   *   the lines it was given (a log that cannot be written must not stop the program).
   */
  constructor(write: (text: string) => void) {
    this.#write = write;
  }

  /**
   * Adds a line (without its `\n`).
   *
   * @param line The line.
   * @param now Written at once with the lines before it (warnings and errors).
   */
  add(line: string, now = false): void {
    this.#lines.push(line);
    this.#length += line.length + 1;
    if (now || this.#length >= BATCH_FLUSH_LENGTH) {
      this.flush();
    } else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#flushLater);
    }
  }

  /** Lines waiting to be written. */
  get pending(): number {
    return this.#lines.length;
  }

  /** Writes the lines collected so far. */
  flush(): void {
    if (this.#lines.length === 0) return;
    const text = this.#lines.length === 1 ? this.#lines[0] + "\n" : this.#lines.join("\n") + "\n";
    this.#lines = [];
    this.#length = 0;
    try {
      this.#write(text);
    } catch {
      // Nowhere left to say it: standard error itself failed (closed, or its disk is full).
    }
  }
}
