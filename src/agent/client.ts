/**
 * The agent's HTTP client of the dashboard (docs/protocol.md §1, §2, §7): signed requests, and
 * every answer turned into an outcome the poll loop can act on without looking at HTTP details.
 *
 * @module
 */
import {
  AGENT_INSTANCE_HEADER,
  dashboardUrlProblem,
  type DeliveredCommand,
  describeZodError,
  HEADER,
  LIVE_PATHS,
  MAX_BODY_BYTES,
  MAX_CLOCK_SKEW_SECS,
  MAX_DELIVERED_ID_CHARS,
  type OutputChunkRequest,
  parseWaitAnswer,
  PATHS,
  REPLAY_REFUSAL,
  type ReportRequest,
  signedHeaders,
} from "../protocol/mod.ts";
import { z } from "zod";
import { parseRetryAfter } from "./backoff.ts";
import { describeFetchFailure } from "../fetch_failure.ts";
import { MAX_TIMER_MS } from "../clock.ts";
import { readBodyBounded } from "../read_bounded.ts";
import { redactUrl } from "../log/redact.ts";

/** A request that did not succeed, classified by what the agent should do next. */
export type RequestFailure =
  | {
    /**
     * No answer: connection refused or reset, DNS failure, no answer (or no whole body) in time,
     * a body that broke off, a `408` (the request did not arrive in time, so nothing was done
     * with it), or a `407`, `421` or `425` (about the way to the dashboard). Back off.
     */
    kind: "network";
    message: string;
    /**
     * The status of an answer about the way to the dashboard (`407`, `408`, `421`, `425`), whose
     * `message` holds its text; absent when nothing answered.
     */
    status?: number;
  }
  | {
    /**
     * A 5xx answer without `Retry-After`, one no request expects (a `101`, a status above 599),
     * a `429` without a `Retry-After` the agent can read, or a report's, ack's, cancel-wait's or
     * output chunk's `404` that is not the dashboard's word on it ({@link DashboardClient.report}),
     * or the dashboard's replay `409` (the request sent again on the way by a proxy), or a `2xx`
     * to a report, ack, output chunk or heartbeat that is not the dashboard's (an HTML page in its
     * place, JSON saying `"accepted": false`: {@link notTheDashboards}). Back off.
     */
    kind: "server";
    status: number;
    message: string;
  }
  | {
    /** A 429, 503 or 507 answer with `Retry-After`: wait `retryAfterMs`. */
    kind: "throttled";
    status: number;
    retryAfterMs: number;
    message: string;
  }
  | {
    /** 401 or 403: log why and back off. */
    kind: "auth";
    status: number;
    message: string;
    /** Dashboard clock minus agent clock, in seconds, from the `Date` header. */
    clockOffsetSecs?: number;
    /** Whether the dashboard rejected the request's timestamp (clock skew). */
    skew: boolean;
  }
  | {
    /**
     * A 3xx answer: the agent does not follow redirects (a report turned into a `GET`, or sent
     * to another host); DASHBOARD_URL needs to name where it leads. Back off; a report stays in
     * the outbox.
     */
    kind: "redirect";
    status: number;
    message: string;
  }
  | {
    /** Another 4xx answer: the request itself was refused. */
    kind: "refused";
    status: number;
    message: string;
  }
  | {
    /** A 2xx answer whose body is not what the protocol says. */
    kind: "invalid";
    status: number;
    message: string;
  }
  | {
    /** The caller's signal aborted the request. */
    kind: "aborted";
  };

/**
 * Whether an outcome is a failure that may go away by itself soon (no answer, a 5xx, or a
 * `Retry-After`), so that the request is worth making again.
 *
 * @param outcome Any outcome of a request.
 * @returns Whether to try again.
 */
export function isTransient(outcome: { kind: string }): boolean {
  return outcome.kind === "network" || outcome.kind === "server" || outcome.kind === "throttled";
}

/** What a `wait` request brought. */
export type WaitOutcome =
  | {
    kind: "command";
    /** The delivered command. */
    command: DeliveredCommand;
    /** Whether it came in a Stacker envelope (docs/protocol.md §7). */
    stacker: boolean;
  }
  | {
    kind: "empty";
    /** From a Stacker envelope with no item: seconds to sleep before the next wait. */
    nextPollSecs?: number;
  }
  | {
    /**
     * A command the agent can name (its id and attempt read) but cannot run as delivered: a
     * `params.timeout_secs` of 0 or below, a name that is not text. It is answered `rejected`,
     * once, instead of being delivered again until the dashboard gives it up.
     */
    kind: "unrunnable";
    /** The delivered command's id. */
    commandId: string;
    /** The delivered attempt. */
    attempt: number;
    /** Its name when that is text, else `""`. */
    name: string;
    /** What is wrong with it: the first field at fault. */
    message: string;
  }
  | RequestFailure;

/** What an ack brought. */
export type AckOutcome =
  | {
    kind: "acked";
    /**
     * When the execution lease ends by the dashboard's clock (`lease_expires_at`, ms since the
     * epoch): without a result by then the command is queued again. Absent when the answer does
     * not say.
     */
    leaseExpiresAt?: number;
    /**
     * When the dashboard answered by its own clock (the answer's `Date`, ms since the epoch), to
     * read `leaseExpiresAt` against whatever the agent's clock says.
     */
    answeredAt?: number;
  }
  /**
   * `404` with the dashboard's JSON error body (not its "no route for"): it does not know the
   * command, or has no ack endpoint (a Stacker dashboard); run the command anyway. A `404` without
   * that body (a proxy's page while the dashboard restarts, or a dashboard whose pages are not
   * JSON) is a `server` failure, tried again.
   */
  | { kind: "unsupported"; message: string }
  /**
   * `409` (not the dashboard's replay refusal): the delivered attempt is no longer current; the
   * command will be delivered again.
   */
  | { kind: "stale"; message: string }
  | RequestFailure;

/** What a cancel-wait (`GET …/commands/{id}/cancel-wait`, our extension of §2) brought. */
export type CancelWaitOutcome =
  /** `200 {"cancel_requested": true}`: an operator cancelled the command; stop it. */
  | { kind: "cancel" }
  /** `204`: no cancel within the timeout; ask again. */
  | { kind: "none" }
  /**
   * `404` with the dashboard's JSON error body: it has no such endpoint (a Stacker dashboard) or
   * no such command.
   */
  | { kind: "unsupported"; message: string }
  /** `409`: the command is already final; there is nothing to cancel. */
  | { kind: "final"; message: string }
  | RequestFailure;

/** What a report brought. */
export type ReportOutcome =
  | { kind: "accepted"; duplicate: boolean }
  | RequestFailure;

/** Options of {@link DashboardClient}. */
export interface DashboardClientOptions {
  /** Base URL of the dashboard, e.g. `http://localhost:5000`. */
  dashboardUrl: string;
  /** The agent id (`X-Agent-Id`). */
  agentId: string;
  /** The agent token; without it requests are unsigned (dev mode). */
  agentToken?: string;
  /**
   * This process's instance id, sent as `X-Agent-Instance` (one agent process per agent id); a
   * function is asked on every request.
   */
  instanceId?: string | (() => string | undefined);
  /** `fetch` to use; for tests. */
  fetch?: typeof fetch;
  /** Clock for `X-Timestamp` and the clock offset; for tests. */
  now?: () => number;
  /**
   * Deadline of an ack or report request, in milliseconds.
   * @default {30000}
   */
  requestTimeoutMs?: number;
}

/**
 * Whether a command's id can name its own paths (`…/commands/{id}/cancel-wait`, `…/output`). Not
 * `wait` (`…/commands/wait/output` is a wait on the hash `output`), `.` or `..` (the URL resolves
 * them away: `…/commands/../output` is `…/agent/output`), nor an id holding a lone UTF-16
 * surrogate (it cannot be percent-encoded). Only a dashboard other than this one delivers such ids;
 * their reports, which name the id in the body, are sent as any other.
 *
 * @param commandId The delivered command's id.
 * @returns Whether cancel-wait and live output may be asked for it.
 */
export function hasCommandPaths(commandId: string): boolean {
  return commandId !== "wait" && commandId !== "." && commandId !== ".." &&
    commandId.isWellFormed();
}

/** How a request's failures are read beyond the common rules. */
interface FailureOptions {
  /**
   * `"json"`: a `404` is a refusal only with the protocol's JSON error body, and not this
   * dashboard's "no route for" (else it is a `server` failure, tried again).
   */
  notFoundIsVerdict?: "json";
  /**
   * `"json"`: any other `4xx` but a `413` is a refusal only with the protocol's JSON error body
   * (else it is a `server` failure, tried again): the dashboard says why it refuses a report, a
   * server answering in its place (a static site's `405 Not Allowed` at a wrong `DASHBOARD_URL`, a
   * proxy's `400` page) does not.
   */
  refusalIsVerdict?: "json";
}

/**
 * The fields of a delivered command (bare, or a Stacker item's) whose fault makes it a command the
 * agent cannot run, not an answer it cannot read: the command still has an id to report on.
 */
const COMMAND_FIELDS = new Set([
  "name",
  "params",
  "deployment_hash",
  "lease_expires_at",
  "type",
  "parameters",
]);

/** What names a delivered command in a report: its id and attempt (absent or `null`: 1). */
const deliveredIdentitySchema = z.object({
  id: z.string().min(1).max(MAX_DELIVERED_ID_CHARS),
  attempt: z.number().int().positive().nullish(),
});

/**
 * The id, attempt and name of a wait answer that {@link parseWaitAnswer} refused only for the
 * command's own fields (its params, its name); nothing when the answer is at fault elsewhere (an
 * id, an attempt, a Stacker `meta`) and cannot be answered with a report.
 */
function unrunnableCommand(
  body: unknown,
  error: z.ZodError,
): { commandId: string; attempt: number; name: string } | undefined {
  if (body === null || typeof body !== "object") return undefined;
  const stacker = "item" in body;
  const fields = stacker ? (body as { item: unknown }).item : body;
  if (fields === null || typeof fields !== "object") return undefined;
  const { id, command_id, attempt, name, type } = fields as Record<string, unknown>;
  const identity = deliveredIdentitySchema.safeParse({ id: stacker ? command_id : id, attempt });
  if (!identity.success) return undefined;
  const commandsOwn = error.issues.every((issue) => {
    const path = stacker && issue.path[0] === "item" ? issue.path.slice(1) : issue.path;
    return COMMAND_FIELDS.has(String(path[0]));
  });
  if (!commandsOwn) return undefined;
  const text = stacker ? type : name;
  return {
    commandId: identity.data.id,
    attempt: identity.data.attempt ?? 1,
    name: typeof text === "string" ? text : "",
  };
}

/** Extra seconds the agent waits for a `wait` answer beyond the timeout it asked for. */
export const WAIT_GRACE_SECS = 10;

const SKEW_WORDS = /clock|skew|timestamp/i;

/** The `4xx` answers that say nothing of the request itself, only of the way it went. */
const WAY_STATUSES: Record<number, string> = {
  407: "Proxy Authentication Required",
  421: "Misdirected Request",
  425: "Too Early",
};

/**
 * Largest answer body the agent reads, in bytes (4 MiB: a delivered command is at most an
 * enqueue's 1 MiB body); the rest of a larger one is not read, so a broken or hostile dashboard
 * or proxy cannot fill the agent's memory.
 */
export const MAX_ANSWER_BYTES = 4 * MAX_BODY_BYTES;

/** Bytes of an error answer read for its message. */
const ERROR_BODY_BYTES = 64 * 1024;

/**
 * The body of an answer broke off while it was read (the connection was reset, or the request's
 * deadline passed): as far as the agent can tell there was no answer, so this is a network failure.
 */
class BrokenAnswerError extends Error {
  constructor(cause: unknown) {
    super(
      (cause as Error | null)?.name === "TimeoutError"
        ? "the answer did not arrive whole before the request's deadline"
        : `the answer broke off: ${describeFetchFailure(cause)}`,
      { cause },
    );
    this.name = "BrokenAnswerError";
  }
}

/** What {@link boundedJson} returns, when asked to, for a body that is empty or only white space. */
const NO_BODY = Symbol("no body");

/**
 * Reads a JSON body of at most {@link MAX_ANSWER_BYTES}.
 *
 * @throws {BrokenAnswerError} When the body cannot be read whole.
 * @throws {Error} When the body is larger, or is not JSON.
 */

async function boundedJson(
  response: Response,
  options: { emptyIs?: typeof NO_BODY } = {},
): Promise<unknown> {
  let text: string | undefined;
  try {
    text = await readBodyBounded(response, MAX_ANSWER_BYTES);
  } catch (error) {
    throw new BrokenAnswerError(error);
  }
  if (text === undefined) {
    throw new Error(`the answer is larger than ${MAX_ANSWER_BYTES / 1024 / 1024} MiB`);
  }
  if (options.emptyIs !== undefined && text.trim() === "") return options.emptyIs;
  return JSON.parse(text);
}

/**
 * The `lease_expires_at` of an ack's answer, as ms since the epoch, with the answer's `Date`;
 * nothing when the answer has none that reads as a time (an answer that cannot be read is still
 * an ack).
 */
function leaseOf(
  response: Response,
  body: unknown,
): { leaseExpiresAt?: number; answeredAt?: number } {
  const date = Date.parse(response.headers.get("Date") ?? "");
  const answeredAt = Number.isFinite(date) ? { answeredAt: date } : {};
  const lease = (body as { lease_expires_at?: unknown } | null)?.lease_expires_at;
  const ms = typeof lease === "string" ? Date.parse(lease) : NaN;
  return Number.isFinite(ms) ? { leaseExpiresAt: ms, ...answeredAt } : {};
}

/** The media types of a page for people, which no dashboard answers an agent's request with. */
const PAGE_TYPE = /^\s*(text\/html|application\/xhtml\+xml)\s*(;|$)/i;

/** What a `2xx` answer to a request that hands something over must not say, and of which command. */
interface HandedOver {
  /** The field of the dashboard's answer that says it took it (`accepted`, `acked`, ...). */
  took: "accepted" | "acked" | "stored" | "recorded";
  /** The command the request is about, when it is about one. */
  commandId?: string;
}

/**
 * Why a `2xx` answer to a request that hands something over (a report, an ack, an output chunk, a
 * heartbeat) is not the dashboard's word that it took it (docs/protocol.md §6), or nothing when it
 * may be: a page for people (a body that is not JSON and is HTML by its `Content-Type` or begins
 * with `<`), which a proxy, a captive portal or a login gateway answers in the dashboard's place;
 * or JSON that says the dashboard did not take it (`"accepted": false`) or names another command.
 * Any other `2xx` (a `204`, an empty body, plain text, JSON of any other shape, a Stacker-style
 * dashboard's, §7) is the dashboard's.
 *
 * @param contentType The answer's `Content-Type`.
 * @param text Its body; `undefined` when it could not be read whole (then its type alone tells).
 * @param expected What the dashboard's answer says, and of which command.
 */
function notTheDashboards(
  contentType: string | null,
  text: string | undefined,
  expected: HandedOver,
): string | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text ?? "");
  } catch {
    const page = PAGE_TYPE.test(contentType ?? "") || /^\s*</.test(text ?? "");
    if (!page || text?.trim() === "") return undefined;
    return `an HTML page (Content-Type ${JSON.stringify(contentType ?? "none")}): a proxy's, ` +
      "a captive portal's or a login page in its place?";
  }
  const fields = body !== null && typeof body === "object" ? body as Record<string, unknown> : {};
  if (fields[expected.took] === false) return `JSON that says "${expected.took}": false`;
  const named = fields.command_id;
  if (
    expected.commandId !== undefined && typeof named === "string" && named !== expected.commandId
  ) {
    return `JSON about another command (${JSON.stringify(named.slice(0, 200))})`;
  }
  return undefined;
}

/**
 * The message of an error answer: its `error`, else its text, cut short; `jsonError` says whether
 * it was the protocol's JSON error body (`{"error": "..."}`, §1), not a proxy's page or plain text.
 * The token and the signature the request carried are replaced, should the answer echo them (a
 * proxy's error page quoting the request): neither is ever logged.
 */
async function errorAnswer(
  response: Response,
  secrets: readonly string[],
): Promise<{ message: string; jsonError: boolean }> {
  let text: string | undefined;
  try {
    text = await readBodyBounded(response, ERROR_BODY_BYTES);
  } catch {
    return { message: `HTTP ${response.status}`, jsonError: false };
  }
  if (text === undefined) {
    return { message: `HTTP ${response.status} (an answer larger than 64 KiB)`, jsonError: false };
  }
  // Before the text is cut: a secret cut in two would show its first part.
  text = redact(text, secrets);
  try {
    const body = JSON.parse(text);
    if (body && typeof body.error === "string") {
      return { message: redact(body.error, secrets).slice(0, 500), jsonError: true };
    }
  } catch {
    // Not JSON: use the text.
  }
  const trimmed = text.trim().slice(0, 200);
  return { message: trimmed === "" ? `HTTP ${response.status}` : trimmed, jsonError: false };
}

/**
 * The start of this dashboard's `404` to a path it has no route for (docs/protocol.md §1): a
 * `DASHBOARD_URL` with a wrong path prefix, not a verdict on the request.
 */
const NO_ROUTE = /^no route for /;

/**
 * Whether a `404` is the dashboard's word on the request (an unknown command): it says so in the
 * protocol's JSON error body, and not as "no route for".
 */
function isVerdict404(answer: { message: string; jsonError: boolean }): boolean {
  return answer.jsonError && !NO_ROUTE.test(answer.message);
}

/**
 * The failure of a `409` that is the dashboard's replay refusal (docs/protocol.md §1 step 6), or
 * `undefined` for another `409`. The agent never sends an `X-Request-Id` twice, so the request
 * reached the dashboard twice: a proxy in front of several instances sent it again to another one
 * after the first went away (nginx does so with a `GET`: a wait, a cancel-wait). It is no verdict
 * on the request, which is made again, with a new id, as after a `5xx`.
 */
function replayedOnTheWay(
  status: number,
  answer: { message: string; jsonError: boolean },
): RequestFailure | undefined {
  if (status !== 409 || !answer.jsonError || !answer.message.startsWith(REPLAY_REFUSAL)) {
    return undefined;
  }
  return {
    kind: "server",
    status,
    message: `${answer.message} (the request reached the dashboard twice: a proxy sent it ` +
      "again, to another instance once the first went away; it is made again with a new " +
      "X-Request-Id)",
  };
}

/** The message of a `404` that is not the dashboard's word on the request. */
function notItsWord(jsonError: boolean, message: string): string {
  return `404 without the dashboard's word on the request (${
    jsonError
      ? "no such route: a wrong path in DASHBOARD_URL?"
      : "not its JSON error body: a proxy's page while it restarts?"
  }): ${message}`;
}

/** A text with each of the secrets in it replaced. */
function redact(text: string, secrets: readonly string[]): string {
  return secrets.reduce(
    (shown, secret) => secret === "" ? shown : shown.replaceAll(secret, "[redacted]"),
    text,
  );
}

/**
 * Talks to the dashboard on behalf of one agent.
 *
 * @example Waiting for a command
 * ```ts ignore
 * const client = new DashboardClient({ dashboardUrl: "http://localhost:5000", agentId: "a1" });
 * const outcome = await client.wait("default", 30, AbortSignal.timeout(60_000));
 * if (outcome.kind === "command") console.log(outcome.command.name);
 * ```
 */
export class DashboardClient {
  readonly #base: URL;
  readonly #agentId: string;
  readonly #token: string | undefined;
  readonly #instanceId: () => string | undefined;
  readonly #fetch: typeof fetch;
  readonly #now: () => number;
  readonly #requestTimeoutMs: number;
  /** The signature each answer's request carried, to keep it out of the error messages. */
  readonly #signatures = new WeakMap<Response, string>();

  /**
   * Creates a client.
   *
   * @param options Dashboard, identity and injectables.
   * @throws {TypeError} When the dashboard URL is not an http(s) URL, or holds a control character
   *   or a space inside.
   */
  constructor(options: DashboardClientOptions) {
    const base = URL.parse(String(options.dashboardUrl));
    if (base?.protocol !== "http:" && base?.protocol !== "https:") {
      throw new TypeError(
        `dashboardUrl must be an http:// or https:// URL, got ${
          JSON.stringify(redactUrl(base?.href ?? String(options.dashboardUrl)))
        }`,
      );
    }
    const odd = typeof options.dashboardUrl === "string"
      ? dashboardUrlProblem(options.dashboardUrl)
      : null;
    if (odd !== null) {
      throw new TypeError(
        `dashboardUrl ${JSON.stringify(redactUrl(options.dashboardUrl.trim()))} cannot be ` +
          `taken: ${odd}`,
      );
    }
    this.#base = base;
    this.#agentId = options.agentId;
    this.#token = options.agentToken;
    const instanceId = options.instanceId;
    this.#instanceId = typeof instanceId === "function" ? instanceId : () => instanceId;
    this.#fetch = options.fetch ?? fetch;
    this.#now = options.now ?? Date.now;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
  }

  /** The agent id the requests are sent as. */
  get agentId(): string {
    return this.#agentId;
  }

  /**
   * Builds the URL of a path below the dashboard's base URL (which may have a path prefix).
   *
   * @param path Path and query, e.g. `/api/v1/agent/commands/ack`.
   * @returns The absolute URL.
   */
  urlOf(path: string): URL {
    const url = new URL(this.#base.href);
    const [pathname, query] = path.split("?", 2);
    url.pathname = url.pathname.replace(/\/+$/, "") + pathname;
    url.search = query === undefined ? "" : `?${query}`;
    url.hash = "";
    return url;
  }

  /**
   * Long-polls for the next command (`GET …/wait/{deployment_hash}?timeout=N`), aborting the
   * request {@link WAIT_GRACE_SECS} after the timeout asked for.
   *
   * @param deploymentHash The deployment this agent serves.
   * @param timeoutSecs How long the dashboard may hold the request.
   * @param signal Aborts the wait (shutdown).
   * @returns The command, an empty answer, or a classified failure.
   */
  async wait(
    deploymentHash: string,
    timeoutSecs: number,
    signal: AbortSignal,
  ): Promise<WaitOutcome> {
    const path = `${PATHS.wait(deploymentHash)}?timeout=${timeoutSecs}`;
    const sent = await this.#send(
      "GET",
      path,
      undefined,
      signal,
      (timeoutSecs + WAIT_GRACE_SECS) * 1000,
    );
    if ("kind" in sent) return sent;
    const response = sent.response;
    if (response.status === 204) {
      await response.body?.cancel();
      return { kind: "empty" };
    }
    if (response.status !== 200) return await this.#failure(response);
    let body: unknown;
    try {
      body = await boundedJson(response, { emptyIs: NO_BODY });
    } catch (error) {
      if (signal.aborted) return { kind: "aborted" };
      if (error instanceof BrokenAnswerError) return { kind: "network", message: error.message };
      return {
        kind: "invalid",
        status: 200,
        message: `wait answer is not usable JSON: ${(error as Error).message}`,
      };
    }
    // A 200 without a body (a dashboard or proxy that does not answer 204), or whose body is
    // `null` (a serializer's empty option), holds no command.
    if (body === NO_BODY || body === null) return { kind: "empty" };
    try {
      const answer = parseWaitAnswer(body);
      // A hint below a second (0.01, or milliseconds read as seconds) is a second, as a
      // Retry-After is: a dashboard answering at once is not asked in a tight loop.
      return answer.kind === "empty"
        ? {
          kind: "empty",
          nextPollSecs: answer.nextPollSecs ? Math.max(answer.nextPollSecs, 1) : undefined,
        }
        : { kind: "command", command: answer.command, stacker: answer.stacker };
    } catch (error) {
      // The first field at fault in one line, not zod's issues as pretty-printed JSON.
      const reason = error instanceof z.ZodError
        ? describeZodError(error)
        : (error as Error).message.slice(0, 300);
      const named = error instanceof z.ZodError ? unrunnableCommand(body, error) : undefined;
      if (named !== undefined) return { kind: "unrunnable", ...named, message: reason };
      return {
        kind: "invalid",
        status: 200,
        message: `wait answer is neither a command nor a Stacker envelope: ${reason}`,
      };
    }
  }

  /**
   * Acknowledges a journaled command (`POST …/ack`).
   *
   * @param commandId The command id.
   * @param attempt The delivered attempt.
   * @param signal Aborts the request.
   * @returns Acked, unsupported (404 with the dashboard's JSON error body), stale (409) or a
   *   classified failure (a `404` without that body, a `404` "no route for", the replay `409`, a
   *   `2xx` that is not the dashboard's: `server`).
   */
  async ack(commandId: string, attempt: number, signal: AbortSignal): Promise<AckOutcome> {
    const sent = await this.#send(
      "POST",
      PATHS.ack,
      JSON.stringify({ command_id: commandId, attempt }),
      signal,
      this.#requestTimeoutMs,
    );
    if ("kind" in sent) return sent;
    const response = sent.response;
    if (response.ok) {
      const read = await this.#handedOver(response, { took: "acked", commandId });
      return "kind" in read ? read : { kind: "acked", ...leaseOf(response, read.body) };
    }
    if (response.status === 404) {
      // A proxy's page while the dashboard restarts is no word on the ack: asked again.
      const answer = await errorAnswer(response, this.#secretsOf(response));
      if (isVerdict404(answer)) return { kind: "unsupported", message: answer.message };
      return { kind: "server", status: 404, message: notItsWord(answer.jsonError, answer.message) };
    }
    if (response.status === 409) {
      // The replay 409 (the ack sent again on the way, after the first copy was taken) is no word
      // on the delivery: asked again. Any other is (not running is the safe reading of a 409).
      const answer = await errorAnswer(response, this.#secretsOf(response));
      const replayed = replayedOnTheWay(409, answer);
      if (replayed !== undefined) return replayed;
      return { kind: "stale", message: answer.message };
    }
    return await this.#failure(response);
  }

  /**
   * Waits until an operator cancels a running command (`GET …/commands/{id}/cancel-wait`),
   * aborting the request {@link WAIT_GRACE_SECS} after the timeout asked for.
   *
   * @param commandId The running command.
   * @param timeoutSecs How long the dashboard may hold the request.
   * @param signal Aborts the request (the run ended).
   * @returns Cancel, none (204), unsupported (404 with the dashboard's JSON error body), final
   *   (409) or a classified failure (a `404` without that body, or its "no route for": `server`).
   */
  async cancelWait(
    commandId: string,
    timeoutSecs: number,
    signal: AbortSignal,
  ): Promise<CancelWaitOutcome> {
    const sent = await this.#send(
      "GET",
      `${PATHS.cancelWait(commandId)}?timeout=${timeoutSecs}`,
      undefined,
      signal,
      (timeoutSecs + WAIT_GRACE_SECS) * 1000,
    );
    if ("kind" in sent) return sent;
    const response = sent.response;
    if (response.status === 204) {
      await response.body?.cancel();
      return { kind: "none" };
    }
    if (response.status === 404) {
      // A proxy's page while the dashboard restarts is no word on the command: asked again.
      const answer = await errorAnswer(response, this.#secretsOf(response));
      if (isVerdict404(answer)) return { kind: "unsupported", message: answer.message };
      return { kind: "server", status: 404, message: notItsWord(answer.jsonError, answer.message) };
    }
    if (response.status === 409) {
      const answer = await errorAnswer(response, this.#secretsOf(response));
      return replayedOnTheWay(409, answer) ?? { kind: "final", message: answer.message };
    }
    if (response.status !== 200) return await this.#failure(response);
    let body: unknown;
    try {
      body = await boundedJson(response);
    } catch (error) {
      if (signal.aborted) return { kind: "aborted" };
      if (error instanceof BrokenAnswerError) return { kind: "network", message: error.message };
      return {
        kind: "invalid",
        status: 200,
        message: `cancel-wait answer is not usable JSON: ${(error as Error).message}`,
      };
    }
    if ((body as { cancel_requested?: unknown } | null)?.cancel_requested === true) {
      return { kind: "cancel" };
    }
    return {
      kind: "invalid",
      status: 200,
      message: `cancel-wait answer has no "cancel_requested": true: ${
        JSON.stringify(body).slice(0, 300)
      }`,
    };
  }

  /**
   * Sends a command's result (`POST …/report`).
   *
   * @param report The report.
   * @param signal Aborts the request.
   * @returns Accepted (possibly as a duplicate) or a classified failure. A `404` is `refused` only
   *   when the dashboard says so in its JSON error body (an unknown command); one without it (a
   *   proxy's page while the dashboard is redeployed), or its "no route for" (a wrong path
   *   prefix), is no word on the report: `server`, so that the report is kept; so is a `2xx`
   *   that is not the dashboard's (an HTML page in its place: {@link notTheDashboards}), and any
   *   other `4xx` but a `413` without that body (a static site's `405 Not Allowed`).
   */
  async report(report: ReportRequest, signal: AbortSignal): Promise<ReportOutcome> {
    return await this.#post(PATHS.report, report, signal, {
      notFoundIsVerdict: "json",
      refusalIsVerdict: "json",
      took: "accepted",
      commandId: report.command_id,
    });
  }

  /**
   * Headers of a request to the dashboard: signed when a token is configured.
   *
   * @param method HTTP method.
   * @param pathAndQuery Path and query exactly as sent.
   * @param body The exact body.
   * @returns Headers including `X-Agent-Id`, `X-Timestamp` and `X-Request-Id`.
   */
  headersFor(method: string, pathAndQuery: string, body: string | undefined): Headers {
    const headers = new Headers(
      signedHeaders({
        agentId: this.#agentId,
        token: this.#token,
        method,
        pathAndQuery,
        body: body ?? "",
        now: this.#now(),
      }),
    );
    if (body !== undefined) headers.set("Content-Type", "application/json");
    headers.set("Accept", "application/json");
    const instanceId = this.#instanceId();
    if (instanceId !== undefined) headers.set(AGENT_INSTANCE_HEADER, instanceId);
    return headers;
  }

  /**
   * Sends a chunk of a running command's output (`POST …/commands/{id}/output`).
   *
   * @param commandId The command.
   * @param chunk Attempt, stream, offset and base64 data.
   * @param signal Aborts the request.
   * @returns Stored (`accepted`) or a classified failure. A `404` is `refused` only with the
   *   dashboard's JSON error body (an unknown command, or no live output there); one without it (a
   *   proxy's page while the dashboard is redeployed), or its "no route for", is `server`, so
   *   that the chunk is sent again.
   */
  async output(
    commandId: string,
    chunk: OutputChunkRequest,
    signal: AbortSignal,
  ): Promise<ReportOutcome> {
    return await this.#post(LIVE_PATHS.output(commandId), chunk, signal, {
      notFoundIsVerdict: "json",
      took: "stored",
      commandId,
    });
  }

  /**
   * Sends a heartbeat to the dashboard (`POST /api/v1/agent/heartbeat`).
   *
   * @param body The figures plus version, deployment and instance.
   * @param signal Aborts the request.
   * @returns Recorded (`accepted`) or a classified failure.
   */
  async heartbeat(body: Record<string, unknown>, signal: AbortSignal): Promise<ReportOutcome> {
    return await this.#post(LIVE_PATHS.heartbeat, body, signal, { took: "recorded" });
  }

  async #post(
    path: string,
    body: unknown,
    signal: AbortSignal,
    options: FailureOptions & HandedOver,
  ): Promise<ReportOutcome> {
    const sent = await this.#send(
      "POST",
      path,
      JSON.stringify(body),
      signal,
      this.#requestTimeoutMs,
    );
    if ("kind" in sent) return sent;
    const response = sent.response;
    if (!response.ok) return await this.#failure(response, options);
    const read = await this.#handedOver(response, options);
    if ("kind" in read) return read;
    const duplicate = (read.body as { duplicate?: unknown } | null)?.duplicate === true;
    return { kind: "accepted", duplicate };
  }

  /**
   * Reads a `2xx` answer to a request that hands something over: its JSON body (`undefined` when
   * it has none that reads: a 2xx without a JSON body still means taken), or, when the answer is
   * not the dashboard's ({@link notTheDashboards}), a `server` failure naming what came back, so
   * that what was handed over is kept and sent again.
   */
  async #handedOver(
    response: Response,
    expected: HandedOver,
  ): Promise<{ body: unknown } | RequestFailure> {
    let text: string | undefined;
    try {
      text = await readBodyBounded(response, MAX_ANSWER_BYTES);
    } catch {
      // A body that broke off after a 2xx: its status said it was taken.
    }
    const why = notTheDashboards(response.headers.get("Content-Type"), text, expected);
    if (why !== undefined) {
      // Before the text is cut: a secret cut in two would show its first part.
      const body = text?.trim() ?? "";
      const shown = redact(body === "" ? why : `${why}: ${body}`, this.#secretsOf(response));
      return {
        kind: "server",
        status: response.status,
        message: `${response.status} answer that is not the dashboard's, ${shown.slice(0, 400)}`,
      };
    }
    try {
      return { body: JSON.parse(text ?? "") };
    } catch {
      return { body: undefined };
    }
  }

  async #send(
    method: string,
    path: string,
    body: string | undefined,
    signal: AbortSignal,
    timeoutMs: number,
  ): Promise<{ response: Response } | RequestFailure> {
    if (signal.aborted) return { kind: "aborted" };
    const url = this.urlOf(path);
    const headers = this.headersFor(method, url.pathname + url.search, body);
    // A longer one would fire at once (a POLLING_TIMEOUT_SECS of 30 days).
    const limitMs = Math.min(timeoutMs, MAX_TIMER_MS);
    const deadline = AbortSignal.timeout(limitMs);
    try {
      const response = await this.#fetch(url, {
        method,
        headers,
        body,
        redirect: "manual",
        signal: AbortSignal.any([signal, deadline]),
      });
      const signature = headers.get(HEADER.signature);
      if (signature !== null) this.#signatures.set(response, signature);
      return { response };
    } catch (error) {
      if (signal.aborted) return { kind: "aborted" };
      if (deadline.aborted) {
        return { kind: "network", message: `no answer within ${Math.round(limitMs / 1000)} s` };
      }
      return { kind: "network", message: describeFetchFailure(error) };
    }
  }

  /** What an answer must not carry into a message: the token, and its request's signature. */
  #secretsOf(response: Response): string[] {
    return [this.#signatures.get(response) ?? "", this.#token ?? ""];
  }

  async #failure(response: Response, options: FailureOptions = {}): Promise<RequestFailure> {
    const status = response.status;
    if (status >= 300 && status < 400) {
      await response.body?.cancel();
      const location = response.headers.get("Location");
      return {
        kind: "redirect",
        status,
        message: `the dashboard redirects (${status}) to ${
          location === null
            ? "no Location"
            : JSON.stringify(redact(location, this.#secretsOf(response)).slice(0, 300))
        }; the agent does not follow redirects: set DASHBOARD_URL to the address it leads to`,
      };
    }
    const { message, jsonError } = await errorAnswer(response, this.#secretsOf(response));
    // 507: the dashboard's store is full; it says when to come back.
    if (status === 429 || status === 503 || status === 507) {
      // A date is read against the dashboard's own clock (its `Date`), as the lease is: a clock
      // hours off would otherwise make "in 30 s" an hour (the cap) or nothing (a second).
      const date = Date.parse(response.headers.get("Date") ?? "");
      const retryAfterMs = parseRetryAfter(
        response.headers.get("Retry-After"),
        Number.isFinite(date) ? date : this.#now(),
      );
      if (retryAfterMs !== undefined) return { kind: "throttled", status, retryAfterMs, message };
    }
    if (status >= 500) return { kind: "server", status, message };
    // The request did not reach the dashboard whole (a slow link, or a kept-alive connection
    // it had just closed): nothing was done with it, so it is sent again like one never answered.
    if (status === 408) {
      return { kind: "network", status, message: `408 Request Timeout: ${message}` };
    }
    // Answers about the way to the dashboard, not about the request, which nothing was done with:
    // a proxy that wants credentials (HTTPS_PROXY), a connection that reached a server that is not
    // the dashboard's, a request sent too early in a TLS handshake. A report is not dropped for
    // them: it is sent again, like one never answered.
    const way = WAY_STATUSES[status];
    if (way !== undefined) {
      return { kind: "network", status, message: `${status} ${way}: ${message}` };
    }
    if (status === 401 || status === 403) {
      const date = response.headers.get("Date");
      const serverMs = date === null ? NaN : Date.parse(date);
      const clockOffsetSecs = Number.isNaN(serverMs)
        ? undefined
        : Math.round((serverMs - this.#now()) / 1000);
      const skew = status === 401 &&
        (SKEW_WORDS.test(message) ||
          (clockOffsetSecs !== undefined && Math.abs(clockOffsetSecs) > MAX_CLOCK_SKEW_SECS));
      return { kind: "auth", status, message, clockOffsetSecs, skew };
    }
    if (status === 429) {
      return { kind: "server", status, message };
    }
    // Only a 4xx refuses the request itself; an answer no request expects (a `101` switching the
    // connection to another protocol) is no verdict on it, and a report is not dropped for it.
    if (status < 400) return { kind: "server", status, message };
    if (
      status === 404 && options.notFoundIsVerdict === "json" &&
      !isVerdict404({ message, jsonError })
    ) {
      return { kind: "server", status, message: notItsWord(jsonError, message) };
    }
    if (options.refusalIsVerdict === "json" && !jsonError && status !== 413) {
      return {
        kind: "server",
        status,
        message: `${status} without the dashboard's word on the request (not its JSON error ` +
          `body: another server's or a proxy's page in its place?): ${message}`,
      };
    }
    return replayedOnTheWay(status, { message, jsonError }) ?? { kind: "refused", status, message };
  }
}
