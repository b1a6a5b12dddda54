/**
 * The lean long-poll routes: `GET /api/v1/agent/commands/wait/{hash}` and
 * `GET /api/v1/agent/commands/{id}/cancel-wait`, answered before the Hono app.
 *
 * A wait is held for up to two minutes, and with 10,000 agents 10,000 are held at once. Through
 * Hono's middleware chain each held wait kept about sixteen suspended async frames (every
 * middleware awaits `next()` for the whole wait) and a context with some fifty closures. Here the
 * same auth steps of PROTOCOL.md §1 run as plain functions (`auth/pipeline.ts`, same order, same answers),
 * and then the handler returns the waiter's promise: a held wait keeps its waiter entry and a few
 * promises, nothing of its request (a refusal's reason travels on the answer, `carryRefusal`).
 *
 * Every answer carries a `Date` header and errors have the JSON body of `HttpError`, as on the
 * Hono routes. A client that goes away is noticed through the signal the HTTP layer passes (on
 * `node:http`, `http_app.ts` answers these routes straight on the server's objects and aborts it
 * when the connection closes before the answer is sent), or else through `request.signal`.
 *
 * @module
 */
import { setImmediate } from "node:timers";
import { DEPLOYMENT_HASH_PATTERN, DEPLOYMENT_HASH_RULE } from "../protocol/schemas.ts";
import { FINAL_STATUSES } from "../protocol/mod.ts";
import { logger } from "../log/mod.ts";
import type { AgentRecord, CommandRecord } from "../store/mod.ts";
import { agentAuthSteps, type AgentCall, agentCall, type AuthStep } from "./auth/mod.ts";
import { HttpError } from "./http_error.ts";
import { unavailableError } from "./notify.ts";
import { carryRefusal } from "./refusals.ts";
import { type RouteDeps, unknownCommand } from "./route_deps.ts";
import { deliveredView } from "./views.ts";

/** Default, smallest and largest `timeout` of a wait and of a cancel-wait, in seconds. */
export const WAIT_TIMEOUT_SECS = { default: 30, min: 1, max: 120 } as const;

const COMMANDS_PREFIX = "/api/v1/agent/commands/";
const WAIT_PREFIX = `${COMMANDS_PREFIX}wait/`;
const CANCEL_WAIT_SUFFIX = "/cancel-wait";

/**
 * The routes {@link leanRoutes} answers, in Hono's path syntax (`:name` for a parameter), built
 * from the prefixes its dispatcher matches.
 */
export const LEAN_ROUTES: readonly { method: "GET"; path: string }[] = [
  { method: "GET", path: `${WAIT_PREFIX}:deployment_hash` },
  { method: "GET", path: `${COMMANDS_PREFIX}:id${CANCEL_WAIT_SUFFIX}` },
];

const log = logger("server");

/**
 * Parses the `timeout` query parameter of a wait, in seconds (clamped to 1–120).
 *
 * @param raw The parameter, if present.
 * @throws {HttpError} `400` when it is not a number.
 */
export function parseTimeoutSecs(raw: string | null | undefined): number {
  if (raw === undefined || raw === null || raw.trim() === "") return WAIT_TIMEOUT_SECS.default;
  const value = Number(raw);
  if (!Number.isFinite(value)) {
    throw new HttpError(400, `query "timeout": must be a number of seconds`, {
      details: [{ field: "timeout", message: "must be a number of seconds" }],
    });
  }
  return Math.min(WAIT_TIMEOUT_SECS.max, Math.max(WAIT_TIMEOUT_SECS.min, Math.floor(value)));
}

/** Whether the agent running the command should stop it: an operator asked to cancel it. */
export function cancelAsked(command: CommandRecord): boolean {
  // `cancelled` without the flag: cancelled while queued again after its lease ended, while the
  // agent may still run the earlier attempt.
  return command.cancelRequested || command.status === "cancelled";
}

function decodeSegment(segment: string): string {
  if (!segment.includes("%")) return segment;
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/**
 * Answers a request to a lean route, or returns `null` for the Hono app to answer it. `signal`
 * aborts when the client goes away (default: `request.signal`).
 */
export type LeanRoutes = (
  request: Request,
  remote?: string,
  signal?: AbortSignal,
) => Promise<Response> | null;

/**
 * Whether a request target (path and query, as on the request line) may be a lean route: a cheap
 * test that lets everything else go straight to the Hono app.
 *
 * @param method The request's method.
 * @param target The request target, e.g. `/api/v1/agent/commands/wait/default?timeout=30`.
 */
export function maybeLean(method: string | undefined, target: string): boolean {
  return method === "GET" && target.startsWith(COMMANDS_PREFIX);
}

/**
 * Makes the dispatcher of the lean long-poll routes.
 *
 * @param deps The shared parts of the routes.
 * @returns A function that answers the two long-polls and returns `null` for anything else.
 */
export function leanRoutes(deps: RouteDeps): LeanRoutes {
  const { clock, hub, cancelWaiters, store } = deps;

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
  const json = (body: unknown, status: number, extra?: Record<string, string>) =>
    new Response(JSON.stringify(body), {
      status,
      headers: { "Content-Type": "application/json", Date: dateHeader(), ...extra },
    });
  const noContent = () => new Response(null, { status: 204, headers: { Date: dateHeader() } });

  const waitSteps = agentAuthSteps(deps, "commands:wait", deps.waitRequireSignature);
  const cancelWaitSteps = agentAuthSteps(deps, "commands:wait", true);
  async function authenticate(call: AgentCall, steps: readonly AuthStep[]) {
    for (const step of steps) {
      const pending = step(call);
      if (pending) await pending;
    }
    return call.agent!;
  }

  // While a wait is held, no closure of it refers to its `call` (nor so to its request): the
  // failures before it is held are answered here, with the call at hand; later ones through
  // `failedLate`, which needs only the path.
  async function wait(
    call: AgentCall,
    rawHash: string,
    query: URLSearchParams,
    signal: AbortSignal,
    path: string,
  ): Promise<Response> {
    let agent: AgentRecord;
    let hash: string;
    let timeoutSecs: number;
    let leave: (() => void) | undefined;
    try {
      agent = await authenticate(call, waitSteps);
      hash = decodeSegment(rawHash);
      if (!DEPLOYMENT_HASH_PATTERN.test(hash)) {
        throw new HttpError(
          400,
          `path "deployment_hash": must be ${DEPLOYMENT_HASH_RULE}`,
        );
      }
      timeoutSecs = parseTimeoutSecs(query.get("timeout"));
      // One agent process per id: a second one is refused (409) while the first is connected.
      leave = deps.instances?.enter(agent.id, call.request, timeoutSecs * 1000);
    } catch (error) {
      return failed(call, error);
    }
    deps.noteWaitHash?.(agent.id, hash);
    const agentId = agent.id;
    // Returned, not awaited: while the wait is held nothing else of this request stays suspended.
    return hub.wait({
      agentId: agent.id,
      deploymentHash: hash,
      timeoutMs: timeoutSecs * 1000,
      signal,
    }).then((command) => {
      // One `then` with both branches: each link of a chain is kept for the whole wait.
      leave?.();
      if (!command) return noContent();
      deps.storeHealth.wrote();
      // Logged after the answer is written (a turn later): the line costs a wake-up ~35 µs.
      setImmediate(() =>
        log.info("command delivered {commandId} to {agentId}", {
          commandId: command.id,
          agentId,
          attempt: command.attempt,
        })
      );
      return json(deliveredView(command), 200);
    }, (error) => {
      leave?.();
      return failedLate(path, error);
    });
  }

  async function cancelWait(
    call: AgentCall,
    rawId: string,
    query: URLSearchParams,
    signal: AbortSignal,
    path: string,
  ): Promise<Response> {
    let agentId: string;
    let id: string;
    let timeoutSecs: number;
    let leave: (() => void) | undefined;
    try {
      agentId = (await authenticate(call, cancelWaitSteps)).id;
      id = decodeSegment(rawId);
      timeoutSecs = parseTimeoutSecs(query.get("timeout"));
      leave = deps.instances?.enter(agentId, call.request, timeoutSecs * 1000, false);
    } catch (error) {
      return failed(call, error);
    }
    // Register first, then read the store: a cancel written before the read is seen by it, one
    // written after finds the waiter (the cancel route notifies after its write).
    const drop = new AbortController();
    const cancelled = cancelWaiters.wait({
      commandId: id,
      timeoutMs: timeoutSecs * 1000,
      signal: AbortSignal.any([signal, drop.signal]),
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
        drop.abort();
        leave?.();
        return passCancel(id, agentId);
      }
    } catch (error) {
      drop.abort();
      leave?.();
      return failed(call, error);
    }
    return cancelled.then((requested) => {
      drop.abort();
      leave?.();
      return requested ? passCancel(id, agentId) : noContent();
    }, (error) => {
      leave?.();
      return failedLate(path, error);
    });
  }

  function passCancel(commandId: string, agentId: string): Response {
    log.info("cancel of command {commandId} passed to {agentId}", { commandId, agentId });
    return json({ cancel_requested: true }, 200);
  }

  /** The answer to a failure before the wait is held (a refusal is noted on the answer). */
  function failed(call: AgentCall, thrown: unknown): Response {
    return carryRefusal(call.request, failedLate(new URL(call.request.url).pathname, thrown));
  }

  /** The answer to a failure of the `GET` of `path`. */
  function failedLate(path: string, thrown: unknown): Response {
    const unavailable = unavailableError(thrown);
    if (unavailable) deps.availability.observe(thrown);
    const error = unavailable ?? deps.storeHealth.map(thrown);
    if (error instanceof HttpError) return json(error.toJSON(), error.status, error.headers);
    log.error("request {method} {path} failed: {error}", { method: "GET", path, error });
    return json({ error: "internal error; see the dashboard's log" }, 500);
  }

  return function dispatch(request, remote, signal) {
    if (request.method !== "GET") return null;
    const url = request.url;
    const pathStart = url.indexOf("/", url.indexOf("//") + 2);
    if (pathStart < 0 || !url.startsWith(COMMANDS_PREFIX, pathStart)) return null;
    let pathEnd = url.indexOf("?", pathStart);
    const hashMark = url.indexOf("#", pathStart);
    if (pathEnd < 0 || (hashMark >= 0 && hashMark < pathEnd)) pathEnd = hashMark;
    const path = pathEnd < 0 ? url.slice(pathStart) : url.slice(pathStart, pathEnd);
    let handler: typeof wait;
    let segment: string;
    if (path.startsWith(WAIT_PREFIX)) {
      segment = path.slice(WAIT_PREFIX.length);
      handler = wait;
    } else if (path.endsWith(CANCEL_WAIT_SUFFIX)) {
      segment = path.slice(COMMANDS_PREFIX.length, path.length - CANCEL_WAIT_SUFFIX.length);
      handler = cancelWait;
    } else {
      return null;
    }
    // One non-empty path segment, as the Hono routes matched; anything else is Hono's 404.
    if (segment === "" || segment.includes("/")) return null;
    const query = new URLSearchParams(
      pathEnd >= 0 && url[pathEnd] === "?" ? url.slice(pathEnd + 1).split("#")[0] : "",
    );
    const call = agentCall(request, remote);
    const answer = handler(call, segment, query, signal ?? request.signal, path)
      .catch((error) => failedLate(path, error));
    return log.isEnabledFor("debug") ? logged(answer, path, call) : answer;
  };
}

/** Logs the answer of a lean route at debug level (in a scope of its own: see `wait`). */
function logged(answer: Promise<Response>, path: string, call: AgentCall): Promise<Response> {
  const started = performance.now();
  return answer.then((response) => {
    log.debug("{method} {path} {status}", () => ({
      method: "GET",
      path,
      status: response.status,
      durationMs: Math.round((performance.now() - started) * 10) / 10,
      agentId: call.agent?.id,
    }));
    return response;
  });
}
