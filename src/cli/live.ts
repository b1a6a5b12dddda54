/**
 * Printing a command's output as it arrives, for `status result ID --follow` and
 * `status enqueue ... --wait`: its stdout to stdout and its stderr to stderr, byte for byte (on
 * a terminal as text whose control characters show as escapes, see {@link terminalText});
 * status changes as progress lines on stderr; on a terminal, a one-line elapsed-time indicator
 * on stderr while nothing is printed (nothing of the kind when stderr is not a terminal, or is one
 * whose `TERM` is `dumb`).
 *
 * @module
 */
import type { SyncWriter } from "../write_all.ts";
import { onSignals } from "./signals.ts";
import { timeoutSignal } from "../clock.ts";
import { fromBase64 } from "../protocol/mod.ts";
import { readAgentEnv } from "../exec/env.ts";
import { type ProcessStream, terminalText } from "./terminal_text.ts";

export { type ProcessStream, terminalText };
import {
  type CommandRecord,
  EXIT_WAIT_TIMEOUT,
  followCommand,
  formatElapsed,
  formatProgress,
  idWord,
  type OperatorClient,
  OperatorError,
  truncationNotes,
} from "../operator/mod.ts";
import { type Io, processIo, writeAllOrStop } from "./io.ts";

/** Where raw output goes. */
export interface OutputWriter {
  /** Writes bytes to standard output. */
  stdout(bytes: Uint8Array): void;
  /** Writes bytes to standard error. */
  stderr(bytes: Uint8Array): void;
  /**
   * Whether standard error is a terminal that takes cursor controls (the elapsed indicator is
   * shown only then): not one whose `TERM` is `dumb`, which prints them.
   */
  readonly isTerminal: boolean;
  /** Writes what is still held back (a line-based writer holds an unfinished line). */
  flush?(): void;
  /**
   * Writes the CLI's own terminal controls (the indicator's) to standard error as they are.
   * @default {stderr}
   */
  control?(bytes: Uint8Array): void;
}

/**
 * The process's standard output and error: a command's output goes to each byte for byte, or,
 * to one that is a terminal, as {@link terminalText}.
 *
 * @param streams Where to write.
 * @default {{ stdout: Deno.stdout, stderr: Deno.stderr }}
 * @param term The terminal's type: `dumb` (an editor's shell buffer, which prints the cursor
 *   controls it cannot follow) gets no elapsed indicator.
 * @default {the process's TERM, where --allow-env permits it}
 */
export function processWriter(
  streams: { stdout: ProcessStream; stderr: ProcessStream } = {
    stdout: Deno.stdout,
    stderr: Deno.stderr,
  },
  term: string | undefined = readAgentEnv("TERM"),
): OutputWriter {
  const terminal = (stream: ProcessStream) => {
    try {
      return stream.isTerminal();
    } catch {
      return false; // not known: as it is
    }
  };
  const to = (stream: ProcessStream) => {
    const text = terminal(stream) ? terminalText() : undefined;
    // Log lines made before the command's output come before it (writeAllOrStop flushes them);
    // a reader gone away (`| head -1`) has seen enough: following goes on, for the exit code.
    const write = (bytes: Uint8Array) => writeAllOrStop(stream, bytes, closed);
    return {
      write: (bytes: Uint8Array) => write(text ? text.write(bytes) : bytes),
      end: () => text && write(text.end()),
      raw: write,
    };
  };
  const closed = new Set<SyncWriter>();
  const stdout = to(streams.stdout);
  const stderr = to(streams.stderr);
  return {
    stdout: stdout.write,
    stderr: stderr.write,
    isTerminal: terminal(streams.stderr) && term !== "dumb",
    flush() {
      stdout.end();
      stderr.end();
    },
    control: stderr.raw,
  };
}

/**
 * The writer for an {@link Io}: the process's own streams for {@link processIo} (or an Io that
 * writes through it, such as main.ts's with its exit), otherwise one that hands complete lines
 * to `io` (tests capture lines).
 *
 * @param io Where the command prints.
 */
export function writerFor(io: Io): OutputWriter {
  if (io.out === processIo.out) return processWriter();
  const decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
  const held = { stdout: "", stderr: "" };
  const emit = (stream: "stdout" | "stderr", text: string) =>
    stream === "stdout" ? io.out(text) : io.err(text);
  const take = (stream: "stdout" | "stderr", bytes: Uint8Array) => {
    const lines = (held[stream] + decoders[stream].decode(bytes, { stream: true })).split("\n");
    held[stream] = lines.pop() ?? "";
    for (const line of lines) emit(stream, line);
  };
  return {
    stdout: (bytes) => take("stdout", bytes),
    stderr: (bytes) => take("stderr", bytes),
    isTerminal: false,
    flush() {
      for (const stream of ["stdout", "stderr"] as const) {
        const rest = held[stream] + decoders[stream].decode();
        held[stream] = "";
        if (rest !== "") emit(stream, rest);
      }
    },
  };
}

/**
 * `--wait-timeout` passed before the command was final; the command goes on. The CLI exits with
 * {@link EXIT_WAIT_TIMEOUT} (75).
 */
export class WaitTimeoutError extends Error {
  /** Exit code the CLI uses for this error. */
  readonly exitCode: number = EXIT_WAIT_TIMEOUT;

  /**
   * Makes the error.
   *
   * @param id The command waited for.
   * @param secs The `--wait-timeout`.
   * @param status Its status when waiting stopped; none when the dashboard had not said it (a
   *   dashboard that does not answer): then nothing is said of the command.
   * @param unanswered What the dashboard left unanswered, when not a read of the command: what
   *   is not known then, and what to do, e.g. `"the enqueue", "whether it was queued is not known
   *   (...)"`.
   */
  constructor(id: string, secs: number, status?: string, unanswered?: [string, string]) {
    super(
      unanswered !== undefined
        ? `stopped waiting for ${id} after ${secs} s (--wait-timeout): the dashboard has not ` +
          `answered ${unanswered[0]} in that time, so ${unanswered[1]}`
        : status === undefined
        ? `stopped waiting for ${id} after ${secs} s (--wait-timeout): the dashboard has not ` +
          `answered about it in that time, so whether it is final is not known (see it with: ` +
          `status result ${idWord(id)})`
        : `${id} is still ${status} after ${secs} s (--wait-timeout); stopped waiting, the ` +
          `command goes on (see it with: status result ${idWord(id)}, cancel it with: ` +
          `status cancel ${idWord(id)})`,
    );
    this.name = "WaitTimeoutError";
  }
}

/** Options of {@link followAndPrint}. */
export interface FollowPrintOptions {
  /** Print `<id> queued (0.0 s)` at once (the enqueue answer said so). */
  announceQueued?: boolean;
  /** Stop following after this many seconds (`--wait-timeout`): {@link WaitTimeoutError}. */
  timeoutSecs?: number;
  /**
   * The `--wait-timeout` armed already (it counts the requests made before following too), to
   * use instead of arming `timeoutSecs` anew.
   */
  deadline?: AbortSignal;
  /**
   * Interval of the elapsed indicator on a terminal, in ms.
   * @default {1000}
   */
  indicatorMs?: number;
  /**
   * How long the dashboard may be out of reach before following fails, in ms.
   * @default {60000}
   */
  maxOutageMs?: number;
}

const encoder = new TextEncoder();
const CLEAR_LINE = encoder.encode("\r\x1b[2K");

function resultBytes(
  record: CommandRecord,
  stream: "stdout" | "stderr",
): Uint8Array {
  const result = record.result as Record<string, unknown> | null | undefined;
  const value = result?.[stream];
  if (typeof value !== "string") return new Uint8Array();
  if (result?.[`${stream}_encoding`] === "base64") {
    try {
      return fromBase64(value);
    } catch {
      return encoder.encode(value);
    }
  }
  return encoder.encode(value);
}

/**
 * Follows a command and prints it as it runs; Ctrl-C stops following (the command goes on).
 *
 * @param io Progress lines and notes (stderr).
 * @param writer Raw output.
 * @param client The dashboard.
 * @param id The command.
 * @param options Whether to announce "queued", and the indicator's interval.
 * @returns The final command, or `null` when Ctrl-C stopped following.
 */
export async function followAndPrint(
  io: Io,
  writer: OutputWriter,
  client: OperatorClient,
  id: string,
  options: FollowPrintOptions = {},
): Promise<CommandRecord | null> {
  const controller = new AbortController();
  const listening = onSignals(["SIGINT"], () => controller.abort(new Error("interrupted")));
  const timeout = options.deadline ??
    (options.timeoutSecs === undefined ? undefined : timeoutSignal(options.timeoutSecs * 1000));
  const signal = timeout ? AbortSignal.any([controller.signal, timeout]) : controller.signal;
  const started = performance.now();
  let lastPrintAt = started;
  let indicatorShown = false;
  let lastStatus = "";
  let current: CommandRecord | undefined;
  const control = (bytes: Uint8Array) => (writer.control ?? writer.stderr)(bytes);
  const clearIndicator = () => {
    if (indicatorShown) control(CLEAR_LINE);
    indicatorShown = false;
  };
  const printed = () => {
    lastPrintAt = performance.now();
  };
  const progress = (record: CommandRecord) => {
    current = record;
    const key = `${record.status}.${record.attempt ?? 1}`;
    if (key === lastStatus) return;
    lastStatus = key;
    clearIndicator();
    io.err(formatProgress(record, performance.now() - started));
    printed();
  };
  if (options.announceQueued) {
    io.err(`${id} queued (${formatElapsed(0)})`);
    lastStatus = "queued.1";
  }
  const indicator = writer.isTerminal
    ? setInterval(() => {
      const now = performance.now();
      if (now - lastPrintAt < (options.indicatorMs ?? 1000)) return;
      const status = current?.status ?? "waiting";
      control(CLEAR_LINE);
      control(encoder.encode(`… ${id} ${status} ${formatElapsed(now - started)}`));
      indicatorShown = true;
    }, options.indicatorMs ?? 1000)
    : undefined;
  // Bytes printed so far of each stream of the attempt being shown.
  let attempt = 0;
  const end = { stdout: 0, stderr: 0 };
  // Bytes of the attempt being shown that never arrived live (gaps noted where they fell).
  const gaps = { stdout: 0, stderr: 0 };
  const write = (stream: "stdout" | "stderr", bytes: Uint8Array) => {
    if (bytes.length === 0) return;
    clearIndicator();
    writer[stream](bytes);
    printed();
  };
  const maxOutageMs = options.maxOutageMs ?? 60_000;
  // Said once an outage: a dashboard gone away is not silence until following gives up.
  let outage = false;
  try {
    const { record, live } = await followCommand(client, id, {
      signal,
      maxOutageMs,
      onReconnect: (error) => {
        // A 429 is an answer, waited out for its Retry-After; a stream closed by a proxy or a
        // quiet one dropped is opened again at once: neither is worth a line.
        if (outage || !(error instanceof OperatorError) || error.status === 429) return;
        outage = true;
        clearIndicator();
        io.err(
          `lost the dashboard (${error.message}); trying again until it has been out of ` +
            `reach for ${Math.round(maxOutageMs / 1000)} s (the command goes on)`,
        );
        printed();
      },
      onStatus: (record) => {
        outage = false;
        progress(record);
      },
      onOutput: (chunk) => {
        outage = false;
        // A chunk of an earlier attempt than the one shown: its agent sent it late.
        if (chunk.attempt < attempt) return;
        if (chunk.attempt !== attempt) {
          if (attempt !== 0) {
            clearIndicator();
            io.err(`${id}: attempt ${chunk.attempt} started; its output follows from the start`);
          }
          attempt = chunk.attempt;
          end.stdout = 0;
          end.stderr = 0;
          gaps.stdout = 0;
          gaps.stderr = 0;
        }
        const known = end[chunk.stream];
        if (chunk.offset + chunk.data.length <= known) return;
        if (chunk.offset > known) {
          clearIndicator();
          io.err(`(${chunk.offset - known} bytes of ${chunk.stream} were dropped here)`);
          gaps[chunk.stream] += chunk.offset - known;
        }
        write(chunk.stream, chunk.data.subarray(Math.max(0, known - chunk.offset)));
        end[chunk.stream] = chunk.offset + chunk.data.length;
      },
    });
    // The final result is the source of truth: print what did not arrive live.
    for (const stream of ["stdout", "stderr"] as const) {
      const bytes = resultBytes(record, stream);
      const truncated = record.result?.[`${stream}_truncated_bytes`] ?? 0;
      if (!live || attempt === 0) write(stream, bytes);
      else if (!truncated && bytes.length > end[stream]) write(stream, bytes.subarray(end[stream]));
    }
    writer.flush?.();
    const shownLive = live && attempt !== 0;
    if (shownLive) {
      // What was printed is the live output, not the result's first and last 32 KiB: say what
      // it lacks, if anything.
      for (const stream of ["stdout", "stderr"] as const) {
        if (gaps[stream] === 0) continue;
        clearIndicator();
        // A result cut too holds no more of them (its own first and last 32 KiB were printed
        // live): sending the operator there would be a false lead.
        const cut = (record.result?.[`${stream}_truncated_bytes`] ?? 0) > 0;
        io.err(
          cut
            ? `(${gaps[stream]} bytes of ${stream} are missing from what was printed, where the ` +
              `notes above stand: the dashboard keeps the first and last 32 KiB of a stream's ` +
              `live output, and the result, cut too, keeps only its first and last 32 KiB)`
            : `(${gaps[stream]} bytes of ${stream} did not arrive live and are missing from what ` +
              `was printed, where the notes above stand; the result has them: status result ` +
              `${idWord(id)})`,
        );
      }
    }
    progress(record);
    if (!shownLive) { for (const note of truncationNotes(record)) io.err(note); }
    return record;
  } catch (error) {
    if (controller.signal.aborted) {
      clearIndicator();
      io.err(
        `stopped following ${id}; the command goes on (see it with: status result ${idWord(id)}, ` +
          `cancel it with: status cancel ${idWord(id)})`,
      );
      return null;
    }
    if (timeout?.aborted) {
      clearIndicator();
      writer.flush?.();
      throw new WaitTimeoutError(id, options.timeoutSecs!, current?.status);
    }
    if (
      error instanceof OperatorError &&
      (error.kind === "connection" || error.kind === "timeout" || error.kind === "server")
    ) {
      // Following failed, not the command: its agent runs it whatever the CLI can see.
      clearIndicator();
      io.err(
        `stopped following ${id}: the dashboard stayed out of reach; the command goes on (see ` +
          `it with: status result ${idWord(id)})`,
      );
    }
    throw error;
  } finally {
    if (indicator !== undefined) clearInterval(indicator);
    clearIndicator();
    listening[Symbol.dispose]();
  }
}
