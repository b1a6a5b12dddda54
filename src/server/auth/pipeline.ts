/**
 * The agent pipeline: authentication and limits of agent requests, in exactly the order of
 * docs/protocol.md §1. Each step is a plain function over an {@link AgentCall} (the request and
 * what earlier steps found) that throws `HttpError` and writes the audit log on a failure. One
 * ordered list of them, {@link agentAuthSteps}, is run by the Hono routes (as one middleware,
 * {@link agentPipeline}) and by the lean routes (`wait_route.ts`: the long-polls, so that a held
 * wait keeps no suspended middleware frames, and ack, report and enqueue, with
 * {@link runAuthSteps}). Both give the same answers in the same order.
 *
 * 1. `identify` (`identify.ts`): `X-Agent-Id` missing or malformed, or (outside dev mode) no bearer
 *    token → `401`; an unknown agent → the `401` of a wrong token
 * 2. `checkBearer` (`bearer.ts`): the agent has no token or the token is wrong → `401` (one answer
 *    for these and an unknown agent; the audit log says which)
 * 3. `checkRateLimit` (`throttle.ts`): token bucket per agent → `429` with `Retry-After`
 * 4. `checkTimestampOf` (`timestamp.ts`): `X-Timestamp` missing, not an integer or too far off →
 *    `401`
 * 5. `checkSignature` (`signature.ts`): signature wrong → `401`; a body its head refuses (step 8's
 *    `413` of a `Content-Length` beyond the route's limit, `415` of a `Content-Encoding`) is refused
 *    here, before it is read, and one growing beyond the limit as it arrives as soon as it does;
 *    once a body has arrived, an agent dismissed meanwhile is read again: its token rotated, or
 *    the agent removed → the `401` of step 2
 * 6. `checkRequestId` (`request_id.ts`): `X-Request-Id` missing → `400`; seen before → `409`
 * 7. `checkScope` (`scope.ts`): scope not granted → `403`
 * 8. `jsonBody` (`json_body.ts`, on the routes with a body): larger than the route's limit (1 MiB;
 *    a heartbeat's 16 KiB) → `413`, an unsigned body growing beyond it as soon as it does; not JSON, nested more than 64 deep, a number beyond a
 *    double's range or not of the schema → `400`
 *
 * In dev mode an agent without a token skips steps 2, 4, 5 and 6 ("unsigned"). Once every step
 * passed, the agent is marked seen (its last-seen time); a refused request never marks it.
 *
 * @module
 */
import type { MiddlewareHandler } from "hono";
import { MAX_CLOCK_SKEW_SECS } from "../../protocol/mod.ts";
import type { AgentRecord, AgentScope } from "../../store/mod.ts";
import type { Clock } from "../clock.ts";
import type { ServerEnv } from "../env.ts";
import type { TokenBucketLimiter } from "../rate_limit.ts";
import type { RequestIdGuard } from "../replay.ts";
import { checkBearer } from "./bearer.ts";
import { type AgentCall, agentOf, type AuthContext, callOf } from "./call.ts";
import { identify } from "./identify.ts";
import { checkRequestId } from "./request_id.ts";
import { checkScope } from "./scope.ts";
import { checkSignature } from "./signature.ts";
import { checkRateLimit } from "./throttle.ts";
import { checkTimestampOf } from "./timestamp.ts";

/** What the steps of the agent pipeline need; the routes' shared parts hold it. */
export interface AgentAuthDeps {
  /** Store, clock, dev mode, body limit and the last-seen hook. */
  auth: AuthContext;
  /** The agents' buckets (one per agent id). */
  limiter: TokenBucketLimiter;
  /** The dashboard's clock. */
  clock: Clock;
  /** Whether body-only version 1 signatures are accepted. */
  acceptV1Signatures: boolean;
  /** Largest accepted body, in bytes. */
  maxBodyBytes: number;
  /** The request ids seen in the replay window. */
  replay: RequestIdGuard;
}

/** One step of the agent pipeline, on the request as the steps see it. */
export type AuthStep = (call: AgentCall) => void | Promise<void>;

/**
 * The steps of the agent pipeline of docs/protocol.md §1, in order: 1–3 always, 4–6 when
 * `signed`, 7. The one list both the Hono routes ({@link agentPipeline}) and the lean routes
 * ({@link runAuthSteps}) run.
 *
 * @param deps The shared parts.
 * @param scope The route's scope.
 * @param signed Whether timestamp, signature and replay are checked.
 * @param forEnqueue An enqueue: the agent is not marked seen when the steps pass (an operator's
 *   `curl` with `X-Agent-Id` is not the agent connecting; the route marks a signed one) and step 3
 *   is left to the operators' limit.
 * @returns The steps, in order; the first identifies the agent, the last marks it seen.
 */
export function agentAuthSteps(
  deps: AgentAuthDeps,
  scope: AgentScope,
  signed = true,
  forEnqueue = false,
): AuthStep[] {
  const steps: AuthStep[] = [(call) => identify(deps.auth, call), checkBearer];
  if (!forEnqueue) steps.push((call) => checkRateLimit(deps.limiter, call));
  if (signed) {
    const timestamp = { clock: deps.clock, maxSkewSecs: MAX_CLOCK_SKEW_SECS };
    const signature = {
      acceptV1: deps.acceptV1Signatures,
      maxBodyBytes: deps.maxBodyBytes,
      agents: deps.auth.store,
      dismissals: deps.auth.dismissals,
    };
    steps.push(
      (call) => checkTimestampOf(timestamp, call),
      (call) => checkSignature(signature, call),
      (call) => checkRequestId(deps.replay, call),
    );
  }
  steps.push((call) => checkScope(scope, call));
  const seen = deps.auth.seen;
  if (seen && !forEnqueue) steps.push((call) => seen(agentOf(call).id));
  return steps;
}

/**
 * Runs the steps of {@link agentAuthSteps} on a call, in order (the routes answered without Hono);
 * a step that refuses throws.
 *
 * @param call The request.
 * @param steps The steps.
 * @returns The identified agent.
 */
export async function runAuthSteps(
  call: AgentCall,
  steps: readonly AuthStep[],
): Promise<AgentRecord> {
  for (const step of steps) {
    const pending = step(call);
    if (pending) await pending;
  }
  return agentOf(call);
}

/**
 * The agent pipeline ({@link agentAuthSteps}) as one middleware; after step 1 the context holds
 * `agent` and `unsigned`.
 *
 * @param deps The shared parts.
 * @param scope The route's scope.
 * @param signed Whether timestamp, signature and replay are checked.
 * @param forEnqueue See {@link agentAuthSteps}.
 * @returns The middleware.
 */
export function agentPipeline(
  deps: AgentAuthDeps,
  scope: AgentScope,
  signed = true,
  forEnqueue = false,
): MiddlewareHandler<ServerEnv> {
  const [identifyStep, ...rest] = agentAuthSteps(deps, scope, signed, forEnqueue);
  return async function agentPipelineStep(c, next) {
    const call = callOf(c);
    await identifyStep(call);
    c.set("agent", agentOf(call));
    c.set("unsigned", call.unsigned);
    for (const step of rest) await step(call);
    await next();
  };
}
