/**
 * Wire types and their `zod` schemas (docs/protocol.md §2–4, §7).
 *
 * @module
 */
import { z } from "zod";
import { shortForm } from "./short_form.ts";

/**
 * Pattern of a deployment hash, as a wait names it in its path: 1–256 characters without `/`, `?`,
 * `#`, white space or control characters (C0, DEL, C1), and not only dots (a dot-segment of the
 * wait's path). The enqueue, runs and heartbeats hold a deployment hash to it too, so that a
 * command is never queued for a hash no wait can name.
 */
// deno-lint-ignore no-control-regex
export const DEPLOYMENT_HASH_PATTERN = /^(?!\.+$)[^/?#\s\u0000-\u001f\u007f-\u009f]{1,256}$/;

/** What {@link DEPLOYMENT_HASH_PATTERN} asks for, in words. */
export const DEPLOYMENT_HASH_RULE =
  "1–256 characters without / ? #, spaces or control characters, not only dots";

/**
 * Schema of a deployment hash given to the dashboard (enqueue, runs, heartbeat), also well-formed
 * Unicode: a lone surrogate (JSON's `\ud800`) cannot be percent-encoded, so no wait names it, and
 * the store keeps it as U+FFFD.
 */
export const deploymentHashSchema: z.ZodType<string> = z.string().regex(
  DEPLOYMENT_HASH_PATTERN,
  `must be ${DEPLOYMENT_HASH_RULE}`,
).refine(
  (hash) => hash.isWellFormed(),
  "must be well-formed Unicode (no lone surrogate such as \\ud800): no wait could name it",
);

/**
 * The pattern of an id of the protocol (agent, command, run): 1 to `maxLength` characters of
 * `chars`, and not only dots. An id of dots alone (`.`, `..`) is a dot-segment in a URL path,
 * which clients and the HTTP stack collapse (`/api/v1/commands/..` is `/api/v1/`), so no route
 * could ever reach it.
 *
 * @param chars The characters allowed, as the inside of a regular expression's `[...]`.
 * @param maxLength The longest id.
 * @returns The pattern, anchored at both ends.
 */
export function idPattern(chars: string, maxLength: number): RegExp {
  return new RegExp(`^(?!\\.+$)[${chars}]{1,${maxLength}}$`);
}

/** Pattern of a valid agent id: 1–128 chars of `A-Za-z0-9._:-`, not only dots. */
export const AGENT_ID_PATTERN: RegExp = idPattern("A-Za-z0-9._:-", 128);

/** What {@link AGENT_ID_PATTERN} asks for, in words. */
export const AGENT_ID_RULE = "1–128 characters of A-Z a-z 0-9 . _ : -, not only dots";

/**
 * A scope an agent may be granted (docs/protocol.md §1). Each agent-facing endpoint requires one:
 *
 * - `commands:wait`: `GET …/wait/{hash}`, `POST …/ack` and `GET …/{id}/cancel-wait` (receiving
 *   commands and their cancels);
 * - `commands:report`: `POST …/report`;
 * - `commands:enqueue`: `POST …/enqueue` signed by the agent itself (the seed-compatible enqueue).
 */
export type AgentScope = "commands:wait" | "commands:report" | "commands:enqueue";

/** Every {@link AgentScope}, in this order. */
export const AGENT_SCOPES = [
  "commands:wait",
  "commands:report",
  "commands:enqueue",
] as const satisfies readonly AgentScope[];

/** Pattern of a valid command id: 1–128 chars of `A-Za-z0-9._:-`, not only dots. */
export const COMMAND_ID_PATTERN: RegExp = idPattern("A-Za-z0-9._:-", 128);

/** What {@link COMMAND_ID_PATTERN} asks for, in words. */
export const COMMAND_ID_RULE = AGENT_ID_RULE;

/**
 * Pattern of the id of any command a dashboard of ours holds, as an agent names it in an ack or a
 * report: an enqueued command's ({@link COMMAND_ID_PATTERN}) or a run's `<run id>:<agent id>`
 * (up to 64 + 1 + 128 = 193 characters).
 */
export const ANY_COMMAND_ID_PATTERN: RegExp = idPattern("A-Za-z0-9._:-", 193);

/** What {@link ANY_COMMAND_ID_PATTERN} asks for, in words. */
export const ANY_COMMAND_ID_RULE = "1–193 characters of A-Z a-z 0-9 . _ : -, not only dots";

/** Schema of the `command_id` of an ack or a report. */
const anyCommandIdSchema = z.string().regex(
  ANY_COMMAND_ID_PATTERN,
  `must be ${ANY_COMMAND_ID_RULE}`,
);

/** Schema of an agent id. */
export const agentIdSchema: z.ZodType<string> = z.string().regex(
  AGENT_ID_PATTERN,
  `must be ${AGENT_ID_RULE}`,
);

/** Command priorities, highest first. */
export const PRIORITIES = ["critical", "high", "normal", "low"] as const;
Object.freeze(PRIORITIES); // an importer cannot change what the wire means
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
Object.freeze(REPORT_STATUSES); // an importer cannot change what the wire means
/** A final status reported by an agent. */
export type ReportStatus = typeof REPORT_STATUSES[number];

/** Every status a command can have on the dashboard. */
export const COMMAND_STATUSES = [
  "queued",
  "delivered",
  "running",
  ...REPORT_STATUSES,
  "lost",
  "expired",
] as const;
Object.freeze(COMMAND_STATUSES); // an importer cannot change what the wire means
/** A command's status on the dashboard. */
export type CommandStatus = typeof COMMAND_STATUSES[number];

/** Statuses after which a command never changes again. */
export const FINAL_STATUSES: ReadonlySet<CommandStatus> = new Set<CommandStatus>([
  ...REPORT_STATUSES,
  "lost",
  "expired",
]);

/** Largest queue expiry a command may ask for with `params.ttl_secs`: 30 days, in seconds. */
export const MAX_TTL_SECS = 30 * 86_400;

/**
 * Largest `params` of an enqueue or a run, in bytes of JSON: a command's params are stored with it,
 * sent with every delivery and in every list of commands, where a thousand of a megabyte each made
 * one answer larger than the dashboard could build.
 */
export const MAX_PARAMS_BYTES = 64 * 1024;

/** A command's parameters; keys other than these are kept as they are. */
export interface CommandParams {
  /** The command's deadline in seconds (capped by the agent's maximum). */
  timeout_secs?: number;
  /** Queue priority. */
  priority?: Priority;
  /** Deliver only to agents waiting on this deployment hash. */
  deployment_hash?: string;
  /**
   * Queue expiry in seconds: still queued this long after the enqueue, the command becomes
   * `expired` (default: the dashboard's `QUEUE_TTL_SECS`).
   */
  ttl_secs?: number;
  /** Free-form data kept with the command. */
  metadata?: Record<string, unknown>;
  /** Other keys are kept. */
  [key: string]: unknown;
}

/** The schema of `params` with a given rule for `deployment_hash`. */
function paramsSchemaWith(deploymentHash: z.ZodType<string>): z.ZodType<CommandParams> {
  return z.looseObject({
    timeout_secs: z.number().int().positive().max(86_400).optional(),
    priority: z.enum(PRIORITIES).optional(),
    deployment_hash: deploymentHash.optional(),
    ttl_secs: z.number().int().positive().max(MAX_TTL_SECS).optional(),
    metadata: z.record(z.string(), z.unknown()).optional(),
  });
}

/**
 * Schema of a command's `params` as an agent receives them. Unknown keys are kept, except a
 * `__proto__` key here or in `metadata` (zod drops it; docs/protocol.md §2). It reads what any
 * dashboard delivers: `timeout_secs`, the one key the agent uses, is any number above 0 (the
 * agent caps it at its maximum; a fraction of a second is kept; `null` is none). The keys it does
 * not use are not held against the command: a value this dashboard's enqueue would refuse
 * (`"priority": 5`, `"metadata": null`, a `deployment_hash` beyond 256 characters) is left out.
 */
export const paramsSchema: z.ZodType<CommandParams> = z.looseObject({
  timeout_secs: z.number().positive().nullish().transform((secs) => secs ?? undefined),
  priority: z.enum(PRIORITIES).optional().catch(undefined),
  deployment_hash: z.string().min(1).max(256).optional().catch(undefined),
  ttl_secs: z.number().int().positive().max(MAX_TTL_SECS).optional().catch(undefined),
  metadata: z.record(z.string(), z.unknown()).optional().catch(undefined),
});

/**
 * Schema of the `params` of an enqueue or a run: as {@link paramsSchema}, with a `deployment_hash`
 * a wait can name ({@link DEPLOYMENT_HASH_PATTERN}), and at most {@link MAX_PARAMS_BYTES} of JSON.
 */
export const enqueueParamsSchema: z.ZodType<CommandParams> = paramsSchemaWith(
  deploymentHashSchema,
).superRefine((params, ctx) => {
  const bytes = new TextEncoder().encode(JSON.stringify(params)).length;
  if (bytes > MAX_PARAMS_BYTES) {
    ctx.addIssue({
      code: "custom",
      message: `must be at most ${MAX_PARAMS_BYTES} bytes as JSON, got ${bytes}`,
    });
  }
});

/** Body of `POST /api/v1/agent/commands/enqueue`. */
export interface EnqueueRequest {
  /** Command id; generated when absent. */
  id?: string;
  /** The command line. */
  name: string;
  /** Parameters. */
  params?: CommandParams;
  /** Target agent, when an operator (admin token) enqueues. */
  agent_id?: string;
}

/**
 * What a command name may hold: no control characters (C0, DEL, C1). A NUL would cut the command
 * short where it is run, and a newline or escape would change how it is shown.
 */
// deno-lint-ignore no-control-regex
export const COMMAND_NAME_PATTERN = /^[^\u0000-\u001f\u007f-\u009f]*$/;

/**
 * Unicode's bidirectional formatting characters (embeddings, overrides, isolates, marks): a text
 * holding them shows in another order than its characters come.
 */
export const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

/**
 * Schema of a command name (an enqueue's, a run's): 1–4096 characters, no control characters
 * ({@link COMMAND_NAME_PATTERN}), and well-formed Unicode: a lone surrogate (which JSON's `\ud800`
 * escape can carry) would be stored, and run, as U+FFFD; no bidirectional formatting characters,
 * which would show the line in an order other than the one it runs in.
 */
export const commandNameSchema: z.ZodType<string> = z.string().min(1).max(4096).regex(
  COMMAND_NAME_PATTERN,
  "must not contain control characters (NUL, newline, tab, escape, ...)",
).refine(
  (name) => name.isWellFormed(),
  "must be well-formed Unicode (no lone surrogate such as \\ud800)",
).refine(
  (name) => !BIDI_CONTROLS.test(name),
  "must not contain bidirectional formatting characters (U+202E and the like), which make a " +
    "command line show in another order than it runs",
);

/** The one command id refused at enqueue: its agent routes would be read as a wait's. */
export const RESERVED_COMMAND_ID = "wait";

/** The fields of an enqueue's `params` that are refused beside it. */
const PARAMS_KEYS = ["timeout_secs", "priority", "deployment_hash", "ttl_secs", "metadata"];

/** Schema of the body of `POST /api/v1/agent/commands/enqueue`. */
export const enqueueRequestSchema: z.ZodType<EnqueueRequest> = z.looseObject({
  id: z.string().regex(COMMAND_ID_PATTERN, `must be ${COMMAND_ID_RULE}`).refine(
    (id) => id !== RESERVED_COMMAND_ID,
    `must not be "${RESERVED_COMMAND_ID}": the agent's routes of a command with that id ` +
      `(…/commands/wait/cancel-wait, …/commands/wait/output) are read as waits`,
  ).optional(),
  name: commandNameSchema,
  params: enqueueParamsSchema.optional(),
  agent_id: agentIdSchema.optional(),
}).superRefine((body, ctx) => {
  // What belongs in params, given beside it (the shape of a command as GET shows it: priority
  // and deployment_hash at the top), was dropped: the command ran without its deadline,
  // priority or deployment. Other unknown fields are still ignored, as other clients may send
  // some.
  for (const key of PARAMS_KEYS) {
    if (Object.hasOwn(body, key)) {
      ctx.addIssue({
        code: "custom",
        path: [key],
        message: `must be given inside params ({"params": {"${key}": ...}}); beside it, it ` +
          "would be ignored",
      });
    }
  }
});

/** A command as delivered to an agent (the `200` answer of `wait`). */
export interface DeliveredCommand {
  /** Command id. */
  id: string;
  /** The command line. */
  name: string;
  /** Parameters. */
  params: CommandParams;
  /** The deployment hash it was enqueued for, if any. */
  deployment_hash?: string | null;
  /** Delivery attempt, from 1. */
  attempt: number;
  /** When the delivery lease ends (ISO 8601). */
  lease_expires_at?: string | null;
}

/**
 * The longest command id the agent takes from a dashboard, in characters: far beyond this
 * dashboard's ids (at most 193), and short enough that a broken or hostile dashboard's megabyte ids
 * do not fill the agent's journal, outbox and log (the id is in every line of each).
 */
export const MAX_DELIVERED_ID_CHARS = 1024;

/** Schema of a delivered command (the `200` answer of `wait`). */
export const deliveredCommandSchema: z.ZodType<DeliveredCommand> = z.object({
  id: z.string().min(1).max(MAX_DELIVERED_ID_CHARS),
  name: z.string(),
  // `null` counts as absent, as in a Stacker envelope (§7): a serializer of options writes it.
  params: paramsSchema.nullish().transform((params) => params ?? {}),
  deployment_hash: z.string().nullish(),
  attempt: z.number().int().positive().nullish().transform((attempt) => attempt ?? 1),
  lease_expires_at: z.string().nullish(),
});

/** Body of `POST /api/v1/agent/commands/ack`. */
export interface AckRequest {
  /** Command id. */
  command_id: string;
  /** The attempt being acknowledged. */
  attempt: number;
}

/** Schema of the body of `POST /api/v1/agent/commands/ack`. */
export const ackRequestSchema: z.ZodType<AckRequest> = z.object({
  command_id: anyCommandIdSchema,
  attempt: z.number().int().positive(),
});

/**
 * How a captured stream is carried in a JSON string (docs/protocol.md §5): `utf-8`, the text
 * itself (NUL bytes included); `base64`, the bytes in standard padded base64 (they were not valid
 * UTF-8).
 */
export const OUTPUT_ENCODINGS = ["utf-8", "base64"] as const;
Object.freeze(OUTPUT_ENCODINGS); // an importer cannot change what the wire means
/** How a captured stream is carried; see {@link OUTPUT_ENCODINGS}. */
export type OutputEncoding = typeof OUTPUT_ENCODINGS[number];

/** Standard, padded base64 (how binary output travels). */
export const BASE64_PATTERN = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** What running a command produced (the `result` object of a report). */
export interface ExecResultBody {
  /** Exit code, or null when a signal ended the process or it never ran. */
  exit_code: number | null;
  /** The signal that ended the process, e.g. `SIGKILL`. */
  signal: string | null;
  /** Run time in seconds. */
  duration_secs: number;
  /** Captured standard output (first and last 32 KiB). */
  stdout: string;
  /** Captured standard error (first and last 32 KiB). */
  stderr: string;
  /** Bytes of standard output dropped between head and tail. */
  stdout_truncated_bytes: number;
  /** Bytes of standard error dropped between head and tail. */
  stderr_truncated_bytes: number;
  /** `"base64"` when `stdout` holds base64 (the bytes were not UTF-8); absent: text. */
  stdout_encoding?: OutputEncoding;
  /** `"base64"` when `stderr` holds base64 (the bytes were not UTF-8); absent: text. */
  stderr_encoding?: OutputEncoding;
}

/**
 * The range of an exit code a report may carry: a signed 32-bit integer, what every store's
 * column holds (PostgreSQL's `integer`) and wider than any exit status an operating system gives.
 */
export const EXIT_CODE_RANGE = { min: -(2 ** 31), max: 2 ** 31 - 1 } as const;

/** Schema of the `result` object of a report. */
export const execResultSchema: z.ZodType<ExecResultBody> = z.object({
  exit_code: z.number().int().min(EXIT_CODE_RANGE.min).max(EXIT_CODE_RANGE.max).nullable(),
  signal: z.string().nullable(),
  duration_secs: z.number().nonnegative(),
  stdout: z.string(),
  stderr: z.string(),
  stdout_truncated_bytes: z.number().int().nonnegative(),
  stderr_truncated_bytes: z.number().int().nonnegative(),
  stdout_encoding: z.enum(OUTPUT_ENCODINGS).optional(),
  stderr_encoding: z.enum(OUTPUT_ENCODINGS).optional(),
}).superRefine((result, ctx) => {
  for (const stream of ["stdout", "stderr"] as const) {
    if (
      result[`${stream}_encoding`] === "base64" &&
      !BASE64_PATTERN.test(result[stream])
    ) {
      ctx.addIssue({ code: "custom", path: [stream], message: "must be standard padded base64" });
    }
  }
});

/** Body of `POST /api/v1/agent/commands/report`. */
export interface ReportRequest {
  /** Command id. */
  command_id: string;
  /** Final status. */
  status: ReportStatus;
  /** The attempt this result belongs to. */
  attempt?: number;
  /** What the command produced; null when it never ran. */
  result?: ExecResultBody | null;
  /** Why it failed, was rejected or interrupted. */
  error?: string | null;
  /** When it started (ISO 8601). */
  started_at?: string | null;
  /** When it ended (ISO 8601). */
  completed_at?: string | null;
}

/** The schema of a report with given rules for its command id and its times. */
function reportSchemaWith(
  commandId: z.ZodType<string>,
  time: z.ZodType<string>,
): z.ZodType<ReportRequest> {
  return z.object({
    command_id: commandId,
    status: z.enum(REPORT_STATUSES),
    // A report may name no attempt (§6): `null` says so as well as leaving the field out.
    attempt: z.number().int().positive().nullish().transform((attempt) => attempt ?? undefined),
    result: execResultSchema.nullable().optional(),
    error: z.string().nullable().optional(),
    started_at: time.nullable().optional(),
    completed_at: time.nullable().optional(),
  });
}

/** Digits of a fraction of a second a date-time may carry: nanoseconds. */
export const MAX_FRACTION_DIGITS = 9;
const LONGER_FRACTION = new RegExp(`\\.\\d{${MAX_FRACTION_DIGITS + 1}}`);

/**
 * An ISO 8601 date-time with seconds and a time zone (`Z` or an offset), with a fraction of a
 * second of at most {@link MAX_FRACTION_DIGITS} digits: `2026-01-12T10:00:05.120Z`, as
 * `Date.prototype.toISOString` writes. A longer fraction, which no clock has, would be kept as sent
 * (up to a megabyte) and shown in every list of commands.
 */
export const isoDateTimeSchema: z.ZodType<string> = z.iso.datetime({
  offset: true,
  message: "must be an ISO 8601 date-time with a time zone, such as 2026-01-12T10:00:05.120Z",
}).refine((time) => !LONGER_FRACTION.test(time), {
  message: `must have at most ${MAX_FRACTION_DIGITS} digits of a fraction of a second`,
});

/**
 * Schema of the body of `POST /api/v1/agent/commands/report`, as the dashboard checks it: the
 * `command_id` is one of {@link ANY_COMMAND_ID_PATTERN}, `started_at` and `completed_at` are
 * ISO 8601 date-times.
 */
export const reportRequestSchema: z.ZodType<ReportRequest> = reportSchemaWith(
  anyCommandIdSchema,
  isoDateTimeSchema,
);

/**
 * Schema of a report as the agent keeps it in its outbox: what it wrote, whatever the dashboard
 * (a Stacker-style one's ids need not be ours).
 */
export const keptReportSchema: z.ZodType<ReportRequest> = reportSchemaWith(
  z.string().min(1),
  z.string(),
);

/** The Stacker-style `wait` envelope (docs/protocol.md §7). */
export interface StackerEnvelope {
  /** The command, or null when there is none. */
  item: {
    command_id: string;
    type: string;
    parameters?: Record<string, unknown> | null;
    deployment_hash?: string | null;
    attempt?: number | null;
    [key: string]: unknown;
  } | null;
  /** Polling hints (a field without a value may be `null`, as a serializer of options writes it). */
  meta?: { next_poll_secs?: number | null } | null;
}

/** Schema of the Stacker-style `wait` envelope (docs/protocol.md §7). */
export const stackerEnvelopeSchema: z.ZodType<StackerEnvelope> = z.object({
  item: z.looseObject({
    command_id: z.string().min(1),
    type: z.string(),
    parameters: z.record(z.string(), z.unknown()).nullish(),
    deployment_hash: z.string().nullish(),
    attempt: z.number().int().positive().nullish(),
  }).nullable(),
  meta: z.object({ next_poll_secs: z.number().nonnegative().nullish() }).nullish(),
});

/** What a `wait` answer with a body means to the agent. */
export type WaitAnswer =
  | { kind: "command"; command: DeliveredCommand; stacker: boolean }
  | { kind: "empty"; nextPollSecs?: number };

/**
 * Reads the body of a `200` answer to `wait`: the bare command of docs/protocol.md §2 or the
 * Stacker envelope of §7.
 *
 * @param body The parsed JSON body.
 * @returns The command, or `empty` when a Stacker envelope holds no item.
 * @throws {z.ZodError} When the body is neither form.
 */
export function parseWaitAnswer(body: unknown): WaitAnswer {
  if (body && typeof body === "object" && "item" in body) {
    const envelope = stackerEnvelopeSchema.parse(body);
    if (!envelope.item) {
      return { kind: "empty", nextPollSecs: envelope.meta?.next_poll_secs ?? undefined };
    }
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
 * @returns E.g. `field "name": must be at least 1 character`.
 */
export function describeZodError(error: z.ZodError): string {
  const issues = relevantIssues(error);
  const issue = issues[0];
  if (!issue) return "invalid body";
  const path = issue.path.length ? shortForm(issue.path.join(".")) : "(body)";
  return `field "${path}": ${issue.message}`;
}

/** What a bound counts, by zod's `origin`. */
const UNITS: Record<string, [string, string]> = {
  string: ["character", "characters"],
  array: ["item", "items"],
  set: ["item", "items"],
};

/** A type as a sentence names it. */
function typeName(type: string): string {
  if (type === "int") return "a whole number";
  if (type === "record") return "an object";
  if (type === "array" || type === "object") return `an ${type}`;
  // The values zod names as a type (JSON's 1e400 parses as Infinity).
  if (["null", "undefined", "NaN", "Infinity"].includes(type)) return type;
  return `a ${type}`;
}

/**
 * The sentence of a common issue in the API's own words (`must be at most 86400`) instead of zod's
 * (`Too big: expected number to be <=86400`); `undefined` keeps zod's.
 */
function ownWords(issue: z.core.$ZodIssue): string | undefined {
  switch (issue.code) {
    case "too_big":
    case "too_small": {
      const big = issue.code === "too_big";
      const bound = big ? issue.maximum : issue.minimum;
      if (typeof bound !== "number" && typeof bound !== "bigint") return undefined;
      const units = UNITS[issue.origin];
      if (units) {
        const what = `${bound} ${bound === 1 ? units[0] : units[1]}`;
        if (issue.exact) return `must be exactly ${what}`;
        return big ? `must be at most ${what}` : `must be at least ${what}`;
      }
      if (issue.origin !== "number" && issue.origin !== "int") return undefined;
      const inclusive = issue.inclusive !== false;
      if (big) return inclusive ? `must be at most ${bound}` : `must be less than ${bound}`;
      return inclusive ? `must be at least ${bound}` : `must be more than ${bound}`;
    }
    case "invalid_type": {
      const received = issue.message.match(/, received (\w+)$/)?.[1];
      const wanted = typeName(issue.expected);
      if (issue.expected === "int" && received === "number") return "must be a whole number";
      return received ? `must be ${wanted}, not ${typeName(received)}` : `must be ${wanted}`;
    }
    case "invalid_value":
      return issue.values.length > 0
        ? `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`
        : undefined;
    default:
      return undefined;
  }
}

/** Zod's message for a field of an object that is absent (its input was `undefined`). */
const MISSING = /, received undefined$/;

/**
 * A zod error's issues, without the bound every integer field has (the safe-integer range) where
 * the same field also broke its own, narrower bound: `1e308` for a field of at most 86,400 is
 * told the 86,400, not 2^53 - 1. A field that is missing is told so (`is required (expected
 * number)`) instead of zod's `Invalid input: expected number, received undefined`. An unknown key
 * of a strict object is one issue per key, naming the key as its field (`field "token": is not a
 * field of this object`) instead of the object (`field "(body)": Unrecognized key: "token"`).
 *
 * @param error The validation error.
 * @returns The issues to show, in zod's order.
 */
export function relevantIssues(error: z.ZodError): z.core.$ZodIssue[] {
  const key = (issue: z.core.$ZodIssue) => JSON.stringify(issue.path);
  const safeBound = (issue: z.core.$ZodIssue) =>
    (issue.code === "too_big" || issue.code === "too_small") && issue.origin === "int";
  const ownBound = new Set(
    error.issues.filter((issue) =>
      (issue.code === "too_big" || issue.code === "too_small") && !safeBound(issue)
    ).map(key),
  );
  return error.issues
    .filter((issue) => !(safeBound(issue) && ownBound.has(key(issue))))
    .flatMap((issue): z.core.$ZodIssue[] =>
      issue.code === "invalid_type" && MISSING.test(issue.message)
        ? [{ ...issue, message: `is required (expected ${issue.expected})` }]
        : ownWords(issue) !== undefined
        ? [{ ...issue, message: ownWords(issue)! }]
        // A strict object's unknown key is named as the field, not its object ("(body)").
        : issue.code === "unrecognized_keys"
        ? issue.keys.map((name) => ({
          ...issue,
          keys: [name],
          path: [...issue.path, name],
          message: "is not a field of this object",
        }))
        : [issue]
    );
}
