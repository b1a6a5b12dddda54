/**
 * The HTTP face of the dashboard: the lean routes (the long-polls and the agent `POST`s) answered
 * before the Hono app, every answer counted in the metrics, and the list of routes the app answers.
 *
 * @module
 */
import type { Hono } from "hono";
import { Buffer } from "node:buffer";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ServerEnv } from "./env.ts";
import type { DashboardMetrics } from "./metrics.ts";
import { routeLabel } from "./metrics.ts";
import { refusalOf, type RefusalReason } from "./refusals.ts";
import { type LeanAnswer, LeanExchange, type LeanRoutes, maybeLean } from "./wait_route.ts";
import type { GuardedRequest } from "./browser_guard.ts";
import type { AgentCall, HeaderReader } from "./auth/call.ts";
import { drainIncoming } from "./body.ts";
import { queryError } from "./query.ts";
import { shortForm } from "../protocol/mod.ts";

/**
 * Answers a request straight on the `node:http` server's objects, or returns `false` (having
 * done nothing) to leave it to {@link HttpApp.fetch}. `remote` is the client's address.
 */
export type DirectHandler = (
  incoming: IncomingMessage,
  outgoing: ServerResponse,
  remote: string | undefined,
) => boolean;

const directHandlers = new WeakMap<HttpApp, DirectHandler>();

/**
 * The handler that answers the lean routes on `node:http` without the web-`Request` adapter of
 * `@hono/node-server` (whose lightweight request, header copy, abort controller and two suspended
 * async frames a held wait would keep, and whose `Request`, `Headers`, body stream and `Response`
 * every agent `POST` would make), if the app has one.
 *
 * @param app The app.
 */
export function directHandlerOf(app: HttpApp): DirectHandler | undefined {
  return directHandlers.get(app);
}

/**
 * What a lean request's `IncomingMessage` holds as headers once its `Request` is made: held
 * for up to two minutes, node's copies (raw and parsed) would cost a kilobyte each.
 */
const NO_RAW_HEADERS: string[] = Object.freeze([]) as unknown as string[];
const NO_HEADERS = Object.freeze({}) as IncomingMessage["headers"];

/** The `Host` header of raw headers (read without making `IncomingMessage.headers`). */
function hostOf(raw: string[]): string | undefined {
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i];
    if (name.length === 4 && name.toLowerCase() === "host") return raw[i + 1];
  }
  return undefined;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[\0\r\n]|[^\0-\xff]/;

/** Whether a web `Headers` takes these raw headers (names are tokens; no NUL, CR, LF, wide char). */
export function webHeadersAccept(raw: readonly string[]): boolean {
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (!TOKEN.test(raw[i]) || BAD_VALUE.test(raw[i + 1])) return false;
  }
  return true;
}

const EDGE_WHITESPACE = /^[\t\n\r ]+|[\t\n\r ]+$/g;

/**
 * `node:http`'s raw headers read as a web `Headers` reads them: a name in any case, repeated
 * headers joined with `", "`, values without surrounding whitespace.
 */
export class RawHeaders implements HeaderReader {
  readonly #raw: readonly string[];

  /**
   * Reads raw headers.
   *
   * @param raw Names and values, alternating (`IncomingMessage.rawHeaders`).
   */
  constructor(raw: readonly string[]) {
    this.#raw = raw;
  }

  get(name: string): string | null {
    const wanted = name.toLowerCase();
    const raw = this.#raw;
    let value: string | null = null;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const key = raw[i];
      if (key.length !== wanted.length || key.toLowerCase() !== wanted) continue;
      const one = raw[i + 1].replace(EDGE_WHITESPACE, "");
      value = value === null ? one : `${value}, ${one}`;
    }
    return value;
  }
}

/**
 * Whether a request target's path holds a malformed percent-escape: a `%` not followed by two hex
 * digits (`%zz`), or escapes whose bytes are not UTF-8 (`%ff`). The routes would read it as it
 * is, so `/wait/%zz` and `/wait/%25zz` would name the same deployment hash.
 *
 * @param target The request target, or an absolute URL.
 */
export function hasMalformedEscape(target: string): boolean {
  if (!target.includes("%")) return false;
  const start = target.startsWith("/") ? 0 : target.indexOf("/", target.indexOf("//") + 2);
  if (start < 0) return false;
  const end = target.search(/[?#]/);
  const path = end < 0 || end < start ? target.slice(start) : target.slice(start, end);
  try {
    decodeURIComponent(path);
    return false;
  } catch {
    return true;
  }
}

/**
 * The first query parameter whose name or value holds a malformed percent-escape, as
 * {@link hasMalformedEscape} finds them in a path: `URLSearchParams` reads `%zz` as it is and `%ff`
 * as U+FFFD, Hono's reader both as they are; either way another value than the one sent.
 *
 * @param target The request target, or an absolute URL.
 * @returns The parameter's name (decoded, when it decodes), or `undefined` when none has one.
 */
export function malformedQueryParameter(target: string): string | undefined {
  const start = target.indexOf("?");
  if (start < 0 || !target.includes("%", start)) return undefined;
  const end = target.indexOf("#", start);
  for (const pair of target.slice(start + 1, end < 0 ? undefined : end).split("&")) {
    if (!pair.includes("%")) continue;
    try {
      decodeURIComponent(pair);
    } catch {
      const equals = pair.indexOf("=");
      const name = (equals < 0 ? pair : pair.slice(0, equals)).replaceAll("+", " ");
      try {
        return decodeURIComponent(name);
      } catch {
        return name;
      }
    }
  }
  return undefined;
}

/** The `400` of a query parameter with a malformed percent-escape ({@link malformedQueryParameter}). */
function malformedQueryAnswer(name: string): Response {
  const error = queryError(
    shortForm(name),
    "a % in it must begin an escape of two hex digits (%25 for a % itself), and its escapes " +
      "must be UTF-8",
  );
  return Response.json(error.toJSON(), { status: 400 });
}

/** The `400` of a path with a malformed percent-escape ({@link hasMalformedEscape}). */
function malformedEscapeAnswer(): Response {
  return Response.json({
    error: "malformed path: a % in it must begin an escape of two hex digits (%25 for a % " +
      "itself), and its escapes must be UTF-8",
  }, { status: 400 });
}

/**
 * What every answer says to a browser and to any cache between: keep it nowhere (it may hold an
 * agent's token or a command's output), unless it says otherwise (an event stream, the console's
 * static files); and read it only as its type (an error quotes the path a client sent).
 */
const CACHE_CONTROL = "no-store";
const NOSNIFF = "nosniff";

/** Adds {@link CACHE_CONTROL} (unless the answer has its own) and `nosniff` to a web answer. */
function markAnswer(response: Response): void {
  const headers = response.headers;
  try {
    if (!headers.has("Cache-Control")) headers.set("Cache-Control", CACHE_CONTROL);
    headers.set("X-Content-Type-Options", NOSNIFF);
  } catch {
    // A response whose headers cannot change (none of the dashboard's own) goes as it is.
  }
}

function send(outgoing: ServerResponse, answer: LeanAnswer): void {
  if (outgoing.destroyed || outgoing.writableEnded) return;
  const head: Record<string, string | number> = answer.headers;
  head["cache-control"] ??= CACHE_CONTROL;
  head["x-content-type-options"] = NOSNIFF;
  if (answer.status !== 204) head["content-length"] = Buffer.byteLength(answer.body ?? "");
  outgoing.writeHead(answer.status, head);
  outgoing.end(answer.status === 204 ? undefined : answer.body ?? "");
}

/** Counts an answer in the metrics. */
type CountAnswer = (pathname: string, status: number, refusal: RefusalReason | undefined) => void;

/** Writes an answer on `node:http` (or gives up the connection) and counts it. */
function deliver(
  outgoing: ServerResponse,
  answer: LeanAnswer,
  count: CountAnswer,
  path: string,
): void {
  try {
    send(outgoing, answer);
  } catch {
    // An answer that cannot be written: the connection is no use any more.
    outgoing.destroy();
  }
  try {
    count(path, answer.status, answer.refusal);
  } catch {
    // A metric that cannot be counted does not cost the answer (already on its way).
  }
}

/**
 * An agent `POST` answered on `node:http`: once its answer is written, what was not read of its
 * body (refused before it was read, or beyond the hard limit) is read and thrown away, so that the
 * connection can carry its next request (or it is closed, see {@link drainIncoming}).
 */
class NodePostExchange extends LeanExchange {
  readonly #incoming: IncomingMessage;
  readonly #outgoing: ServerResponse;
  readonly #count: CountAnswer;

  constructor(
    path: string,
    incoming: IncomingMessage,
    outgoing: ServerResponse,
    count: CountAnswer,
  ) {
    super(path);
    this.#incoming = incoming;
    this.#outgoing = outgoing;
    this.#count = count;
  }

  send(answer: LeanAnswer): void {
    deliver(this.#outgoing, answer, this.#count, this.path);
    drainIncoming(this.#incoming);
  }
}

/**
 * A lean request answered on `node:http`: while its wait is held, this object is what is kept of
 * it besides the server's own objects (no closure, no abort controller).
 */
class NodeExchange extends LeanExchange {
  readonly outgoing: ServerResponse;
  readonly #count: CountAnswer;
  readonly #exchanges: WeakMap<ServerResponse, NodeExchange>;
  readonly #onClose: (this: ServerResponse) => void;

  constructor(
    path: string,
    outgoing: ServerResponse,
    count: CountAnswer,
    exchanges: WeakMap<ServerResponse, NodeExchange>,
    onClose: (this: ServerResponse) => void,
  ) {
    super(path);
    this.outgoing = outgoing;
    this.#count = count;
    this.#exchanges = exchanges;
    this.#onClose = onClose;
  }

  send(answer: LeanAnswer): void {
    const outgoing = this.outgoing;
    outgoing.off("close", this.#onClose);
    this.#exchanges.delete(outgoing);
    deliver(outgoing, answer, this.#count, this.path);
  }
}

/**
 * The HTTP side of the dashboard: the lean routes, then a Hono app for everything else,
 * described by the two methods callers use so that the public API does not depend on Hono's types.
 */
export interface HttpApp {
  /** Answers a request; the HTTP server calls it (the second argument may carry `remoteAddr`). */
  fetch(request: Request, env?: { remoteAddr?: Deno.Addr }): Response | Promise<Response>;
  /** Answers a request built from a path or URL, in process (tests). */
  request(input: string | URL | Request, init?: RequestInit): Response | Promise<Response>;
}

/** A route the app answers: a method and a path in Hono's syntax (`:id` for a parameter). */
export interface RouteInfo {
  /** The HTTP method, upper case. */
  method: string;
  /** The path, e.g. `/api/v1/commands/:id`. */
  path: string;
}

/**
 * Every route of the app: the lean ones, then the Hono routes in the order they were registered,
 * each method and path once; middleware is not listed.
 *
 * @param lean The routes answered before Hono.
 * @param app The Hono app, with its routes registered.
 * @returns The routes.
 */
export function routeList(lean: readonly RouteInfo[], app: Hono<ServerEnv>): RouteInfo[] {
  // Middleware (`app.use`) is registered under the method "ALL"; no route uses it.
  const routes: RouteInfo[] = [...lean];
  for (const route of app.routes) {
    if (route.method === "ALL") continue;
    if (!routes.some((r) => r.method === route.method && r.path === route.path)) {
      routes.push({ method: route.method, path: route.path });
    }
  }
  return routes;
}

/**
 * Puts the lean routes in front of the Hono app and counts every answer (status, rate limits,
 * refusals by reason).
 *
 * @param lean Answers the long-polls and the agent `POST`s, `null` for anything else.
 * @param app The Hono app.
 * @param metrics Where answers are counted.
 * @param guard Answers a request it refuses before anything else does (dev mode's browser
 *   guard); `null` lets it through.
 * @returns The app as the HTTP server and tests call it.
 */
export function httpApp(
  lean: LeanRoutes,
  app: Hono<ServerEnv>,
  metrics: Pick<DashboardMetrics, "requests" | "rateLimited" | "authRefusals">,
  guard?: (request: GuardedRequest) => Response | null,
): HttpApp {
  const countAnswer: CountAnswer = (pathname, status, refusal) => {
    metrics.requests.inc({ route: routeLabel(pathname), status });
    if (status === 429) metrics.rateLimited.inc();
    else if (status >= 400 && refusal !== undefined) metrics.authRefusals.inc({ reason: refusal });
  };
  const count = (request: Request, response: Response) => {
    markAnswer(response);
    countAnswer(
      new URL(request.url).pathname,
      response.status,
      response.status >= 400 ? refusalOf(response) ?? refusalOf(request) : undefined,
    );
    return response;
  };
  // Counted with `then`, not an async frame: a held wait keeps nothing more than before.
  const fetch: HttpApp["fetch"] = (request, env) => {
    const refused = guard?.(request) ?? null;
    if (refused) return count(request, refused);
    if (hasMalformedEscape(request.url)) return count(request, malformedEscapeAnswer());
    const malformed = malformedQueryParameter(request.url);
    if (malformed !== undefined) return count(request, malformedQueryAnswer(malformed));
    const addr = env?.remoteAddr;
    const answer = lean.fetch(request, addr && "hostname" in addr ? addr.hostname : undefined) ??
      app.fetch(request, env);
    return answer instanceof Promise
      ? answer.then((response) => count(request, response))
      : count(request, answer);
  };
  // The lean routes on node:http: no `Request`, no adapter around it. A held wait's exchange is
  // found from its response by the one `close` listener of them all.
  const exchanges = new WeakMap<ServerResponse, NodeExchange>();
  function onClose(this: ServerResponse): void {
    const exchange = exchanges.get(this);
    if (exchange) lean.gone(exchange);
  }
  const direct: DirectHandler = (incoming, outgoing, remote) => {
    const target = incoming.url ?? "";
    const method = incoming.method;
    if (!maybeLean(method, target)) return false;
    // Its `400` is the adapter's request's (after the guard, as for every request).
    if (hasMalformedEscape(target) || malformedQueryParameter(target) !== undefined) return false;
    const raw = incoming.rawHeaders;
    const host = hostOf(raw);
    // What a web `Request` would refuse goes to the adapter, for its own error answer.
    if (!host || !webHeadersAccept(raw)) return false;
    const secure = (incoming.socket as { encrypted?: boolean } | null)?.encrypted === true;
    let url: string;
    try {
      const parsed = new URL(`${secure ? "https" : "http"}://${host}${target}`);
      // A `Host` the URL reads otherwise (`evil@localhost`: user info) is the adapter's `400`.
      if (parsed.hostname !== host.replace(/:\d*$/, "").toLowerCase()) return false;
      url = parsed.href;
    } catch {
      return false;
    }
    // The guard and the auth steps read node's raw headers (no web `Request`, no `Headers` copy).
    const headers = new RawHeaders(raw);
    if (guard) {
      const refused = guard({ url, headers });
      if (refused) {
        refused.text().then((body) => {
          const answerHeaders: Record<string, string> = {};
          refused.headers.forEach((value, name) => answerHeaders[name] = value);
          send(outgoing, { status: refused.status, headers: answerHeaders, body });
          // A refused POST's body is not read: thrown away, for the connection's next request.
          drainIncoming(incoming);
        }).catch(() => outgoing.destroy());
        countAnswer(new URL(url).pathname, refused.status, refusalOf(refused));
        return true;
      }
    }
    const found = lean.match(method!, url);
    if (!found) return false;
    const path = target.startsWith(found.path) ? target.slice(0, found.path.length) : found.path;
    // A `POST`'s body is read from the `IncomingMessage` when a step first needs it.
    const post = method === "POST";
    const call: AgentCall = {
      method: post ? "POST" : "GET",
      url,
      target,
      headers,
      incoming: post ? incoming : undefined,
      remote,
      unsigned: false,
    };
    if (post) {
      lean.run(found, call, new NodePostExchange(path, incoming, outgoing, countAnswer));
      return true;
    }
    // A long-poll may be held: once the call is made, the `IncomingMessage` lets go of its
    // headers, and the path is a slice of the target node keeps anyway.
    incoming.rawHeaders = NO_RAW_HEADERS;
    incoming.headers = NO_HEADERS;
    const exchange = new NodeExchange(path, outgoing, countAnswer, exchanges, onClose);
    exchanges.set(outgoing, exchange);
    outgoing.on("close", onClose);
    lean.run(found, call, exchange);
    return true;
  };
  const http: HttpApp = {
    fetch,
    // As Hono's `app.request`: a path is resolved against http://localhost.
    request(input, init) {
      if (input instanceof Request) return fetch(init ? new Request(input, init) : input);
      const text = input.toString();
      const url = /^https?:\/\//.test(text)
        ? text
        : `http://localhost${text.startsWith("/") ? "" : "/"}${text}`;
      return fetch(new Request(url, init));
    },
  };
  directHandlers.set(http, direct);
  return http;
}
