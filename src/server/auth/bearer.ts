/**
 * Bearer tokens: reading `Authorization: Bearer <token>`, and step 2 of the agent pipeline (the
 * agent's own token).
 *
 * @module
 */
import { constantTimeEqual, HEADER, idWord } from "../../protocol/mod.ts";
import { type AgentCall, agentOf, type HeaderReader } from "./call.ts";
import { refuse } from "./refuse.ts";

/** The token of `Authorization: Bearer <token>`: `undefined` without the header, `""` when malformed. */
export function bearerOf(request: { headers: HeaderReader }): string | undefined {
  const header = request.headers.get(HEADER.authorization);
  if (!header) return undefined;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return match ? match[1] : "";
}

/**
 * Why an `Authorization` header gives no bearer token (`bearerOf` read `""`): another scheme
 * (`Basic`, from `curl -u`), or the header given twice (a proxy adding its own), which a web
 * `Headers` joins into one value.
 *
 * @param header The header's value.
 * @returns The sentence of the `401`.
 */
export function malformedBearer(header: string): string {
  const twice = /,\s*Bearer[ \t]/i.test(header);
  return `Authorization header must be one "Bearer <token>"` +
    (twice ? "; it was given more than once" : `; it names no bearer token`);
}

/**
 * The one answer to an agent id that is not registered, an agent without a token and a wrong
 * token: told apart, they would let anyone list the registered agent ids. The audit log says which
 * it was; so does `status health --agent-id` to an operator with the admin token.
 */
export const AGENT_CREDENTIALS_WRONG =
  "agent id or bearer token is wrong (the dashboard's audit log says which)";

/**
 * Step 2's first half, run before the agent is looked up: `Authorization: Bearer <token>` is
 * there, so that its absence is told alike for an agent that exists and one that does not.
 *
 * @param call The request.
 * @throws {HttpError} `401` when the bearer token is missing or malformed.
 */
export function requireBearer(call: AgentCall): void {
  const given = bearerOf(call);
  if (given === undefined) {
    throw refuse(call, 401, "Authorization bearer token is missing", "authentication failed");
  }
  if (given === "") {
    const header = call.headers.get(HEADER.authorization) ?? "";
    throw refuse(call, 401, malformedBearer(header), "authentication failed");
  }
}

/**
 * Whether the request carries `Authorization: Bearer <token>` (constant-time compare).
 *
 * @param request The request (a web `Request` or an {@link AgentCall}).
 * @param token The expected token.
 */
export function hasBearer(request: { headers: HeaderReader }, token: string): boolean {
  const given = bearerOf(request);
  return given !== undefined && given !== "" && constantTimeEqual(given, token);
}

/**
 * Step 2: `Authorization: Bearer <the agent's token>` ({@link AGENT_CREDENTIALS_WRONG} for an
 * agent without a token and a wrong token).
 *
 * @param call The request, after step 1.
 * @throws {HttpError} `401`.
 */
export function checkBearer(call: AgentCall): void {
  if (call.unsigned) return;
  const agent = agentOf(call);
  requireBearer(call);
  const given = bearerOf(call)!;
  if (agent.token === null) {
    throw refuse(call, 401, AGENT_CREDENTIALS_WRONG, "authentication failed", {
      logged: `agent ${agent.id} has no token; give it one with ` +
        `"status agents rotate ${idWord(agent.id)}"`,
      reason: "no_agent_token",
    });
  }
  if (!constantTimeEqual(given, agent.token)) {
    throw refuse(call, 401, AGENT_CREDENTIALS_WRONG, "authentication failed", {
      logged: "bearer token is wrong",
      reason: "wrong_token",
    });
  }
}
