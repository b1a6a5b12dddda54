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
import { noteRefusal } from "../refusals.ts";
import { type AgentCall, callOf } from "./call.ts";

const audit = auditLogger();

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
