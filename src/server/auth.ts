/**
 * Authentication and limits of agent requests, in exactly the order of PROTOCOL.md §1, as Hono
 * middleware factories. Each factory validates its options once and returns a named middleware;
 * a failure throws {@link HttpError} and is written to the audit log.
 *
 * 1. {@link identifyAgent}: `X-Agent-Id` missing or unknown → `401`
 * 2. {@link bearerToken}: bearer token missing or wrong → `401`
 * 3. {@link rateLimit}: token bucket per agent → `429` with `Retry-After`
 * 4. {@link checkTimestamp}: `X-Timestamp` missing, not an integer or too far off → `401`
 * 5. {@link verifySignature}: signature wrong → `401`
 * 6. {@link checkReplay}: `X-Request-Id` missing → `400`; seen before → `409`
 * 7. {@link requireScope}: scope not granted → `403`
 * 8. {@link jsonBody}: larger than 1 MiB → `413`; not JSON or not of the schema → `400`
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
import { type RawBody, readBody } from "./body.ts";
import type { TokenBucketLimiter } from "./rate_limit.ts";
import type { ReplayCache } from "./replay.ts";

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
    /** The body as read (memoized: read once, by the first step that needs it). */
    rawBody: RawBody;
    /** The parsed and validated JSON body. */
    body: unknown;
  };
};

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
export function remoteOf(c: Context<ServerEnv>): string | undefined {
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
 * @param c The request context.
 * @param status The HTTP status.
 * @param message The sentence for the client.
 * @param event What the audit log calls it ("authentication failed", "replay detected", ...).
 * @param extra Properties for the log line and the error.
 */
export function refuse(
  c: Context<ServerEnv>,
  status: 400 | 401 | 403 | 409 | 429,
  message: string,
  event: string,
  extra: { details?: unknown; headers?: Record<string, string>; agentId?: string } = {},
): HttpError {
  audit.warning(`${event}: {reason}`, {
    reason: message,
    status,
    agentId: extra.agentId ?? c.req.header(HEADER.agentId),
    method: c.req.method,
    path: new URL(c.req.url).pathname,
    remote: remoteOf(c),
  });
  return new HttpError(status, message, { details: extra.details, headers: extra.headers });
}

/**
 * Reads the body once and memoizes it on the context.
 *
 * @param c The request context.
 * @param ctx Size limit.
 * @param hmacKey Key of a version 1 HMAC, when the body is read for one.
 */
export async function rawBodyOf(
  c: Context<ServerEnv>,
  ctx: Pick<AuthContext, "maxBodyBytes">,
  hmacKey?: string,
): Promise<RawBody> {
  const existing = c.get("rawBody");
  if (existing) return existing;
  const body = await readBody(c.req.raw, {
    limit: ctx.maxBodyBytes,
    hardLimit: Math.max(ctx.maxBodyBytes * 16, 16 * 1024 * 1024),
    hmacKey,
  });
  c.set("rawBody", body);
  return body;
}

function bearerOf(c: Context<ServerEnv>): string | undefined {
  const header = c.req.header(HEADER.authorization);
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
export function hasBearer(c: Context<ServerEnv>, token: string): boolean {
  const given = bearerOf(c);
  return given !== undefined && given !== "" && constantTimeEqual(given, token);
}

/**
 * Step 1: `X-Agent-Id` names a known agent (in dev mode, any valid id, registered on first sight).
 *
 * @param ctx Store, clock, dev mode.
 * @returns The middleware.
 */
export function identifyAgent(ctx: AuthContext): MiddlewareHandler<ServerEnv> {
  return async function identifyAgentStep(c, next) {
    const id = c.req.header(HEADER.agentId);
    if (!id) throw refuse(c, 401, "X-Agent-Id header is missing", "authentication failed");
    if (!AGENT_ID_PATTERN.test(id)) {
      throw refuse(
        c,
        401,
        "X-Agent-Id must be 1–128 characters of A-Z a-z 0-9 . _ : -",
        "authentication failed",
        { agentId: id.slice(0, 128) },
      );
    }
    let agent = await ctx.store.getAgent(id);
    if (!agent) {
      if (!ctx.devMode) {
        throw refuse(c, 401, `agent ${id} is not registered`, "authentication failed");
      }
      agent = await ctx.store.ensureAgent(id, ctx.clock.now());
    }
    c.set("agent", agent);
    c.set("unsigned", ctx.devMode && agent.token === null);
    ctx.seen?.(id);
    await next();
  };
}

/**
 * Step 2: `Authorization: Bearer <the agent's token>`.
 *
 * @returns The middleware.
 */
export function bearerToken(): MiddlewareHandler<ServerEnv> {
  return async function bearerTokenStep(c, next) {
    if (!c.get("unsigned")) {
      const agent = c.get("agent");
      const given = bearerOf(c);
      if (given === undefined || given === "") {
        throw refuse(c, 401, "Authorization bearer token is missing", "authentication failed");
      }
      if (agent.token === null) {
        throw refuse(
          c,
          401,
          `agent ${agent.id} has no token; give it one with "status agents rotate ${agent.id}"`,
          "authentication failed",
        );
      }
      if (!constantTimeEqual(given, agent.token)) {
        throw refuse(c, 401, "bearer token is wrong", "authentication failed");
      }
    }
    await next();
  };
}

/**
 * Step 3: the agent's token bucket.
 *
 * @param limiter The buckets.
 * @returns The middleware.
 */
export function rateLimit(limiter: TokenBucketLimiter): MiddlewareHandler<ServerEnv> {
  return async function rateLimitStep(c, next) {
    const agent = c.get("agent");
    const taken = limiter.take(agent.id);
    if (!taken.ok) {
      throw refuse(
        c,
        429,
        `rate limit exceeded; retry in ${taken.retryAfterSecs} s`,
        "rate limit exceeded",
        {
          headers: { "Retry-After": String(taken.retryAfterSecs) },
          details: { retry_after_secs: taken.retryAfterSecs },
        },
      );
    }
    await next();
  };
}

/**
 * Step 4: `X-Timestamp` is an integer within `maxSkewSecs` of the dashboard's clock.
 *
 * @param options Clock and the largest skew in seconds.
 * @returns The middleware.
 */
export function checkTimestamp(
  options: { clock: Clock; maxSkewSecs: number },
): MiddlewareHandler<ServerEnv> {
  if (!(options.maxSkewSecs > 0)) {
    throw new RangeError(`maxSkewSecs must be above 0, got ${options.maxSkewSecs}`);
  }
  return async function checkTimestampStep(c, next) {
    if (!c.get("unsigned")) {
      const raw = c.req.header(HEADER.timestamp);
      if (!raw || !/^-?\d{1,15}$/.test(raw.trim())) {
        throw refuse(
          c,
          401,
          "X-Timestamp header is missing or not an integer",
          "authentication failed",
        );
      }
      const nowSecs = options.clock.now() / 1000;
      const skew = Math.round(Number(raw.trim()) - nowSecs);
      if (Math.abs(skew) > options.maxSkewSecs) {
        throw refuse(
          c,
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
    await next();
  };
}

/**
 * Step 5: `X-Agent-Signature` is the HMAC of the request with the agent's token: version 2 (the
 * canonical string), or version 1 (the body alone) when `acceptV1` is set.
 *
 * @param options Whether version 1 is accepted, and the body limit.
 * @returns The middleware.
 */
export function verifySignature(
  options: { acceptV1: boolean; maxBodyBytes: number },
): MiddlewareHandler<ServerEnv> {
  return async function verifySignatureStep(c, next) {
    if (!c.get("unsigned")) {
      const agent = c.get("agent");
      const token = agent.token ?? "";
      const signature = c.req.header(HEADER.signature);
      if (!signature) {
        throw refuse(c, 401, "X-Agent-Signature header is missing", "authentication failed");
      }
      const version = c.req.header(HEADER.signatureVersion)?.trim();
      let expected: string;
      if (version === "2") {
        const body = await rawBodyOf(c, options);
        expected = signV2Hashed(token, {
          method: c.req.method,
          pathAndQuery: pathAndQueryOf(c.req.raw),
          timestamp: c.req.header(HEADER.timestamp)?.trim() ?? "",
          requestId: c.req.header(HEADER.requestId) ?? "",
          bodySha256Hex: body.sha256Hex,
        });
      } else if (version === undefined || version === "" || version === "1") {
        if (!options.acceptV1) {
          throw refuse(
            c,
            401,
            "signature version 1 is not accepted by this dashboard; send X-Signature-Version: 2 " +
              "(or start the dashboard with --accept-v1-signatures)",
            "authentication failed",
          );
        }
        const existing = c.get("rawBody");
        const body = existing?.hmacBase64 !== undefined
          ? existing
          : await rawBodyOf(c, options, token);
        if (body.hmacBase64 === undefined) {
          throw new HttpError(500, "the body was read before its version 1 signature");
        }
        expected = body.hmacBase64;
      } else {
        throw refuse(
          c,
          401,
          `X-Signature-Version ${JSON.stringify(version.slice(0, 16))} is not supported; send 2`,
          "authentication failed",
        );
      }
      if (!constantTimeEqual(signature.trim(), expected)) {
        throw refuse(c, 401, "signature is wrong", "authentication failed");
      }
    }
    await next();
  };
}

/**
 * Step 6: `X-Request-Id` is present and not seen in the replay window.
 *
 * @param replay The cache of recent request ids.
 * @returns The middleware.
 */
export function checkReplay(replay: ReplayCache): MiddlewareHandler<ServerEnv> {
  return async function checkReplayStep(c, next) {
    if (!c.get("unsigned")) {
      const requestId = c.req.header(HEADER.requestId)?.trim();
      if (!requestId) {
        throw refuse(c, 400, "X-Request-Id header is missing", "authentication failed");
      }
      if (requestId.length > 128) {
        throw refuse(
          c,
          400,
          "X-Request-Id must be at most 128 characters",
          "authentication failed",
        );
      }
      if (!replay.remember(`${c.get("agent").id}\n${requestId}`)) {
        throw refuse(
          c,
          409,
          "replay detected: this X-Request-Id was already used",
          "replay detected",
        );
      }
    }
    await next();
  };
}

/**
 * Step 7: the agent was granted `scope`.
 *
 * @param scope The scope the route needs.
 * @returns The middleware.
 */
export function requireScope(scope: AgentScope): MiddlewareHandler<ServerEnv> {
  return async function requireScopeStep(c, next) {
    const agent = c.get("agent");
    if (!agent.scopes.includes(scope)) {
      throw refuse(
        c,
        403,
        `agent ${agent.id} is not granted the scope ${scope}`,
        "authorization failed",
      );
    }
    await next();
  };
}

/**
 * Step 8: the body is at most the limit, UTF-8 JSON, and of the schema; the parsed value is put on
 * the context as `body`.
 *
 * @param schema The zod schema of the body.
 * @param options The body limit.
 * @returns The middleware.
 */
export function jsonBody(
  schema: z.ZodType,
  options: { maxBodyBytes: number },
): MiddlewareHandler<ServerEnv> {
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
 * Operator authentication: `Authorization: Bearer <STATUS_ADMIN_TOKEN>`; nothing in dev mode.
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
    if (!options.devMode || options.adminToken) {
      const given = bearerOf(c);
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
