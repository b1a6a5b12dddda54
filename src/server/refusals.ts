/**
 * Why a request was refused, noted by the auth steps (`refuse` in `auth/refuse.ts`) on the request
 * itself, and read by the metrics when the answer goes out: one place classifies refusals into
 * a small, bounded set of reasons.
 *
 * @module
 */

/** The reasons an authentication or authorization refusal is counted under. */
export const REFUSAL_REASONS = [
  "missing_agent_id",
  "bad_agent_id",
  "unknown_agent",
  "missing_token",
  "wrong_token",
  "no_agent_token",
  "timestamp",
  "signature",
  "request_id",
  "replay",
  "scope",
  "rate_limit",
  "duplicate_instance",
  "other",
] as const;

/** One of {@link REFUSAL_REASONS}. */
export type RefusalReason = typeof REFUSAL_REASONS[number];

const noted = new WeakMap<Request | Response, RefusalReason>();

const RULES: Array<[RegExp, RefusalReason]> = [
  [/^rate limit/, "rate_limit"],
  [/^replay detected/, "replay"],
  [/X-Agent-Id header is missing/, "missing_agent_id"],
  [/^X-Agent-Id must be/, "bad_agent_id"],
  [/is not registered/, "unknown_agent"],
  [/has no token/, "no_agent_token"],
  [/bearer token is missing/i, "missing_token"],
  [/^Authorization header must be/, "missing_token"],
  [/token is wrong/, "wrong_token"],
  [/X-Timestamp/, "timestamp"],
  [/signature/i, "signature"],
  [/X-Request-Id/, "request_id"],
  [/is not granted the scope/, "scope"],
  [/already connected/, "duplicate_instance"],
];

/**
 * Classifies a refusal's message into a reason.
 *
 * @param message The sentence sent to the client.
 */
export function refusalReason(message: string): RefusalReason {
  for (const [pattern, reason] of RULES) if (pattern.test(message)) return reason;
  return "other";
}

/**
 * Why a request was refused, if an auth step refused it; or, for an answer, why the request it
 * answers was ({@link carryRefusal}).
 *
 * @param request The request or the answer.
 */
export function refusalOf(request: Request | Response): RefusalReason | undefined {
  return noted.get(request);
}

/**
 * Notes why a request was refused, by reason; or, on an answer, why its request was, so that the
 * answer can be counted without keeping the request (a held long-poll keeps nothing of it).
 *
 * @param target The request or the answer.
 * @param reason Why the request was refused.
 */
export function markRefusal(target: Request | Response, reason: RefusalReason): void {
  noted.set(target, reason);
}
