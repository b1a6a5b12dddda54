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
 * Step 2: `Authorization: Bearer <the agent's token>`.
 *
 * @param call The request, after step 1.
 * @throws {HttpError} `401`.
 */
export function checkBearer(call: AgentCall): void {
  if (call.unsigned) return;
  const agent = agentOf(call);
  const given = bearerOf(call);
  if (given === undefined) {
    throw refuse(call, 401, "Authorization bearer token is missing", "authentication failed");
  }
  if (given === "") {
    const header = call.headers.get(HEADER.authorization) ?? "";
    throw refuse(call, 401, malformedBearer(header), "authentication failed");
  }
  if (agent.token === null) {
    throw refuse(
      call,
      401,
      `agent ${agent.id} has no token; give it one with "status agents rotate ${idWord(agent.id)}"`,
      "authentication failed",
    );
  }
  if (!constantTimeEqual(given, agent.token)) {
    throw refuse(call, 401, "bearer token is wrong", "authentication failed");
  }
}
