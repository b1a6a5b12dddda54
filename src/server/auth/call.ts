/**
 * One agent request as the auth steps see it ({@link AgentCall}): the same object for the Hono
 * pipeline and the lean routes, with the agent once identified and the body read at most once.
 *
 * @module
 */
import type { Context } from "hono";
import type { AgentRecord, CommandStore } from "../../store/mod.ts";
import type { Clock } from "../clock.ts";
import type { RefusalLines } from "../../log/refusal_lines.ts";
import type { ServerEnv } from "../env.ts";
import { HttpError } from "../http_error.ts";
import type { IncomingMessage } from "node:http";
import { type RawBody, readBody, readIncoming } from "../body.ts";
import type { RefusalReason } from "../refusals.ts";
import type { BodySlots } from "./body_slots.ts";

/** Request headers as the auth steps read them: a web `Headers`, or `node:http`'s raw ones. */
export interface HeaderReader {
  /**
   * A header's value as a web `Headers` gives it (repeated ones joined with `", "`).
   *
   * @param name The header's name, in any case.
   * @returns The value, or `null` without the header.
   */
  get(name: string): string | null;
}

/**
 * One agent request as the auth steps see it: the same object for the Hono pipeline and the lean
 * wait route. Step 1 fills in `agent` and `unsigned`; the body is read at most once.
 */
export interface AgentCall {
  /** The request method. */
  readonly method: string;
  /** The request's URL, as a web `Request` has it. */
  readonly url: string;
  /**
   * The request target (path and query) exactly as it arrived, when the URL above was parsed from
   * it and may differ (signature version 2 accepts either form).
   */
  readonly target?: string;
  /** The request headers. */
  readonly headers: HeaderReader;
  /**
   * The web request, when there is one (the lean routes on `node:http` have none: a long-poll is a
   * `GET` whose body is taken as empty, as a web `Request` made for it had it; a `POST`'s body is
   * read from {@link AgentCall.incoming}).
   */
  readonly request?: Request;
  /**
   * The `node:http` request whose body is read, when the call is answered straight on
   * `node:http` (`http_app.ts`'s direct handler, for the routes with a body) and has no `request`.
   */
  readonly incoming?: IncomingMessage;
  /** The client's address, for the audit log. */
  readonly remote: string | undefined;
  /** The agent, once identified. */
  agent?: AgentRecord;
  /** Dev mode and a token-less agent: the signature steps are skipped. */
  unsigned: boolean;
  /** The body as read (memoized: read once, by the first step that needs it). */
  rawBody?: RawBody;
  /** Why an auth step refused the request, once one did (the metrics count it). */
  refusal?: RefusalReason;
  /** How many audit lines of refusals the dashboard still writes; none: every one. */
  refusalLines?: RefusalLines;
  /** The agents' slots for reading bodies (step 1 sets them): none, no cap. */
  bodySlots?: BodySlots;
  /** {@link Dismissals.mark} when step 1 began, before the agent (and its token) was read. */
  mark?: number;
}

/**
 * The agents' dismissals (a token rotated, an agent removed): `WaiterHub` keeps them. A call whose
 * agent was dismissed after its steps began was read with a token that may be the old one.
 */
export interface Dismissals {
  /** A mark to take before the agent is read. */
  readonly mark: number;
  /**
   * Whether the agent was dismissed after `mark` was taken.
   *
   * @param agentId The agent.
   * @param mark The mark taken before it was read.
   */
  dismissedSince(agentId: string, mark: number): boolean;
}

/**
 * Makes the {@link AgentCall} of a request.
 *
 * @param request The request.
 * @param remote The client's address, if known.
 */
export function agentCall(request: Request, remote?: string): AgentCall {
  return {
    method: request.method,
    url: request.url,
    headers: request.headers,
    request,
    remote,
    unsigned: false,
  };
}

/**
 * Whether `from` is an {@link AgentCall} (and not a Hono context).
 *
 * @param from A request context or an agent call.
 */
export function isAgentCall<E extends ServerEnv>(from: Context<E> | AgentCall): from is AgentCall {
  return "unsigned" in from;
}

/** The {@link AgentCall} of a Hono request, made on first use. */
export function callOf<E extends ServerEnv>(c: Context<E>): AgentCall {
  let call = c.get("call");
  if (!call) {
    call = agentCall(c.req.raw, remoteOf(c));
    call.refusalLines = c.get("refusalLines");
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
  /** Dev mode (docs/protocol.md §1). */
  devMode: boolean;
  /** Largest accepted body, in bytes. */
  maxBodyBytes: number;
  /**
   * Called with the agent of every request that passed the auth steps (last seen); a request
   * refused by any of them (a wrong token or signature) does not count.
   */
  seen?(agentId: string): void;
  /** How many request bodies each agent has on their way (`body_slots.ts`); none: no cap. */
  bodySlots?: BodySlots;
  /**
   * The agents' dismissals: a request whose agent was dismissed after step 1 began reads it again
   * once its body has arrived (step 5). None: it is read again after every body.
   */
  dismissals?: Dismissals;
}

/** Where a request came from, for the audit log. */
export function remoteOf<E extends ServerEnv>(c: Context<E>): string | undefined {
  const addr = c.env?.remoteAddr;
  return addr && "hostname" in addr ? addr.hostname : undefined;
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
 * Reads the body once and memoizes it on the call. An identified agent's body takes one of its
 * slots while it arrives (`body_slots.ts`); a `GET` or `HEAD` has no body to wait for.
 *
 * @param from The request context, or the agent call.
 * @param ctx Size limit; `stopAtLimit`: a body growing beyond it is refused (`413`) as soon as it
 *   does, not read on (and hashed) up to the hard limit.
 * @param hmacKey Key of a version 1 HMAC, when the body is read for one.
 * @throws {HttpError} `429` when the agent has as many bodies on their way as it may; `413`
 *   beyond the hard limit (or the limit, with `stopAtLimit`).
 */
export async function rawBodyOf<E extends ServerEnv>(
  from: Context<E> | AgentCall,
  ctx: Pick<AuthContext, "maxBodyBytes"> & { stopAtLimit?: boolean },
  hmacKey?: string,
): Promise<RawBody> {
  const call = isAgentCall(from) ? from : callOf(from);
  if (call.rawBody) return call.rawBody;
  const options = {
    limit: ctx.maxBodyBytes,
    hardLimit: ctx.stopAtLimit
      ? ctx.maxBodyBytes
      : Math.max(ctx.maxBodyBytes * 16, 16 * 1024 * 1024),
    hmacKey,
  };
  const { agent, bodySlots } = call;
  const leave = agent && bodySlots && call.method !== "GET" && call.method !== "HEAD"
    ? bodySlots.enter(call, agent.id)
    : undefined;
  try {
    const body = call.incoming
      ? await readIncoming(call.incoming, call.headers.get("content-length"), options)
      : await readBody(call.request ?? null, options);
    call.rawBody = body;
    return body;
  } finally {
    leave?.();
  }
}
