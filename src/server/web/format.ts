/**
 * Plain-text formatting of the console: times, durations, statuses, agent states and command
 * output with its cut marker. Every function returns text; the pages render it as text.
 *
 * @module
 */

import { shortForm, visibleText, withoutTerminalCodes } from "../../protocol/mod.ts";
export { TERMINAL_SEQUENCE, withoutTerminalCodes } from "../../protocol/mod.ts";

/** A command as `GET /api/v1/commands/{id}` shows it (the fields the console reads). */
export interface CommandJson {
  id: string;
  agent_id: string;
  name: string;
  params?: Record<string, unknown>;
  deployment_hash?: string | null;
  priority?: string;
  status: string;
  attempt: number;
  cancel_requested?: boolean;
  created_at: string | null;
  delivered_at?: string | null;
  acked_at?: string | null;
  started_at?: string | null;
  completed_at?: string | null;
  /** When it expires if still queued. */
  expires_at?: string | null;
  result?: {
    exit_code: number | null;
    signal: string | null;
    duration_secs: number | null;
    stdout: string | null;
    stderr: string | null;
    stdout_encoding?: string;
    stderr_encoding?: string;
    stdout_truncated_bytes: number | null;
    stderr_truncated_bytes: number | null;
  } | null;
  error?: string | null;
  /**
   * What its agent sent while it ran (the current attempt), when no result holds output: a
   * running command, or one that ended without a result (its agent died).
   */
  live_output?: {
    attempt?: number;
    stdout?: string;
    stderr?: string;
    stdout_encoding?: string;
    stderr_encoding?: string;
    stdout_truncated_bytes?: number;
    stderr_truncated_bytes?: number;
  } | null;
}

/** An agent as `GET /api/v1/agents` shows it; the optional fields appear when the API has them. */
export interface AgentJson {
  id: string;
  last_seen_at: string | null;
  waiting: boolean;
  queued?: number;
  has_token?: boolean;
  /** Where the agent stands, when the dashboard decides it (its offline window). */
  state?: string;
  deployment_hash?: string | null;
  /** Its labels (`AGENT_LABELS`). */
  labels?: Record<string, string> | null;
  version?: string | null;
  /** The figures of its last heartbeat (the agent's metrics sample). */
  heartbeat?: HeartbeatJson | null;
  /** When its last heartbeat arrived. */
  heartbeat_at?: string | null;
  /** The command it runs now. */
  running?: { id: string; name?: string; status?: string } | null;
}

/** The figures of an agent's last heartbeat (the agent's metrics sample). */
export interface HeartbeatJson {
  timestamp?: string;
  cpu_percent?: number;
  memory?: { used_percent?: number };
  disk?: { used_percent?: number };
  load_avg?: number[];
}

/**
 * Whether a status is final: anything but queued, delivered and running (statuses a newer
 * dashboard adds are final too).
 *
 * @param status A command status.
 */
export function isFinal(status: string): boolean {
  return !["queued", "delivered", "running"].includes(status);
}

/**
 * The colour class of a status: `ok`, `bad`, `warn`, `busy` or `idle`.
 *
 * @param status A command status.
 */
export function statusTone(status: string): "ok" | "bad" | "warn" | "busy" | "idle" {
  switch (status) {
    case "success":
      return "ok";
    case "failed":
    case "timeout":
    case "killed":
    case "rejected":
    case "lost":
    case "interrupted":
      return "bad";
    case "cancelled":
    case "expired":
      return "warn";
    case "delivered":
    case "running":
      return "busy";
    default:
      return "idle";
  }
}

/**
 * An ISO time as `2026-01-12 10:00:00 UTC`, or `—`.
 *
 * @param iso An ISO 8601 time, or null.
 */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return iso;
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d{3}Z$/, " UTC");
}

/**
 * How long ago a time was, as `12 s ago`, `3 min ago`, `2 h ago`, `4 d ago`, or `never`.
 *
 * @param iso An ISO 8601 time, or null.
 * @param now The current time in ms.
 */
export function formatAgo(iso: string | null | undefined, now: number): string {
  if (!iso) return "never";
  const secs = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (secs < 60) return `${secs} s ago`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min ago`;
  if (secs < 86_400) return `${Math.floor(secs / 3600)} h ago`;
  return `${Math.floor(secs / 86_400)} d ago`;
}

/**
 * A duration in seconds as `0.42 s`, `12.3 s` or `2 min 5 s`.
 *
 * @param secs Seconds, or null.
 */
export function formatDuration(secs: number | null | undefined): string {
  if (secs === null || secs === undefined || !Number.isFinite(secs)) return "—";
  if (secs < 10) return `${secs.toFixed(2)} s`;
  if (secs < 120) return `${secs.toFixed(1)} s`;
  // Rounded to whole seconds first: 179.6 s is 3 min 0 s, never 2 min 60 s.
  const whole = Math.round(secs);
  return `${Math.floor(whole / 60)} min ${whole % 60} s`;
}

/** How long after its last request an agent that holds no wait still counts as online, in ms. */
export const ONLINE_GRACE_MS = 5_000;

/**
 * An agent's state: `waiting` (holds a long-poll now), `online` (busy, or between two polls) or
 * `offline`. The dashboard's own verdict (`state`) wins; without one, an agent that holds no wait
 * and runs nothing is online for {@link ONLINE_GRACE_MS} after its last request.
 *
 * @param agent The agent.
 * @param now The current time in ms.
 */
export function agentState(agent: AgentJson, now: number): "waiting" | "online" | "offline" {
  if (agent.state === "waiting" || agent.state === "online" || agent.state === "offline") {
    return agent.state;
  }
  if (agent.waiting) return "waiting";
  if (agent.running) return "online";
  const seen = agent.last_seen_at ? Date.parse(agent.last_seen_at) : NaN;
  return now - seen <= ONLINE_GRACE_MS ? "online" : "offline";
}

/**
 * The heartbeat figures as one line: `CPU 12 % · memory 40 % · disk 71 % · load 0.10 0.20 0.30`.
 *
 * @param beat The last heartbeat, if any.
 * @returns The line, or `—`.
 */
export function formatHeartbeat(beat: HeartbeatJson | null | undefined): string {
  if (!beat || typeof beat !== "object") return "—";
  const parts: string[] = [];
  const pct = (value: unknown) => typeof value === "number" ? `${Math.round(value)} %` : null;
  const cpu = pct(beat.cpu_percent);
  if (cpu) parts.push(`CPU ${cpu}`);
  const memory = pct(beat.memory?.used_percent);
  if (memory) parts.push(`memory ${memory}`);
  const disk = pct(beat.disk?.used_percent);
  if (disk) parts.push(`disk ${disk}`);
  if (Array.isArray(beat.load_avg) && beat.load_avg.every((n) => typeof n === "number")) {
    parts.push(`load ${beat.load_avg.map((n) => n.toFixed(2)).join(" ")}`);
  }
  return parts.length > 0 ? parts.join(" · ") : "—";
}

/**
 * Free text an agent or an operator sent (an error, a signal, a version, a deployment, labels, a
 * command line, a first line of output) as a page shows it: every control character (ESC, BEL,
 * CR, ...) and bidirectional formatting character as its escape (`\u001b`, `\u202e`), as
 * `status` prints them on a terminal. JSX escapes markup, not these: the page would otherwise hide
 * them, or show the text in another order than its characters come (`1.0\u202egnp.exe` as
 * `1.0exe.png`). The protocol's `visibleText`, shared with the CLI.
 */
export { visibleText };

/**
 * A value from the address or a form, as a page names it: cut as a client's value is in every
 * error ({@link shortForm}: its first 200 characters and its length), and with its control and
 * bidirectional formatting characters as escapes ({@link visibleText}: a link to
 * `/commands/%E2%80%AE...` would otherwise turn the page's sentence around).
 *
 * @param value The value.
 * @returns How the page names it.
 */
export function named(value: string): string {
  return visibleText(shortForm(value));
}

/** One output stream as the page shows it. */
export interface OutputView {
  /** The text before the cut (all of it when nothing was cut). */
  head: string;
  /** The text after the cut; empty when nothing was cut. */
  tail: string;
  /** Bytes dropped at the cut; 0 when nothing was cut. */
  cutBytes: number;
  /** Whether the bytes are not UTF-8 text (invalid bytes are shown as U+FFFD). */
  binary: boolean;
  /** Whether terminal control sequences (colours, cursor moves) were left out of the text. */
  terminalCodes: boolean;
  /** Whether the text holds NUL bytes, shown as `␀` (an HTML page drops them without a trace). */
  nulBytes: boolean;
  /** Whether the text holds bidirectional overrides or isolates, shown as escapes (`\u202e`). */
  bidiOverrides: boolean;
}

/**
 * Unicode's bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069): in
 * output they turn the rest of a line around (`ls` listing `report\u202efdp.exe` showed
 * `reportexe.pdf`). The marks (U+200E, U+200F, U+061C), which right-to-left text uses and which
 * turn no word around, stay. The same expression is in `static/console.js`.
 */
export const BIDI_OVERRIDE: RegExp = /[\u202a-\u202e\u2066-\u2069]/g;

/** Output text with its bidirectional overrides and isolates as escapes ({@link BIDI_OVERRIDE}). */
function withVisibleOverrides(text: string): string {
  return text.replace(BIDI_OVERRIDE, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
}

/**
 * The view with terminal control sequences left out of its text, and NUL bytes and bidirectional
 * overrides made visible.
 */
function shown(view: Omit<OutputView, "terminalCodes" | "nulBytes" | "bidiOverrides">): OutputView {
  const head = withoutTerminalCodes(view.head);
  const tail = withoutTerminalCodes(view.tail);
  const terminalCodes = head.length !== view.head.length || tail.length !== view.tail.length;
  const nulBytes = head.includes("\0") || tail.includes("\0");
  const visibleHead = withVisibleOverrides(head);
  const visibleTail = withVisibleOverrides(tail);
  return {
    ...view,
    head: visibleHead.replaceAll("\0", "\u2400"),
    tail: visibleTail.replaceAll("\0", "\u2400"),
    terminalCodes,
    nulBytes,
    bidiOverrides: visibleHead.length !== head.length || visibleTail.length !== tail.length,
  };
}

const decoder = new TextDecoder();

/**
 * Splits a result's output at the cut. The agent keeps the first and the last bytes of a stream
 * (equal halves) and counts what it dropped in between, so the cut lies in the middle of the kept
 * bytes; in text output the agent's own line `[status: N bytes dropped here]` marks it, and the
 * view cuts there instead of that line.
 *
 * @param text The `stdout` or `stderr` field.
 * @param encoding Its `…_encoding` field (`base64` for bytes that are not UTF-8).
 * @param truncatedBytes Its `…_truncated_bytes` field.
 */
export function outputView(
  text: string | null | undefined,
  encoding: string | undefined,
  truncatedBytes: number | null | undefined,
): OutputView {
  const cutBytes = typeof truncatedBytes === "number" && truncatedBytes > 0 ? truncatedBytes : 0;
  const binary = encoding === "base64";
  let bytes: Uint8Array | null = null;
  if (binary) {
    try {
      bytes = Uint8Array.from(atob(text ?? ""), (c) => c.charCodeAt(0));
    } catch {
      return shown({ head: text ?? "", tail: "", cutBytes, binary });
    }
  }
  if (cutBytes === 0) {
    return shown({ head: bytes ? decoder.decode(bytes) : text ?? "", tail: "", cutBytes, binary });
  }
  if (!binary && text) {
    // The agent marks the cut in text output with a line of its own: cut there, in its place.
    const marker = `[status: ${cutBytes} bytes dropped here]\n`;
    const at = text.indexOf(marker);
    if (at >= 0) {
      return shown({
        head: text.slice(0, at),
        tail: text.slice(at + marker.length),
        cutBytes,
        binary,
      });
    }
  }
  bytes ??= new TextEncoder().encode(text ?? "");
  let half = Math.floor(bytes.length / 2);
  // Not inside a UTF-8 character: back to its first byte.
  for (let back = 0; back < 3 && half > 0 && (bytes[half] & 0xc0) === 0x80; back++) half--;
  return shown({
    head: decoder.decode(bytes.subarray(0, half)),
    tail: decoder.decode(bytes.subarray(half)),
    cutBytes,
    binary,
  });
}
