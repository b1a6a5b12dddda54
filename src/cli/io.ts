/**
 * Where CLI commands write their output. Library code never prints; commands write through an
 * {@link Io} so tests can capture what a command says.
 *
 * @module
 */

/** Output streams of a CLI command. */
export interface Io {
  /** Writes one line (a newline is added) to standard output. */
  out(line: string): void;
  /** Writes one line (a newline is added) to standard error. */
  err(line: string): void;
}

const encoder = new TextEncoder();

function writeAll(file: { writeSync(p: Uint8Array): number }, text: string): void {
  const bytes = encoder.encode(text);
  let written = 0;
  while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
}

/** The process's own standard output and error. */
export const processIo: Io = {
  out: (line) => writeAll(Deno.stdout, line + "\n"),
  err: (line) => writeAll(Deno.stderr, line + "\n"),
};

/** An {@link Io} that keeps every line, for tests. */
export function memoryIo(): Io & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return {
    stdout,
    stderr,
    out: (line) => void stdout.push(line),
    err: (line) => void stderr.push(line),
  };
}
