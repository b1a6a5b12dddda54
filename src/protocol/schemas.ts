/**
 * Wire types and their `zod` schemas (PROTOCOL.md §2–4, §7).
 *
 * @module
 */
import { z } from "zod";

/** Pattern of a valid agent id: 1–128 chars of `A-Za-z0-9._:-`. */
export const AGENT_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/** Schema of an agent id. */
export const agentIdSchema = z.string().regex(
  AGENT_ID_PATTERN,
  "must be 1–128 characters of A-Z a-z 0-9 . _ : -",
);

/** Command priorities, highest first. */
export const PRIORITIES = ["critical", "high", "normal", "low"] as const;
/** A command priority. */
export type Priority = typeof PRIORITIES[number];

/** Final statuses a report may carry. */
export const REPORT_STATUSES = [
  "success",
  "failed",
  "timeout",
  "killed",
  "rejected",
  "cancelled",
  "interrupted",
] as const;
/** A final status reported by an agent. */
export type ReportStatus = typeof REPORT_STATUSES[number];

/** Every status a command can have on the dashboard. */
export const COMMAND_STATUSES = [
  "queued",
  "delivered",
  "running",
  ...REPORT_STATUSES,
  "lost",
] as const;
/** A command's status on the dashboard. */
export type CommandStatus = typeof COMMAND_STATUSES[number];

/** Statuses after which a command never changes again. */
export const FINAL_STATUSES: ReadonlySet<CommandStatus> = new Set<CommandStatus>([
  ...REPORT_STATUSES,
  "lost",
]);

/** Schema of a command's `params`. Unknown keys are kept. */
export const paramsSchema = z.looseObject({
  timeout_secs: z.number().int().positive().max(86_400).optional(),
  priority: z.enum(PRIORITIES).optional(),
  deployment_hash: z.string().min(1).max(256).optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
});
/** A command's parameters. */
export type CommandParams = z.infer<typeof paramsSchema>;

/** Schema of the body of `POST /api/v1/agent/commands/enqueue`. */
export const enqueueRequestSchema = z.object({
  id: z.string().min(1).max(128).regex(
    /^[A-Za-z0-9._:-]+$/,
    "must be 1–128 characters of A-Z a-z 0-9 . _ : -",
  ).optional(),
  name: z.string().min(1).max(4096),
  params: paramsSchema.optional(),
  agent_id: agentIdSchema.optional(),
});
/** Body of an enqueue request. */
export type EnqueueRequest = z.infer<typeof enqueueRequestSchema>;

/** Schema of a delivered command (the `200` answer of `wait`). */
export const deliveredCommandSchema = z.object({
  id: z.string().min(1),
  name: z.string(),
  params: paramsSchema.default({}),
  deployment_hash: z.string().nullish(),
  attempt: z.number().int().positive().default(1),
  lease_expires_at: z.string().nullish(),
});
/** A command as delivered to an agent. */
export type DeliveredCommand = z.infer<typeof deliveredCommandSchema>;

/** Schema of the body of `POST /api/v1/agent/commands/ack`. */
export const ackRequestSchema = z.object({
  command_id: z.string().min(1),
  attempt: z.number().int().positive(),
});
/** Body of an ack request. */
export type AckRequest = z.infer<typeof ackRequestSchema>;

/** Schema of the `result` object of a report. */
export const execResultSchema = z.object({
  exit_code: z.number().int().nullable(),
  signal: z.string().nullable(),
  duration_secs: z.number().nonnegative(),
  stdout: z.string(),
  stderr: z.string(),
  stdout_truncated_bytes: z.number().int().nonnegative(),
  stderr_truncated_bytes: z.number().int().nonnegative(),
});
/** What running a command produced. */
export type ExecResultBody = z.infer<typeof execResultSchema>;

/** Schema of the body of `POST /api/v1/agent/commands/report`. */
export const reportRequestSchema = z.object({
  command_id: z.string().min(1),
  status: z.enum(REPORT_STATUSES),
  attempt: z.number().int().positive().optional(),
  result: execResultSchema.nullable().optional(),
  error: z.string().nullable().optional(),
  started_at: z.string().nullable().optional(),
  completed_at: z.string().nullable().optional(),
});
/** Body of a report. */
export type ReportRequest = z.infer<typeof reportRequestSchema>;

/** Schema of the Stacker-style `wait` envelope (PROTOCOL.md §7). */
export const stackerEnvelopeSchema = z.object({
  item: z.looseObject({
    command_id: z.string().min(1),
    type: z.string(),
    parameters: z.record(z.string(), z.unknown()).nullish(),
    deployment_hash: z.string().nullish(),
    attempt: z.number().int().positive().optional(),
  }).nullable(),
  meta: z.object({ next_poll_secs: z.number().nonnegative().optional() }).partial().optional(),
});

/** What a `wait` answer with a body means to the agent. */
export type WaitAnswer =
  | { kind: "command"; command: DeliveredCommand; stacker: boolean }
  | { kind: "empty"; nextPollSecs?: number };

/**
 * Reads the body of a `200` answer to `wait`: the bare command of PROTOCOL.md §2 or the Stacker
 * envelope of §7.
 *
 * @param body The parsed JSON body.
 * @returns The command, or `empty` when a Stacker envelope holds no item.
 * @throws {z.ZodError} When the body is neither form.
 */
export function parseWaitAnswer(body: unknown): WaitAnswer {
  if (body && typeof body === "object" && "item" in body) {
    const envelope = stackerEnvelopeSchema.parse(body);
    if (!envelope.item) return { kind: "empty", nextPollSecs: envelope.meta?.next_poll_secs };
    const item = envelope.item;
    const command = deliveredCommandSchema.parse({
      id: item.command_id,
      name: item.type,
      params: item.parameters ?? {},
      ...(item.deployment_hash ? { deployment_hash: item.deployment_hash } : {}),
      attempt: item.attempt ?? 1,
    });
    return { kind: "command", command, stacker: true };
  }
  return { kind: "command", command: deliveredCommandSchema.parse(body), stacker: false };
}

/**
 * Turns a zod error into one sentence naming the first bad field, for `400` answers.
 *
 * @param error The validation error.
 * @returns E.g. `field "name": Too small: expected string to have >=1 characters`.
 */
export function describeZodError(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return "invalid body";
  const path = issue.path.length ? issue.path.join(".") : "(body)";
  return `field "${path}": ${issue.message}`;
}
