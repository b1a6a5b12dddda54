/**
 * The middleware every Hono request passes first: it stamps the `Date` header from the dashboard's
 * clock, and logs the request at debug.
 *
 * @module
 */
import type { MiddlewareHandler } from "hono";
import { logger } from "../log/mod.ts";
import type { Clock } from "./clock.ts";
import type { ServerEnv } from "./env.ts";

const log = logger("server");

/**
 * Makes the request middleware.
 *
 * @param clock The dashboard's clock (the `Date` header).
 * @returns The middleware; the debug line builds its properties only when debug is on.
 */
export function requestLog(clock: Clock): MiddlewareHandler<ServerEnv> {
  // The Date header changes once a second: its text is made once a second.
  let second = NaN;
  let dateText = "";
  const date = () => {
    const now = clock.now();
    if (Math.floor(now / 1000) !== second) {
      second = Math.floor(now / 1000);
      dateText = new Date(now).toUTCString();
    }
    return dateText;
  };
  return async function requestLog(c, next) {
    const started = log.isEnabledFor("debug") ? performance.now() : 0;
    await next();
    if (!c.res.headers.has("Date")) {
      c.res.headers.set("Date", date());
    }
    log.debug("{method} {path} {status}", () => ({
      method: c.req.method,
      path: new URL(c.req.url).pathname,
      status: c.res.status,
      durationMs: Math.round((performance.now() - started) * 10) / 10,
      agentId: c.get("agent")?.id,
    }));
  };
}
