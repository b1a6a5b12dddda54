/**
 * Where CLI commands write their output. Library code never prints; commands write through an
 * {@link Io} so tests can capture what a command says.
 *
 * @module
 */
import { flushLogging } from "../log/mod.ts";
import { type SyncWriter, writeAllSync } from "../write_all.ts";
import { type ProcessStream, terminalText } from "./terminal_text.ts";

/** Output streams of a CLI command. */
export interface Io {
  /** Writes one line (a newline is added) to standard output. */
  out(line: string): void;
  /** Writes one line (a newline is added) to standard error. */
  err(line: string): void;
  /**
   * Writes bytes to standard output exactly as given (a command's own output, which need not be
   * text); without it, they are written with {@link Io.out} as UTF-8 text.
   */
  write?(bytes: Uint8Array): void;
  /**
   * Writes bytes to standard error exactly as given (a command's own stderr); without it, they
   * are written with {@link Io.err} as UTF-8 text.
   */
  writeErr?(bytes: Uint8Array): void;
  /**
   * The environment settings are read from; without it, the process's own (each variable where
   * `--allow-env` permits it).
   */
  env?: Readonly<Record<string, string | undefined>>;
}

const encoder = new TextEncoder();

/**
 * Writes every byte, unless the reader went away: a broken pipe is the reader saying it has seen
 * enough (`| head -1`), not an error, and so is a terminal that hung up (an SSH session that
 * dropped: each write fails with EIO while a stopping `status up` still has lines to say), so that
 * stream is left alone from then on.
 *
 * @param file Where to write.
 * @param bytes What to write.
 * @param closed The streams whose reader went away.
 */
export function writeAllOrStop(file: SyncWriter, bytes: Uint8Array, closed: Set<SyncWriter>): void {
  if (closed.has(file)) return;
  // Log lines made before this line come before it.
  flushLogging();
  try {
    writeAllSync(file, bytes);
  } catch (error) {
    const hungUp = (error as { code?: unknown }).code === "EIO";
    if (!(error instanceof Deno.errors.BrokenPipe) && !hungUp) {
      // `status list > /dev/full`: "No space left on device" alone does not say what was written.
      const stream = file === Deno.stderr ? "standard error" : "standard output";
      throw new Error(
        `cannot write to ${stream}: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      );
    }
    closed.add(file);
  }
}

/**
 * An {@link Io} on standard streams. What goes to one that is a terminal is shown as
 * {@link terminalText} shows a command's output (a command's stdout and stderr printed by
 * `status result` or `status exec`: their escape sequences are shown, not obeyed); a pipe or a
 * file gets the bytes as they are.
 *
 * @param streams Where to write.
 * @returns The Io.
 */
export function streamIo(streams: { stdout: ProcessStream; stderr: ProcessStream }): Io {
  const closed = new Set<SyncWriter>();
  const to = (stream: ProcessStream) => {
    let terminal: boolean | undefined;
    return (bytes: Uint8Array) => {
      if (terminal === undefined) {
        try {
          terminal = stream.isTerminal();
        } catch {
          terminal = false; // not known: as it is
        }
      }
      if (terminal) {
        const text = terminalText();
        const shown = text.write(bytes);
        const rest = text.end();
        writeAllOrStop(stream, shown, closed);
        if (rest.length > 0) writeAllOrStop(stream, rest, closed);
        return;
      }
      writeAllOrStop(stream, bytes, closed);
    };
  };
  const stdout = to(streams.stdout);
  const stderr = to(streams.stderr);
  return {
    out: (line) => stdout(encoder.encode(line + "\n")),
    err: (line) => stderr(encoder.encode(line + "\n")),
    write: stdout,
    writeErr: stderr,
  };
}

/** The process's own standard output and error ({@link streamIo}). */
export const processIo: Io = streamIo({ stdout: Deno.stdout, stderr: Deno.stderr });

/**
 * An {@link Io} that keeps every line, for tests. Bytes written with `write` are kept as they
 * are in `bytes`, and also decoded into `stdout` as one entry (without a final line break), as
 * `out` would have printed them.
 */
export function memoryIo(): Io & { stdout: string[]; stderr: string[]; bytes: Uint8Array[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const bytes: Uint8Array[] = [];
  return {
    stdout,
    stderr,
    bytes,
    out: (line) => void stdout.push(line),
    err: (line) => void stderr.push(line),
    write: (chunk) => {
      bytes.push(chunk.slice());
      const text = new TextDecoder().decode(chunk);
      stdout.push(text.endsWith("\n") ? text.slice(0, -1) : text);
    },
  };
}
