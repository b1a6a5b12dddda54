/**
 * Refusing a request: the audit line, the reason the metrics count, and the error to throw.
 *
 * @module
 */
import type { Context } from "hono";
import { HEADER } from "../../protocol/mod.ts";
import { auditLogger } from "../../log/mod.ts";
import type { ServerEnv } from "../env.ts";
import { HttpError } from "../http_error.ts";
import { markRefusal, type RefusalReason, refusalReason } from "../refusals.ts";
import { type AgentCall, callOf, isAgentCall } from "./call.ts";
import { REFUSAL_LINES_PER_SECOND, type RefusalLines } from "../../log/refusal_lines.ts";

const audit = auditLogger();

/**
 * Notes why a call was refused: on the call, and on its web request when it has one (the Hono
 * routes' answers are counted by their request).
 *
 * @param call The request.
 * @param message The sentence sent to the client.
 * @param reason Why, when the sentence does not say it (one answer for several reasons).
 */
export function noteCallRefusal(
  call: AgentCall,
  message: string,
  reason: RefusalReason = refusalReason(message),
): void {
  call.refusal = reason;
  if (call.request) markRefusal(call.request, reason);
}

/**
 * Writes the audit line of a refused request within the dashboard's allowance of such lines: a
 * flood of bad requests is a burst of lines, then a steady rate, and the next line written after
 * some were left out says how many.
 *
 * @param lines The allowance; without one (a call made outside a dashboard) every line is written.
 * @param message The line's message template.
 * @param properties Its properties.
 */
export function auditRefusal(
  lines: RefusalLines | undefined,
  message: string,
  properties: Record<string, unknown>,
): void {
  const left = lines ? lines.take() : 0;
  if (left === null) return;
  if (left > 0) {
    audit.warning(
      "{count} more refused requests were not logged (over {perSecond} a second); the " +
        "refusal metrics count them",
      { count: left, perSecond: REFUSAL_LINES_PER_SECOND },
    );
  }
  audit.warning(message, properties);
}

/**
 * Writes a refused request to the audit log and returns the error to throw.
 *
 * @param from The request context, or the agent call.
 * @param status The HTTP status.
 * @param message The sentence for the client.
 * @param event What the audit log calls it ("authentication failed", "replay detected", ...).
 * @param extra Properties for the log line and the error; `logged`, the audit log's sentence when
 *   it says more than the client's (which of several reasons one answer stands for), and `reason`,
 *   the metrics' reason, then.
 */
export function refuse<E extends ServerEnv>(
  from: Context<E> | AgentCall,
  status: 400 | 401 | 403 | 404 | 409 | 429,
  message: string,
  event: string,
  extra: {
    details?: unknown;
    headers?: Record<string, string>;
    agentId?: string;
    logged?: string;
    reason?: RefusalReason;
  } = {},
): HttpError {
  const call = isAgentCall(from) ? from : callOf(from);
  const logged = extra.logged ?? message;
  noteCallRefusal(call, message, extra.reason ?? refusalReason(logged));
  // A reason that begins with its event ("replay detected: ...") is not prefixed with it again.
  auditRefusal(call.refusalLines, logged.startsWith(event) ? "{reason}" : `${event}: {reason}`, {
    reason: logged,
    status,
    agentId: extra.agentId ?? call.headers.get(HEADER.agentId) ?? undefined,
    method: call.method,
    path: new URL(call.url).pathname,
    remote: call.remote,
  });
  return new HttpError(status, message, { details: extra.details, headers: extra.headers });
}
