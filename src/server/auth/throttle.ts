/**
 * Rate limits on requests: step 3 of the agent pipeline (the agent's bucket) and the operators'
 * limit (a bucket per client address), both answering `429` with `Retry-After`.
 *
 * @module
 */
import type { Context, MiddlewareHandler } from "hono";
import { addressKey } from "../address_key.ts";
import type { ServerEnv } from "../env.ts";
import type { TokenBucketLimiter } from "../rate_limit.ts";
import { type AgentCall, agentOf, remoteOf } from "./call.ts";
import { refuse } from "./refuse.ts";

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
 * The operators' rate limit of one call (the routes answered without Hono): see
 * {@link operatorRateLimit}.
 *
 * @param limiter The operators' buckets.
 * @param call The request.
 * @throws {HttpError} `429` with `Retry-After`.
 */
export function checkOperatorRateLimit(limiter: TokenBucketLimiter, call: AgentCall): void {
  takeOrRefuse(limiter, operatorKey(call.remote), call);
}

/**
 * The bucket of an operator client: its address, an IPv6 one by its /64 (a host given a /64
 * would otherwise have 2^64 buckets, no limit at all, and fill the buckets' map).
 */
function operatorKey(remote: string | undefined): string {
  return `operator ${addressKey(remote) ?? "local"}`;
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
    takeOrRefuse(limiter, operatorKey(remoteOf(c)), c);
    await next();
  };
}
