/** @jsxImportSource hono/jsx */
/**
 * The operator's web console: pages served by the dashboard at `/`, a login with the admin token
 * outside dev mode, and the session that lets a browser read the operator API (`GET` only).
 *
 * The console is a client of the operator API in the same process: every page reads through
 * `GET /api/v1/...` and every form acts through the API's `POST` routes, called in process with
 * the admin token, so the console shows and does exactly what the API does. Two reads go to the
 * store instead, as no answer of the API gives them without reading the whole fleet: how many
 * agents there are (the agents page reads one page of them), and one agent alone (a queued
 * command's agent, an agent typed in a form). A browser reaches the API itself only with `GET`
 * (the command page's event stream and its polling fallback).
 *
 * Every page answers with a strict Content-Security-Policy (scripts and styles only from the
 * dashboard, no inline script), `X-Content-Type-Options: nosniff` and frame denial; every form
 * that changes something carries the session's CSRF token and is refused without it.
 *
 * @module
 */
import type { Context, Handler, Hono, MiddlewareHandler } from "hono";
import type { JSX } from "hono/jsx/jsx-runtime";
import {
  AGENT_ID_PATTERN,
  AGENT_ID_RULE,
  constantTimeEqual,
  PRIORITIES,
  shortForm,
} from "../../protocol/mod.ts";
import { auditLogger, logger } from "../../log/mod.ts";
import { AdminTokenGuesses, auditRefusal, refuse, remoteOf } from "../auth/mod.ts";
import { addressKey } from "../address_key.ts";
import type { ServerEnv } from "../env.ts";
import type { Clock } from "../clock.ts";
import { TokenBucketLimiter } from "../rate_limit.ts";
import { readBody } from "../body.ts";
import { BEARER_CHALLENGE, HttpError } from "../http_error.ts";
import { parseListCursor } from "../list_cursor.ts";
import { isLoopback } from "../loopback.ts";
import { markRefusal } from "../refusals.ts";
import { CONSOLE_CSS, CONSOLE_JS } from "./assets.ts";
import { type AgentJson, type CommandJson, isFinal, named, visibleText } from "./format.ts";
import {
  type AgentChoices,
  AgentsPage,
  type CommandFilter,
  CommandPage,
  commandsHref,
  CommandsPage,
  EnqueuePage,
  type EnqueueValues,
  ErrorPage,
  type Frame,
  LoginPage,
  STATUS_CHOICES,
} from "./pages.tsx";
import {
  type RunFormValues,
  RunPage,
  runPageCount,
  runRequestOfForm,
  RUNS_SHOWN,
  RunsPage,
  type RunSummaryJson,
  StartRunPage,
} from "./run_pages.tsx";
import type { RunView } from "../../protocol/runs.ts";
import {
  cookieHeader,
  cookiesOf,
  LOGIN_CSRF_COOKIE,
  LOGIN_FORM_TTL_SECS,
  SESSION_COOKIE,
  type SessionCheck,
  SessionKeeper,
  SessionStreams,
} from "./session.ts";

/** Options of {@link mountConsole}. */
export interface ConsoleOptions {
  /** Dev mode: no login, "dev mode" in the header. */
  devMode: boolean;
  /** `STATUS_ADMIN_TOKEN`; required outside dev mode. */
  adminToken?: string;
  /** The dashboard's clock (session expiry). */
  clock: Clock;
  /**
   * Lifetime of a console session, in seconds.
   * @default {43200}
   */
  sessionTtlSecs?: number;
  /**
   * Wrong admin tokens per client address, shared with the operator API (a login is refused
   * while its address has none left, the right token included).
   * @default {a count of the console's own}
   */
  guesses?: AdminTokenGuesses;
  /**
   * Answers an operator API request in process (the dashboard's own `fetch`), on behalf of the
   * page's client at `remote` (its address: the operators' rate limit is per client address).
   */
  api(request: Request, remote: string | undefined): Response | Promise<Response>;
  /**
   * How many agents there are, or how many sort at or before an id (the store's
   * `countAgents`): the agents page reads one page of the fleet through the API, and says where
   * it lies in the whole without reading the whole.
   */
  countAgents(through?: string): Promise<number>;
  /**
   * One agent as `GET /api/v1/agents` shows where it stands (`id`, `state`, `waiting`,
   * `last_seen_at`), read alone, or `null` when it is not registered: what the page of a queued
   * command says of its agent, and how a form learns that an agent typed in it exists.
   */
  agent(id: string): Promise<AgentJson | null>;
}

/** Commands on one page of the list. */
export const PAGE_SIZE = 25;
/**
 * Agents on one page of the agents list: a fleet of thousands in one table took the browser
 * seconds to lay out again at every refresh, and the page answered nothing meanwhile.
 */
export const AGENTS_PAGE_SIZE = 100;
/**
 * Agents a form offers to choose from (the enqueue form, the commands page's filter): a fleet of
 * more is typed into a text field, these its suggestions (a list of 100,000 choices read at
 * every page helps no one).
 */
export const AGENT_CHOICES = 100;
/** Login attempts a minute from one address. */
export const LOGIN_ATTEMPTS_PER_MINUTE = 10;
/** A login form's token ({@link SessionKeeper.loginToken}: 24 random bytes, base64url). */
const LOGIN_TOKEN_PATTERN = /^[A-Za-z0-9_-]{32}$/;
/** Largest form body, in bytes. */
const MAX_FORM_BYTES = 64 * 1024;

/** The Content-Security-Policy of every console answer. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join("; ");

const log = logger("server", "console");
const audit = auditLogger();

/** The API answered what a page cannot be built from (5xx, or a `429` of the client's limit). */
class ApiUnavailable extends Error {
  /** When to try again, for a `429` (`details.retry_after_secs` of the answer). */
  readonly retryAfterSecs?: number;
  /** The form that was being sent, filled with what was typed, for the error page to link. */
  formPage?: string;

  constructor(readonly status: number, body: Record<string, unknown>, options?: ErrorOptions) {
    super(`the operator API answered ${status}: ${String(body.error ?? "no detail")}`, options);
    this.name = "ApiUnavailable";
    const details = body.details as { retry_after_secs?: unknown } | undefined;
    const secs = details?.retry_after_secs;
    if (typeof secs === "number" && Number.isInteger(secs) && secs > 0) this.retryAfterSecs = secs;
  }
}

/** What a page handler knows about the browser's session. */
interface PageSession {
  csrf: string;
  /** A `Set-Cookie` value to send with the answer (a new dev-mode session). */
  setCookie?: string;
  /** The session, to revoke at logout; absent in dev mode. */
  check?: Extract<SessionCheck, { state: "valid" }>;
  /** The browser's address: the API calls made for the page are counted as its own. */
  remote?: string;
}

function secureHeaders(headers: Headers): void {
  headers.set("Content-Security-Policy", CONTENT_SECURITY_POLICY);
  headers.set("X-Content-Type-Options", "nosniff");
  headers.set("X-Frame-Options", "DENY");
  headers.set("Referrer-Policy", "same-origin");
  headers.set("Cross-Origin-Opener-Policy", "same-origin");
  headers.set("Cross-Origin-Resource-Policy", "same-origin");
  if (!headers.has("Cache-Control")) headers.set("Cache-Control", "no-store");
}

function html(page: JSX.Element, status = 200, headers: HeadersInit = {}): Response {
  return new Response(`<!DOCTYPE html>${page.toString()}`, {
    status,
    headers: { "Content-Type": "text/html; charset=utf-8", ...headers },
  });
}

/**
 * `308` to the page the request names with a trailing slash (`/commands/` → `/commands`), the
 * query kept. The path is the request's own minus the slash, so the answer never names another
 * host (a path starting `//` would: it is refused, and no page route matches one).
 */
function withoutTrailingSlash(c: Context<ServerEnv>): Response | Promise<Response> {
  const url = new URL(c.req.url);
  const path = url.pathname.replace(/\/+$/, "");
  if (!/^\/[^/\\]/.test(path)) return c.notFound();
  const response = new Response(null, {
    status: 308,
    headers: { Location: `${path}${url.search}` },
  });
  secureHeaders(response.headers);
  return response;
}

/**
 * The `400` page of an address that gives one of `names` more than once (a page shows one value of
 * each; showing the first would read as a page of all of them), or `undefined` when none is.
 */
function repeatedInAddress(
  frame: Frame,
  url: string,
  names: readonly string[],
  back: string,
  backText: string,
): Response | undefined {
  const params = new URL(url).searchParams;
  const name = names.find((name) => params.getAll(name).length > 1);
  if (name === undefined) return undefined;
  return html(
    <ErrorPage
      {...frame}
      title="One value at a time"
      message={`The address gives ${named(name)} ${
        params.getAll(name).length
      } times: this page shows one ${named(name)} at a time.`}
    >
      <p>
        <a href={back}>{backText}</a>
      </p>
    </ErrorPage>,
    400,
  );
}

/** The `400` page of an agent id from the address that no agent can have, with a way back. */
function noSuchAgent(frame: Frame, id: string, back: string, backText: string): Response {
  return html(
    <ErrorPage
      {...frame}
      title="No such agent"
      message={`No agent can have the id ${named(id)}: an id is ${AGENT_ID_RULE}.`}
    >
      <p>
        <a href={back}>{backText}</a>
      </p>
    </ErrorPage>,
    400,
  );
}

function redirect(location: string, cookies: string[] = []): Response {
  const headers = new Headers({ Location: location });
  for (const cookie of cookies) headers.append("Set-Cookie", cookie);
  return new Response(null, { status: 303, headers });
}

/**
 * Whether a form was posted from one of the dashboard's own pages, as far as the browser says:
 * `Sec-Fetch-Site` is `same-origin`, `none` (typed or bookmarked) or absent (an older browser; the
 * CSRF token still guards it). The `Origin` header is not compared with the request's URL, which a
 * proxy in front of the dashboard may rewrite.
 */
function fromOwnPage(c: Context<ServerEnv>): boolean {
  const site = c.req.header("Sec-Fetch-Site");
  return site === undefined || site === "same-origin" || site === "none";
}

/**
 * Longest path a login leads back to: the enqueue form filled with a command line of its longest
 * (4,096 characters, about 5,000 in the address) is one (a limit of 2,000 emptied it), and the
 * login's own address, which carries it encoded once more, stays within what the dashboard reads
 * of a request's head (16 KiB).
 */
const MAX_NEXT_CHARS = 6000;

/** A local path to go back to after login: never another origin. */
function safeNext(value: string | undefined | null): string {
  if (!value || !value.startsWith("/") || value.startsWith("//") || value.includes("\\")) {
    return "/";
  }
  return value.length <= MAX_NEXT_CHARS && /^[\x21-\x7e]+$/.test(value) ? value : "/";
}

/** The fields of the enqueue and start-a-run forms that their pages take from the query. */
const FORM_FIELDS: Record<string, readonly string[]> = {
  "/enqueue": ["agent", "name", "timeout", "priority"],
  "/runs/new": [
    "name",
    "agents",
    "deployment",
    "labels",
    "concurrency",
    "errors",
    "timeout",
    "ttl",
  ],
};

/**
 * Where to go back to after a login that a form's post led to (its session had ended): the page
 * the form was on, the enqueue and start-a-run forms filled with what was typed, so nothing is lost
 * (nothing was sent: the form is sent again from there).
 */
async function formPageOf(path: string, request: Request): Promise<string> {
  if (!FORM_FIELDS[path]) return filledFormOf(path, null);
  let form: URLSearchParams | null = null;
  try {
    form = await readForm(request);
  } catch {
    // a body cut short: the empty form
  }
  return filledFormOf(path, form);
}

/**
 * The page a form posted to `path` was on: the enqueue and start-a-run forms filled with what was
 * posted (when that fits in an address), a cancel's page for a cancel, else the agents page.
 */
function filledFormOf(path: string, form: URLSearchParams | null): string {
  const fields = FORM_FIELDS[path];
  if (!fields) return safeNext(path.replace(/\/(cancel|logout)$/, ""));
  const query = new URLSearchParams();
  for (const field of fields) {
    const value = form?.get(field);
    if (value) query.set(field, value);
  }
  const next = query.size > 0 ? `${path}?${query}` : path;
  return safeNext(next) === next ? next : path;
}

/**
 * The notice a page's `?done=` names (what its form just did), or none: only the page's own, never
 * a property every object has (`?done=constructor` showed `function Object() { [native code] }`),
 * and only while what it says holds: the address may come from a link made elsewhere, and
 * `?done=cancelled` on a command still queued said that it was cancelled.
 *
 * @param notices Each `done` the page has → its notice and whether it holds now.
 * @param done The page's `?done=`.
 */
function noticeOf(
  notices: Record<string, [notice: string, holds: boolean]>,
  done: string | undefined,
): string | undefined {
  if (done === undefined || !Object.hasOwn(notices, done)) return undefined;
  const [notice, holds] = notices[done];
  return holds ? notice : undefined;
}

/**
 * Does a form's work. When the operator API cannot answer (its store is down, or the address is
 * over its limit), the error page links the form filled with what was sent, so nothing typed is
 * lost.
 */
async function keepingForm<T>(path: string, form: URLSearchParams, work: () => Promise<T>) {
  try {
    return await work();
  } catch (error) {
    if (error instanceof ApiUnavailable) error.formPage = filledFormOf(path, form);
    throw error;
  }
}

/**
 * Console forms one client address (an IPv6 one by its /64) may have on their way at once. A
 * form's body is read before its session or login is checked (a login's, or one posted after its
 * session ended, whose fields are kept for after the login), and while it arrives, for up to 60 s,
 * its connection is never closed to make room at the connection limit: a stranger sending forms
 * slowly would otherwise hold every connection the dashboard may open. A browser sends one form
 * at a time.
 */
export const MAX_FORMS_PER_ADDRESS = 8;

/** The paths the console's forms are posted to. */
const FORM_PATHS = [
  "/login",
  "/logout",
  "/enqueue",
  "/runs/new",
  "/commands/:id/cancel",
  "/runs/:id/cancel",
];

/** The form limit in words, as the pages and the audit log say it. */
const MAX_FORM_WORDS = `${MAX_FORM_BYTES / 1024} KiB`;

/**
 * A posted form larger than {@link MAX_FORM_BYTES}: no form of the console is (a command line is at
 * most 4,096 characters). Its body is not read, so neither is its CSRF token: it is answered `413`
 * saying so, not as a form refused for its token, and nothing changes.
 */
class FormTooLarge extends Error {
  constructor() {
    super(`the form is larger than ${MAX_FORM_WORDS}`);
    this.name = "FormTooLarge";
  }
}

/** What the page of a form too large says. */
const FORM_TOO_LARGE_MESSAGE =
  `This form is larger than the ${MAX_FORM_WORDS} the console reads, ` +
  "so it was not read. Nothing was changed. Shorten what was typed (a command line is at most " +
  "4,096 characters) and send it again.";

/**
 * Reads a posted form. A body cut short is the client's fault, answered `400` as on every route
 * (`readBody`'s error).
 *
 * @returns The form, or `null` when the body is not a form.
 * @throws {FormTooLarge} When the body is larger than {@link MAX_FORM_BYTES}.
 */
async function readForm(request: Request): Promise<URLSearchParams | null> {
  const type = request.headers.get("content-type") ?? "";
  if (!type.toLowerCase().startsWith("application/x-www-form-urlencoded")) return null;
  let bytes: Uint8Array | null;
  try {
    ({ bytes } = await readBody(request, { limit: MAX_FORM_BYTES, hardLimit: MAX_FORM_BYTES }));
  } catch (error) {
    if (error instanceof HttpError && error.status === 413) throw new FormTooLarge();
    throw error;
  }
  return new URLSearchParams(new TextDecoder().decode(bytes ?? undefined));
}

/**
 * Mounts the console on the dashboard's Hono app. Call it before the operator routes are
 * registered: it also adds the middleware that lets a valid session cookie stand in for the admin
 * token on `GET` requests to `/api/`.
 *
 * @param app The dashboard's Hono app.
 * @param options Mode, admin token, clock and the in-process API.
 * @throws {TypeError} When no admin token is given outside dev mode.
 */
export function mountConsole(app: Hono<ServerEnv>, options: ConsoleOptions): void {
  const { devMode, adminToken, clock } = options;
  if (!devMode && !adminToken) {
    throw new TypeError("the console needs an admin token outside dev mode");
  }
  const sessions = new SessionKeeper({
    adminToken: devMode ? undefined : adminToken,
    clock,
    ttlSecs: options.sessionTtlSecs,
  });
  const streams = new SessionStreams();
  const logins = new TokenBucketLimiter({ perMinute: LOGIN_ATTEMPTS_PER_MINUTE, clock });
  const guesses = options.guesses ?? new AdminTokenGuesses({ clock });
  // HTTPS here, or at a proxy in front that says so (trusting the header can only make the cookie
  // stricter: a Secure cookie is never sent over plain HTTP).
  const isSecure = (c: Context<ServerEnv>) =>
    new URL(c.req.url).protocol === "https:" ||
    c.req.header("X-Forwarded-Proto")?.split(",")[0].trim().toLowerCase() === "https";
  const sessionCookie = (c: Context<ServerEnv>, value: string, maxAgeSecs: number) =>
    cookieHeader(SESSION_COOKIE, value, { maxAgeSecs, secure: isSecure(c) });

  // The browser's session reads the operator API (GET only; a state change needs the admin token),
  // for the console's own pages: a page of another site under the same parent domain is the same
  // "site", and its requests carry the SameSite=Strict cookie too.
  app.use("/api/*", async function consoleSessionStep(c, next) {
    const method = c.req.method;
    if (!devMode && (method === "GET" || method === "HEAD") && !c.req.header("Authorization")) {
      const cookies = cookiesOf(c.req.header("Cookie"), SESSION_COOKIE);
      const check = sessions.readAll(cookies);
      if (check.state === "valid" && !fromOwnPage(c)) {
        throw refuse(
          c,
          403,
          "a console session reads the operator API only for the console's own pages; the " +
            `browser sent this request for another site (Sec-Fetch-Site: ${
              shortForm(c.req.header("Sec-Fetch-Site") ?? "")
            })`,
          "console session refused",
        );
      }
      if (check.state === "valid") {
        c.set("consoleSession", true);
        c.set("consoleSessionValid", () => sessions.readAll(cookies).state === "valid");
        c.set("consoleSessionStream", () => streams.take(check.nonce));
      }
    }
    await next();
  });

  // Beyond MAX_FORMS_PER_ADDRESS forms on their way from one address, the next is refused at
  // once, its body unread.
  const formsArriving = new Map<string, number>();
  app.on("POST", FORM_PATHS, async function formArrivalStep(c, next) {
    const remote = remoteOf(c);
    const key = addressKey(remote) ?? "unknown";
    const arriving = formsArriving.get(key) ?? 0;
    if (arriving >= MAX_FORMS_PER_ADDRESS) {
      auditRefusal(c.get("refusalLines"), "console form refused: {reason}", {
        reason: `${MAX_FORMS_PER_ADDRESS} forms already on their way from this address`,
        method: c.req.method,
        path: new URL(c.req.url).pathname,
        remote,
      });
      return html(
        <ErrorPage
          devMode={devMode}
          title="Too many forms at once"
          message={`This address is already sending ${MAX_FORMS_PER_ADDRESS} forms, the most ` +
            "the console reads at once, so this one was not read. Nothing was changed. Send it " +
            "again in a moment."}
        />,
        429,
        { "Retry-After": "1" },
      );
    }
    formsArriving.set(key, arriving + 1);
    try {
      await next();
    } finally {
      const left = (formsArriving.get(key) ?? 1) - 1;
      if (left > 0) formsArriving.set(key, left);
      else formsArriving.delete(key);
    }
  });

  const api = async (session: PageSession, path: string, init: RequestInit = {}): Promise<
    { status: number; body: Record<string, unknown> }
  > => {
    const headers = new Headers(init.headers);
    if (adminToken && !devMode) headers.set("Authorization", `Bearer ${adminToken}`);
    if (init.body !== undefined) headers.set("Content-Type", "application/json");
    const response = await options.api(
      new Request(`http://localhost${path}`, { ...init, headers }),
      session.remote,
    );
    let body: Record<string, unknown> = {};
    try {
      body = await response.json();
    } catch {
      // not JSON: handled by the status
    }
    if (response.status >= 500) {
      throw new ApiUnavailable(response.status, body);
    }
    return { status: response.status, body };
  };

  /** The store's count of the fleet ({@link ConsoleOptions.countAgents}); a failure is a `503`. */
  const countAgents = async (through?: string): Promise<number> => {
    try {
      return await options.countAgents(through);
    } catch (error) {
      throw new ApiUnavailable(503, { error: "the store could not count the agents" }, {
        cause: error,
      });
    }
  };

  /** One agent ({@link ConsoleOptions.agent}), or `null`; a failure is a `503`. */
  const agentOf = async (id: string): Promise<AgentJson | null> => {
    try {
      return await options.agent(id);
    } catch (error) {
      throw new ApiUnavailable(503, { error: "the store could not read the agent" }, {
        cause: error,
      });
    }
  };

  /**
   * The agents a form offers ({@link AGENT_CHOICES} at most, the first by id), and whether the
   * fleet has more (the form then takes a typed id).
   */
  const agentChoices = async (session: PageSession): Promise<AgentChoices> => {
    const { status, body } = await api(session, `/api/v1/agents?limit=${AGENT_CHOICES}`);
    if (status !== 200) throw new ApiUnavailable(status, body);
    return {
      ids: (body.agents as AgentJson[]).map((agent) => agent.id),
      more: typeof body.next_after === "string",
    };
  };

  /** Whether an agent is registered, from the choices when they are the whole fleet. */
  const registered = async (choices: AgentChoices, id: string): Promise<boolean> =>
    choices.ids.includes(id) || (choices.more && (await agentOf(id)) !== null);

  /** The session of a page request, or the answer that sends the browser to log in. */
  const sessionOf = async (c: Context<ServerEnv>): Promise<PageSession | Response> => {
    if (devMode && !isLoopback(new URL(c.req.url).hostname)) {
      // An open console answers only to a loopback name: a page of another site whose name was
      // made to resolve to 127.0.0.1 (DNS rebinding) gets nothing.
      return html(
        <ErrorPage
          devMode
          title="Wrong address"
          message={"In dev mode the console answers only at a loopback address such as " +
            "http://localhost or http://127.0.0.1."}
        />,
        403,
      );
    }
    const check = sessions.readAll(cookiesOf(c.req.header("Cookie"), SESSION_COOKIE));
    const remote = remoteOf(c);
    if (check.state === "valid") return { csrf: check.csrf, check, remote };
    if (devMode) {
      // Dev mode: anyone on loopback may use the console; the session only carries the CSRF token.
      const issued = sessions.issue();
      return {
        csrf: issued.csrf,
        setCookie: sessionCookie(c, issued.value, sessions.ttlSecs),
        remote,
      };
    }
    const url = new URL(c.req.url);
    const next = c.req.method === "GET"
      ? `${url.pathname}${url.search}`
      : await formPageOf(url.pathname, c.req.raw);
    const query = new URLSearchParams({ next });
    if (check.state === "expired") query.set("expired", "1");
    return redirect(`/login?${query}`, check.state === "expired" ? [sessionCookie(c, "", 0)] : []);
  };

  const frame = (session: PageSession): Frame => ({ devMode, csrf: session.csrf });

  /**
   * Checks where a state-changing form came from, and its CSRF token. A refusal links the page
   * the form was on, the enqueue and start-a-run forms filled with what was sent, so a form of a
   * page open since before a login loses nothing (the link only fills the form: nothing is sent).
   */
  const refused = (c: Context<ServerEnv>, session: PageSession, form: URLSearchParams | null) => {
    const sameOrigin = fromOwnPage(c);
    if (sameOrigin && sessions.checkCsrf(session, form?.get("csrf") ?? undefined)) return null;
    const path = new URL(c.req.url).pathname;
    auditRefusal(c.get("refusalLines"), "console form refused: {reason}", {
      reason: sameOrigin ? "CSRF token missing or wrong" : "cross-origin form",
      method: c.req.method,
      path,
      remote: remoteOf(c),
    });
    const back = filledFormOf(path, form);
    return html(
      <ErrorPage
        {...frame(session)}
        title="Form refused"
        message={"This form was refused: its security token is missing or does not belong to " +
          "your session (a form from another site, or a page open since before you logged in). " +
          "Nothing was changed. Open its page again and send it from there."}
      >
        {back === "/" ? null : (
          <p>
            <a href={back}>{FORM_FIELDS[path] ? "Open the form again, filled" : "Open its page"}</a>
          </p>
        )}
      </ErrorPage>,
      403,
    );
  };

  /** Wraps a page handler: security headers, the session, and an error page instead of a trace. */
  const page = (
    handler: (c: Context<ServerEnv>, session: PageSession) => Promise<Response> | Response,
  ): MiddlewareHandler<ServerEnv> =>
    async function consolePage(c) {
      let response: Response;
      let session: PageSession | Response | undefined;
      try {
        session = await sessionOf(c);
        response = session instanceof Response ? session : await handler(c, session);
      } catch (error) {
        // The client's fault (a form cut short): answered as on every route.
        if (error instanceof HttpError) throw error;
        const pageFrame = session && !(session instanceof Response) ? frame(session) : { devMode };
        // A form whose sending failed: back to it, filled with what was typed.
        const formPage = error instanceof ApiUnavailable && error.formPage
          ? (
            <p>
              <a href={error.formPage}>Open the form again, filled</a>
            </p>
          )
          : null;
        if (error instanceof FormTooLarge) {
          const path = new URL(c.req.url).pathname;
          auditRefusal(c.get("refusalLines"), "console form refused: {reason}", {
            reason: `form larger than ${MAX_FORM_WORDS}`,
            method: c.req.method,
            path,
            remote: remoteOf(c),
          });
          const back = filledFormOf(path, null);
          response = html(
            <ErrorPage {...pageFrame} title="Form too large" message={FORM_TOO_LARGE_MESSAGE}>
              {back === "/" ? null : (
                <p>
                  <a href={back}>Open its page</a>
                </p>
              )}
            </ErrorPage>,
            413,
          );
        } else if (error instanceof ApiUnavailable && error.status === 429) {
          // The operators' limit of this browser's address, which its pages' API calls count in.
          const secs = error.retryAfterSecs ?? 60;
          auditRefusal(c.get("refusalLines"), "console page {path} refused: {reason}", {
            path: new URL(c.req.url).pathname,
            reason: "rate limit",
            remote: remoteOf(c),
          });
          response = html(
            <ErrorPage
              {...pageFrame}
              title="Too many requests"
              message={`This address has used up its operator requests for now (` +
                `OPERATOR_RATE_LIMIT_PER_MINUTE). Nothing was changed. Try again in ${secs} s.`}
            >
              {formPage}
            </ErrorPage>,
            429,
            { "Retry-After": String(secs) },
          );
        } else {
          const known = error instanceof ApiUnavailable && error.status >= 500;
          log.error("console page {path} failed: {error}", {
            path: new URL(c.req.url).pathname,
            error,
          });
          response = html(
            <ErrorPage
              {...pageFrame}
              title={known ? "Store unavailable" : "Something went wrong"}
              message={known
                ? "The dashboard cannot reach its command store, so this page cannot be shown. " +
                  "Nothing was changed. The dashboard's log says why; try again in a moment."
                : "The dashboard failed to build this page. Nothing was changed. The " +
                  "dashboard's log has the details."}
            >
              {formPage}
            </ErrorPage>,
            known ? 503 : 500,
            known ? { "Retry-After": "5" } : {},
          );
        }
      }
      // A new dev-mode session goes with whatever answer was built.
      if (session && !(session instanceof Response) && session.setCookie) {
        response.headers.append("Set-Cookie", session.setCookie);
      }
      secureHeaders(response.headers);
      return response;
    };

  /** Registers a page for `GET` (and `HEAD`), and its path with a trailing slash as a redirect. */
  const getPage = (path: string, handler: Handler<ServerEnv>) => {
    app.get(path, handler);
    if (path !== "/") app.get(`${path}/`, withoutTrailingSlash);
  };

  // -- pages

  getPage(
    "/",
    page(async (c, session) => {
      const twice = repeatedInAddress(frame(session), c.req.url, ["after"], "/", "See every agent");
      if (twice) return twice;
      const after = c.req.query("after") || undefined;
      if (after !== undefined && !AGENT_ID_PATTERN.test(after)) {
        return noSuchAgent(frame(session), after, "/", "See every agent");
      }
      // One page, by id, after the agent the page names (whether or not it is still registered),
      // read as a page: a fleet of 100,000 agents is not read to show 100 of them.
      const query = new URLSearchParams({ limit: String(AGENTS_PAGE_SIZE) });
      if (after !== undefined) query.set("after", after);
      const { status, body } = await api(session, `/api/v1/agents?${query}`);
      if (status !== 200) throw new ApiUnavailable(status, body);
      const shown = body.agents as AgentJson[];
      const next = typeof body.next_after === "string" ? body.next_after : undefined;
      // Where the page lies in the fleet, counted rather than read.
      const [total, before] = await Promise.all([
        countAgents(),
        after === undefined ? 0 : countAgents(after),
      ]);
      return html(
        <AgentsPage
          {...frame(session)}
          agents={shown}
          now={clock.now()}
          range={{
            after,
            from: before + 1,
            // An agent added between the reads is counted, never a total below the page's end.
            total: Math.max(total, before + shown.length),
            next,
          }}
        />,
      );
    }),
  );

  getPage(
    "/commands",
    page(async (c, session) => {
      const twice = repeatedInAddress(
        frame(session),
        c.req.url,
        ["agent", "status", "before"],
        "/commands",
        "See every command",
      );
      if (twice) return twice;
      const agent = c.req.query("agent") || undefined;
      const rawStatus = c.req.query("status") || undefined;
      // An old `page=` link shows the first page (the list is paged by cursor now, and `page` is
      // not read); a cursor no page gave is refused below, as GET /api/v1/commands refuses it.
      const before = c.req.query("before") || undefined;
      if (rawStatus !== undefined && !STATUS_CHOICES.includes(rawStatus)) {
        // As GET /api/v1/commands does: an unknown status is refused, not dropped from the
        // filter (which listed every command as if it matched).
        const back = agent ? `/commands?agent=${encodeURIComponent(agent)}` : "/commands";
        return html(
          <ErrorPage
            {...frame(session)}
            title="No such status"
            message={`No command can have the status ${named(rawStatus)}: a status is one of ${
              STATUS_CHOICES.join(", ")
            }.`}
          >
            <p>
              <a href={back}>See every command{agent ? ` of ${named(agent)}` : ""}</a>
            </p>
          </ErrorPage>,
          400,
        );
      }
      if (agent !== undefined && !AGENT_ID_PATTERN.test(agent)) {
        return noSuchAgent(frame(session), agent, "/commands", "See every command");
      }
      if (before !== undefined && parseListCursor(before) === undefined) {
        // Refused, not answered with the first page: under this address the newest commands
        // would read as the older ones asked for.
        return html(
          <ErrorPage
            {...frame(session)}
            title="No such page"
            message={`The address asks for the commands before ${
              named(before)
            }, which is no place in the list: the Older link of a page gives one.`}
          >
            <p>
              <a href={commandsHref({ agent, status: rawStatus })}>
                See the newest commands{rawStatus || agent ? " of this filter" : ""}
              </a>
            </p>
          </ErrorPage>,
          400,
        );
      }
      const status = rawStatus;
      const query = new URLSearchParams();
      if (agent) query.set("agent_id", agent);
      if (status) query.set("status", status);
      if (before) query.set("before", before);
      // One page: the list reads one command more, to know whether older ones match. The table
      // shows how each command ended, never its output.
      query.set("limit", String(PAGE_SIZE));
      query.set("output", "none");
      const [listed, agents] = await Promise.all([
        api(session, `/api/v1/commands?${query}`),
        agentChoices(session),
      ]);
      if (listed.status !== 200) throw new ApiUnavailable(listed.status, listed.body);
      const older = listed.body.next_before;
      const filter: CommandFilter = { agent, status, before };
      return html(
        <CommandsPage
          {...frame(session)}
          commands={listed.body.commands as CommandJson[]}
          agents={agents}
          agentRegistered={agent === undefined || await registered(agents, agent)}
          filter={filter}
          older={typeof older === "string" ? older : undefined}
        />,
      );
    }),
  );

  getPage(
    "/commands/:id",
    page(async (c, session) => {
      const id = c.req.param("id") ?? "";
      const { status, body } = await api(session, `/api/v1/commands/${encodeURIComponent(id)}`);
      if (status === 404) {
        return html(
          <ErrorPage
            {...frame(session)}
            title="No such command"
            message={`Command ${named(id)} does not exist on this dashboard.`}
          >
            <p>
              <a href="/commands">See every command</a>
            </p>
          </ErrorPage>,
          404,
        );
      }
      if (status !== 200) throw new ApiUnavailable(status, body);
      const command = body as unknown as CommandJson;
      const cancelled = command.status === "cancelled";
      const notices: Record<string, [string, boolean]> = {
        cancelled: ["Cancelled before it was delivered.", cancelled],
        requested: [
          "Cancel requested: the agent stops the command.",
          cancelled || command.cancel_requested === true,
        ],
        final: ["It had already ended, so there was nothing to cancel.", isFinal(command.status)],
        already: ["It is cancelled.", cancelled],
        enqueued: ["Enqueued.", true],
      };
      // A queued command's agent, to say why it waits when the agent cannot take it now.
      const agent = command.status === "queued"
        ? { agent: await agentOf(command.agent_id), now: clock.now() }
        : undefined;
      return html(
        <CommandPage
          {...frame(session)}
          command={command}
          notice={noticeOf(notices, c.req.query("done"))}
          agent={agent}
        />,
      );
    }),
  );

  app.post(
    "/commands/:id/cancel",
    page(async (c, session) => {
      const form = await readForm(c.req.raw);
      const denied = refused(c, session, form);
      if (denied) return denied;
      const id = c.req.param("id") ?? "";
      const path = `/commands/${encodeURIComponent(id)}`;
      const { status, body } = await api(session, `/api/v1${path}/cancel`, { method: "POST" });
      audit.info("console cancel {commandId}: {status}", {
        commandId: id,
        status,
        remote: remoteOf(c),
      });
      if (status === 404) return redirect(path);
      if (status >= 400 && status !== 409) throw new ApiUnavailable(status, body);
      // Already cancelled (the form sent twice, or cancelled from elsewhere): said as such, not as
      // a command that ended before it could be cancelled.
      const already = (body.details as { status?: unknown } | undefined)?.status === "cancelled";
      const outcome = status === 200
        ? "cancelled"
        : status === 202
        ? "requested"
        : already
        ? "already"
        : "final";
      return redirect(`${path}?done=${outcome}`);
    }),
  );

  const enqueueForm = async (
    session: PageSession,
    values: EnqueueValues,
    error?: string,
    status = 200,
  ) => {
    const agents = await agentChoices(session);
    const known = !values.agent || await registered(agents, values.agent);
    if (!error && !known) {
      error = `Agent ${named(values.agent!)} is not registered: choose another.`;
    }
    // Every form shown gets a new command id: a form sent twice (a double click) enqueues one
    // command, the second time answered as a duplicate; nothing was enqueued with an id of a form
    // shown again after a refusal.
    const fresh = { ...values, id: crypto.randomUUID() };
    return html(
      <EnqueuePage
        {...frame(session)}
        agents={agents}
        agentRegistered={known}
        values={fresh}
        error={error}
      />,
      status,
    );
  };

  getPage(
    "/enqueue",
    // Filled from the query: after a login that a post of the form led to, and "Enqueue again".
    page((c, session) =>
      enqueueForm(session, {
        agent: c.req.query("agent") || undefined,
        name: c.req.query("name"),
        timeout: c.req.query("timeout"),
        priority: c.req.query("priority"),
      })
    ),
  );

  app.post(
    "/enqueue",
    page(async (c, session) => {
      const form = await readForm(c.req.raw);
      const denied = refused(c, session, form);
      if (denied) return denied;
      if (!form) return enqueueForm(session, {}, "The form could not be read.", 400);
      return await keepingForm("/enqueue", form, async () => {
        const values: EnqueueValues = {
          id: form.get("id")?.trim() || undefined,
          agent: form.get("agent")?.trim() ?? "",
          name: form.get("name") ?? "",
          timeout: form.get("timeout")?.trim() ?? "",
          priority: form.get("priority")?.trim() ?? "",
        };
        if (!values.agent) return enqueueForm(session, values, "Choose an agent.", 400);
        if (!values.name?.trim()) return enqueueForm(session, values, "Enter a command line.", 400);
        const params: Record<string, unknown> = {};
        if (values.timeout) {
          const secs = Number(values.timeout);
          if (!/^\d+$/.test(values.timeout) || secs < 1 || secs > 86_400) {
            return enqueueForm(
              session,
              values,
              "Timeout must be a whole number of seconds from 1 to 86400, got " +
                `"${named(values.timeout)}".`,
              400,
            );
          }
          params.timeout_secs = secs;
        }
        if (values.priority && values.priority !== "normal") {
          if (!(PRIORITIES as readonly string[]).includes(values.priority)) {
            return enqueueForm(
              session,
              values,
              `Priority must be one of ${PRIORITIES.join(", ")}, got ` +
                `"${named(values.priority)}".`,
              400,
            );
          }
          params.priority = values.priority;
        }
        const { status, body } = await api(session, "/api/v1/agent/commands/enqueue", {
          method: "POST",
          body: JSON.stringify({
            id: values.id,
            agent_id: values.agent,
            name: values.name,
            params,
          }),
        });
        if (status !== 202) {
          const why = status === 409
            ? `this form was sent before with other values (command ${named(values.id ?? "")})` +
              "; check them and send it again"
            : visibleText(String(body.error ?? `the dashboard answered ${status}`));
          return enqueueForm(
            session,
            values,
            `Not enqueued: ${why}.`,
            status >= 400 && status < 500 ? status : 400,
          );
        }
        audit.info("console enqueue {commandId} for {agentId}", {
          commandId: body.id,
          agentId: values.agent,
          remote: remoteOf(c),
        });
        return redirect(`/commands/${encodeURIComponent(String(body.id))}`);
      });
    }),
  );

  // -- fan-out runs (pages in run_pages.tsx)

  getPage(
    "/runs",
    page(async (_c, session) => {
      // One more than shown, to say that older runs are not listed.
      const { status, body } = await api(session, `/api/v1/runs?limit=${RUNS_SHOWN + 1}`);
      if (status !== 200) throw new ApiUnavailable(status, body);
      const runs = body.runs as RunSummaryJson[];
      return html(
        <RunsPage
          {...frame(session)}
          runs={runs.slice(0, RUNS_SHOWN)}
          more={runs.length > RUNS_SHOWN}
        />,
      );
    }),
  );

  // Every form shown gets a new run id: a form sent twice (a double click) starts one run.
  const runForm = (session: PageSession, values: RunFormValues, error?: string, status = 200) =>
    html(
      <StartRunPage
        {...frame(session)}
        values={{ ...values, id: crypto.randomUUID() }}
        error={error}
      />,
      status,
    );

  getPage(
    "/runs/new",
    page((c, session) => {
      const values: RunFormValues = {};
      for (const field of FORM_FIELDS["/runs/new"]) {
        values[field as keyof RunFormValues] = c.req.query(field);
      }
      return runForm(session, values);
    }),
  );

  app.post(
    "/runs/new",
    page(async (c, session) => {
      const form = await readForm(c.req.raw);
      const denied = refused(c, session, form);
      if (denied) return denied;
      if (!form) return runForm(session, {}, "The form could not be read.", 400);
      return await keepingForm("/runs/new", form, async () => {
        const fields = ["name", "agents", "deployment", "labels", "concurrency", "errors"] as const;
        const values: RunFormValues = {};
        for (const field of [...fields, "timeout", "ttl"] as const) {
          values[field] = form.get(field) ?? "";
        }
        values.id = form.get("id")?.trim() || undefined;
        const request = runRequestOfForm(values);
        if ("error" in request) return runForm(session, values, request.error, 400);
        const { status, body } = await api(session, "/api/v1/runs", {
          method: "POST",
          body: JSON.stringify(request.body),
        });
        if (status !== 201 && status !== 200) {
          const why = status === 409
            ? `this form was sent before with other values (run ${named(values.id ?? "")})` +
              "; check them and send it again"
            : visibleText(String(body.error ?? `the dashboard answered ${status}`));
          return runForm(
            session,
            values,
            `Not started: ${why}.`,
            status >= 400 && status < 500 ? status : 400,
          );
        }
        audit.info("console run {runId} started", { runId: body.id, remote: remoteOf(c) });
        return redirect(`/runs/${encodeURIComponent(String(body.id))}`);
      });
    }),
  );

  getPage(
    "/runs/:id",
    page(async (c, session) => {
      const id = c.req.param("id") ?? "";
      const { status, body } = await api(session, `/api/v1/runs/${encodeURIComponent(id)}`);
      if (status === 404) {
        return html(
          <ErrorPage
            {...frame(session)}
            title="No such run"
            message={`Run ${named(id)} does not exist on this dashboard.`}
          >
            <p>
              <a href="/runs">See every run</a>
            </p>
          </ErrorPage>,
          404,
        );
      }
      if (status !== 200) throw new ApiUnavailable(status, body);
      const run = body as unknown as RunView;
      const back = `/runs/${encodeURIComponent(id)}`;
      const twice = repeatedInAddress(frame(session), c.req.url, ["page"], back, "See the run");
      if (twice) return twice;
      const rawPage = c.req.query("page") || "1";
      const pages = runPageCount(run);
      if (!/^[1-9][0-9]{0,6}$/.test(rawPage) || Number(rawPage) > pages) {
        return html(
          <ErrorPage
            {...frame(session)}
            title="No such page"
            message={`Run ${named(id)} has ${pages} page${pages === 1 ? "" : "s"} of agents: ` +
              `page ${named(rawPage)} is not one of them.`}
          >
            <p>
              <a href={`/runs/${encodeURIComponent(id)}`}>See the run</a>
            </p>
          </ErrorPage>,
          400,
        );
      }
      const stopping = run.status === "cancelling" || run.status === "cancelled";
      const notices: Record<string, [string, boolean]> = {
        cancelled: [
          "Cancelled: nothing more starts; running commands are being stopped.",
          stopping,
        ],
        final: [
          "It had already ended, so there was nothing to cancel.",
          run.status === "succeeded" || run.status === "failed" || run.status === "cancelled",
        ],
        already: ["It is cancelled: nothing more starts.", stopping],
      };
      return html(
        <RunPage
          {...frame(session)}
          run={run}
          notice={noticeOf(notices, c.req.query("done"))}
          page={Number(rawPage)}
        />,
      );
    }),
  );

  app.post(
    "/runs/:id/cancel",
    page(async (c, session) => {
      const form = await readForm(c.req.raw);
      const denied = refused(c, session, form);
      if (denied) return denied;
      const id = c.req.param("id") ?? "";
      const path = `/runs/${encodeURIComponent(id)}`;
      const { status, body } = await api(session, `/api/v1${path}/cancel`, { method: "POST" });
      audit.info("console cancel of run {runId}: {status}", {
        runId: id,
        status,
        remote: remoteOf(c),
      });
      if (status === 404) return redirect(path);
      if (status >= 400 && status !== 409) throw new ApiUnavailable(status, body);
      if (status === 409) {
        // Already cancelled (the form sent twice, or cancelled from elsewhere), or ended first.
        const run = await api(session, `/api/v1${path}`);
        const already = run.status === 200 &&
          (run.body.status === "cancelled" || run.body.status === "cancelling");
        return redirect(`${path}?done=${already ? "already" : "final"}`);
      }
      return redirect(`${path}?done=cancelled`);
    }),
  );

  // -- login and logout

  const loginPage = (
    c: Context<ServerEnv>,
    props: { next: string; error?: string; info?: string },
    status = 200,
  ) => {
    // The browser's login token while its cookie lasts, one for all its login forms: a new one
    // each time replaced the cookie, so a login form in another tab (or a page's refresh that
    // landed on this one after its session ended) refused the form the operator was filling in.
    const token =
      cookiesOf(c.req.header("Cookie"), LOGIN_CSRF_COOKIE).find((value) =>
        LOGIN_TOKEN_PATTERN.test(value)
      ) ?? sessions.loginToken();
    const response = html(<LoginPage csrf={token} {...props} />, status);
    response.headers.append(
      "Set-Cookie",
      cookieHeader(LOGIN_CSRF_COOKIE, token, {
        maxAgeSecs: LOGIN_FORM_TTL_SECS,
        secure: isSecure(c),
      }),
    );
    secureHeaders(response.headers);
    return response;
  };

  getPage("/login", function loginFormRoute(c) {
    const next = safeNext(c.req.query("next"));
    if (devMode) {
      const response = redirect(next);
      secureHeaders(response.headers);
      return response;
    }
    // Said only when true: a link made elsewhere would tell an operator still logged in that
    // they are out.
    const loggedIn =
      sessions.readAll(cookiesOf(c.req.header("Cookie"), SESSION_COOKIE)).state === "valid";
    const info = loggedIn
      ? undefined
      : c.req.query("expired")
      ? "Your session has expired. Log in again to go on."
      : c.req.query("out")
      ? "You are logged out."
      : undefined;
    return loginPage(c, { next, info });
  });

  app.post("/login", async function loginRoute(c) {
    let form: URLSearchParams | null;
    try {
      form = await readForm(c.req.raw);
    } catch (error) {
      if (!(error instanceof FormTooLarge)) throw error;
      // Dev mode has no login: to the agents, as any login there goes.
      if (devMode) return redirect("/");
      auditRefusal(c.get("refusalLines"), "console login refused: {reason}", {
        reason: `form larger than ${MAX_FORM_WORDS}`,
        remote: remoteOf(c),
      });
      return loginPage(c, {
        next: "/",
        error: `This login form is larger than the ${MAX_FORM_WORDS} the console reads, so it ` +
          "was not read. Enter the token again.",
      }, 413);
    }
    const next = safeNext(form?.get("next"));
    if (devMode) return redirect(next);
    // Every login cookie the browser sent: one set for another path or the parent domain comes
    // first and would refuse every login.
    const cookies = cookiesOf(c.req.header("Cookie"), LOGIN_CSRF_COOKIE);
    const given = form?.get("csrf");
    const matches = !!given && cookies.some((cookie) => constantTimeEqual(cookie, given));
    if (!form || !matches || !fromOwnPage(c)) {
      auditRefusal(c.get("refusalLines"), "console login refused: {reason}", {
        reason: "CSRF token missing or wrong",
        remote: remoteOf(c),
      });
      return loginPage(c, {
        next,
        error: "The login form expired or came from another page. Enter the token again.",
      }, 403);
    }
    const remote = remoteOf(c);
    // An IPv6 client by its /64: else each of its 2^64 addresses would have 10 attempts.
    const taken = logins.take(addressKey(remote) ?? "unknown");
    // Wrong admin tokens sent to the operator API from this address count too.
    const allowed = taken.ok ? guesses.check(remote) : taken;
    if (!allowed.ok) {
      auditRefusal(c.get("refusalLines"), "console login refused: {reason}", {
        reason: "rate limit",
        remote,
      });
      const response = loginPage(c, {
        next,
        error:
          `Too many login attempts from this address; try again in ${allowed.retryAfterSecs} s.`,
      }, 429);
      response.headers.set("Retry-After", String(allowed.retryAfterSecs));
      return response;
    }
    const token = form.get("token") ?? "";
    if (!token || !constantTimeEqual(token, adminToken ?? "")) {
      if (token) guesses.wrong(remote);
      // Counted as the operator API's refusals are: a guessed console login shows in the metrics.
      markRefusal(c.req.raw, token ? "wrong_token" : "missing_token");
      auditRefusal(c.get("refusalLines"), "console login failed: {reason}", {
        reason: "wrong admin token",
        remote,
      });
      const refused = loginPage(c, {
        next,
        error: "That is not the dashboard's admin token. Check STATUS_ADMIN_TOKEN and try again.",
      }, 401);
      // A 401 names how to authenticate (RFC 9110 §15.5.2), as the API's do; a browser shows no
      // dialog for a Bearer challenge.
      refused.headers.set("WWW-Authenticate", BEARER_CHALLENGE);
      return refused;
    }
    const issued = sessions.issue();
    audit.info("console login", { remote });
    const response = redirect(next, [
      sessionCookie(c, issued.value, sessions.ttlSecs),
      cookieHeader(LOGIN_CSRF_COOKIE, "", { maxAgeSecs: 0, secure: isSecure(c) }),
    ]);
    secureHeaders(response.headers);
    return response;
  });

  app.post(
    "/logout",
    page(async (c, session) => {
      const form = await readForm(c.req.raw);
      const denied = refused(c, session, form);
      if (denied) return denied;
      if (session.check) sessions.revoke(session.check);
      audit.info("console logout", { remote: remoteOf(c) });
      return redirect(devMode ? "/" : "/login?out=1", [sessionCookie(c, "", 0)]);
    }),
  );

  // -- the script and the style, served by the dashboard itself

  const asset = (body: string, type: string) =>
    function assetRoute() {
      const response = new Response(body, {
        headers: { "Content-Type": type, "Cache-Control": "no-cache" },
      });
      secureHeaders(response.headers);
      return response;
    };
  app.get("/static/console.js", asset(CONSOLE_JS, "text/javascript; charset=utf-8"));
  app.get("/static/console.css", asset(CONSOLE_CSS, "text/css; charset=utf-8"));
  // The console has no icon: the browser's own request for one is answered, and remembered for a
  // day, instead of failing with a 404 in its console on every page.
  app.get("/favicon.ico", function faviconRoute() {
    const response = new Response(null, {
      status: 204,
      headers: { "Cache-Control": "public, max-age=86400" },
    });
    secureHeaders(response.headers);
    return response;
  });
}
