/**
 * An HTTP client for the dashboard's operator endpoints (docs/protocol.md §2 enqueue, §3, §13):
 * enqueue a command, read it, list and cancel commands, wait until a command is final, and add,
 * rotate and remove agents.
 *
 * @module
 */
import { sleepOrThrow, timeoutSignal } from "../clock.ts";
import { checkNoNulls, checkOptionNames, checkSignal } from "../options.ts";
import { ExponentialBackoff, handleWhen, retry } from "cockatiel";
import { z } from "zod";
import {
  AGENT_ID_PATTERN,
  AGENT_ID_RULE,
  AGENT_SCOPES,
  type AgentScope,
  ANY_COMMAND_ID_PATTERN,
  ANY_COMMAND_ID_RULE,
  type CommandParams,
  dashboardUrlProblem,
  HEADER,
  LIVE_PATHS,
  PATHS,
  relevantIssues,
  shownValue,
} from "../protocol/mod.ts";
import {
  type AddedAgent,
  type AgentRecord,
  agentRecordSchema,
  type AgentToken,
  type CommandRecord,
  commandRecordSchema,
  type EnqueueAnswer,
  enqueueAnswerSchema,
  isFinalStatus,
  type RemovedAgent,
} from "./types.ts";
import { describeFetchFailure } from "../fetch_failure.ts";
import { idWord } from "./format.ts";
import { redactUrl } from "../log/redact.ts";
import { readBodyBounded } from "../read_bounded.ts";

/** What went wrong in an operator request; the CLI words its message after it. */
export type OperatorErrorKind =
  /** The dashboard could not be reached (connection refused, DNS, TLS, reset). */
  | "connection"
  /** The dashboard did not answer in time. */
  | "timeout"
  /** `401`/`403`: the admin token is missing or wrong. */
  | "auth"
  /** `404`: no such command (or no such endpoint). */
  | "not_found"
  /** `409`: the same id with another body, or a cancel of a final command. */
  | "conflict"
  /** `5xx`. */
  | "server"
  /** `429` still after the retries: the dashboard's rate limit. */
  | "rate_limited"
  /** Another `4xx`, e.g. `400` naming a bad field, or a `3xx` (the client follows no redirect). */
  | "request"
  /** A `2xx` whose body is not what the protocol says. */
  | "invalid_answer";

/**
 * Largest answer the operator client reads by default, in bytes (a list of 1,000 commands with
 * their results is far below it); the rest of a larger one is not read, so a broken or hostile
 * dashboard or proxy cannot fill the operator's memory.
 */
const MAX_ANSWER_BYTES = 256 * 1024 * 1024;

/** Bytes of an error answer read for its message. */
const ERROR_ANSWER_BYTES = 64 * 1024;

/**
 * A failed operator request. The CLI exits with {@link OperatorError.exitCode} (1).
 *
 * @example Tell an unknown command from other failures
 * ```ts
 * import assert from "node:assert/strict";
 * import { OperatorClient, OperatorError, startServer } from "../../mod.ts";
 *
 * await using server = await startServer({ db: ":memory:", port: 0 });
 * const client = new OperatorClient({ dashboardUrl: server.url });
 * const error = await client.getCommand("no-such-command").catch((e) => e);
 * assert.ok(error instanceof OperatorError);
 * assert.equal(error.kind, "not_found");
 * assert.equal(error.status, 404);
 * ```
 */
export class OperatorError extends Error {
  /** Exit code the CLI uses for this error. */
  readonly exitCode = 1;
  /** What kind of failure this is. */
  readonly kind: OperatorErrorKind;
  /** The HTTP status, when the dashboard answered. */
  readonly status?: number;
  /** The parsed JSON body of the answer, when there was one. */
  readonly body?: unknown;
  /** A `429`'s `Retry-After`, in seconds. */
  retryAfterSecs?: number;

  /**
   * Makes an operator error.
   *
   * @param kind What kind of failure this is.
   * @param message One sentence, naming the dashboard URL or the command id.
   * @param options The HTTP status and body, and the cause.
   */
  constructor(
    kind: OperatorErrorKind,
    message: string,
    options: ErrorOptions & { status?: number; body?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = "OperatorError";
    this.kind = kind;
    this.status = options.status;
    this.body = options.body;
  }
}

/** Options of {@link OperatorClient}. */
export interface OperatorClientOptions {
  /** Base URL of the dashboard, e.g. `http://localhost:5000` (a path prefix is kept). */
  dashboardUrl: string | URL;
  /**
   * The dashboard's admin token (`STATUS_ADMIN_TOKEN`), sent as `Authorization: Bearer`.
   * Without one the client talks to a dev-mode dashboard, which needs none.
   */
  adminToken?: string;
  /**
   * How long one request may take, in milliseconds.
   * @default {15000}
   */
  requestTimeoutMs?: number;
  /**
   * @internal The `fetch` to use; for tests.
   * @default {globalThis.fetch}
   */
  fetch?: typeof fetch;
  /**
   * How often a request answered `429` is sent again after its `Retry-After`.
   * @default {3}
   */
  maxRateLimitRetries?: number;
  /**
   * @internal The largest answer read, in bytes; for tests.
   * @default {268435456}
   */
  maxAnswerBytes?: number;
  /**
   * @internal Sleeps for a `Retry-After`; for tests.
   * @default {a timer}
   */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /**
   * @internal Why no admin token was given, said when a request without one is refused (the CLI:
   * `STATUS_ADMIN_TOKEN` may be set where Deno was not allowed to read it).
   * @default {"no admin token is set and the dashboard is not in dev mode; ..."}
   */
  noAdminTokenReason?: string;
}

/** The longest `Retry-After` the client waits before sending a request again, in seconds. */
export const MAX_RETRY_AFTER_SECS = 60;

/** What to enqueue, for {@link OperatorClient.enqueue}. */
export interface EnqueueOptions {
  /** The agent that should run the command. */
  agentId: string;
  /** The command line, e.g. `echo hi`. */
  name: string;
  /** The command id; the dashboard generates one when absent. Re-sending the same id is safe. */
  id?: string;
  /** `timeout_secs`, `priority`, `deployment_hash`, `metadata`. */
  params?: CommandParams;
  /** Aborts the request. */
  signal?: AbortSignal;
}

/** Filters of {@link OperatorClient.listCommands}. */
export interface ListOptions {
  /** Only commands of this agent. */
  agentId?: string;
  /** Only commands in this status. */
  status?: string;
  /** At most this many (the dashboard's default when absent). */
  limit?: number;
  /** Only commands older than this cursor: the `nextBefore` of an earlier page. */
  before?: string;
  /** Aborts the request. */
  signal?: AbortSignal;
}

/** One page of {@link OperatorClient.listCommandsPage}. */
export interface CommandPage {
  /** The commands, newest first. */
  commands: CommandRecord[];
  /** The cursor of the next (older) page, or `null` when no older command matches. */
  nextBefore: string | null;
}

/** The outcome of {@link OperatorClient.cancel}. */
export interface CancelAnswer {
  /**
   * `cancelled`: the command was still queued and is now `cancelled` (200);
   * `requested`: it was delivered, and the agent is asked to stop it (202).
   */
  outcome: "cancelled" | "requested";
  /** The dashboard's JSON answer. */
  body: unknown;
}

/** Options of {@link OperatorClient.addAgent}. */
export interface AddAgentOptions {
  /**
   * What the agent may do (docs/protocol.md §1): `commands:wait` (receive commands and their
   * cancels), `commands:report` (report results), `commands:enqueue` (enqueue for itself).
   * @default {every scope}
   */
  scopes?: readonly AgentScope[];
  /** Aborts the request. */
  signal?: AbortSignal;
}

/** Options of {@link OperatorClient.waitForFinal}. */
export interface WaitForFinalOptions {
  /** Stops waiting; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Called with the command whenever its status or attempt changes (and once at the start),
   * with the milliseconds since waiting began.
   */
  onProgress?: (record: CommandRecord, elapsedMs: number) => void;
  /**
   * First interval between two polls, in milliseconds; it grows by half each poll without a
   * change and starts again after a change.
   * @default {200}
   */
  initialIntervalMs?: number;
  /**
   * Largest interval between two polls, in milliseconds.
   * @default {1000}
   */
  maxIntervalMs?: number;
  /**
   * How long the dashboard may be unreachable or failing (connection errors, timeouts, 5xx, its
   * rate limit) before waiting gives up, in milliseconds; a dashboard restart is ridden out.
   * @default {60000}
   */
  maxOutageMs?: number;
}

/** The longest a timer waits: a longer (or non-finite) delay fires after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Checks a duration option in milliseconds: a timer given `NaN`, `Infinity` or more than
 * {@link MAX_TIMER_MS} fires after 1 ms, which turned a wait into a loop of requests.
 *
 * @param name The option's name.
 * @param value Its value.
 * @param min The smallest allowed.
 * @returns The value.
 * @throws {RangeError} When it is not a number from `min` to {@link MAX_TIMER_MS}.
 */
export function checkMs(name: string, value: number, min: number): number {
  if (typeof value !== "number" || !(value >= min && value <= MAX_TIMER_MS)) {
    throw new RangeError(
      `${name} must be a number of milliseconds from ${min} to ${MAX_TIMER_MS}, got ${value}`,
    );
  }
  return value;
}

/** Options of one request. */
interface RequestOptions {
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** The command the request is about (a 404 says "no command <id>"). */
  commandId?: string;
  /** The agent the request is about (a 404 naming it is passed on as it is). */
  agentId?: string;
  /** What the request does, for messages: "enqueue for agent web-1". */
  what?: string;
}

const TRANSIENT: ReadonlySet<OperatorErrorKind> = new Set([
  "connection",
  "timeout",
  "server",
  "rate_limited",
]);

function isTransient(error: unknown): boolean {
  return error instanceof OperatorError && TRANSIENT.has(error.kind);
}

function errorSentence(body: unknown): string | undefined {
  if (body && typeof body === "object" && "error" in body) {
    const error = (body as { error?: unknown }).error;
    if (typeof error === "string" && error.length > 0) return error;
  }
  return undefined;
}

function arrayIn(body: unknown, key: string): unknown {
  if (Array.isArray(body)) return body;
  if (body && typeof body === "object") {
    const record = body as Record<string, unknown>;
    for (const candidate of [key, "items", "data"]) {
      if (Array.isArray(record[candidate])) return record[candidate];
    }
  }
  return body;
}

/** A token an agent would take as its `AGENT_TOKEN` (the configuration's rule). */
const USABLE_TOKEN = /^[\x21-\x7e]{16,1024}$/;

/**
 * Checks an agent id before it goes into a path: `..` would be another route, `a/b` none.
 *
 * @throws {TypeError} When it is not an agent id.
 */
function checkAgentId(id: unknown): string {
  if (typeof id !== "string" || !AGENT_ID_PATTERN.test(id)) {
    throw new TypeError(`agent id must be ${AGENT_ID_RULE}, got ${shownValue(id)}`);
  }
  return id;
}

/**
 * Checks a command id before it goes into a path: `..` would be another route (`cancel(".")`
 * would post to `/api/v1/commands/cancel`), `a/b` none.
 *
 * @throws {TypeError} When no command can have this id.
 */
function checkCommandId(id: unknown): string {
  if (typeof id !== "string" || !ANY_COMMAND_ID_PATTERN.test(id)) {
    throw new TypeError(`command id must be ${ANY_COMMAND_ID_RULE}, got ${shownValue(id)}`);
  }
  return id;
}

/** Checks the scopes of {@link AddAgentOptions}. */
function checkScopes(scopes: unknown): AgentScope[] | undefined {
  if (scopes === undefined) return undefined;
  if (
    !Array.isArray(scopes) || scopes.length === 0 ||
    !scopes.every((scope) => (AGENT_SCOPES as readonly unknown[]).includes(scope))
  ) {
    throw new TypeError(
      `scopes must be a non-empty array of ${AGENT_SCOPES.join(", ")}, got ${shownValue(scopes)}`,
    );
  }
  return [...scopes];
}

/**
 * Whether a `404` is about the path rather than what it names: the dashboard's own "no route for
 * ..." (a `DASHBOARD_URL` with a wrong path prefix), or an answer without the dashboard's
 * `{"error": ...}` (a proxy's or another server's page). Such a `404` says nothing about whether
 * the command, agent or run exists.
 *
 * @param error What a request threw.
 * @returns `true` for a `404` of a path the dashboard has no route for.
 */
export function isNoRoute(error: unknown): boolean {
  return error instanceof OperatorError && error.status === 404 && noRouteAnswer(error.body);
}

/** Whether a `404`'s body is not the dashboard's word about what the path names. */
function noRouteAnswer(body: unknown): boolean {
  const said = errorSentence(body);
  return said === undefined || said.startsWith("no route for ");
}

/** A 404 of an agent route, as `status agents --db` words it (`advice`: what to do then). */
function noAgent(error: unknown, id: string, advice = ""): unknown {
  if (error instanceof OperatorError && error.kind === "not_found" && !isNoRoute(error)) {
    return new OperatorError("not_found", `agent ${id} does not exist${advice}`, {
      status: error.status,
      body: error.body,
      cause: error,
    });
  }
  return error;
}

/**
 * A client of the dashboard's operator endpoints. Every method throws {@link OperatorError} with
 * a sentence fit for a user when the request fails.
 *
 * @example Enqueue a command and read it back
 * ```ts
 * import assert from "node:assert/strict";
 * import { OperatorClient, startServer } from "../../mod.ts";
 *
 * await using server = await startServer({ db: ":memory:", port: 0 });
 * const client = new OperatorClient({ dashboardUrl: server.url });
 * const { id } = await client.enqueue({ agentId: "test-agent", name: "echo hi" });
 * const command = await client.getCommand(id);
 * assert.equal(command.status, "queued");
 * assert.equal((await client.cancel(id)).outcome, "cancelled");
 * ```
 */
export class OperatorClient {
  /** The dashboard's base URL, without a trailing slash. */
  readonly dashboardUrl: string;
  /** The base URL as messages show it (no password). */
  readonly #shownUrl: string;
  readonly #adminToken?: string;
  readonly #noAdminTokenReason?: string;
  readonly #timeoutMs: number;
  readonly #maxAnswerBytes: number;
  readonly #fetch: typeof fetch;
  readonly #maxRateLimitRetries: number;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;

  /**
   * Makes a client; no request is sent until a method is called.
   *
   * @param options Where the dashboard is and how to authenticate.
   * @throws {TypeError} When `options` is not an object or has a key that is not one of its
   *   options or is `null`, `adminToken` is not a string, the URL is not an http(s) URL, holds a
   *   control character or a space inside, or a user name or password beside an admin token, the
   *   timeout is not a finite number above 0, or `maxRateLimitRetries` is not a whole number of at
   *   least 0.
   */
  constructor(options: OperatorClientOptions) {
    if (options === null || typeof options !== "object") {
      throw new TypeError(
        `OperatorClient's options must be an object with a dashboardUrl, got ${String(options)}`,
      );
    }
    checkOptionNames("OperatorClient", options, {
      dashboardUrl: true,
      adminToken: true,
      requestTimeoutMs: true,
      fetch: true,
      maxRateLimitRetries: true,
      maxAnswerBytes: true,
      sleep: true,
      noAdminTokenReason: true,
    });
    checkNoNulls(options);
    if (options.adminToken !== undefined && typeof options.adminToken !== "string") {
      // Never quoted: a secret. 42 was sent as "Bearer 42".
      throw new TypeError(`adminToken must be a string, got ${typeof options.adminToken}`);
    }
    let url: URL;
    try {
      url = new URL(options.dashboardUrl);
    } catch {
      throw new TypeError(
        `dashboard URL must be an http:// or https:// URL, got ${
          JSON.stringify(redactUrl(String(options.dashboardUrl)))
        }`,
      );
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new TypeError(
        `dashboard URL must be an http:// or https:// URL, got ${
          JSON.stringify(redactUrl(url.href))
        }`,
      );
    }
    const given = options.dashboardUrl;
    const odd = typeof given === "string" ? dashboardUrlProblem(given) : null;
    if (odd !== null) {
      throw new TypeError(
        `dashboard URL ${JSON.stringify(redactUrl(String(given).trim()))} cannot be taken: ${odd}`,
      );
    }
    if (options.adminToken && (url.username || url.password)) {
      throw new TypeError(
        "dashboard URL must not hold a user name or password beside an admin token: they would " +
          "be sent in the Authorization header the token needs, and every request refused; " +
          `leave them out, got ${JSON.stringify(redactUrl(url.href))}`,
      );
    }
    const timeoutMs = options.requestTimeoutMs ?? 15_000;
    if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs)) {
      throw new TypeError(`requestTimeoutMs must be a finite number above 0, got ${timeoutMs}`);
    }
    const retries = options.maxRateLimitRetries ?? 3;
    if (!Number.isInteger(retries) || retries < 0) {
      throw new TypeError(
        `maxRateLimitRetries must be a whole number of at least 0, got ${retries}`,
      );
    }
    url.search = "";
    url.hash = "";
    this.dashboardUrl = url.href.replace(/\/+$/, "");
    this.#shownUrl = redactUrl(this.dashboardUrl);
    this.#adminToken = options.adminToken || undefined;
    this.#noAdminTokenReason = options.noAdminTokenReason;
    this.#timeoutMs = timeoutMs;
    this.#maxAnswerBytes = options.maxAnswerBytes ?? MAX_ANSWER_BYTES;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.#maxRateLimitRetries = retries;
    this.#sleep = options.sleep ?? sleepOrThrow;
  }

  /** Whether requests carry an admin token. */
  get hasAdminToken(): boolean {
    return this.#adminToken !== undefined;
  }

  /**
   * Enqueues a command for an agent (`POST /api/v1/agent/commands/enqueue`). With an admin token
   * the agent goes in the body as `agent_id`; without one (a dev-mode dashboard) it goes in the
   * `X-Agent-Id` header, like the seed's `curl` example.
   *
   * @param options The agent, the command line, an optional id and params.
   * @returns `{ queued, id, duplicate? }`; `duplicate` when the same id and body were queued before.
   * @throws {OperatorError} `conflict` when the id exists with another body; `invalid_answer` when
   *   the answer names another command than the `id` given; `auth`, `connection`, ...
   * @throws {TypeError} When `options` is not an object, or `agentId` is not an agent id (nothing
   *   is sent): in the `X-Agent-Id` header it was refused as if the admin token were missing, or
   *   could not be sent at all.
   */
  async enqueue(options: EnqueueOptions): Promise<EnqueueAnswer> {
    if (options === null || typeof options !== "object") {
      throw new TypeError(`enqueue's options must be an object, got ${shownValue(options)}`);
    }
    checkOptionNames("enqueue", options, {
      agentId: true,
      name: true,
      id: true,
      params: true,
      signal: true,
    });
    checkSignal("signal", options.signal);
    const { agentId } = options;
    if (typeof agentId !== "string" || !AGENT_ID_PATTERN.test(agentId)) {
      throw new TypeError(`agentId must be ${AGENT_ID_RULE}, got ${JSON.stringify(agentId)}`);
    }
    const body: Record<string, unknown> = { name: options.name };
    if (options.id !== undefined) body.id = options.id;
    body.params = options.params ?? {};
    const headers: Record<string, string> = {};
    if (this.#adminToken) body.agent_id = options.agentId;
    else headers[HEADER.agentId] = options.agentId;
    // Keep the seed's field order: id, name, params (agent_id last).
    const ordered: Record<string, unknown> = {};
    for (const key of ["id", "name", "params", "agent_id"]) {
      if (key in body) ordered[key] = body[key];
    }
    const answer = await this.#request("POST", PATHS.enqueue, {
      body: ordered,
      headers,
      signal: options.signal,
      what: `enqueue for agent ${options.agentId}`,
      agentId: options.agentId,
    });
    const queued = this.#parse(enqueueAnswerSchema, answer.body, "enqueue");
    if (queued.queued === false) {
      // A 2xx that says it queued nothing (a proxy's or another program's answer): not queued as
      // far as anyone can tell, and not "queued" either.
      const said = errorSentence(answer.body);
      throw new OperatorError(
        "invalid_answer",
        `the dashboard at ${this.#shownUrl} answered the enqueue with "queued": false${
          said === undefined ? "" : ` (${said.slice(0, 200)})`
        }; is ${this.#shownUrl} a status dashboard?`,
        { status: answer.status, body: answer.body },
      );
    }
    // An answer about another command (a proxy's cache, a broken dashboard) is no answer to this
    // enqueue: following it would report that command's result as this one's.
    if (options.id !== undefined && queued.id !== options.id) {
      throw this.#otherRecord(`the enqueue of ${options.id}`, `command ${queued.id}`, answer.body);
    }
    return queued;
  }

  /**
   * Reads one command (`GET /api/v1/commands/{id}`).
   *
   * @param id The command id.
   * @param signal Aborts the request.
   * @returns The command with its status and, when final, its result.
   * @throws {OperatorError} `not_found` as "no command <id>"; `invalid_answer` when the answer is
   *   not a command, or is another command.
   * @throws {TypeError} When `id` is not a command id (nothing is sent).
   */
  async getCommand(id: string, signal?: AbortSignal): Promise<CommandRecord> {
    checkCommandId(id);
    const answer = await this.#request("GET", PATHS.command(id), { signal, commandId: id });
    const body = answer.body && typeof answer.body === "object" && "command" in answer.body &&
        !("id" in answer.body)
      ? (answer.body as { command: unknown }).command
      : answer.body;
    const record = this.#parse(commandRecordSchema, body, `command ${id}`);
    if (record.id !== id) {
      throw this.#otherRecord(`the request for command ${id}`, `command ${record.id}`, body);
    }
    return record;
  }

  /**
   * Lists commands, newest first (`GET /api/v1/commands?agent_id=&status=&limit=`).
   *
   * @param options Filters.
   * @returns The commands.
   */
  async listCommands(options: ListOptions = {}): Promise<CommandRecord[]> {
    return (await this.listCommandsPage(options)).commands;
  }

  /**
   * Lists commands, newest first, with the cursor of the next (older) page.
   *
   * @param options Filters, the page's size and the cursor it starts after.
   * @returns The page.
   * @throws {OperatorError} As {@link OperatorClient.listCommands}.
   */
  async listCommandsPage(options: ListOptions = {}): Promise<CommandPage> {
    if (options === null || typeof options !== "object") {
      throw new TypeError(`listCommands' options must be an object, got ${shownValue(options)}`);
    }
    checkOptionNames("listCommands", options, {
      agentId: true,
      status: true,
      limit: true,
      before: true,
      signal: true,
    });
    checkSignal("signal", options.signal);
    const query = new URLSearchParams();
    if (options.agentId) query.set("agent_id", options.agentId);
    if (options.status) query.set("status", options.status);
    if (options.limit !== undefined) query.set("limit", String(options.limit));
    if (options.before !== undefined) query.set("before", options.before);
    const qs = query.toString();
    const answer = await this.#request("GET", PATHS.commands + (qs ? `?${qs}` : ""), {
      signal: options.signal,
    });
    const commands = this.#parse(
      z.array(commandRecordSchema),
      arrayIn(answer.body, "commands"),
      "list",
    );
    const next = (answer.body as { next_before?: unknown } | null)?.next_before;
    return {
      commands,
      nextBefore: typeof next === "string" && /^\d{1,20}$/.test(next) ? next : null,
    };
  }

  /**
   * Cancels a command (`POST /api/v1/commands/{id}/cancel`).
   *
   * @param id The command id.
   * @param signal Aborts the request.
   * @returns `cancelled` when it was still queued, `requested` when it was delivered.
   * @throws {OperatorError} `conflict` when it is already final; `not_found` when unknown.
   * @throws {TypeError} When `id` is not a command id (nothing is sent).
   */
  async cancel(id: string, signal?: AbortSignal): Promise<CancelAnswer> {
    checkCommandId(id);
    const answer = await this.#request("POST", PATHS.cancel(id), {
      body: {},
      signal,
      commandId: id,
    });
    return { outcome: answer.status === 202 ? "requested" : "cancelled", body: answer.body };
  }

  /**
   * Lists the agents the dashboard knows (`GET /api/v1/agents`).
   *
   * @param signal Aborts the request.
   * @returns Id, last seen time, whether it is waiting now, and its queued count.
   */
  async listAgents(signal?: AbortSignal): Promise<AgentRecord[]> {
    const answer = await this.#request("GET", PATHS.agents, { signal });
    return this.#parse(z.array(agentRecordSchema), arrayIn(answer.body, "agents"), "agents");
  }

  /**
   * Registers an agent with a new token (`POST /api/v1/agents`), as `status agents add` does.
   * The token is shown this once: the dashboard keeps no way to show it again.
   *
   * @param id The agent id (its `AGENT_ID`).
   * @param options Its scopes (every scope when absent) and an abort signal.
   * @returns The agent id, its token (the agent's `AGENT_TOKEN`) and its scopes.
   * @throws {TypeError} When `id` is not an agent id, `options` not an object, or `scopes` not a
   *   non-empty array of scopes (nothing is sent).
   * @throws {OperatorError} `conflict` when the agent exists (give it a new token with
   *   {@link OperatorClient.rotateAgentToken}); `auth` without the admin token the dashboard
   *   needs; `invalid_answer` when the answer holds no token an agent could use (the agent may
   *   have been added).
   *
   * @example Add an agent that waits for commands and reports, but cannot enqueue
   * ```ts
   * import assert from "node:assert/strict";
   * import { OperatorClient, startServer } from "../../mod.ts";
   *
   * await using server = await startServer({ db: ":memory:", port: 0 });
   * const client = new OperatorClient({ dashboardUrl: server.url });
   * const added = await client.addAgent("web-1", { scopes: ["commands:wait", "commands:report"] });
   * assert.equal(added.token.length, 43); // its AGENT_TOKEN
   * assert.deepEqual(added.scopes, ["commands:wait", "commands:report"]);
   * ```
   */
  async addAgent(id: string, options: AddAgentOptions = {}): Promise<AddedAgent> {
    checkAgentId(id);
    if (options === null || typeof options !== "object") {
      throw new TypeError(`addAgent's options must be an object, got ${shownValue(options)}`);
    }
    checkOptionNames("addAgent", options, { scopes: true, signal: true });
    checkSignal("signal", options.signal);
    const scopes = checkScopes(options.scopes);
    let body: unknown;
    try {
      ({ body } = await this.#request("POST", PATHS.agents, {
        body: scopes ? { id, scopes } : { id },
        signal: options.signal,
        what: "agent add",
      }));
    } catch (error) {
      if (error instanceof OperatorError && error.kind === "conflict") {
        throw new OperatorError(
          "conflict",
          `agent ${id} already exists; print a new token with "status agents rotate ${idWord(id)}"`,
          { status: error.status, body: error.body, cause: error },
        );
      }
      throw error;
    }
    const mayBeAdded =
      `the agent may have been added: print a new token with "status agents rotate ${idWord(id)}"`;
    this.#sameAgent(id, `the agent add of ${id}`, body, mayBeAdded);
    const token = this.#tokenIn("agent add", body, mayBeAdded);
    const granted = (body as { scopes?: unknown }).scopes;
    const added: AddedAgent = { id, token };
    if (Array.isArray(granted) && granted.every((s) => typeof s === "string")) {
      added.scopes = granted;
    }
    return added;
  }

  /**
   * Gives an agent a new token (`POST /api/v1/agents/{id}/rotate`), as `status agents rotate`
   * does: the old one is refused from then on, and the waits the agent holds end.
   *
   * @param id The agent id.
   * @param signal Aborts the request.
   * @returns The agent id and its new token, shown this once.
   * @throws {TypeError} When `id` is not an agent id (nothing is sent).
   * @throws {OperatorError} `not_found` when there is no such agent; `invalid_answer` when the
   *   answer holds no token an agent could use (the old token may no longer work).
   *
   * @example Rotate the token of a new agent
   * ```ts
   * import assert from "node:assert/strict";
   * import { OperatorClient, startServer } from "../../mod.ts";
   *
   * await using server = await startServer({ db: ":memory:", port: 0 });
   * const client = new OperatorClient({ dashboardUrl: server.url });
   * const { token } = await client.addAgent("web-1");
   * const rotated = await client.rotateAgentToken("web-1");
   * assert.equal(rotated.id, "web-1");
   * assert.notEqual(rotated.token, token);
   * ```
   */
  async rotateAgentToken(id: string, signal?: AbortSignal): Promise<AgentToken> {
    checkAgentId(id);
    const { body } = await this.#request("POST", LIVE_PATHS.rotate(id), {
      signal,
      what: "token rotation",
    }).catch((error) => {
      throw noAgent(error, id, `; add it with "status agents add ${idWord(id)}"`);
    });
    const mayBeRotated =
      `the old token may no longer work: rotate again with "status agents rotate ${idWord(id)}"`;
    this.#sameAgent(id, `the token rotation of ${id}`, body, mayBeRotated);
    const token = this.#tokenIn("token rotation", body, mayBeRotated);
    return { id, token };
  }

  /**
   * Removes an agent (`DELETE /api/v1/agents/{id}`), as `status agents remove` does: its token
   * stops working, and its commands still queued, delivered or running are cancelled (its
   * commands and results are kept).
   *
   * @param id The agent id.
   * @param signal Aborts the request.
   * @returns The agent id and how many of its commands the removal cancelled.
   * @throws {TypeError} When `id` is not an agent id (nothing is sent).
   * @throws {OperatorError} `not_found` when there is no such agent; `invalid_answer` when the
   *   answer does not say the agent was removed.
   *
   * @example Remove an agent that never ran anything
   * ```ts
   * import assert from "node:assert/strict";
   * import { OperatorClient, OperatorError, startServer } from "../../mod.ts";
   *
   * await using server = await startServer({ db: ":memory:", port: 0 });
   * const client = new OperatorClient({ dashboardUrl: server.url });
   * await client.addAgent("web-1");
   * assert.deepEqual(await client.removeAgent("web-1"), { id: "web-1", commandsEnded: 0 });
   * const again = await client.removeAgent("web-1").catch((e) => e);
   * assert.ok(again instanceof OperatorError && again.kind === "not_found");
   * ```
   */
  async removeAgent(id: string, signal?: AbortSignal): Promise<RemovedAgent> {
    checkAgentId(id);
    const { body } = await this.#request("DELETE", LIVE_PATHS.agent(id), {
      signal,
      what: "agent removal",
    }).catch((error) => {
      throw noAgent(error, id);
    });
    this.#sameAgent(
      id,
      `the agent removal of ${id}`,
      body,
      `whether agent ${id} was removed is not known`,
    );
    const answer = body as { removed?: unknown; commands_ended?: unknown } | null;
    if (answer?.removed !== true) {
      throw new OperatorError(
        "invalid_answer",
        `the dashboard at ${this.#shownUrl} answered the agent removal without "removed": true, ` +
          `so whether agent ${id} was removed is not known; is ${this.#shownUrl} a status ` +
          "dashboard?",
        { body },
      );
    }
    const ended = answer.commands_ended;
    return { id, commandsEnded: Number.isSafeInteger(ended) ? ended as number : null };
  }

  /**
   * The token of an agent add or rotation answer.
   *
   * @throws {OperatorError} `invalid_answer` when it holds no token an agent could use, saying
   *   what may have happened on the dashboard and what to do (`next`).
   */
  #tokenIn(what: string, body: unknown, next: string): string {
    const token = (body as { token?: unknown } | null)?.token;
    if (typeof token === "string" && USABLE_TOKEN.test(token)) return token;
    throw new OperatorError(
      "invalid_answer",
      `the dashboard at ${this.#shownUrl} answered the ${what} without a token an agent could ` +
        `use (${next}); is ${this.#shownUrl} a status dashboard?`,
      { body },
    );
  }

  /**
   * Asks the dashboard whether it is up (`GET /health`, no auth).
   *
   * @param signal Aborts the request.
   * @returns The health answer, `{"status": "ok", ...}`.
   */
  async health(signal?: AbortSignal): Promise<Record<string, unknown>> {
    const answer = await this.#request("GET", PATHS.health, { signal });
    return this.#parse(z.looseObject({ status: z.string() }), answer.body, "health");
  }

  /**
   * Polls a command until its status is final (docs/protocol.md §4), riding out short dashboard
   * outages.
   *
   * @param id The command id.
   * @param options Progress callback, poll intervals, outage budget and an abort signal.
   * @returns The command in its final status.
   * @throws {OperatorError} `not_found` when the command disappears; the last transient error when
   *   the dashboard stays unreachable longer than `maxOutageMs`.
   * @throws {RangeError} When an interval is not a number of milliseconds from 1 to 2147483647,
   *   or `maxOutageMs` not one from 0 (nothing is sent).
   * @throws {TypeError} When `id` is not a command id (nothing is sent).
   */
  async waitForFinal(id: string, options: WaitForFinalOptions = {}): Promise<CommandRecord> {
    checkCommandId(id);
    if (options === null || typeof options !== "object") {
      throw new TypeError(`waitForFinal's options must be an object, got ${shownValue(options)}`);
    }
    checkOptionNames("waitForFinal", options, {
      signal: true,
      onProgress: true,
      initialIntervalMs: true,
      maxIntervalMs: true,
      maxOutageMs: true,
    });
    checkSignal("signal", options.signal);
    if (options.onProgress !== undefined && typeof options.onProgress !== "function") {
      throw new TypeError(`onProgress must be a function, got ${shownValue(options.onProgress)}`);
    }
    const initial = checkMs("initialIntervalMs", options.initialIntervalMs ?? 200, 1);
    const max = Math.max(initial, checkMs("maxIntervalMs", options.maxIntervalMs ?? 1000, 1));
    const maxOutageMs = checkMs("maxOutageMs", options.maxOutageMs ?? 60_000, 0);
    const { signal } = options;
    const started = performance.now();
    let interval = initial;
    let lastKey = "";
    while (true) {
      const record = await this.#getRiding(id, maxOutageMs, signal);
      const key = `${record.status}#${record.attempt ?? ""}`;
      if (key !== lastKey) {
        lastKey = key;
        interval = initial;
        options.onProgress?.(record, performance.now() - started);
      }
      if (isFinalStatus(record.status)) return record;
      await sleepOrThrow(interval, signal);
      interval = Math.min(max, Math.round(interval * 1.5));
    }
  }

  async #getRiding(id: string, maxOutageMs: number, signal?: AbortSignal): Promise<CommandRecord> {
    const outage = AbortSignal.timeout(maxOutageMs);
    const combined = signal ? AbortSignal.any([signal, outage]) : outage;
    const policy = retry(handleWhen(isTransient), {
      maxAttempts: Number.MAX_SAFE_INTEGER,
      backoff: new ExponentialBackoff({ initialDelay: 250, maxDelay: 2000 }),
    });
    let lastError: unknown;
    policy.onRetry((reason) => {
      if ("error" in reason) lastError = reason.error;
    });
    try {
      return await policy.execute(({ signal: attemptSignal }) => {
        return this.getCommand(id, attemptSignal);
      }, combined);
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (outage.aborted) {
        const secs = Math.round(maxOutageMs / 100) / 10;
        if (lastError instanceof OperatorError) {
          throw new OperatorError(
            lastError.kind,
            `${lastError.message} (still failing after ${secs} s)`,
            { status: lastError.status, body: lastError.body, cause: lastError },
          );
        }
        throw new OperatorError(
          "timeout",
          `the dashboard at ${this.#shownUrl} did not answer for ${secs} s`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  /**
   * The error of an answer about another record (`named`) than the one the request (`what`) was
   * about: what became of that one is not known.
   */
  #otherRecord(what: string, named: string, body: unknown, next?: string): OperatorError {
    return new OperatorError(
      "invalid_answer",
      `the dashboard at ${this.#shownUrl} answered ${what} with ${named}${
        next ? ` (${next})` : ""
      }; is ${this.#shownUrl} a status dashboard?`,
      { body },
    );
  }

  /**
   * Throws {@link OperatorClient.#otherRecord} when an agent answer names another agent than `id`
   * (an answer without an id is taken as this agent's).
   */
  #sameAgent(id: string, what: string, body: unknown, next?: string): void {
    const named = (body as { id?: unknown } | null)?.id;
    if (named !== undefined && named !== id) {
      throw this.#otherRecord(what, `agent ${shownValue(named)}`, body, next);
    }
  }

  #parse<T>(schema: z.ZodType<T>, body: unknown, what: string): T {
    const parsed = schema.safeParse(body);
    if (!parsed.success) {
      const issue = relevantIssues(parsed.error)[0];
      const where = issue?.path.length ? ` at "${issue.path.join(".")}"` : "";
      throw new OperatorError(
        "invalid_answer",
        `the dashboard at ${this.#shownUrl} answered the ${what} request with an unexpected ` +
          `body${where}: ${issue?.message ?? "invalid"}`,
        { body, cause: parsed.error },
      );
    }
    return parsed.data;
  }

  /**
   * Sends one operator request and returns the JSON answer (for endpoints without a method of
   * their own, such as the runs of docs/protocol.md §16).
   *
   * @param method HTTP method.
   * @param pathAndQuery Path (and query) below the dashboard URL.
   * @param options Body, abort signal, and what the request is called in errors.
   * @returns Status and parsed body.
   * @throws {OperatorError} When the request fails or is refused.
   */
  call(
    method: "GET" | "POST" | "DELETE",
    pathAndQuery: string,
    options: { body?: unknown; signal?: AbortSignal; what?: string } = {},
  ): Promise<{ status: number; body: unknown }> {
    return this.#request(method, pathAndQuery, options);
  }

  /**
   * Opens a command's event stream (`GET /api/v1/commands/{id}/events`, server-sent events).
   *
   * @param id The command.
   * @param options `Last-Event-ID` to resume from, and an abort signal.
   * @returns The streaming response, or `null` when the dashboard has no event stream for it
   *   (no such route, or no such command: {@link OperatorClient.getCommand} tells which).
   * @throws {OperatorError} When the request is refused or the dashboard cannot be reached.
   * @throws {TypeError} When `id` is not a command id (nothing is sent).
   */
  async openEvents(
    id: string,
    options: { lastEventId?: string; signal?: AbortSignal } = {},
  ): Promise<Response | null> {
    checkCommandId(id);
    const path = `${PATHS.command(id)}/events`;
    const headers: Record<string, string> = { Accept: "text/event-stream" };
    if (this.#adminToken) headers[HEADER.authorization] = `Bearer ${this.#adminToken}`;
    if (options.lastEventId) headers["Last-Event-ID"] = options.lastEventId;
    let response: Response;
    try {
      response = await this.#fetch(this.dashboardUrl + path, {
        headers,
        redirect: "manual",
        signal: options.signal,
      });
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      throw new OperatorError(
        "connection",
        `cannot reach the dashboard at ${this.#shownUrl}: ${describeFetchFailure(error)}`,
        { cause: error },
      );
    }
    const redirect = await this.#redirect(response);
    if (redirect !== undefined) throw redirect;
    const type = response.headers.get("Content-Type") ?? "";
    if (response.ok && type.startsWith("text/event-stream")) return response;
    const text = await readBodyBounded(response, ERROR_ANSWER_BYTES).catch(() => "") ?? "";
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON
    }
    // No event stream here (an older dashboard) or no such command: the caller falls back to
    // polling, which tells the two apart.
    if (response.ok || response.status === 404 || response.status === 405) return null;
    const failure = this.#failure(response.status, body, "GET", path, { commandId: id });
    if (response.status === 429) failure.retryAfterSecs = retryAfterOf(response);
    throw failure;
  }

  /** Sends a request; a `429` is sent again after its `Retry-After`, a few times. */
  async #request(
    method: "GET" | "POST" | "DELETE",
    pathAndQuery: string,
    options: RequestOptions = {},
  ): Promise<{ status: number; body: unknown }> {
    for (let retry = 0;; retry++) {
      try {
        return await this.#requestOnce(method, pathAndQuery, options);
      } catch (error) {
        const after = error instanceof OperatorError && error.status === 429
          ? error.retryAfterSecs
          : undefined;
        if (after === undefined || retry >= this.#maxRateLimitRetries) throw error;
        await this.#sleep(Math.min(after, MAX_RETRY_AFTER_SECS) * 1000, options.signal);
      }
    }
  }

  async #requestOnce(
    method: "GET" | "POST" | "DELETE",
    pathAndQuery: string,
    options: RequestOptions = {},
  ): Promise<{ status: number; body: unknown }> {
    const url = this.dashboardUrl + pathAndQuery;
    const headers: Record<string, string> = { Accept: "application/json", ...options.headers };
    if (this.#adminToken) headers[HEADER.authorization] = `Bearer ${this.#adminToken}`;
    let payload: string | undefined;
    if (options.body !== undefined) {
      payload = JSON.stringify(options.body);
      headers["Content-Type"] = "application/json";
    }
    const timeout = timeoutSignal(this.#timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    let response: Response;
    let text: string;
    try {
      response = await this.#fetch(url, {
        method,
        headers,
        body: payload,
        redirect: "manual",
        signal,
      });
      const redirect = await this.#redirect(response);
      if (redirect !== undefined) throw redirect;
      const read = await readBodyBounded(response, this.#maxAnswerBytes);
      if (read === undefined) {
        throw new OperatorError(
          "invalid_answer",
          `the dashboard at ${this.#shownUrl} answered ${method} ${pathAndQuery} with more than ` +
            `${this.#maxAnswerBytes} bytes; the rest was not read (is ${this.#shownUrl} a status ` +
            "dashboard?)",
          { status: response.status },
        );
      }
      text = read;
    } catch (error) {
      if (error instanceof OperatorError) throw error;
      if (options.signal?.aborted) throw options.signal.reason;
      if (timeout.aborted) {
        throw new OperatorError(
          "timeout",
          `the dashboard at ${this.#shownUrl} did not answer within ${
            Math.round(this.#timeoutMs / 100) / 10
          } s`,
          { cause: error },
        );
      }
      if (error instanceof TypeError) {
        const why = describeFetchFailure(error);
        // A dashboard whose certificate was refused, or that answers HTTPS to http://, is running
        // there: the reason says what to do.
        const hint = why.startsWith("the TLS handshake failed:") || why.startsWith("it answered")
          ? ""
          : " (is it running there? set DASHBOARD_URL or --dashboard-url)";
        throw new OperatorError(
          "connection",
          `cannot reach the dashboard at ${this.#shownUrl}: ${why}${hint}`,
          { cause: error },
        );
      }
      throw error;
    }
    let body: unknown = undefined;
    if (text.length > 0) {
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
    }
    if (response.ok) {
      if (body === undefined || typeof body === "string") {
        throw new OperatorError(
          "invalid_answer",
          `the dashboard at ${this.#shownUrl} answered ${method} ${pathAndQuery} with ` +
            `HTTP ${response.status} but no JSON body; is ${this.#shownUrl} a status dashboard?`,
          { status: response.status, body },
        );
      }
      return { status: response.status, body };
    }
    const failure = this.#failure(response.status, body, method, pathAndQuery, options);
    if (response.status === 429) failure.retryAfterSecs = retryAfterOf(response);
    throw failure;
  }

  /**
   * The error of a `3xx` answer (its body dropped), or `undefined` for another answer. A redirect
   * is not followed, as the agent and `status health` do not: a `POST` would go on as a `GET`,
   * and the admin token to wherever it leads.
   */
  async #redirect(response: Response): Promise<OperatorError | undefined> {
    if (response.status < 300 || response.status >= 400) return undefined;
    await response.body?.cancel();
    const location = response.headers.get("Location");
    return new OperatorError(
      "request",
      `the dashboard at ${this.#shownUrl} redirects (${response.status}) to ${
        location === null ? "no Location" : JSON.stringify(location.slice(0, 300))
      }, which status does not follow: set DASHBOARD_URL (or --dashboard-url) to the address ` +
        "it leads to",
      { status: response.status },
    );
  }

  #failure(
    status: number,
    body: unknown,
    method: string,
    pathAndQuery: string,
    options: RequestOptions,
  ): OperatorError {
    const said = errorSentence(body) ??
      (typeof body === "string" && body.trim() ? body.trim().slice(0, 200) : undefined);
    const http = `HTTP ${status}${said ? `: ${said}` : ""}`;
    const init = { status, body };
    if (status === 401 || status === 403) {
      // Without a token there was none to refuse: say that one is needed.
      const message = this.#adminToken
        ? `the dashboard refused the admin token (${http}); check STATUS_ADMIN_TOKEN (or ` +
          "--status-admin-token) against the dashboard's"
        : `the dashboard refused a request without an admin token (${http}); ${
          this.#noAdminTokenReason ??
            "no admin token is set and the dashboard is not in dev mode; set " +
              "STATUS_ADMIN_TOKEN (or --status-admin-token)"
        }`;
      return new OperatorError("auth", message, init);
    }
    if (status === 404) {
      if (noRouteAnswer(body)) {
        return new OperatorError(
          "not_found",
          `the dashboard at ${this.#shownUrl} has no ${method} ${
            pathAndQuery.replace(/\?.*/, "")
          } (${http}); is DASHBOARD_URL (or --dashboard-url) the dashboard's base URL?`,
          init,
        );
      }
      if (options.agentId !== undefined && said !== undefined && said.includes(options.agentId)) {
        return new OperatorError(
          "not_found",
          `the dashboard refused the ${options.what}: ${said}`,
          init,
        );
      }
      if (options.commandId !== undefined) {
        return new OperatorError("not_found", `no command ${options.commandId}`, init);
      }
      return new OperatorError(
        "not_found",
        `the dashboard at ${this.#shownUrl} has no ${method} ${
          pathAndQuery.replace(/\?.*/, "")
        } (${http})`,
        init,
      );
    }
    const what = options.what ?? `${method} ${pathAndQuery.replace(/\?.*/, "")}`;
    if (status === 409) {
      return new OperatorError("conflict", `the dashboard refused the ${what}: ${http}`, init);
    }
    if (status === 429) {
      return new OperatorError(
        "rate_limited",
        `the dashboard refused the ${what} because of its rate limit (${http}); try again later`,
        init,
      );
    }
    if (status >= 500) {
      return new OperatorError(
        "server",
        `the dashboard at ${this.#shownUrl} failed on ${what}: ${http}`,
        init,
      );
    }
    return new OperatorError("request", `the dashboard refused the ${what}: ${http}`, init);
  }
}

/** An HTTP date as `Retry-After` carries it (IMF-fixdate): `Wed, 02 Dec 2026 02:10:00 GMT`. */
const HTTP_DATE = /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/**
 * A `429`'s `Retry-After` in whole seconds, when it gives one: a number of seconds, or an HTTP
 * date (a proxy's form), counted from now; at least a second either way (`0` would ask again at
 * once, and a follower whose stream is refused so would ask without pause).
 */
function retryAfterOf(response: Response): number | undefined {
  const header = response.headers.get("Retry-After")?.trim() ?? "";
  if (/^\d{1,6}$/.test(header)) return Math.max(1, Number(header));
  const date = HTTP_DATE.test(header) ? Date.parse(header) : NaN;
  return Number.isNaN(date) ? undefined : Math.max(1, Math.ceil((date - Date.now()) / 1000));
}

/**
 * Makes a client from loaded settings (role `operator`): `dashboardUrl` and `statusAdminToken`.
 *
 * @param settings The operator's settings.
 * @param noAdminTokenReason Why `statusAdminToken` is missing, when it may be set where it could
 *   not be read; said when a request without it is refused.
 * @returns The client.
 */
export function operatorClientFromSettings(
  settings: { dashboardUrl: string; statusAdminToken?: string },
  noAdminTokenReason?: string,
): OperatorClient {
  return new OperatorClient({
    dashboardUrl: settings.dashboardUrl,
    adminToken: settings.statusAdminToken,
    noAdminTokenReason,
  });
}
