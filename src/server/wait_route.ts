/**
 * The lean routes, answered before the Hono app: the long-polls
 * `GET /api/v1/agent/commands/wait/{hash}` and `GET /api/v1/agent/commands/{id}/cancel-wait`, and
 * the agent routes with a body `POST /api/v1/agent/commands/{ack,report,enqueue}` (their logic is
 * in `routes_agent.ts`; answered here for what a request costs: on `node:http` no web `Request`,
 * `Headers`, stream or `Response` is made for them, and no Hono context or middleware chain).
 *
 * A wait is held for up to two minutes, and with 10,000 agents 10,000 are held at once. Through
 * Hono's middleware chain each held wait kept about sixteen suspended async frames (every
 * middleware awaits `next()` for the whole wait) and a context with some fifty closures. Here the
 * same auth steps of docs/protocol.md §1 run as plain functions (`auth/pipeline.ts`, same order,
 * same answers), and then the wait is held in the hub with a callback ({@link WaiterHub.hold}): a
 * held wait keeps its {@link LeanExchange} (where the answer goes) and the hub's waiter entry, no
 * promise, no closure, no abort signal, nothing of its request (a refusal's reason travels on the
 * answer).
 *
 * Every answer carries a `Date` header and errors have the JSON body of `HttpError`, as on the
 * Hono routes. A client that goes away is noticed by the HTTP layer, which calls
 * {@link LeanRoutes.gone} (on `node:http`, `http_app.ts` answers these routes straight on the
 * server's objects and does so when the connection closes before the answer is sent;
 * {@link LeanRoutes.fetch} does so when `request.signal` aborts).
 *
 * @module
 */
import { setImmediate } from "node:timers";
import { AGENT_POST_PATHS, type AgentPostRoute, agentPosts } from "./routes_agent.ts";
import {
  ANY_COMMAND_ID_PATTERN,
  DEPLOYMENT_HASH_PATTERN,
  DEPLOYMENT_HASH_RULE,
} from "../protocol/schemas.ts";
import { FINAL_STATUSES } from "../protocol/mod.ts";
import { logger } from "../log/mod.ts";
import type { AgentRecord, CommandRecord } from "../store/mod.ts";
import { agentAuthSteps, type AgentCall, agentCall, runAuthSteps } from "./auth/mod.ts";
import { HttpError } from "./http_error.ts";
import { unavailableError } from "./notify.ts";
import { markRefusal, type RefusalReason } from "./refusals.ts";
import { type RouteDeps, unknownCommand } from "./route_deps.ts";
import { deliveredView } from "./views.ts";
import type { HeldWait, WaiterHub } from "./waiters.ts";
import type { InstanceHold } from "./instances.ts";
import { queryError, refuseMistypedQuery } from "./query.ts";

/** Default, smallest and largest `timeout` of a wait and of a cancel-wait, in seconds. */
export const WAIT_TIMEOUT_SECS = { default: 30, min: 1, max: 120 } as const;

const COMMANDS_PREFIX = "/api/v1/agent/commands/";
const WAIT_PREFIX = `${COMMANDS_PREFIX}wait/`;
const CANCEL_WAIT_SUFFIX = "/cancel-wait";

/**
 * The routes {@link leanRoutes} answers, in Hono's path syntax (`:name` for a parameter), built
 * from the prefixes and paths its dispatcher matches.
 */
export const LEAN_ROUTES: readonly { method: "GET" | "POST"; path: string }[] = [
  { method: "GET", path: `${WAIT_PREFIX}:deployment_hash` },
  { method: "GET", path: `${COMMANDS_PREFIX}:id${CANCEL_WAIT_SUFFIX}` },
  ...[...AGENT_POST_PATHS.keys()].map((path) => ({ method: "POST" as const, path })),
];

const log = logger("server");

/**
 * Parses the `timeout` query parameter of a wait, in seconds (clamped to 1–120).
 *
 * @param raw The parameter, if present.
 * @throws {HttpError} `400` when it is not a decimal number.
 */
export function parseTimeoutSecs(raw: string | null | undefined): number {
  if (raw === undefined || raw === null || raw.trim() === "") return WAIT_TIMEOUT_SECS.default;
  // Decimal only: `Number` would also read `0x10` as 16 and `1e2` as 100.
  const value = /^\s*[+-]?\d+(\.\d+)?\s*$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isFinite(value)) {
    throw queryError("timeout", "must be a number of seconds");
  }
  return Math.min(WAIT_TIMEOUT_SECS.max, Math.max(WAIT_TIMEOUT_SECS.min, Math.floor(value)));
}

/** Whether the agent running the command should stop it: an operator asked to cancel it. */
export function cancelAsked(command: CommandRecord): boolean {
  // `cancelled` without the flag: cancelled while queued again after its lease ended, while the
  // agent may still run the earlier attempt.
  return command.cancelRequested || command.status === "cancelled";
}

/**
 * The `timeout` parameter of a long-poll's query, if any.
 *
 * @throws {HttpError} `400` when it is given more than once (only one would be read), or when a
 * parameter near it is given instead (`timout`: the wait would take the default 30 s).
 */
function timeoutOf(match: LeanMatch): string | null {
  if (match.search === "") return null;
  const params = new URLSearchParams(match.search);
  const values = params.getAll("timeout");
  if (values.length > 1) {
    throw queryError("timeout", `is given ${values.length} times; a wait takes one`);
  }
  refuseMistypedQuery(params, ["timeout"], "wait");
  return values[0] ?? null;
}

/** A path with its percent-escapes decoded as Hono decodes them, or as it is when malformed. */
function decodedPath(path: string): string {
  try {
    return decodeURI(path);
  } catch {
    return path;
  }
}

function decodeSegment(segment: string): string {
  if (!segment.includes("%")) return segment;
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** A lean route's answer, before it is a web `Response` (`node:http` writes it as it is). */
export interface LeanAnswer {
  /** The HTTP status. */
  status: number;
  /** The headers, names in lower case. */
  headers: Record<string, string>;
  /** The JSON body; `null` for a `204`. */
  body: string | null;
  /** Why the request was refused, when an auth step refused it (the metrics count it). */
  refusal?: RefusalReason;
}

/**
 * One request to a lean route, made by the HTTP layer: where its answer goes. While a wait is held
 * this object (and the hub's entry) is all that is kept of the request.
 */
export abstract class LeanExchange {
  /** The request's path. */
  readonly path: string;
  /** The held wait, while one is held. */
  held: HeldWait | undefined = undefined;
  /** Ends the held cancel-wait, while one is held. */
  abort: AbortController | undefined = undefined;
  /** The agent's instance hold (`instances.ts`), to leave when the long-poll ends. */
  instance: InstanceHold | undefined = undefined;
  /** The identified agent. */
  agentId: string | undefined = undefined;
  /** When the request started, in ms of `performance.now()` (debug timing only). */
  started: number | undefined = undefined;
  /** Whether the answer was given. */
  answered = false;
  /** Whether the client went away before a wait was held. */
  gone = false;

  /**
   * Makes an exchange.
   *
   * @param path The request's path (as a route label and in the logs): better a part of a string
   *   kept anyway while the wait is held (a slice keeps its whole string).
   */
  constructor(path: string) {
    this.path = path;
  }

  /**
   * Sends the answer; called once.
   *
   * @param answer The answer.
   */
  abstract send(answer: LeanAnswer): void;
}

/** A request to one of the lean routes, as {@link LeanRoutes.match} found it. */
export interface LeanMatch {
  /** Which route. */
  readonly route: "wait" | "cancel-wait" | AgentPostRoute;
  /** The request's path. */
  readonly path: string;
  /** The path parameter, as sent (percent-encoded); `""` for the routes without one. */
  readonly segment: string;
  /** The query, without its `?`. */
  readonly search: string;
}

/** The lean routes, as the HTTP layer calls them. */
export interface LeanRoutes {
  /**
   * Whether a request is to a lean route (a `GET` long-poll or an agent `POST`).
   *
   * @param method The request method.
   * @param url The request's URL, as a web `Request` has it.
   * @returns The route and its parameters, or `null` for the Hono app to answer it.
   */
  match(method: string, url: string): LeanMatch | null;
  /**
   * Answers a matched request through `exchange` (later: the wait is held until a command, the
   * timeout, {@link LeanRoutes.gone} or the hub's close).
   *
   * @param match The route, from {@link LeanRoutes.match}.
   * @param call The request as the auth steps read it (not kept once a wait is held).
   * @param exchange Where the answer goes.
   */
  run(match: LeanMatch, call: AgentCall, exchange: LeanExchange): void;
  /**
   * The client went away: a held wait is dropped (and answered with `204` to nobody).
   *
   * @param exchange The request's exchange.
   */
  gone(exchange: LeanExchange): void;
  /**
   * The lean routes as a web handler: the answer to a request to one of them, or `null` for the
   * Hono app to answer it. `signal` aborts when the client goes away (default: `request.signal`).
   */
  fetch(request: Request, remote?: string, signal?: AbortSignal): Promise<Response> | null;
}

/**
 * Whether a request target (path and query, as on the request line) may be a lean route: a cheap
 * test that lets everything else go straight to the Hono app.
 *
 * @param method The request's method.
 * @param target The request target, e.g. `/api/v1/agent/commands/wait/default?timeout=30`.
 */
export function maybeLean(method: string | undefined, target: string): boolean {
  return (method === "GET" || method === "POST") && target.startsWith(COMMANDS_PREFIX);
}

/**
 * A lean answer as a web `Response` (with its refusal noted for the metrics).
 *
 * @param answer The answer.
 */
export function leanResponse(answer: LeanAnswer): Response {
  const response = new Response(answer.body, { status: answer.status, headers: answer.headers });
  if (answer.refusal !== undefined) markRefusal(response, answer.refusal);
  return response;
}

/** The exchange of {@link LeanRoutes.fetch}: the answer resolves a promise. */
class PromiseExchange extends LeanExchange {
  readonly #resolve: (response: Response) => void;
  readonly #done: () => void;

  constructor(path: string, resolve: (response: Response) => void, done: () => void) {
    super(path);
    this.#resolve = resolve;
    this.#done = done;
  }

  send(answer: LeanAnswer): void {
    this.#done();
    this.#resolve(leanResponse(answer));
  }
}

/**
 * Makes the lean routes (the long-polls and the agent `POST`s).
 *
 * @param deps The shared parts of the routes.
 * @returns The routes; {@link LeanRoutes.match} is `null` for anything else.
 */
export function leanRoutes(deps: RouteDeps): LeanRoutes {
  const { clock, cancelWaiters, store } = deps;
  const hub: WaiterHub = deps.hub;

  // The Date header changes once a second; build its string once a second.
  let dateSecond = NaN;
  let dateText = "";
  const dateHeader = () => {
    const now = clock.now();
    const second = Math.floor(now / 1000);
    if (second !== dateSecond) {
      dateSecond = second;
      dateText = new Date(now).toUTCString();
    }
    return dateText;
  };
  const json = (body: unknown, status: number, extra?: Record<string, string>): LeanAnswer => {
    const headers: Record<string, string> = {
      "content-type": "application/json",
      date: dateHeader(),
    };
    if (extra) { for (const name in extra) headers[name.toLowerCase()] = extra[name]; }
    return { status, headers, body: JSON.stringify(body) };
  };
  const noContent = (): LeanAnswer => ({
    status: 204,
    headers: { date: dateHeader() },
    body: null,
  });

  const waitSteps = agentAuthSteps(deps, "commands:wait", deps.waitRequireSignature);
  const cancelWaitSteps = agentAuthSteps(deps, "commands:wait", true);
  const posts = agentPosts(deps, json);

  /** Gives the answer, once (and logs its timing at debug level). */
  function finish(exchange: LeanExchange, answer: LeanAnswer, method = "GET"): void {
    if (exchange.answered) return;
    exchange.answered = true;
    if (exchange.started !== undefined) {
      const started = exchange.started;
      log.debug("{method} {path} {status}", () => ({
        method,
        path: exchange.path,
        status: answer.status,
        durationMs: Math.round((performance.now() - started) * 10) / 10,
        agentId: exchange.agentId,
      }));
    }
    exchange.send(answer);
  }

  /** Answers a failure before the wait is held (a refusal is noted on the answer). */
  function fail(exchange: LeanExchange, call: AgentCall, thrown: unknown): void {
    exchange.agentId ??= call.agent?.id;
    const answer = failedLate(exchange.path, thrown);
    if (call.refusal !== undefined) answer.refusal = call.refusal;
    finish(exchange, answer);
  }

  /**
   * The answer to a failure of a request to `path` (as `error_handler.ts` answers the Hono
   * routes'): an `HttpError` as it says, a store gone `503`, a full store `507`, a failing store
   * `503`, else a logged `500`.
   */
  function failedLate(path: string, thrown: unknown, method = "GET"): LeanAnswer {
    const unavailable = unavailableError(thrown);
    if (unavailable) deps.availability.observe(thrown);
    const error = unavailable ?? deps.storeHealth.map(thrown);
    if (error instanceof HttpError) return json(error.toJSON(), error.status, error.headers);
    log.error("request {method} {path} failed: {error}", { method, path, error });
    return json({ error: "internal error; see the dashboard's log" }, 500);
  }

  /** Answers an agent `POST` (the store's wrapper tells its health of the writes it committed). */
  function post(found: LeanMatch, call: AgentCall, exchange: LeanExchange): Promise<void> {
    return posts[found.route as AgentPostRoute](call).then((answer) => {
      exchange.agentId = call.agent?.id;
      finish(exchange, answer, "POST");
    }, (error) => {
      exchange.agentId = call.agent?.id;
      const answer = failedLate(exchange.path, error, "POST");
      if (call.refusal !== undefined) answer.refusal = call.refusal;
      finish(exchange, answer, "POST");
    });
  }

  // While a wait is held, nothing refers to its `call` (nor so to its request): the failures
  // before it is held are answered with the call at hand, later ones with the exchange's path.
  function wait(call: AgentCall, match: LeanMatch, exchange: LeanExchange): Promise<void> {
    return runAuthSteps(call, waitSteps).then(
      (agent) => holdWait(call, agent, match, exchange),
      (error) => fail(exchange, call, error),
    );
  }

  /**
   * Whether the agent's token was rotated, or the agent removed, since its steps began (the mark
   * step 1 took before it read the token): its waits and cancel-waits were ended then, and one
   * whose steps were still running is answered as they were, `204`, instead of being held with
   * that token.
   */
  function dismissedMeanwhile(exchange: LeanExchange, call: AgentCall, agentId: string): boolean {
    const mark = call.mark ?? hub.mark;
    if (!hub.dismissedSince(agentId, mark)) return false;
    exchange.agentId = agentId;
    finish(exchange, noContent());
    return true;
  }

  function holdWait(
    call: AgentCall,
    agent: AgentRecord,
    match: LeanMatch,
    exchange: LeanExchange,
  ): void {
    if (dismissedMeanwhile(exchange, call, agent.id)) return;
    let hash: string;
    let timeoutSecs: number;
    try {
      hash = decodeSegment(match.segment);
      if (!DEPLOYMENT_HASH_PATTERN.test(hash)) {
        throw new HttpError(400, `path "deployment_hash": must be ${DEPLOYMENT_HASH_RULE}`);
      }
      timeoutSecs = parseTimeoutSecs(timeoutOf(match));
      // One agent process per id: a second one is refused (409) while the first is connected.
      exchange.instance = deps.instances?.enter(agent.id, call, timeoutSecs * 1000);
    } catch (error) {
      fail(exchange, call, error);
      return;
    }
    deps.noteWaitHash?.(agent.id, hash);
    exchange.agentId = agent.id;
    if (exchange.gone) {
      // The client went away while the steps ran: nothing to hold.
      exchange.instance?.leave();
      finish(exchange, noContent());
      return;
    }
    exchange.held = hub.hold(
      {
        agentId: agent.id,
        deploymentHash: hash,
        timeoutMs: timeoutSecs * 1000,
        token: agent.token,
      },
      waitDone,
      exchange,
    );
  }

  /** Where every held wait ends (one function for all: a held wait keeps no closure). */
  function waitDone(exchange: LeanExchange, command: CommandRecord | null, error?: unknown): void {
    exchange.held = undefined;
    exchange.instance?.leave();
    if (error !== undefined) {
      finish(exchange, failedLate(exchange.path, error));
      return;
    }
    if (!command) {
      finish(exchange, noContent());
      return;
    }
    finish(exchange, json(deliveredView(command), 200));
    // Logged after the answer is written (a turn later): the line costs a wake-up ~35 µs.
    const agentId = exchange.agentId;
    setImmediate(() =>
      log.info("command delivered {commandId} to {agentId}", {
        commandId: command.id,
        agentId,
        attempt: command.attempt,
      })
    );
  }

  function cancelWait(call: AgentCall, match: LeanMatch, exchange: LeanExchange): Promise<void> {
    return runAuthSteps(call, cancelWaitSteps).then(
      (agent) => holdCancelWait(call, agent, match, exchange),
      (error) => fail(exchange, call, error),
    );
  }

  async function holdCancelWait(
    call: AgentCall,
    agent: AgentRecord,
    match: LeanMatch,
    exchange: LeanExchange,
  ): Promise<void> {
    const agentId = agent.id;
    if (dismissedMeanwhile(exchange, call, agentId)) return;
    let id: string;
    let timeoutSecs: number;
    try {
      id = decodeSegment(match.segment);
      // No command has an id beyond the rule (a NUL in it would be a database error on PostgreSQL).
      if (!ANY_COMMAND_ID_PATTERN.test(id)) throw unknownCommand(call, id, "not_found");
      timeoutSecs = parseTimeoutSecs(timeoutOf(match));
      exchange.instance = deps.instances?.enter(agentId, call, timeoutSecs * 1000, false);
    } catch (error) {
      fail(exchange, call, error);
      return;
    }
    exchange.agentId = agentId;
    // Register first, then read the store: a cancel written before the read is seen by it, one
    // written after finds the waiter (the cancel route notifies after its write).
    const drop = new AbortController();
    exchange.abort = drop;
    if (exchange.gone) drop.abort();
    // Its agent and token: a rotation or removal ends it, as it ends a wait.
    const cancelled = cancelWaiters.wait({
      commandId: id,
      timeoutMs: timeoutSecs * 1000,
      signal: drop.signal,
      agentId,
      token: agent.token,
    });
    try {
      const command = await store.getCommand(id);
      if (!command) throw unknownCommand(call, id, "not_found");
      if (command.agentId !== agentId) throw unknownCommand(call, id, "forbidden");
      if (!cancelAsked(command) && FINAL_STATUSES.has(command.status)) {
        throw new HttpError(
          409,
          `command ${id} is already ${command.status}; there is nothing to cancel`,
          { details: { status: command.status } },
        );
      }
      if (cancelAsked(command)) {
        endCancelWait(exchange);
        finish(exchange, passCancel(id, agentId));
        return;
      }
    } catch (error) {
      endCancelWait(exchange);
      fail(exchange, call, error);
      return;
    }
    cancelled.then((requested) => {
      endCancelWait(exchange);
      finish(exchange, requested ? passCancel(id, agentId) : noContent());
    }, (error) => {
      exchange.abort = undefined;
      exchange.instance?.leave();
      finish(exchange, failedLate(exchange.path, error));
    });
  }

  function endCancelWait(exchange: LeanExchange): void {
    const drop = exchange.abort;
    exchange.abort = undefined;
    drop?.abort();
    exchange.instance?.leave();
  }

  function passCancel(commandId: string, agentId: string): LeanAnswer {
    log.info("cancel of command {commandId} passed to {agentId}", { commandId, agentId });
    return json({ cancel_requested: true }, 200);
  }

  function match(method: string, url: string): LeanMatch | null {
    if (method !== "GET" && method !== "POST") return null;
    const pathStart = url.indexOf("/", url.indexOf("//") + 2);
    if (pathStart < 0 || !url.startsWith(COMMANDS_PREFIX, pathStart)) return null;
    let pathEnd = url.indexOf("?", pathStart);
    const hashMark = url.indexOf("#", pathStart);
    if (pathEnd < 0 || (hashMark >= 0 && hashMark < pathEnd)) pathEnd = hashMark;
    const path = pathEnd < 0 ? url.slice(pathStart) : url.slice(pathStart, pathEnd);
    if (method === "POST") {
      // As Hono matched them: the exact path, percent-escapes decoded (`decodeURI`).
      const route = AGENT_POST_PATHS.get(path) ??
        (path.includes("%") ? AGENT_POST_PATHS.get(decodedPath(path)) : undefined);
      return route ? { route, path, segment: "", search: "" } : null;
    }
    let route: LeanMatch["route"];
    let segment: string;
    if (path.startsWith(WAIT_PREFIX)) {
      segment = path.slice(WAIT_PREFIX.length);
      route = "wait";
    } else if (path.endsWith(CANCEL_WAIT_SUFFIX)) {
      segment = path.slice(COMMANDS_PREFIX.length, path.length - CANCEL_WAIT_SUFFIX.length);
      route = "cancel-wait";
    } else {
      return null;
    }
    // One non-empty path segment, as the Hono routes matched; anything else is Hono's 404.
    if (segment === "" || segment.includes("/")) return null;
    const search = pathEnd >= 0 && url[pathEnd] === "?" ? url.slice(pathEnd + 1).split("#")[0] : "";
    return { route, path, segment, search };
  }

  function run(found: LeanMatch, call: AgentCall, exchange: LeanExchange): void {
    call.refusalLines ??= deps.refusalLines;
    if (log.isEnabledFor("debug")) exchange.started = performance.now();
    const route = found.route;
    if (route === "wait" || route === "cancel-wait") {
      (route === "wait" ? wait : cancelWait)(call, found, exchange)
        .catch((error) => finish(exchange, failedLate(found.path, error)));
    } else {
      post(found, call, exchange)
        .catch((error) => finish(exchange, failedLate(found.path, error, "POST"), "POST"));
    }
  }

  function gone(exchange: LeanExchange): void {
    if (exchange.answered) return;
    exchange.gone = true;
    if (exchange.held) hub.drop(exchange.held);
    else exchange.abort?.abort();
  }

  return {
    match,
    run,
    gone,
    fetch(request, remote, signal) {
      const found = match(request.method, request.url);
      if (!found) return null;
      const gave = signal ?? request.signal;
      const { promise, resolve } = Promise.withResolvers<Response>();
      const onAbort = () => gone(exchange);
      const exchange = new PromiseExchange(
        found.path,
        resolve,
        () => gave.removeEventListener("abort", onAbort),
      );
      gave.addEventListener("abort", onAbort, { once: true });
      run(found, agentCall(request, remote), exchange);
      if (gave.aborted) gone(exchange);
      return promise;
    },
  };
}
