/**
 * Where every failure of a Hono route becomes its JSON answer: an {@link HttpError} as it says, a
 * store that went away `503`, a full store `507`, a store that failed (a disk I/O error, a damaged
 * database: a `StoreError`) `503`, anything else a logged `500`; the `405` of a route's path asked
 * with a method it does not answer, and the `404` of a path no route answers.
 *
 * @module
 */
import type { Context, ErrorHandler, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import { logger } from "../log/mod.ts";
import { shortForm } from "../protocol/mod.ts";
import type { ServerEnv } from "./env.ts";
import type { RouteInfo } from "./http_app.ts";
import { HttpError } from "./http_error.ts";
import { type StoreAvailability, unavailableError } from "./notify.ts";
import type { StoreHealth } from "./store_health.ts";

const log = logger("server");

/**
 * Makes the error handler of the Hono app.
 *
 * @param availability Told of a store that went away.
 * @param storeHealth Maps a full store to its `507`, a failing one to its `503`.
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

/** One segment of a request's path as a route's literal segment is compared to it (decoded). */
function decodedSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/**
 * Whether a route's path (Hono's syntax: `:name` is one non-empty segment) names a request's path.
 *
 * @param route The route's path, e.g. `/api/v1/commands/:id`.
 * @param segments The request path's segments, decoded.
 */
function pathMatches(route: string, segments: readonly string[]): boolean {
  const parts = route.split("/");
  if (parts.length !== segments.length) return false;
  return parts.every((part, i) => part.startsWith(":") ? segments[i] !== "" : part === segments[i]);
}

/**
 * The methods the routes answer on a path (`HEAD` beside a `GET` the Hono app answers; the long-
 * polls answer `GET` alone), in the order of `Allow`; empty when no route has that path (the
 * console's trailing-slash redirects do not count).
 *
 * @param routes Every route of the app.
 * @param lean The routes answered before Hono (their `GET` has no `HEAD`).
 * @param pathname The request's path.
 */
export function allowedMethods(
  routes: readonly RouteInfo[],
  lean: readonly RouteInfo[],
  pathname: string,
): string[] {
  const segments = pathname.split("/").map(decodedSegment);
  const allowed = new Set<string>();
  for (const route of routes) {
    // A console page's path with a trailing slash is only a redirect for a browser's `GET`: a
    // form posted there is no route of it (404, never a hint to ask it with `GET`).
    if (route.path.length > 1 && route.path.endsWith("/")) continue;
    if (!pathMatches(route.path, segments)) continue;
    allowed.add(route.method);
    const isLean = lean.some((r) => r.method === route.method && r.path === route.path);
    if (route.method === "GET" && !isLean) allowed.add("HEAD");
  }
  return [...allowed];
}

/**
 * Makes the answer to a request no route answers: `405` with `Allow` when a route has its path
 * but not its method (`GET /api/v1/agent/commands/ack`), else `404`; both name the method and path.
 *
 * @param routes Every route of the app.
 * @param lean The routes answered before Hono.
 * @returns The handler.
 */
export function notFoundHandler(
  routes: readonly RouteInfo[],
  lean: readonly RouteInfo[],
): NotFoundHandler<ServerEnv> {
  return (c: Context<ServerEnv>) => {
    const pathname = new URL(c.req.url).pathname;
    const path = shortForm(pathname);
    const method = shortForm(c.req.method, 16);
    const allowed = allowedMethods(routes, lean, pathname);
    if (allowed.length > 0) {
      c.header("Allow", allowed.join(", "));
      return c.json(
        { error: `method ${method} is not allowed on ${path}; it answers ${allowed.join(", ")}` },
        405,
      );
    }
    return c.json({ error: `no route for ${method} ${path}` }, 404);
  };
}
