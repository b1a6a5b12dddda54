/**
 * Authentication and limits of agent requests, in exactly the order of PROTOCOL.md §1. Each step
 * is a plain function over an {@link AgentCall} (the request and what earlier steps found) that
 * throws {@link HttpError} and writes the audit log on a failure. One ordered list of them,
 * `agentAuthSteps` in `routes_agent.ts`, is run by the Hono routes (as one middleware,
 * `agentPipeline`) and by the lean wait route (`wait_route.ts`, directly, so that a held wait
 * keeps no suspended middleware frames). Both give the same answers in the same order.
 *
 * 1. {@link identify}: `X-Agent-Id` missing or unknown → `401`
 * 2. {@link checkBearer}: bearer token missing or wrong → `401`
 * 3. {@link checkRateLimit}: token bucket per agent → `429` with `Retry-After`
 * 4. {@link checkTimestampOf}: `X-Timestamp` missing, not an integer or too far off → `401`
 * 5. {@link checkSignature}: signature wrong → `401`
 * 6. {@link checkRequestId}: `X-Request-Id` missing → `400`; seen before → `409`
 * 7. {@link checkScope}: scope not granted → `403`
 * 8. {@link jsonBody}: larger than 1 MiB → `413`; not JSON, nested more than 64 deep or not of the
 *    schema → `400`
 *
 * In dev mode an agent without a token skips steps 2, 4, 5 and 6 ("unsigned").
 *
 * @module
 */
import type { Context, MiddlewareHandler } from "hono";
import type { z } from "zod";
import {
  AGENT_ID_PATTERN,
  constantTimeEqual,
  describeZodError,
  HEADER,
  signV2Hashed,
} from "../protocol/mod.ts";
import { auditLogger } from "../log/mod.ts";
import type { AgentRecord, AgentScope, CommandStore } from "../store/mod.ts";
import type { Clock } from "./clock.ts";
import { HttpError } from "./http_error.ts";
import { MAX_JSON_DEPTH, nestedDeeperThan, type RawBody, readBody } from "./body.ts";
import { noteRefusal } from "./refusals.ts";
import type { TokenBucketLimiter } from "./rate_limit.ts";
import type { RequestIdGuard } from "./replay.ts";

/** Hono environment of the dashboard: what middleware hands to routes. */
export type ServerEnv = {
  Bindings: { remoteAddr?: Deno.Addr } | undefined;
  Variables: {
    /** The authenticated agent. */
    agent: AgentRecord;
    /** Dev mode and a token-less agent: the signature steps are skipped. */
    unsigned: boolean;
    /**
     * How an enqueue was authorised: the admin token, an operator of a dev-mode dashboard (no
     * `X-Agent-Id`), an agent's signed request, or a token-less agent in dev mode.
     */
    via: "admin" | "dev-operator" | "agent" | "dev-agent";
    /** The agent request as the auth steps see it (body memoized on it). */
    call: AgentCall;
    /** A `GET` carries a valid console session cookie (set by the console, `web/routes.tsx`). */
    consoleSession: boolean;
  };
};

/**
 * One agent request as the auth steps see it: the same object for the Hono pipeline and the lean
 * wait route. Step 1 fills in `agent` and `unsigned`; the body is read at most once.
 */
export interface AgentCall {
  /** The request. */
  readonly request: Request;
  /** The client's address, for the audit log. */
  readonly remote: string | undefined;
  /** The agent, once identified. */
  agent?: AgentRecord;
  /** Dev mode and a token-less agent: the signature steps are skipped. */
  unsigned: boolean;
  /** The body as read (memoized: read once, by the first step that needs it). */
  rawBody?: RawBody;
}

/**
 * Makes the {@link AgentCall} of a request.
 *
 * @param request The request.
 * @param remote The client's address, if known.
 */
export function agentCall(request: Request, remote?: string): AgentCall {
  return { request, remote, unsigned: false };
}

/** The {@link AgentCall} of a Hono request, made on first use. */
export function callOf<E extends ServerEnv>(c: Context<E>): AgentCall {
  let call = c.get("call");
  if (!call) {
    call = agentCall(c.req.raw, remoteOf(c));
    c.set("call", call);
  }
  return call;
}

/** What every auth step shares. */
export interface AuthContext {
  /** The store (agents and their tokens). */
  store: CommandStore;
  /** The dashboard's clock. */
  clock: Clock;
  /** Dev mode (PROTOCOL.md §1). */
  devMode: boolean;
  /** Largest accepted body, in bytes. */
  maxBodyBytes: number;
  /** Called with every identified agent (last seen). */
  seen?(agentId: string): void;
}

const audit = auditLogger();

/** Where a request came from, for the audit log. */
export function remoteOf<E extends ServerEnv>(c: Context<E>): string | undefined {
  const addr = c.env?.remoteAddr;
  return addr && "hostname" in addr ? addr.hostname : undefined;
}

/** The path and query of a request exactly as it arrived (signature version 2 covers it). */
export function pathAndQueryOf(request: Request): string {
  const url = request.url;
  const schemeEnd = url.indexOf("//");
  const pathStart = url.indexOf("/", schemeEnd < 0 ? 0 : schemeEnd + 2);
  if (pathStart < 0) return "/";
  const hash = url.indexOf("#", pathStart);
  return hash < 0 ? url.slice(pathStart) : url.slice(pathStart, hash);
}

/**
 * Writes a refused request to the audit log and returns the error to throw.
 *
 * @param from The request context, or the agent call.
 * @param status The HTTP status.
 * @param message The sentence for the client.
 * @param event What the audit log calls it ("authentication failed", "replay detected", ...).
 * @param extra Properties for the log line and the error.
 */
export function refuse<E extends ServerEnv>(
  from: Context<E> | AgentCall,
  status: 400 | 401 | 403 | 404 | 409 | 429,
  message: string,
  event: string,
  extra: { details?: unknown; headers?: Record<string, string>; agentId?: string } = {},
): HttpError {
  const call = "request" in from ? from : callOf(from);
  const request = call.request;
  noteRefusal(request, message);
  audit.warning(`${event}: {reason}`, {
    reason: message,
    status,
    agentId: extra.agentId ?? request.headers.get(HEADER.agentId) ?? undefined,
    method: request.method,
    path: new URL(request.url).pathname,
    remote: call.remote,
  });
  return new HttpError(status, message, { details: extra.details, headers: extra.headers });
}

/**
 * Reads the body once and memoizes it on the call.
 *
 * @param from The request context, or the agent call.
 * @param ctx Size limit.
 * @param hmacKey Key of a version 1 HMAC, when the body is read for one.
 */
export async function rawBodyOf<E extends ServerEnv>(
  from: Context<E> | AgentCall,
  ctx: Pick<AuthContext, "maxBodyBytes">,
  hmacKey?: string,
): Promise<RawBody> {
  const call = "request" in from ? from : callOf(from);
  if (call.rawBody) return call.rawBody;
  const body = await readBody(call.request, {
    limit: ctx.maxBodyBytes,
    hardLimit: Math.max(ctx.maxBodyBytes * 16, 16 * 1024 * 1024),
    hmacKey,
  });
  call.rawBody = body;
  return body;
}

function bearerOf(request: Request): string | undefined {
  const header = request.headers.get(HEADER.authorization);
  if (!header) return undefined;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return match ? match[1] : "";
}

/**
 * Whether the request carries `Authorization: Bearer <token>` (constant-time compare).
 *
 * @param c The request context.
 * @param token The expected token.
 */
export function hasBearer<E extends ServerEnv>(c: Context<E>, token: string): boolean {
  const given = bearerOf(c.req.raw);
  return given !== undefined && given !== "" && constantTimeEqual(given, token);
}

/**
 * The identified agent of a call (step 1 ran).
 *
 * @param call The request.
 * @returns The agent.
 * @throws {HttpError} `500` when step 1 did not run.
 */
export function agentOf(call: AgentCall): AgentRecord {
  if (!call.agent) throw new HttpError(500, "an auth step ran before the agent was identified");
  return call.agent;
}

/**
 * Step 1: `X-Agent-Id` names a known agent (in dev mode, any valid id, registered on first sight).
 * Sets `call.agent` and `call.unsigned`.
 *
 * @param ctx Store, clock, dev mode.
 * @param call The request.
 * @throws {HttpError} `401`.
 */
export async function identify(ctx: AuthContext, call: AgentCall): Promise<void> {
  const id = call.request.headers.get(HEADER.agentId);
  if (!id) throw refuse(call, 401, "X-Agent-Id header is missing", "authentication failed");
  if (!AGENT_ID_PATTERN.test(id)) {
    throw refuse(
      call,
      401,
      "X-Agent-Id must be 1–128 characters of A-Z a-z 0-9 . _ : -",
      "authentication failed",
      { agentId: id.slice(0, 128) },
    );
  }
  let agent = await ctx.store.getAgent(id);
  if (!agent) {
    if (!ctx.devMode) {
      throw refuse(call, 401, `agent ${id} is not registered`, "authentication failed");
    }
    agent = await ctx.store.ensureAgent(id, ctx.clock.now());
  }
  call.agent = agent;
  call.unsigned = ctx.devMode && agent.token === null;
  ctx.seen?.(id);
}

/**
 * Step 2: `Authorization: Bearer <the agent's token>`.
 *
 * @param call The request, after step 1.
 * @throws {HttpError} `401`.
 */
export function checkBearer(call: AgentCall): void {
  if (call.unsigned) return;
  const agent = agentOf(call);
  const given = bearerOf(call.request);
  if (given === undefined || given === "") {
    throw refuse(call, 401, "Authorization bearer token is missing", "authentication failed");
  }
  if (agent.token === null) {
    throw refuse(
      call,
      401,
      `agent ${agent.id} has no token; give it one with "status agents rotate ${agent.id}"`,
      "authentication failed",
    );
  }
  if (!constantTimeEqual(given, agent.token)) {
    throw refuse(call, 401, "bearer token is wrong", "authentication failed");
  }
}

/**
 * Step 3: the agent's token bucket.
 *
 * @param limiter The buckets.
 * @param call The request, after step 1.
 * @throws {HttpError} `429` with `Retry-After`.
 */
export function checkRateLimit(limiter: TokenBucketLimiter, call: AgentCall): void {
  takeOrRefuse(limiter, agentOf(call).id, call);
}

/** Takes a token of `key`'s bucket, or throws the `429` (audited) saying when to retry. */
function takeOrRefuse<E extends ServerEnv>(
  limiter: TokenBucketLimiter,
  key: string,
  from: Context<E> | AgentCall,
): void {
  const taken = limiter.take(key);
  if (!taken.ok) {
    throw refuse(
      from,
      429,
      `rate limit exceeded; retry in ${taken.retryAfterSecs} s`,
      "rate limit exceeded",
      {
        headers: { "Retry-After": String(taken.retryAfterSecs) },
        details: { retry_after_secs: taken.retryAfterSecs },
      },
    );
  }
}

/**
 * The operators' rate limit: one token bucket per client address, apart from every agent's own
 * bucket, so that operator requests (and enqueues, however authenticated) never take from an
 * agent's budget.
 *
 * @param limiter The operators' buckets.
 * @returns The middleware; a full bucket answers `429` with `Retry-After`.
 */
export function operatorRateLimit(limiter: TokenBucketLimiter): MiddlewareHandler<ServerEnv> {
  return async function operatorRateLimitStep(c, next) {
    takeOrRefuse(limiter, `operator ${remoteOf(c) ?? "local"}`, c);
    await next();
  };
}

/** Options of step 4. */
export interface TimestampOptions {
  /** The dashboard's clock. */
  clock: Clock;
  /** The largest accepted skew, in seconds. */
  maxSkewSecs: number;
}

/**
 * Step 4: `X-Timestamp` is an integer within `maxSkewSecs` of the dashboard's clock.
 *
 * @param options Clock and the largest skew in seconds.
 * @param call The request, after step 1.
 * @throws {HttpError} `401`, saying how far off the clock is.
 */
export function checkTimestampOf(options: TimestampOptions, call: AgentCall): void {
  if (call.unsigned) return;
  const raw = call.request.headers.get(HEADER.timestamp);
  if (!raw || !/^-?\d{1,15}$/.test(raw.trim())) {
    throw refuse(
      call,
      401,
      "X-Timestamp header is missing or not an integer",
      "authentication failed",
    );
  }
  const nowSecs = options.clock.now() / 1000;
  const skew = Math.round(Number(raw.trim()) - nowSecs);
  if (Math.abs(skew) > options.maxSkewSecs) {
    throw refuse(
      call,
      401,
      `X-Timestamp is ${Math.abs(skew)} s ${skew > 0 ? "ahead of" : "behind"} the ` +
        `dashboard's clock (at most ${options.maxSkewSecs} s allowed); check the agent's clock`,
      "authentication failed",
      {
        details: {
          skew_secs: skew,
          dashboard_time: new Date(options.clock.now()).toISOString(),
        },
      },
    );
  }
}

/** Options of step 5. */
export interface SignatureOptions {
  /** Whether body-only version 1 signatures are accepted. */
  acceptV1: boolean;
  /** Largest accepted body, in bytes. */
  maxBodyBytes: number;
}

/**
 * Step 5: `X-Agent-Signature` is the HMAC of the request with the agent's token: version 2 (the
 * canonical string), or version 1 (the body alone) when `acceptV1` is set.
 *
 * @param options Whether version 1 is accepted, and the body limit.
 * @param call The request, after step 1.
 * @throws {HttpError} `401`.
 */
export async function checkSignature(options: SignatureOptions, call: AgentCall): Promise<void> {
  if (call.unsigned) return;
  const agent = agentOf(call);
  const headers = call.request.headers;
  const token = agent.token ?? "";
  const signature = headers.get(HEADER.signature);
  if (!signature) {
    throw refuse(call, 401, "X-Agent-Signature header is missing", "authentication failed");
  }
  const version = headers.get(HEADER.signatureVersion)?.trim();
  let expected: string;
  if (version === "2") {
    const body = await rawBodyOf(call, options);
    expected = signV2Hashed(token, {
      method: call.request.method,
      pathAndQuery: pathAndQueryOf(call.request),
      timestamp: headers.get(HEADER.timestamp)?.trim() ?? "",
      requestId: headers.get(HEADER.requestId) ?? "",
      bodySha256Hex: body.sha256Hex,
    });
  } else if (version === undefined || version === "" || version === "1") {
    if (!options.acceptV1) {
      throw refuse(
        call,
        401,
        "signature version 1 is not accepted by this dashboard; send X-Signature-Version: 2 " +
          "(or start the dashboard with --accept-v1-signatures)",
        "authentication failed",
      );
    }
    const existing = call.rawBody;
    const body = existing?.hmacBase64 !== undefined
      ? existing
      : await rawBodyOf(call, options, token);
    if (body.hmacBase64 === undefined) {
      throw new HttpError(500, "the body was read before its version 1 signature");
    }
    expected = body.hmacBase64;
  } else {
    throw refuse(
      call,
      401,
      `X-Signature-Version ${JSON.stringify(version.slice(0, 16))} is not supported; send 2`,
      "authentication failed",
    );
  }
  if (!constantTimeEqual(signature.trim(), expected)) {
    throw refuse(call, 401, "signature is wrong", "authentication failed");
  }
}

/**
 * Step 6: `X-Request-Id` is present and not seen in the replay window.
 *
 * @param replay The cache of recent request ids.
 * @param call The request, after step 1.
 * @throws {HttpError} `400` when missing or too long, `409` on a replay.
 */
export async function checkRequestId(replay: RequestIdGuard, call: AgentCall): Promise<void> {
  if (call.unsigned) return;
  const requestId = call.request.headers.get(HEADER.requestId)?.trim();
  if (!requestId) {
    throw refuse(call, 400, "X-Request-Id header is missing", "authentication failed");
  }
  if (requestId.length > 128) {
    throw refuse(call, 400, "X-Request-Id must be at most 128 characters", "authentication failed");
  }
  if (!(await replay.remember(`${agentOf(call).id}\n${requestId}`))) {
    throw refuse(
      call,
      409,
      "replay detected: this X-Request-Id was already used",
      "replay detected",
    );
  }
}

/**
 * Step 7: the agent was granted `scope`.
 *
 * @param scope The scope the route needs.
 * @param call The request, after step 1.
 * @throws {HttpError} `403`.
 */
export function checkScope(scope: AgentScope, call: AgentCall): void {
  const agent = agentOf(call);
  if (!agent.scopes.includes(scope)) {
    throw refuse(
      call,
      403,
      `agent ${agent.id} is not granted the scope ${scope}`,
      "authorization failed",
    );
  }
}

/** The Hono environment after {@link jsonBody}: `c.get("body")` is the schema's output type. */
export type BodyEnv<T> = ServerEnv & { Variables: { body: T } };

/**
 * Step 8: the body is at most the limit, UTF-8 JSON, and of the schema; the parsed value is put on
 * the context as `body`, typed as the schema's output.
 *
 * @param schema The zod schema of the body.
 * @param options The body limit.
 * @returns The middleware.
 */
export function jsonBody<S extends z.ZodType>(
  schema: S,
  options: { maxBodyBytes: number },
): MiddlewareHandler<BodyEnv<z.output<S>>> {
  return async function jsonBodyStep(c, next) {
    const body = await rawBodyOf(c, options);
    if (body.bytes === null) {
      throw new HttpError(413, `request body is larger than ${options.maxBodyBytes} bytes`, {
        details: { limit_bytes: options.maxBodyBytes, size_bytes: body.size },
      });
    }
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(body.bytes);
    } catch {
      throw new HttpError(400, "request body is not UTF-8");
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new HttpError(400, `request body is not JSON: ${(error as Error).message}`);
    }
    if (nestedDeeperThan(value, MAX_JSON_DEPTH)) {
      throw new HttpError(
        400,
        `request body nests arrays and objects more than ${MAX_JSON_DEPTH} levels deep`,
        { details: { max_depth: MAX_JSON_DEPTH } },
      );
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      throw new HttpError(400, describeZodError(parsed.error), {
        details: parsed.error.issues.slice(0, 10).map((issue) => ({
          field: issue.path.join(".") || "(body)",
          message: issue.message,
        })),
      });
    }
    c.set("body", parsed.data);
    await next();
  };
}

/**
 * Operator authentication: `Authorization: Bearer <STATUS_ADMIN_TOKEN>`, or for `GET`/`HEAD` a
 * valid console session cookie (the console's middleware sets `consoleSession`); nothing in dev
 * mode.
 *
 * @param options The admin token (absent only in dev mode) and dev mode.
 * @returns The middleware.
 * @throws {TypeError} When neither an admin token nor dev mode is given.
 */
export function adminAuth(
  options: { adminToken?: string; devMode: boolean },
): MiddlewareHandler<ServerEnv> {
  if (!options.adminToken && !options.devMode) {
    throw new TypeError("adminAuth needs an admin token outside dev mode");
  }
  return async function adminAuthStep(c, next) {
    // A browser logged in to the console reads the API with its session cookie (GET only).
    const sessionRead = c.get("consoleSession") === true &&
      (c.req.method === "GET" || c.req.method === "HEAD");
    if ((!options.devMode || options.adminToken) && !sessionRead) {
      const given = bearerOf(c.req.raw);
      if (given === undefined || given === "") {
        throw refuse(
          c,
          401,
          "Authorization bearer token is missing; operators send STATUS_ADMIN_TOKEN",
          "authentication failed",
        );
      }
      if (!constantTimeEqual(given, options.adminToken ?? "")) {
        throw refuse(c, 401, "admin token is wrong", "authentication failed");
      }
    }
    await next();
  };
}
