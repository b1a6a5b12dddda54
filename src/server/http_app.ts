/**
 * The HTTP face of the dashboard: the lean long-poll routes answered before the Hono app, every
 * answer counted in the metrics, and the list of routes the app answers.
 *
 * @module
 */
import type { Hono } from "hono";
import type { ServerEnv } from "./env.ts";
import type { DashboardMetrics } from "./metrics.ts";
import { routeLabel } from "./metrics.ts";
import { refusalOf } from "./refusals.ts";
import type { LeanRoutes } from "./wait_route.ts";

/**
 * The HTTP side of the dashboard: the long-poll routes, then a Hono app for everything else,
 * described by the two methods callers use so that the public API does not depend on Hono's types.
 */
export interface HttpApp {
  /** Answers a request; the HTTP server calls it (the second argument may carry `remoteAddr`). */
  fetch(request: Request, env?: { remoteAddr?: Deno.Addr }): Response | Promise<Response>;
  /** Answers a request built from a path or URL, in process (tests). */
  request(input: string | URL | Request, init?: RequestInit): Response | Promise<Response>;
}

/** A route the app answers: a method and a path in Hono's syntax (`:id` for a parameter). */
export interface RouteInfo {
  /** The HTTP method, upper case. */
  method: string;
  /** The path, e.g. `/api/v1/commands/:id`. */
  path: string;
}

/**
 * Every route of the app: the lean ones, then the Hono routes in the order they were registered,
 * each method and path once; middleware is not listed.
 *
 * @param lean The routes answered before Hono.
 * @param app The Hono app, with its routes registered.
 * @returns The routes.
 */
export function routeList(lean: readonly RouteInfo[], app: Hono<ServerEnv>): RouteInfo[] {
  // Middleware (`app.use`) is registered under the method "ALL"; no route uses it.
  const routes: RouteInfo[] = [...lean];
  for (const route of app.routes) {
    if (route.method === "ALL") continue;
    if (!routes.some((r) => r.method === route.method && r.path === route.path)) {
      routes.push({ method: route.method, path: route.path });
    }
  }
  return routes;
}

/**
 * Puts the lean routes in front of the Hono app and counts every answer (status, rate limits,
 * refusals by reason).
 *
 * @param lean Answers the long-polls, `null` for anything else.
 * @param app The Hono app.
 * @param metrics Where answers are counted.
 * @param guard Answers a request it refuses before anything else does (dev mode's browser
 *   guard); `null` lets it through.
 * @returns The app as the HTTP server and tests call it.
 */
export function httpApp(
  lean: LeanRoutes,
  app: Hono<ServerEnv>,
  metrics: Pick<DashboardMetrics, "requests" | "rateLimited" | "authRefusals">,
  guard?: (request: Request) => Response | null,
): HttpApp {
  const count = (request: Request, response: Response) => {
    const status = response.status;
    metrics.requests.inc({ route: routeLabel(new URL(request.url).pathname), status });
    if (status === 429) metrics.rateLimited.inc();
    else if (status >= 400) {
      const reason = refusalOf(request);
      if (reason !== undefined) metrics.authRefusals.inc({ reason });
    }
    return response;
  };
  // Counted with `then`, not an async frame: a held wait keeps nothing more than before.
  const fetch: HttpApp["fetch"] = (request, env) => {
    const refused = guard?.(request) ?? null;
    if (refused) return count(request, refused);
    const addr = env?.remoteAddr;
    const answer = lean(request, addr && "hostname" in addr ? addr.hostname : undefined) ??
      app.fetch(request, env);
    return answer instanceof Promise
      ? answer.then((response) => count(request, response))
      : count(request, answer);
  };
  return {
    fetch,
    // As Hono's `app.request`: a path is resolved against http://localhost.
    request(input, init) {
      if (input instanceof Request) return fetch(init ? new Request(input, init) : input);
      const text = input.toString();
      const url = /^https?:\/\//.test(text)
        ? text
        : `http://localhost${text.startsWith("/") ? "" : "/"}${text}`;
      return fetch(new Request(url, init));
    },
  };
}
