/**
 * Fan-out runs over the operator API (docs/protocol.md §16): create a run (`POST /api/v1/runs`),
 * read, list and cancel runs, follow one to its end, and render its aggregate as a table.
 *
 * @module
 */
import { checkOptionNames, checkSignal } from "../options.ts";
import { z } from "zod";
import { sleepOrThrow } from "../clock.ts";
import { relevantIssues, shownValue, visibleText } from "../protocol/mod.ts";
import {
  RUN_ID_PATTERN,
  RUN_ID_RULE,
  RUN_PATHS,
  type RunRequest,
  type RunView,
} from "../protocol/runs.ts";
import { checkMs, isNoRoute, OperatorClient, OperatorError } from "./client.ts";
import { alignColumns, cell } from "./format.ts";

const agentViewSchema = z.looseObject({
  agent_id: z.string(),
  command_id: z.string(),
  state: z.string(),
  offline_at_creation: z.boolean(),
  exit_code: z.number().nullable(),
  duration_secs: z.number().nullable(),
  first_line: z.string().nullable(),
  error: z.string().nullable(),
});

const runViewSchema = z.looseObject({
  // A run id, as every later request about it needs (it is printed as the run's id).
  id: z.string().regex(RUN_ID_PATTERN, `must be ${RUN_ID_RULE}`),
  name: z.string(),
  status: z.enum(["running", "cancelling", "succeeded", "failed", "cancelled"]),
  max_concurrency: z.number(),
  max_errors: z.number().nullable(),
  totals: z.record(z.string(), z.number()),
  agents: z.array(agentViewSchema),
});

/** `GET /api/v1/runs`: the runs without their per-agent entries. */
const runListSchema = z.object({
  runs: z.array(runViewSchema.omit({ agents: true }).extend({ created_at: z.string() })),
});

/**
 * Checks the client and the run id of a run call before anything is sent (`..` as an id would
 * reach another route).
 *
 * @throws {TypeError} When `client` is not an {@link OperatorClient} or `id` not a run id.
 */
function checkCall(fn: string, client: unknown, id?: unknown): void {
  if (!(client instanceof OperatorClient)) {
    throw new TypeError(`${fn}'s client must be an OperatorClient, got ${shownValue(client)}`);
  }
  if (id !== undefined && (typeof id !== "string" || !RUN_ID_PATTERN.test(id))) {
    throw new TypeError(`run id must be ${RUN_ID_RULE}, got ${shownValue(id)}`);
  }
}

/** Checks that an options (or request) argument is an object. */
function checkObject(fn: string, name: string, value: unknown): void {
  if (value === null || typeof value !== "object") {
    throw new TypeError(`${fn}'s ${name} must be an object, got ${shownValue(value)}`);
  }
}

/** A run as the dashboard shows it, plus what its creation said. */
export type RunAnswer = RunView & {
  /** Agents that were offline when the run was created. */
  offline?: string[];
  /** Sentences about the run's creation (offline agents). */
  warnings?: string[];
  /** The id existed with the same body: nothing new was created. */
  duplicate?: boolean;
};

/** Reads a run answer; with `id`, the answer must be that run's, not another's. */
function parseRun(body: unknown, what: string, id?: string): RunAnswer {
  const parsed = runViewSchema.safeParse(body);
  if (!parsed.success) {
    throw new OperatorError(
      "invalid_answer",
      `the dashboard's answer to ${what} is not a run: ${relevantIssues(parsed.error)[0]?.message}`,
      { body },
    );
  }
  if (id !== undefined && parsed.data.id !== id) {
    throw new OperatorError(
      "invalid_answer",
      `the dashboard's answer to ${what} is run ${parsed.data.id}, not ${id}`,
      { body },
    );
  }
  return body as RunAnswer;
}

function errorText(error: OperatorError): string | undefined {
  const body = error.body as { error?: unknown } | undefined;
  return typeof body?.error === "string" ? body.error : undefined;
}

/** A 404 of a run route: the dashboard's sentence (no such run, no agent matched) as the error. */
function notFound(error: unknown, fallback: string): unknown {
  if (error instanceof OperatorError && error.kind === "not_found" && !isNoRoute(error)) {
    return new OperatorError("not_found", errorText(error) ?? fallback, {
      status: error.status,
      body: error.body,
      cause: error,
    });
  }
  return error;
}

/**
 * Creates a run: one command for a group of agents, chosen once by the target, started at most
 * `max_concurrency` at a time (`POST /api/v1/runs`, as `status run start` does).
 *
 * @example Run a command on two agents, then cancel it
 * ```ts
 * import assert from "node:assert/strict";
 * import { cancelRun, createRun, OperatorClient, startServer } from "../../mod.ts";
 *
 * await using server = await startServer({ db: ":memory:", port: 0 });
 * const client = new OperatorClient({ dashboardUrl: server.url });
 * await client.addAgent("web-1");
 * await client.addAgent("web-2");
 * const run = await createRun(client, {
 *   id: "uname-1",
 *   name: "uname -a",
 *   target: { agents: ["web-1", "web-2"] },
 *   max_concurrency: 1,
 * });
 * assert.equal(run.totals.total, 2);
 * assert.deepEqual(run.offline, ["web-1", "web-2"]); // none of them has connected yet
 * assert.equal((await cancelRun(client, "uname-1")).status, "cancelled");
 * ```
 *
 * @param client The dashboard.
 * @param request The run. Give it an `id` of your own: when the answer is lost, the same request
 *   sent again creates nothing twice.
 * @param signal Aborts the request.
 * @returns The run as created (or as it existed, for a repeated id with the same body).
 * @throws {OperatorError} `not_found` when the target matches no agent or names unknown agents
 *   (the dashboard's sentence), `conflict` for an id taken by another run, `request` for a body
 *   the dashboard refuses (its sentence names the field).
 * @throws {TypeError} When `client` is not an {@link OperatorClient} or `request` not an object
 *   (nothing is sent).
 */
export async function createRun(
  client: OperatorClient,
  request: RunRequest,
  signal?: AbortSignal,
): Promise<RunAnswer> {
  checkCall("createRun", client);
  checkObject("createRun", "request", request);
  try {
    const { body } = await client.call("POST", RUN_PATHS.runs, {
      body: request,
      signal,
      what: "run",
    });
    return parseRun(
      body,
      "POST /api/v1/runs",
      typeof request.id === "string" ? request.id : undefined,
    );
  } catch (error) {
    throw notFound(error, "no agent matches the target");
  }
}

/**
 * Reads a run: its status, totals and one entry per agent (`GET /api/v1/runs/{id}`).
 *
 * @example Read a run and tell whether it has ended
 * ```ts
 * import assert from "node:assert/strict";
 * import { createRun, getRun, OperatorClient, runEnded, startServer } from "../../mod.ts";
 *
 * await using server = await startServer({ db: ":memory:", port: 0 });
 * const client = new OperatorClient({ dashboardUrl: server.url });
 * await client.addAgent("web-1");
 * await createRun(client, { id: "r1", name: "uptime", target: { agents: ["web-1"] } });
 * const run = await getRun(client, "r1");
 * assert.equal(run.agents[0].agent_id, "web-1");
 * assert.equal(runEnded(run), false); // web-1 has not taken its command yet
 * ```
 *
 * @param client The dashboard.
 * @param id The run id.
 * @param signal Aborts the request.
 * @returns The run.
 * @throws {OperatorError} `not_found` when there is no such run.
 * @throws {TypeError} When `client` is not an {@link OperatorClient} or `id` not a run id
 *   (nothing is sent).
 */
export async function getRun(
  client: OperatorClient,
  id: string,
  signal?: AbortSignal,
): Promise<RunAnswer> {
  checkCall("getRun", client, id);
  try {
    const { body } = await client.call("GET", RUN_PATHS.run(id), { signal });
    return parseRun(body, `GET ${RUN_PATHS.run(id)}`, id);
  } catch (error) {
    throw notFound(error, `no run ${id}`);
  }
}

/** Options of {@link listRuns}. */
export interface ListRunsOptions {
  /** Only runs that have not ended. */
  open?: boolean;
  /**
   * At most this many, from 1 to 500.
   * @default {50}
   */
  limit?: number;
  /** Aborts the request. */
  signal?: AbortSignal;
}

/**
 * Lists runs, newest first, without their per-agent entries (`GET /api/v1/runs`).
 *
 * @example List the runs still going
 * ```ts
 * import assert from "node:assert/strict";
 * import { createRun, listRuns, OperatorClient, startServer } from "../../mod.ts";
 *
 * await using server = await startServer({ db: ":memory:", port: 0 });
 * const client = new OperatorClient({ dashboardUrl: server.url });
 * await client.addAgent("web-1");
 * await createRun(client, { id: "r1", name: "uptime", target: { agents: ["web-1"] } });
 * const open = await listRuns(client, { open: true });
 * assert.deepEqual(open.map((run) => [run.id, run.status]), [["r1", "running"]]);
 * ```
 *
 * @param client The dashboard.
 * @param options Only open runs; at most `limit`; an abort signal.
 * @returns The runs.
 * @throws {OperatorError} `request` for a `limit` the dashboard refuses.
 * @throws {TypeError} When `client` is not an {@link OperatorClient} or `options` not an object
 *   (nothing is sent).
 */
export async function listRuns(
  client: OperatorClient,
  options: ListRunsOptions = {},
): Promise<Array<Omit<RunView, "agents">>> {
  checkCall("listRuns", client);
  checkObject("listRuns", "options", options);
  checkOptionNames("listRuns", options, { open: true, limit: true, signal: true });
  checkSignal("signal", options.signal);
  const query = new URLSearchParams();
  if (options.open) query.set("open", "1");
  if (options.limit !== undefined) query.set("limit", String(options.limit));
  const suffix = query.size > 0 ? `?${query}` : "";
  const { body } = await client.call("GET", RUN_PATHS.runs + suffix, { signal: options.signal });
  const parsed = runListSchema.safeParse(body);
  if (!parsed.success) {
    const issue = relevantIssues(parsed.error)[0];
    const where = issue?.path.length ? ` at "${issue.path.join(".")}"` : "";
    throw new OperatorError(
      "invalid_answer",
      `the dashboard's run list is not {"runs": [...]}${where}: ${issue?.message}`,
      { body },
    );
  }
  return (body as { runs: Array<Omit<RunView, "agents">> }).runs;
}

/**
 * Cancels a run: nothing more starts, queued commands are cancelled, running ones stopped
 * (`POST /api/v1/runs/{id}/cancel`).
 *
 * @example Cancel a run, then again
 * ```ts
 * import assert from "node:assert/strict";
 * import { cancelRun, createRun, OperatorClient, OperatorError, startServer } from "../../mod.ts";
 *
 * await using server = await startServer({ db: ":memory:", port: 0 });
 * const client = new OperatorClient({ dashboardUrl: server.url });
 * await client.addAgent("web-1");
 * await createRun(client, { id: "r1", name: "uptime", target: { agents: ["web-1"] } });
 * assert.equal((await cancelRun(client, "r1")).status, "cancelled");
 * const again = await cancelRun(client, "r1").catch((e) => e);
 * assert.ok(again instanceof OperatorError && again.kind === "conflict"); // it had ended
 * ```
 *
 * @param client The dashboard.
 * @param id The run id.
 * @param signal Aborts the request.
 * @returns The run after the cancel.
 * @throws {OperatorError} `not_found`, or `conflict` when the run had ended.
 * @throws {TypeError} When `client` is not an {@link OperatorClient} or `id` not a run id
 *   (nothing is sent).
 */
export async function cancelRun(
  client: OperatorClient,
  id: string,
  signal?: AbortSignal,
): Promise<RunAnswer> {
  checkCall("cancelRun", client, id);
  try {
    const { body } = await client.call("POST", RUN_PATHS.cancel(id), { signal, what: "cancel" });
    return parseRun((body as { run?: unknown }).run, `POST ${RUN_PATHS.cancel(id)}`, id);
  } catch (error) {
    // The dashboard's sentence says it had ended, and how.
    const ended = error instanceof OperatorError && error.kind === "conflict" ? error : null;
    const sentence = ended && errorText(ended);
    if (ended && sentence) {
      throw new OperatorError("conflict", sentence, {
        status: ended.status,
        body: ended.body,
        cause: ended,
      });
    }
    throw notFound(error, `no run ${id}`);
  }
}

/**
 * Whether a run has ended: `succeeded`, `failed` or `cancelled`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runEnded } from "../../mod.ts";
 *
 * assert.equal(runEnded({ status: "cancelling" }), false);
 * assert.equal(runEnded({ status: "failed" }), true);
 * ```
 *
 * @param run The run, or its status.
 * @returns Whether its status is final.
 */
export function runEnded(run: Pick<RunView, "status">): boolean {
  return run.status === "succeeded" || run.status === "failed" || run.status === "cancelled";
}

/** Options of {@link waitForRun}. */
export interface WaitForRunOptions {
  /** Stops waiting (the run goes on); the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Called with every new state of the run. */
  onProgress?: (run: RunAnswer) => void;
  /**
   * Between two reads, in ms (longer after a slow read).
   * @default {500}
   */
  intervalMs?: number;
  /**
   * How long the dashboard may be unreachable or failing (a restart) before giving up, in ms.
   * @default {60000}
   */
  maxOutageMs?: number;
  /**
   * @internal The monotonic clock and the sleep between reads; for tests.
   * @default {performance.now and a real sleep}
   */
  clock?: { now(): number; sleep(ms: number, signal?: AbortSignal): Promise<void> };
}

/**
 * A read of the run took this long: the next one comes this many times as long after it (at
 * least `intervalMs`): a run of 10,000 agents is megabytes the dashboard reads and writes, and a
 * follower reading it again every half second kept it busy most of the time.
 */
export const RUN_READ_PAUSE_FACTOR = 4;
/** Longest pause between two reads of a run that {@link RUN_READ_PAUSE_FACTOR} makes, in ms. */
export const MAX_RUN_READ_PAUSE_MS = 10_000;

/**
 * Reads the run until it has ended, riding out a dashboard restart. Between two reads it waits
 * `intervalMs`, or four times as long as the last read took when that is longer (at most 10 s).
 *
 * @example An agent with a token of its own runs a command the run gives it
 * ```ts
 * import assert from "node:assert/strict";
 * import { createRun, OperatorClient, runAgent, startServer, waitForRun } from "../../mod.ts";
 *
 * await using server = await startServer({ db: ":memory:", port: 0 });
 * const client = new OperatorClient({ dashboardUrl: server.url });
 * const { token } = await client.addAgent("web-1");
 * const stop = new AbortController();
 * const agent = runAgent(
 *   { dashboardUrl: server.url, agentId: "web-1", agentToken: token, heartbeat: false },
 *   stop.signal,
 * );
 * await createRun(client, { id: "hello", name: "echo hello", target: { agents: ["web-1"] } });
 * const run = await waitForRun(client, "hello", { intervalMs: 100 });
 * stop.abort();
 * await agent;
 * assert.equal(run.status, "succeeded");
 * assert.equal(run.agents[0].first_line, "hello");
 * ```
 *
 * @param client The dashboard.
 * @param id The run id.
 * @param options Progress, interval, outage budget and abort.
 * @returns The ended run.
 * @throws {OperatorError} `not_found` when there is no such run; the last transient error when
 *   the dashboard stays unreachable or failing longer than `maxOutageMs`.
 * @throws {TypeError} When `client` is not an {@link OperatorClient}, `id` not a run id or
 *   `options` not an object (nothing is sent).
 * @throws {RangeError} When `intervalMs` is not a number of milliseconds from 1 to 2147483647, or
 *   `maxOutageMs` not one from 0 (nothing is sent).
 */
export async function waitForRun(
  client: OperatorClient,
  id: string,
  options: WaitForRunOptions = {},
): Promise<RunAnswer> {
  checkCall("waitForRun", client, id);
  checkObject("waitForRun", "options", options);
  checkOptionNames("waitForRun", options, {
    signal: true,
    onProgress: true,
    intervalMs: true,
    maxOutageMs: true,
    clock: true,
  });
  checkSignal("signal", options.signal);
  const interval = checkMs("intervalMs", options.intervalMs ?? 500, 1);
  const maxOutage = checkMs("maxOutageMs", options.maxOutageMs ?? 60_000, 0);
  // On the monotonic clock: a wall clock stepped forward is no outage.
  const clock = options.clock ?? { now: () => performance.now(), sleep: sleepOrThrow };
  let last = "";
  let outageSince: number | null = null;
  while (true) {
    options.signal?.throwIfAborted();
    let run: RunAnswer | null = null;
    const began = clock.now();
    let pause = interval;
    try {
      run = await getRun(client, id, options.signal);
      outageSince = null;
      pause = Math.max(
        interval,
        Math.min(MAX_RUN_READ_PAUSE_MS, RUN_READ_PAUSE_FACTOR * (clock.now() - began)),
      );
    } catch (error) {
      const transient = error instanceof OperatorError &&
        (error.kind === "connection" || error.kind === "timeout" || error.kind === "server");
      if (!transient) throw error;
      outageSince ??= clock.now();
      if (clock.now() - outageSince > maxOutage) throw error;
    }
    if (run) {
      const text = JSON.stringify(run);
      if (text !== last) {
        last = text;
        options.onProgress?.(run);
      }
      if (runEnded(run)) return run;
    }
    await clock.sleep(pause, options.signal);
    options.signal?.throwIfAborted();
  }
}

/**
 * The run's aggregate as a table: agent, status, exit code, duration, first line of output.
 *
 * @param run The run.
 * @param outputWidth Largest width of the output column.
 * @returns The lines, a header first.
 */
export function formatRunTable(run: RunView, outputWidth = 60): string[] {
  const header = ["AGENT", "STATUS", "EXIT", "DURATION", "OUTPUT"];
  const rows = run.agents.map((a) => [
    a.agent_id,
    a.offline_at_creation && a.state !== "success" ? `${a.state} (offline)` : a.state,
    a.exit_code === null ? "" : String(a.exit_code),
    a.duration_secs === null ? "" : `${a.duration_secs.toFixed(1)} s`,
    cell((a.first_line ?? a.error ?? "").replace(/\s+/g, " "), outputWidth),
  ]);
  return alignColumns(header, rows);
}

/**
 * One line of totals: `run r1 failed: 18 success, 2 failed, 5 skipped (of 25)`.
 *
 * @param run The run.
 */
export function formatRunSummary(run: Pick<RunView, "id" | "status" | "totals">): string {
  const skip = new Set(["total", "failed_total", "active"]);
  const parts = Object.entries(run.totals).filter(([key, n]) => !skip.has(key) && n > 0)
    .sort(([a], [b]) => a.localeCompare(b)).map(([key, n]) => `${n} ${key}`);
  // The totals' names are the dashboard's words: shown, not obeyed.
  return visibleText(
    `run ${run.id} ${run.status}: ${parts.join(", ") || "no agents"} (of ${run.totals.total ?? 0})`,
  );
}
