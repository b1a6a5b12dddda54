/**
 * Wire types of fan-out runs (one command to a group of agents, rate-controlled) and of agent
 * labels, shared by the dashboard, the operator CLI and the agent.
 *
 * - Agents carry labels (`AGENT_LABELS="role=web,zone=eu"`), sent in their heartbeat as
 *   `labels: {"role": "web", "zone": "eu"}`.
 * - `POST /api/v1/runs` ({@link RunRequest}) creates a run; `GET /api/v1/runs/{id}` shows it;
 *   `GET /api/v1/runs/{id}/events` streams it; `POST /api/v1/runs/{id}/cancel` cancels it.
 *
 * @module
 */
import { z } from "zod";
import {
  AGENT_ID_PATTERN,
  AGENT_ID_RULE,
  commandNameSchema,
  type CommandParams,
  deploymentHashSchema,
  enqueueParamsSchema,
  idPattern,
} from "./schemas.ts";
import { shortForm } from "./short_form.ts";

/** Paths of the runs API. */
export const RUN_PATHS = {
  /** `POST` creates, `GET` lists. */
  runs: "/api/v1/runs",
  /** `GET` one run. */
  run: (id: string): string => `/api/v1/runs/${encodeURIComponent(id)}`,
  /** `GET` the run's server-sent events. */
  events: (id: string): string => `/api/v1/runs/${encodeURIComponent(id)}/events`,
  /** `POST` cancels the run. */
  cancel: (id: string): string => `/api/v1/runs/${encodeURIComponent(id)}/cancel`,
} as const;
Object.freeze(RUN_PATHS); // an importer cannot change what the wire means

/** Default and largest `limit` of `GET /api/v1/runs`. */
export const RUN_LIST_LIMIT = { default: 50, max: 500 } as const;

/** Pattern of a label key: 1–63 characters of `A-Za-z0-9._/-`, starting with a letter or digit. */
export const LABEL_KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/;
/** Pattern of a label value: 0–128 characters of `A-Za-z0-9._:/@-`. */
export const LABEL_VALUE_PATTERN = /^[A-Za-z0-9._:/@-]{0,128}$/;
/** Most labels an agent or a target may carry. */
export const MAX_LABELS = 32;

/** Labels: key → value. */
export type Labels = Record<string, string>;

const LABEL_KEY_RULE =
  "label keys are 1–63 characters of A-Z a-z 0-9 . _ / -, starting with a letter or digit";

/**
 * Schema of a set of labels. A key `__proto__` (which zod's record would drop in silence, leaving
 * the other labels or none) breaks the key rule like any other key starting with `_`.
 */
export const labelsSchema: z.ZodType<Labels> = z.unknown().superRefine((value, ctx) => {
  if (value !== null && typeof value === "object" && Object.hasOwn(value, "__proto__")) {
    ctx.addIssue({ code: "custom", path: ["__proto__"], message: LABEL_KEY_RULE });
  }
}).pipe(
  z.record(
    z.string().regex(LABEL_KEY_PATTERN, LABEL_KEY_RULE),
    z.string().regex(
      LABEL_VALUE_PATTERN,
      "label values are 0–128 characters of A-Z a-z 0-9 . _ : / @ -",
    ),
    // zod's own words for a bad key are "Invalid key in record".
    { error: (issue) => issue.code === "invalid_key" ? LABEL_KEY_RULE : undefined },
  ).refine((labels) => Object.keys(labels).length <= MAX_LABELS, {
    message: `at most ${MAX_LABELS} labels`,
  }),
);

/**
 * Parses labels written as `key=value` pairs separated by commas (`AGENT_LABELS`,
 * `status enqueue --label`).
 *
 * @param text For example `role=web,zone=eu`; empty: no labels.
 * @returns The labels.
 * @throws {TypeError} When a pair is malformed or a key repeats.
 */
export function parseLabels(text: string): Labels {
  const labels: Labels = {};
  const trimmed = text.trim();
  if (trimmed === "") return labels;
  for (const pair of trimmed.split(",")) {
    const at = pair.indexOf("=");
    const key = (at < 0 ? pair : pair.slice(0, at)).trim();
    const value = at < 0 ? undefined : pair.slice(at + 1).trim();
    if (value === undefined) {
      throw new TypeError(`label "${shortForm(pair.trim())}" is not key=value`);
    }
    if (!LABEL_KEY_PATTERN.test(key)) {
      throw new TypeError(
        `label key "${
          shortForm(key)
        }" must be 1–63 characters of A-Z a-z 0-9 . _ / - (starting with a letter or digit)`,
      );
    }
    if (!LABEL_VALUE_PATTERN.test(value)) {
      throw new TypeError(
        `label value "${
          shortForm(value)
        }" of ${key} must be 0–128 characters of A-Z a-z 0-9 . _ : / @ -`,
      );
    }
    if (Object.hasOwn(labels, key)) throw new TypeError(`label ${key} is given twice`);
    labels[key] = value;
  }
  if (Object.keys(labels).length > MAX_LABELS) {
    throw new TypeError(`at most ${MAX_LABELS} labels, got ${Object.keys(labels).length}`);
  }
  return labels;
}

/**
 * Writes labels as `key=value,key=value` (sorted by key).
 *
 * @param labels The labels.
 */
export function formatLabels(labels: Labels | null | undefined): string {
  if (!labels) return "";
  return Object.keys(labels).sort().map((key) => `${key}=${labels[key]}`).join(",");
}

/** Which agents a run goes to; every given part must match (at least one part). */
export interface RunTarget {
  /** Only these agents. */
  agents?: string[];
  /** Only agents whose latest heartbeat names this deployment hash. */
  deployment?: string;
  /** Only agents carrying every one of these labels. */
  labels?: Labels;
}

/** Schema of {@link RunTarget}. */
export const runTargetSchema: z.ZodType<RunTarget> = z.object({
  agents: z.array(z.string().regex(AGENT_ID_PATTERN, `agent ids are ${AGENT_ID_RULE}`))
    .min(1).max(10_000).optional(),
  deployment: deploymentHashSchema.optional(),
  labels: labelsSchema.optional(),
}).strict().refine(
  (t) =>
    t.agents !== undefined || t.deployment !== undefined ||
    (t.labels !== undefined && Object.keys(t.labels).length > 0),
  { message: "name agents, a deployment or labels" },
);

/** `max_concurrency`: a count, or a percentage of the targets such as `"10%"`. */
export type MaxConcurrency = number | string;

/** Pattern of a percentage `max_concurrency`. */
export const PERCENT_PATTERN = /^(100|[1-9][0-9]?)%$/;

/** The most commands a run may have running at once, as a count. */
export const MAX_CONCURRENCY_COUNT = 100_000;

/** What `max_concurrency` may be, in words (every wrong value gets this one sentence). */
export const MAX_CONCURRENCY_RULE =
  `a whole number from 1 to ${MAX_CONCURRENCY_COUNT}, or a percentage from 1% to 100%`;

/**
 * Schema of {@link MaxConcurrency}. One sentence for every wrong value: zod's own were
 * "Invalid input" for `1.5`, `true` or `null`, and "Too big" with no word of percentages. The
 * count's bounds are a check of its own: a bound's issue is put in the API's words
 * (`must be at least 1`), which said nothing of percentages either.
 */
export const maxConcurrencySchema: z.ZodType<MaxConcurrency> = z.union([
  z.number().refine(
    (n) => Number.isInteger(n) && n >= 1 && n <= MAX_CONCURRENCY_COUNT,
    MAX_CONCURRENCY_RULE,
  ),
  z.string().regex(PERCENT_PATTERN, MAX_CONCURRENCY_RULE),
], MAX_CONCURRENCY_RULE);

/**
 * The number of commands a run may have running at once.
 *
 * @param spec A count, or a percentage such as `"10%"` (rounded up, at least 1).
 * @param targets How many agents the run targets.
 */
export function resolveConcurrency(spec: MaxConcurrency, targets: number): number {
  if (typeof spec === "number") return spec;
  const percent = Number(spec.slice(0, -1));
  return Math.max(1, Math.ceil(targets * percent / 100));
}

/**
 * Parses a `--max-concurrency` value: `5` or `10%`.
 *
 * @param text The flag's value.
 * @throws {TypeError} When it is neither.
 */
export function parseMaxConcurrency(text: string): MaxConcurrency {
  const trimmed = text.trim();
  if (/^[1-9][0-9]{0,5}$/.test(trimmed) && Number(trimmed) <= MAX_CONCURRENCY_COUNT) {
    return Number(trimmed);
  }
  if (PERCENT_PATTERN.test(trimmed)) return trimmed;
  throw new TypeError(`max concurrency "${shortForm(text)}" must be ${MAX_CONCURRENCY_RULE}`);
}

/** Body of `POST /api/v1/runs`. */
export interface RunRequest {
  /** The run id; re-posting the same id with the same body creates nothing new. */
  id?: string;
  /** The command line. */
  name: string;
  /** The parameters of each command (`timeout_secs`, `priority`, `ttl_secs`, ...). */
  params?: CommandParams;
  /** Which agents. */
  target: RunTarget;
  /** At most this many commands running at once (default: all). */
  max_concurrency?: MaxConcurrency;
  /** After more than this many failures no command is started (default: never stop). */
  max_errors?: number;
}

/** Pattern of a run id (a command id is `<run id>:<agent id>`): not only dots. */
export const RUN_ID_PATTERN: RegExp = idPattern("A-Za-z0-9._-", 64);

/** What {@link RUN_ID_PATTERN} asks for, in words. */
export const RUN_ID_RULE = "1–64 characters of A-Z a-z 0-9 . _ -, not only dots";

/**
 * The one run id refused at creation: the console's page of that run, `/runs/new`, is its
 * start-a-run form.
 */
export const RESERVED_RUN_ID = "new";

/** Schema of {@link RunRequest}. */
export const runRequestSchema: z.ZodType<RunRequest> = z.object({
  id: z.string().regex(RUN_ID_PATTERN, `must be ${RUN_ID_RULE}`).refine(
    (id) => id !== RESERVED_RUN_ID,
    `must not be "${RESERVED_RUN_ID}": the console's page of a run with that id (/runs/new) is ` +
      "its start-a-run form",
  ).optional(),
  // The same rule as an enqueued command's name: a run's parts are ordinary commands.
  name: commandNameSchema,
  params: enqueueParamsSchema.optional(),
  target: runTargetSchema,
  max_concurrency: maxConcurrencySchema.optional(),
  max_errors: z.number().int().min(0).max(100_000).optional(),
}).strict().superRefine((request, ctx) => {
  // The run chooses agents whose heartbeat names the target's deployment, and a command with a
  // `deployment_hash` goes only to a wait on that hash: with another one, no part was ever
  // delivered, each waited in its queue until its expiry.
  const hash = request.params?.deployment_hash;
  const deployment = request.target?.deployment;
  if (hash !== undefined && deployment !== undefined && hash !== deployment) {
    ctx.addIssue({
      code: "custom",
      path: ["params", "deployment_hash"],
      message: `${JSON.stringify(hash)} is not the target's deployment ` +
        `${JSON.stringify(deployment)}: the run's agents wait on ${JSON.stringify(deployment)} ` +
        `and would never receive it; leave it out (the target's deployment is used) or give ` +
        `the same`,
    });
  }
});

/** Where one agent of a run stands: not started, skipped, or its command's status. */
export type RunAgentState = "pending" | "skipped" | string;

/** Whether a run is still going, and how it ended. */
export type RunStatus = "running" | "cancelling" | "succeeded" | "failed" | "cancelled";

/** One agent of a run, as `GET /api/v1/runs/{id}` shows it. */
export interface RunAgentView {
  /** The agent. */
  agent_id: string;
  /** Its command's id (it exists once the command started). */
  command_id: string;
  /** `pending`, `skipped`, or the command's status. */
  state: RunAgentState;
  /** Whether the agent was offline when the run was created. */
  offline_at_creation: boolean;
  /** The command's exit code, once reported. */
  exit_code: number | null;
  /** The command's run time in seconds, once reported. */
  duration_secs: number | null;
  /** When the dashboard started its command (ISO 8601). */
  started_at: string | null;
  /** When the agent began running it (ISO 8601, the agent's clock). */
  run_started_at: string | null;
  /** When it ended (ISO 8601, the agent's clock). */
  run_completed_at: string | null;
  /** The first line of its output (standard output, else standard error). */
  first_line: string | null;
  /** Why it failed without running to the end. */
  error: string | null;
}

/** A run, as `GET /api/v1/runs/{id}` answers. */
export interface RunView {
  /** The run id. */
  id: string;
  /** The command line. */
  name: string;
  /** The parameters of each command. */
  params: CommandParams;
  /** The target as given. */
  target: RunTarget;
  /** The concurrency as given (`5` or `"10%"`). */
  max_concurrency_spec: MaxConcurrency | null;
  /** The resolved concurrency. */
  max_concurrency: number;
  /** The error budget; `null`: never stop. */
  max_errors: number | null;
  /** Where the run stands. */
  status: RunStatus;
  /** Whether an operator cancelled it. */
  cancel_requested: boolean;
  /** When it was created (ISO 8601). */
  created_at: string;
  /** When every agent's part ended (ISO 8601). */
  completed_at: string | null;
  /** Counts by state (`pending`, `skipped`, and the command statuses), plus `total`. */
  totals: Record<string, number>;
  /** One entry per targeted agent. */
  agents: RunAgentView[];
}
