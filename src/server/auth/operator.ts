/**
 * Operator authentication: the admin token, or a console session for reading.
 *
 * @module
 */
import type { Context, MiddlewareHandler } from "hono";
import { constantTimeEqual } from "../../protocol/mod.ts";
import type { ServerEnv } from "../env.ts";
import { bearerOf, malformedBearer } from "./bearer.ts";
import { type AgentCall, remoteOf } from "./call.ts";
import type { AdminTokenGuesses } from "./guesses.ts";
import { refuse } from "./refuse.ts";

/**
 * Operator authentication: `Authorization: Bearer <STATUS_ADMIN_TOKEN>`, or for `GET`/`HEAD` a
 * valid console session cookie (the console's middleware sets `consoleSession`); nothing in dev
 * mode. A wrong token counts against the client address's guesses, and no token is compared for
 * an address that has none left (`429`).
 *
 * @param options The admin token (absent only in dev mode), dev mode, and the count of wrong
 *   tokens per address shared with the other places that take the admin token.
 * @returns The middleware.
 * @throws {TypeError} When neither an admin token nor dev mode is given.
 */
export function adminAuth(
  options: { adminToken?: string; devMode: boolean; guesses?: AdminTokenGuesses },
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
      if (given === undefined) {
        throw refuse(
          c,
          401,
          "Authorization bearer token is missing; operators send STATUS_ADMIN_TOKEN",
          "authentication failed",
        );
      }
      if (given === "") {
        const header = c.req.header("Authorization") ?? "";
        throw refuse(c, 401, malformedBearer(header), "authentication failed");
      }
      const remote = remoteOf(c);
      checkGuesses(c, options.guesses, remote);
      if (!constantTimeEqual(given, options.adminToken ?? "")) {
        options.guesses?.wrong(remote);
        throw refuse(c, 401, "admin token is wrong", "authentication failed");
      }
    }
    await next();
  };
}

/**
 * Refuses an admin token from an address that has no guesses left, before it is compared.
 *
 * @param from The request context, or the agent call.
 * @param guesses The count of wrong admin tokens, if kept.
 * @param remote The client's address.
 * @throws {HttpError} `429` with `Retry-After`.
 */
export function checkGuesses<E extends ServerEnv>(
  from: Context<E> | AgentCall,
  guesses: AdminTokenGuesses | undefined,
  remote: string | undefined,
): void {
  const allowed = guesses?.check(remote);
  if (!allowed || allowed.ok) return;
  throw refuse(
    from,
    429,
    `rate limit exceeded: too many wrong admin tokens from this address; retry in ${allowed.retryAfterSecs} s`,
    "rate limit exceeded",
    {
      headers: { "Retry-After": String(allowed.retryAfterSecs) },
      details: { retry_after_secs: allowed.retryAfterSecs },
    },
  );
}
