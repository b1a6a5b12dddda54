/**
 * Where every failure of a Hono route becomes its JSON answer: an {@link HttpError} as it says, a
 * store that went away `503`, a full store `507`, anything else a logged `500`; and the `404` of a
 * path no route answers.
 *
 * @module
 */
import type { Context, ErrorHandler, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import { logger } from "../log/mod.ts";
import { shortForm } from "../protocol/mod.ts";
import type { ServerEnv } from "./env.ts";
import { HttpError } from "./http_error.ts";
import { type StoreAvailability, unavailableError } from "./notify.ts";
import type { StoreHealth } from "./store_health.ts";

const log = logger("server");

/**
 * Makes the error handler of the Hono app.
 *
 * @param availability Told of a store that went away.
 * @param storeHealth Maps a full store to its `507`.
 * @returns The handler.
 */
export function errorHandler(
  availability: StoreAvailability,
  storeHealth: StoreHealth,
): ErrorHandler<ServerEnv> {
  return (thrown, c) => {
    const unavailable = unavailableError(thrown);
    if (unavailable) availability.observe(thrown);
    const error = unavailable ?? storeHealth.map(thrown);
    if (error instanceof HttpError) {
      for (const [name, value] of Object.entries(error.headers)) c.header(name, value);
      return c.json(error.toJSON(), error.status);
    }
    if (error instanceof HTTPException) {
      return c.json({ error: error.message || "request failed" }, error.status);
    }
    log.error("request {method} {path} failed: {error}", {
      method: c.req.method,
      path: new URL(c.req.url).pathname,
      error,
    });
    return c.json({ error: "internal error; see the dashboard's log" }, 500);
  };
}

/** The answer to a path no route answers: `404` naming the method and path. */
export const notFound: NotFoundHandler<ServerEnv> = (c: Context<ServerEnv>) => {
  const path = shortForm(new URL(c.req.url).pathname);
  return c.json({ error: `no route for ${shortForm(c.req.method, 16)} ${path}` }, 404);
};
