/**
 * Operator authentication: the admin token, or a console session for reading.
 *
 * @module
 */
import type { MiddlewareHandler } from "hono";
import { constantTimeEqual } from "../../protocol/mod.ts";
import type { ServerEnv } from "../env.ts";
import { bearerOf, malformedBearer } from "./bearer.ts";
import { refuse } from "./refuse.ts";

/**
 * Operator authentication: `Authorization: Bearer <STATUS_ADMIN_TOKEN>`, or for `GET`/`HEAD` a
 * valid console session cookie (the console's middleware sets `consoleSession`); nothing in dev
 * mode.
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
      if (!constantTimeEqual(given, options.adminToken ?? "")) {
        throw refuse(c, 401, "admin token is wrong", "authentication failed");
      }
    }
    await next();
  };
}
