/**
 * Wire types of live output, heartbeats to the dashboard, instance ids and the event stream
 * (extensions of docs/protocol.md §2–3; described in the README).
 *
 * @module
 */
import { z } from "zod";
import { type Labels, labelsSchema } from "./runs.ts";
import { BASE64_PATTERN, COMMAND_NAME_PATTERN, deploymentHashSchema } from "./schemas.ts";

/** Paths of the live-output, heartbeat, ping, events and fleet endpoints. */
export const LIVE_PATHS = {
  output: (commandId: string): string =>
    `/api/v1/agent/commands/${encodeURIComponent(commandId)}/output`,
  heartbeat: "/api/v1/agent/heartbeat",
  ping: "/api/v1/agent/ping",
  events: (commandId: string): string => `/api/v1/commands/${encodeURIComponent(commandId)}/events`,
  agent: (agentId: string): string => `/api/v1/agents/${encodeURIComponent(agentId)}`,
  rotate: (agentId: string): string => `/api/v1/agents/${encodeURIComponent(agentId)}/rotate`,
  metrics: "/metrics",
} as const;
Object.freeze(LIVE_PATHS); // an importer cannot change what the wire means

/** Header carrying the agent process's instance id (one agent process per agent id). */
export const AGENT_INSTANCE_HEADER = "X-Agent-Instance";

/** Pattern of a valid instance id: 1–128 chars of `A-Za-z0-9._:-`. */
export const INSTANCE_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/** The output stream a chunk belongs to. */
export type OutputStreamName = "stdout" | "stderr";

/** Body of `POST /api/v1/agent/commands/{id}/output`. */
export interface OutputChunkRequest {
  /** The delivery attempt that printed it. */
  attempt: number;
  /** Which stream. */
  stream: OutputStreamName;
  /** Byte offset of the first byte of `data` in the stream. */
  offset: number;
  /** The bytes, base64 (standard alphabet, padded). */
  data: string;
}

/**
 * How many bytes standard padded base64 holds.
 *
 * @param base64 Text of {@link BASE64_PATTERN}.
 */
export function base64ByteLength(base64: string): number {
  const padding = base64.endsWith("==") ? 2 : base64.endsWith("=") ? 1 : 0;
  return (base64.length / 4) * 3 - padding;
}

/** Schema of {@link OutputChunkRequest}. */
export const outputChunkSchema: z.ZodType<OutputChunkRequest> = z.object({
  attempt: z.number().int().min(1),
  stream: z.enum(["stdout", "stderr"]),
  offset: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  data: z.string().min(1).regex(BASE64_PATTERN, "must be base64 (standard alphabet, padded)"),
}).superRefine((chunk, ctx) => {
  // Where the chunk ends must be a safe integer: beyond 2^53 - 1 offsets lose their precision
  // (and a store cannot give them back as numbers).
  if (chunk.offset + base64ByteLength(chunk.data) > Number.MAX_SAFE_INTEGER) {
    ctx.addIssue({
      code: "custom",
      path: ["offset"],
      message: `offset plus the data's length must be at most ${Number.MAX_SAFE_INTEGER}`,
    });
  }
});

/** Body of `POST /api/v1/agent/heartbeat`: the metrics sample plus who sends it. */
export interface HeartbeatRequest {
  /** The agent id (must be the sender's). */
  agent_id?: string;
  /** The agent's program version. */
  version?: string;
  /** The deployment it serves. */
  deployment_hash?: string;
  /** Its process's instance id. */
  instance_id?: string;
  /** Its labels (`AGENT_LABELS`). */
  labels?: Labels;
  /** The figures: `timestamp`, `cpu_percent`, `memory`, `disk`, `load_avg`, ... */
  [figure: string]: unknown;
}

/**
 * A heartbeat's text kept in its own column: 1–`max` characters without control characters (a NUL
 * is a database error on PostgreSQL, a newline or escape would change how the fleet view shows),
 * and well-formed Unicode (a lone surrogate, JSON's `\ud800`, would be kept as U+FFFD).
 */
function recordedText(max: number): z.ZodType<string> {
  return z.string().min(1).max(max).regex(
    COMMAND_NAME_PATTERN,
    "must not contain control characters (NUL, newline, tab, escape, ...)",
  ).refine(
    (text) => text.isWellFormed(),
    "must be well-formed Unicode (no lone surrogate such as \\ud800)",
  );
}

/** Schema of {@link HeartbeatRequest}; unknown keys are the figures. */
export const heartbeatSchema: z.ZodType<HeartbeatRequest> = z.looseObject({
  agent_id: z.string().max(128).optional(),
  version: recordedText(64).optional(),
  deployment_hash: deploymentHashSchema.optional(),
  instance_id: recordedText(128).optional(),
  labels: labelsSchema.optional(),
});

/**
 * Encodes bytes as base64 (standard alphabet, padded).
 *
 * @example Encode output bytes
 * ```ts
 * import assert from "node:assert/strict";
 * import { toBase64 } from "./live.ts";
 *
 * assert.equal(toBase64(new TextEncoder().encode("hi")), "aGk=");
 * ```
 *
 * @param bytes The bytes.
 */
export function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/**
 * Decodes base64 (standard alphabet, padded).
 *
 * @example Decode output bytes
 * ```ts
 * import assert from "node:assert/strict";
 * import { fromBase64 } from "./live.ts";
 *
 * assert.equal(new TextDecoder().decode(fromBase64("aGk=")), "hi");
 * ```
 *
 * @param text The base64 text.
 * @throws {TypeError} When it is not base64.
 */
export function fromBase64(text: string): Uint8Array {
  let binary: string;
  try {
    binary = atob(text);
  } catch {
    throw new TypeError("not base64");
  }
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
