/**
 * Human-readable renderings of commands for the operator CLI: a one-line outcome, a progress line,
 * a detailed record and a table. They return strings; the CLI prints them.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { BIDI_CONTROLS, idWord, visibleText } from "../protocol/mod.ts";
import type { CommandRecord, StoredResult } from "./types.ts";

/** An id as the last word of a `status` command line (see the protocol module's). */
export { idWord };

/**
 * Formats elapsed milliseconds as seconds with one decimal, e.g. `1.2 s`.
 *
 * @param ms Milliseconds.
 * @returns The duration.
 */
export function formatElapsed(ms: number): string {
  return `${(Math.max(0, ms) / 1000).toFixed(1)} s`;
}

/**
 * Describes a command's status in a few words: `success, exit code 0`, `rejected: <reason>`,
 * `delivered to web-1, attempt 2`; one line, its control and bidirectional formatting characters
 * (in an agent's error, say) shown as escapes (`\n`, `\u001b`).
 *
 * @param record The command.
 * @returns The description.
 */
export function describeStatus(record: CommandRecord): string {
  const parts: string[] = [record.status];
  if (record.status === "delivered" && record.agent_id) parts[0] += ` to ${record.agent_id}`;
  if (
    (record.status === "delivered" || record.status === "running" ||
      record.status === "queued") && (record.attempt ?? 1) > 1
  ) {
    parts.push(`attempt ${record.attempt}`);
  }
  const result = record.result;
  if (typeof result?.exit_code === "number") parts.push(`exit code ${result.exit_code}`);
  if (result?.signal) parts.push(`signal ${result.signal}`);
  let text = parts.join(", ");
  if (record.error) text += `: ${record.error}`;
  // The signal and the error are the agent's own words (the rest the dashboard's): one line, their
  // control and bidirectional characters as escapes, so that a line break cannot forge another.
  return visibleText(text);
}

/**
 * One line of `status enqueue --wait` progress: `cmd-001 running (0.4 s)`.
 *
 * @param record The command as last read.
 * @param elapsedMs Milliseconds since waiting began.
 * @returns The line.
 */
export function formatProgress(record: CommandRecord, elapsedMs: number): string {
  return `${visibleText(record.id)} ${describeStatus(record)} (${formatElapsed(elapsedMs)})`;
}

function formatTime(value: string | number | null | undefined): string | undefined {
  if (value === null || value === undefined || value === "") return undefined;
  const date = typeof value === "number"
    ? new Date(value < 1e12 ? value * 1000 : value)
    : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function droppedNote(
  result: StoredResult | null | undefined,
  stream: "stdout" | "stderr",
): string[] {
  const bytes = result?.[`${stream}_truncated_bytes`];
  if (!bytes || bytes <= 0) return [];
  // Output that is not text has no marker line: its first and last 32 KiB follow each other.
  return result?.[`${stream}_encoding`] === "base64"
    ? [
      `(${bytes} bytes of ${stream} were dropped from the middle; the first and last 32 KiB are ` +
      `kept, one right after the other: the output is not text, so no marker line stands there)`,
    ]
    : [
      `(${bytes} bytes of ${stream} were dropped from the middle, where the marker line ` +
      `"[status: ... bytes dropped here]" stands; the first and last 32 KiB are kept)`,
    ];
}

/**
 * The exact bytes a command wrote to a stream, as the agent kept them: the text encoded as
 * UTF-8, or the base64 decoded (docs/protocol.md §5).
 *
 * @param result The command's result.
 * @param stream `stdout` or `stderr`.
 * @returns The bytes (empty when there is no output).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { outputBytes } from "./format.ts";
 * assert.deepEqual(outputBytes({ stdout: "AP8=", stdout_encoding: "base64" }, "stdout"), new Uint8Array([0, 255]));
 * assert.deepEqual(outputBytes({ stdout: "a\u0000" }, "stdout"), new Uint8Array([97, 0]));
 * ```
 */
export function outputBytes(
  result: StoredResult | null | undefined,
  stream: "stdout" | "stderr",
): Uint8Array {
  const text = result?.[stream] ?? "";
  if (result?.[`${stream}_encoding`] === "base64") {
    return new Uint8Array(Buffer.from(text, "base64"));
  }
  return new TextEncoder().encode(text);
}

/**
 * Notes about output the agent dropped (it keeps the first and last 32 KiB of each stream).
 *
 * @param record The command.
 * @returns Zero, one or two lines.
 */
export function truncationNotes(record: CommandRecord): string[] {
  return [...droppedNote(record.result, "stdout"), ...droppedNote(record.result, "stderr")];
}

/**
 * The note about bytes dropped from a stream that is not text (base64), whose bytes carry no
 * marker line where the bytes were dropped: for `status result --stdout` / `--stderr`.
 *
 * @param record The command.
 * @param stream `stdout` or `stderr`.
 * @returns Zero lines or one.
 */
export function unmarkedTruncationNote(
  record: CommandRecord,
  stream: "stdout" | "stderr",
): string[] {
  return record.result?.[`${stream}_encoding`] === "base64"
    ? droppedNote(record.result, stream)
    : [];
}

function withoutFinalNewline(text: string): string {
  return text.endsWith("\n") ? text.slice(0, -1) : text;
}

/**
 * Renders a command in detail for `status result`: its fields (one line each, their control and
 * bidirectional formatting characters as escapes), then its stdout and stderr as they are.
 *
 * @param record The command.
 * @returns The lines to print.
 */
export function formatRecord(record: CommandRecord): string[] {
  const rows: Array<[string, string | undefined]> = [
    ["id", record.id],
    ["agent", record.agent_id ?? undefined],
    ["command", record.name],
    ["status", describeStatus(record)],
    [
      "attempt",
      record.attempt === null || record.attempt === undefined ? undefined : String(record.attempt),
    ],
    ["created", formatTime(record.created_at)],
    ["delivered", formatTime(record.delivered_at)],
    ["completed", formatTime(record.completed_at)],
    [
      "duration",
      typeof record.result?.duration_secs === "number"
        ? `${record.result.duration_secs} s`
        : undefined,
    ],
    [
      "params",
      record.params && Object.keys(record.params).length > 0
        ? JSON.stringify(record.params)
        : undefined,
    ],
  ];
  const lines = rows
    .filter((row): row is [string, string] => row[1] !== undefined)
    // Each field one line, whatever the dashboard (or an agent) put in it.
    .map(([label, value]) => `${(label + ":").padEnd(11)}${visibleText(value)}`);
  const result = record.result;
  if (result) {
    for (const stream of ["stdout", "stderr"] as const) {
      const text = result[stream] ?? "";
      if (text.length === 0) {
        lines.push(`${(stream + ":").padEnd(11)}(empty)`);
        continue;
      }
      if (result[`${stream}_encoding`] === "base64") {
        const size = outputBytes(result, stream).length;
        lines.push(
          `--- ${stream}: ${size} bytes that are not UTF-8 text, in base64 (the exact bytes: ` +
            `status result ${
              record.id.startsWith("-")
                ? `--${stream} ${idWord(record.id)}`
                : `${record.id} --${stream}`
            }) ---`,
        );
        for (let i = 0; i < text.length; i += 76) lines.push(text.slice(i, i + 76));
        continue;
      }
      lines.push(`--- ${stream} ---`);
      lines.push(withoutFinalNewline(text));
    }
    lines.push(...truncationNotes(record));
  } else if (record.live_output) {
    // No result holds output (it runs, or it ended with none: an agent that died, a lost
    // command): what its agent sent while it ran is all there is.
    const live = record.live_output;
    const what = `live output of attempt ${live.attempt ?? record.attempt ?? 1}`;
    for (const stream of ["stdout", "stderr"] as const) {
      const text = live[stream] ?? "";
      if (text.length === 0) continue;
      if (live[`${stream}_encoding`] === "base64") {
        lines.push(`--- ${stream} (${what}, not UTF-8 text, in base64) ---`);
        for (let i = 0; i < text.length; i += 76) lines.push(text.slice(i, i + 76));
        continue;
      }
      lines.push(`--- ${stream} (${what}) ---`);
      lines.push(withoutFinalNewline(text));
    }
  }
  return lines;
}

/**
 * Shortens text to a column's width, ending it with `…` when it was longer.
 *
 * @param text The text.
 * @param width The largest width.
 * @returns The text, at most `width` characters.
 */
export function cell(text: string, width: number): string {
  return text.length > width ? text.slice(0, width - 1) + "…" : text;
}

/** Control characters (C0, DEL, C1) and bidirectional formatting characters. */
const UNPRINTABLE = new RegExp(`[\u0000-\u001f\u007f-\u009f]|${BIDI_CONTROLS.source}`, "g");

/**
 * A cell's text with every control character (C0, DEL, C1) and bidirectional formatting character
 * (U+202E, ...) shown as `?`, so that text from an agent or a command cannot move the cursor,
 * recolour the terminal, start a line of its own or show a row in another order.
 *
 * @param text The text.
 * @returns The text, safe to print in a table.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { printable } from "./format.ts";
 *
 * assert.equal(printable("v1\u001b[31m\nfake-agent"), "v1?[31m?fake-agent");
 * assert.equal(printable("web-1\u202e1-bew"), "web-1?1-bew");
 * ```
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, "?");
}

/**
 * Lays out rows under a header in columns two spaces apart, each as wide as its widest entry; the
 * last column is not padded and no line ends in spaces.
 *
 * @param header The column names.
 * @param rows The rows, one entry per column.
 * @returns The lines, the header first.
 */
export function alignColumns(header: readonly string[], rows: readonly string[][]): string[] {
  // What agents and operators wrote (versions, deployment hashes, labels, names) is shown, never
  // obeyed: a control character (an escape sequence, a newline forging a row) becomes "?".
  rows = rows.map((row) => row.map(printable));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  return [header, ...rows].map((row) =>
    row.map((text, i) => i === row.length - 1 ? text : text.padEnd(widths[i])).join("  ")
      .trimEnd()
  );
}

/**
 * Renders commands as a table for `status list`: id, agent, status, exit code, creation time and
 * command line.
 *
 * @param records The commands, in the order to show.
 * @param commandWidth Largest width of the command column.
 * @returns The lines, a header first.
 */
export function formatTable(records: readonly CommandRecord[], commandWidth = 60): string[] {
  const header = ["ID", "AGENT", "STATUS", "EXIT", "CREATED", "COMMAND"];
  const rows = records.map((r) => [
    r.id,
    r.agent_id ?? "",
    r.status,
    typeof r.result?.exit_code === "number" ? String(r.result.exit_code) : "",
    formatTime(r.created_at) ?? "",
    cell(r.name.replace(/\s+/g, " "), commandWidth),
  ]);
  return alignColumns(header, rows);
}
