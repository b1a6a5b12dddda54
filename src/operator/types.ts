/**
 * What the operator endpoints answer (docs/protocol.md §2–3), read leniently: unknown fields are
 * kept and optional ones may be missing, so that the client works against older and newer
 * dashboards.
 *
 * @module
 */
import { constants } from "node:os";
import { z } from "zod";
import {
  ANY_COMMAND_ID_PATTERN,
  ANY_COMMAND_ID_RULE,
  BASE64_PATTERN,
  type CommandStatus,
  FINAL_STATUSES,
} from "../protocol/mod.ts";

const timestamp = z.union([z.string(), z.number()]).nullish();

/** A time as the dashboard sends it: an ISO 8601 string (or ms since the epoch). */
export type WireTime = string | number | null | undefined;

/** What running a command produced, as stored by the dashboard. */
export interface StoredResult {
  /** Exit code, when the process exited. */
  exit_code?: number | null;
  /** The signal that ended the process, if any. */
  signal?: string | null;
  /** Run time in seconds. */
  duration_secs?: number | null;
  /** Captured standard output (first and last 32 KiB). */
  stdout?: string | null;
  /** Captured standard error (first and last 32 KiB). */
  stderr?: string | null;
  /** Bytes of standard output dropped from the middle. */
  stdout_truncated_bytes?: number | null;
  /** Bytes of standard error dropped from the middle. */
  stderr_truncated_bytes?: number | null;
  /** `"base64"` when `stdout` holds base64 (the bytes were not UTF-8); absent: text. */
  stdout_encoding?: string | null;
  /** `"base64"` when `stderr` holds base64 (the bytes were not UTF-8); absent: text. */
  stderr_encoding?: string | null;
}

/**
 * Checks that a stream marked `base64` is standard padded base64: decoded leniently, anything
 * else would be written out as the command's "exact bytes" (`status result ID --stdout`).
 */
function base64Streams(
  output: {
    stdout?: string | null;
    stderr?: string | null;
    stdout_encoding?: string | null;
    stderr_encoding?: string | null;
  },
  ctx: z.RefinementCtx,
): void {
  for (const stream of ["stdout", "stderr"] as const) {
    const text = output[stream];
    if (
      output[`${stream}_encoding`] === "base64" && typeof text === "string" &&
      !BASE64_PATTERN.test(text)
    ) {
      ctx.addIssue({
        code: "custom",
        path: [stream],
        message: `must be standard padded base64, as ${stream}_encoding says`,
      });
    }
  }
}

/** Schema of a command's `result` as the dashboard stores it; unknown fields are kept. */
export const storedResultSchema: z.ZodType<StoredResult> = z.looseObject({
  exit_code: z.number().int().nullish(),
  signal: z.string().nullish(),
  duration_secs: z.number().nullish(),
  stdout: z.string().nullish(),
  stderr: z.string().nullish(),
  stdout_truncated_bytes: z.number().nullish(),
  stderr_truncated_bytes: z.number().nullish(),
  stdout_encoding: z.string().nullish(),
  stderr_encoding: z.string().nullish(),
}).superRefine(base64Streams);

/** A command as the dashboard stores it (docs/protocol.md §3). */
export interface CommandRecord {
  /** The command id. */
  id: string;
  /** The agent that runs it. */
  agent_id?: string | null;
  /** The command line. */
  name: string;
  /** The parameters as enqueued. */
  params?: Record<string, unknown> | null;
  /** `queued`, `delivered`, `running`, or a final status (every one: {@link CommandStatus}). */
  status: string;
  /** The current delivery attempt, from 1. */
  attempt?: number | null;
  /** When it was enqueued. */
  created_at?: WireTime;
  /** When it was last delivered. */
  delivered_at?: WireTime;
  /** When it became final. */
  completed_at?: WireTime;
  /** What running it produced, once reported. */
  result?: StoredResult | null;
  /** Why it failed without running to the end (rejected, interrupted, lost, ...). */
  error?: string | null;
  /**
   * The output its agent sent while it ran, while no result holds output (docs/protocol.md §9):
   * `stdout` / `stderr` with a marker where bytes are missing (base64 with `…_encoding`).
   */
  live_output?: {
    /** The attempt that printed it. */
    attempt?: number | null;
    /** Its standard output so far. */
    stdout?: string | null;
    /** Its standard error so far. */
    stderr?: string | null;
    /** `"base64"` when `stdout` is not text. */
    stdout_encoding?: string | null;
    /** `"base64"` when `stderr` is not text. */
    stderr_encoding?: string | null;
  } | null;
}

/** What a command's status may be: a lower-case word, `running`, `success`, ... */
const STATUS_WORD = /^[a-z][a-z_]{0,63}$/;

/** Schema of a command as `GET /api/v1/commands/{id}` answers it; unknown fields are kept. */
export const commandRecordSchema: z.ZodType<CommandRecord> = z.looseObject({
  id: z.string().min(1),
  agent_id: z.string().nullish(),
  name: z.string(),
  params: z.record(z.string(), z.unknown()).nullish(),
  // A word (a later dashboard's new status included): it is printed in many lines.
  status: z.string().regex(STATUS_WORD, "must be a status word (a-z and _, e.g. running)"),
  attempt: z.number().int().nullish(),
  created_at: timestamp,
  delivered_at: timestamp,
  completed_at: timestamp,
  result: storedResultSchema.nullish(),
  error: z.string().nullish(),
  live_output: z.looseObject({
    attempt: z.number().nullish(),
    stdout: z.string().nullish(),
    stderr: z.string().nullish(),
    stdout_encoding: z.string().nullish(),
    stderr_encoding: z.string().nullish(),
  }).superRefine(base64Streams).nullish(),
});

/** The answer to an enqueue: `202 {"queued": true, "id": ...}`. */
export interface EnqueueAnswer {
  /** `true` when the command is in the queue. */
  queued?: boolean;
  /** The command id (generated by the dashboard when none was sent). */
  id: string;
  /** `true` when the same id and body were enqueued before; nothing changed. */
  duplicate?: boolean;
  /** When the command expires if it is still queued then (ISO 8601). */
  expires_at?: string | null;
  /** Why the agent cannot take the command now (never connected, offline, another hash). */
  warning?: string | null;
}

/** Schema of the answer to an enqueue (its id a command id); unknown fields are kept. */
export const enqueueAnswerSchema: z.ZodType<EnqueueAnswer> = z.looseObject({
  queued: z.boolean().optional(),
  // A command id, as every later request about it needs (a line break or an escape in it would
  // be printed as the id).
  id: z.string().regex(ANY_COMMAND_ID_PATTERN, `must be ${ANY_COMMAND_ID_RULE}`),
  duplicate: z.boolean().optional(),
  expires_at: z.string().nullish(),
  warning: z.string().nullish(),
});

/** The command an agent runs, as the fleet list shows it (`running` of {@link AgentRecord}). */
export interface RunningCommand {
  /** The command id. */
  id: string;
  /** Its command line. */
  name: string;
  /** `running`, else `delivered`. */
  status: string;
  /** The delivery attempt. */
  attempt?: number;
  /** When it was delivered. */
  delivered_at?: WireTime;
}

/**
 * An agent as the dashboard lists it (`GET /api/v1/agents`, docs/protocol.md §13). Only `id` is
 * sure to be there: an older dashboard, or another implementation, may leave the rest out.
 */
export interface AgentRecord {
  /** The agent id. */
  id: string;
  /** `waiting` (a wait is open now), `online` (seen lately) or `offline`. */
  state?: string | null;
  /** When its last request that passed every check arrived. */
  last_seen_at?: WireTime;
  /** Whether it is waiting for a command right now. */
  waiting?: boolean | null;
  /** How many of its commands are queued. */
  queued?: number | null;
  /** Its deployment hash, as its last heartbeat said. */
  deployment_hash?: string | null;
  /** Its labels, as the last heartbeat that carried them said. */
  labels?: Record<string, string> | null;
  /** Its version, as its last heartbeat said. */
  version?: string | null;
  /** Its process instance, as its last heartbeat said. */
  instance_id?: string | null;
  /** When its last heartbeat arrived. */
  heartbeat_at?: WireTime;
  /** The figures of its last heartbeat (CPU, memory, disk, load). */
  heartbeat?: Record<string, unknown> | null;
  /** The command it runs, or `null`. */
  running?: RunningCommand | null;
  /** Its scopes. */
  scopes?: string[] | null;
  /** Whether it has a token (an agent a dev-mode dashboard registered on first sight has none). */
  has_token?: boolean | null;
  /** When it was registered. */
  created_at?: WireTime;
}

/** Schema of one agent of `GET /api/v1/agents`; unknown fields are kept. */
export const agentRecordSchema: z.ZodType<AgentRecord> = z.looseObject({
  id: z.string().min(1),
  state: z.string().nullish(),
  last_seen_at: timestamp,
  waiting: z.boolean().nullish(),
  queued: z.number().nullish(),
  deployment_hash: z.string().nullish(),
  labels: z.record(z.string(), z.string()).nullish(),
  version: z.string().nullish(),
  instance_id: z.string().nullish(),
  heartbeat_at: timestamp,
  heartbeat: z.record(z.string(), z.unknown()).nullish(),
  running: z.looseObject({
    id: z.string(),
    name: z.string(),
    status: z.string(),
    attempt: z.number().optional(),
    delivered_at: timestamp,
  }).nullish(),
  scopes: z.array(z.string()).nullish(),
  has_token: z.boolean().nullish(),
  created_at: timestamp,
});

/** An agent's token, as a rotation gives it (`POST /api/v1/agents/{id}/rotate`). */
export interface AgentToken {
  /** The agent id. */
  id: string;
  /**
   * The agent's new token, its `AGENT_TOKEN`. It is shown this once: the dashboard keeps no way
   * to show it again.
   */
  token: string;
}

/** A newly added agent (`POST /api/v1/agents`): its id, token and scopes. */
export interface AddedAgent extends AgentToken {
  /** The scopes the dashboard granted it, when its answer says. */
  scopes?: string[];
}

/** A removed agent (`DELETE /api/v1/agents/{id}`). */
export interface RemovedAgent {
  /** The agent id. */
  id: string;
  /**
   * How many of its queued, delivered or running commands the removal cancelled; `null` when
   * the dashboard does not say (one older than `commands_ended`).
   */
  commandsEnded: number | null;
}

/**
 * Whether a status is final: the command will never change again.
 *
 * @param status A command status.
 * @returns `true` for `success`, `failed`, `timeout`, `killed`, `rejected`, `cancelled`,
 *   `interrupted` and `lost`.
 */
export function isFinalStatus(status: string): boolean {
  return FINAL_STATUSES.has(status as CommandStatus);
}

/** Exit code of a command that was refused by the agent's policy (like a shell's "cannot execute"). */
export const EXIT_REJECTED = 126;
/** Exit code of a command that ran out of time and stopped on SIGTERM (like `timeout(1)`). */
export const EXIT_TIMEOUT = 124;
/** Exit code of a command that needed SIGKILL (128 + 9). */
export const EXIT_KILLED = 137;
/**
 * Exit code of `--wait-timeout` passing before the command was final (sysexits' `EX_TEMPFAIL`:
 * the command goes on; ask again later).
 */
export const EXIT_WAIT_TIMEOUT = 75;

/**
 * A real-time signal's number on a Linux agent from the name the agent reports (`SIGRTMIN`,
 * `SIGRTMIN+1` ... `SIGRTMIN+15`, `SIGRTMAX-14` ... `SIGRTMAX`: 34 to 64; `SIG32` and `SIG33`, the
 * two glibc keeps for itself), which `node:os` does not know; `undefined` for another name.
 */
function realtimeSignalNumber(name: string): number | undefined {
  if (name === "SIG32" || name === "SIG33") return Number(name.slice(3));
  const match = /^SIGRT(MIN|MAX)(?:([+-])([1-9]\d?))?$/.exec(name);
  if (!match) return undefined;
  const [, end, sign, offset] = match;
  if (sign !== undefined && sign !== (end === "MIN" ? "+" : "-")) return undefined;
  const number = end === "MIN" ? 34 + Number(offset ?? 0) : 64 - Number(offset ?? 0);
  return number >= 34 && number <= 64 ? number : undefined;
}

/**
 * The exit code of a command that a signal ended, as a shell reports it: 128 + the signal's number
 * on this platform (`node:os` `constants.signals`: 139 for `SIGSEGV`; a real-time signal as a
 * Linux agent names it, `SIGRTMIN` 162), or 1 for a name the platform does not know (128 alone
 * would read as "signal 0"). `status exec` (`execExitCode`) and {@link exitCodeOf}
 * (`status enqueue --wait`, `status result`) both use it, so a command gives one exit code however
 * it was run.
 *
 * @param signal The signal's name as the result holds it, e.g. `"SIGTERM"`.
 * @returns 128 + its number, or 1.
 */
export function signalExitCode(signal: unknown): number {
  const signals: Readonly<Record<string, number>> = constants.signals;
  if (typeof signal !== "string") return 1;
  if (Object.hasOwn(signals, signal)) return 128 + signals[signal];
  const realtime = realtimeSignalNumber(signal);
  return realtime === undefined ? 1 : 128 + realtime;
}

/**
 * The exit code a CLI reports for a finished command, so that `status enqueue --wait` behaves like
 * running the command itself.
 *
 * @param record The command in a final status.
 * @returns The reported exit code for `success` and `failed` (one outside 0–255, which an exit
 *   status cannot carry, gives 0 and 1), 128 + n for a `failed` that
 *   signal n ended (1 when this platform does not know the signal's name, as `status exec` says:
 *   {@link signalExitCode}); 126 for `rejected`, 124 for `timeout`, 137 for `killed`; 1 for other
 *   failures (`lost`, `expired`, `interrupted`, `cancelled`, a `failed` without an exit code).
 *
 * @example Mapping statuses
 * ```ts
 * import assert from "node:assert/strict";
 * import { exitCodeOf } from "./types.ts";
 * assert.equal(exitCodeOf({ status: "failed", result: { exit_code: 3 } }), 3);
 * assert.equal(exitCodeOf({ status: "rejected" }), 126);
 * assert.equal(exitCodeOf({ status: "failed", result: { exit_code: null, signal: "SIGSEGV" } }), 139);
 * ```
 */
export function exitCodeOf(record: Pick<CommandRecord, "status" | "result">): number {
  const code = record.result?.exit_code;
  switch (record.status) {
    case "success":
      return typeof code === "number" && code >= 0 && code <= 255 ? code : 0;
    case "failed": {
      // A code no exit status can carry (another agent's: above 255, negative) would be cut to
      // its low 8 bits by the process exit, 256 to a success: 1 says "failed" instead.
      if (typeof code === "number" && code !== 0) return code >= 1 && code <= 255 ? code : 1;
      // Ended by a signal: 128 + its number, as a shell (and `status exec`) reports it.
      return signalExitCode(record.result?.signal);
    }
    case "rejected":
      return EXIT_REJECTED;
    case "timeout":
      return EXIT_TIMEOUT;
    case "killed":
      return EXIT_KILLED;
    default:
      return 1;
  }
}
