/**
 * Where CLI commands write their output. Library code never prints; commands write through an
 * {@link Io} so tests can capture what a command says.
 *
 * @module
 */
import { flushLogging } from "../log/mod.ts";
import { type SyncWriter, writeAllSync } from "../write_all.ts";

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
   * The environment settings are read from; without it, the process's own (each variable where
   * `--allow-env` permits it).
   */
  env?: Readonly<Record<string, string | undefined>>;
}

const encoder = new TextEncoder();

/**
 * Writes every byte, unless the reader went away: a broken pipe is the reader saying it has seen
 * enough (`| head -1`), not an error, so that stream is left alone from then on.
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
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
    closed.add(file);
  }
}

const closedStreams = new Set<SyncWriter>();

/** The process's own standard output and error. */
export const processIo: Io = {
  out: (line) => writeAllOrStop(Deno.stdout, encoder.encode(line + "\n"), closedStreams),
  err: (line) => writeAllOrStop(Deno.stderr, encoder.encode(line + "\n"), closedStreams),
  write: (bytes) => writeAllOrStop(Deno.stdout, bytes, closedStreams),
};

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
