/**
 * Dev mode answers without credentials, so a web page the operator happens to visit must not be
 * able to use it: neither by sending requests to `127.0.0.1` from its own origin (cross-site
 * request forgery: a `text/plain` POST needs no preflight) nor by making its own domain resolve
 * to `127.0.0.1` (DNS rebinding: the browser then believes the dashboard is that domain).
 *
 * Browsers say where a request comes from (`Origin`, `Sec-Fetch-Site`) and what name it was sent
 * to (`Host`); command-line clients and agents send neither header that could be refused, or a
 * loopback `Host`. Outside dev mode every route needs a token or a console session with a CSRF
 * token, which a foreign page cannot present, and this check is not applied.
 *
 * @module
 */

import { shortForm } from "../protocol/short_form.ts";
import { visibleText } from "../protocol/visible_text.ts";
import type { HeaderReader } from "./auth/call.ts";
import { isLoopback } from "./loopback.ts";

/**
 * What the guard reads of a request: its URL (which carries the `Host` it was sent with) and its
 * headers. A web `Request` is one; the `node:http` path passes the raw headers without making one.
 */
export interface GuardedRequest {
  /** The absolute URL. */
  readonly url: string;
  /** The headers. */
  readonly headers: HeaderReader;
}

/** `Sec-Fetch-Site` values of a request the dashboard's own pages or a typed URL made. */
const OWN_SITES = new Set(["same-origin", "none"]);

/**
 * Whether a URL is of the API (`/api/...`, `/metrics`), which answers browsers with JSON; the
 * console's pages refuse foreign names themselves and need a CSRF token for every form.
 *
 * @param url A request's URL.
 */
export function isApiPath(url: string): boolean {
  const path = new URL(url).pathname;
  return path.startsWith("/api/") || path === "/metrics";
}

/**
 * The refusal of a dev-mode request a browser made for a foreign page, or `null` when it may be
 * answered.
 *
 * @example A forged POST from another site, and the CLI's request
 * ```ts
 * import assert from "node:assert/strict";
 * import { foreignBrowserRequest } from "./browser_guard.ts";
 *
 * const forged = new Request("http://127.0.0.1:5000/api/v1/agent/commands/enqueue", {
 *   method: "POST",
 *   headers: { Origin: "https://evil.example" },
 * });
 * assert.equal(foreignBrowserRequest(forged)?.status, 403);
 * assert.equal(foreignBrowserRequest(new Request("http://127.0.0.1:5000/api/v1/commands")), null);
 * ```
 *
 * @param request The request (its URL carries the `Host` it was sent with).
 * @returns A `403` response, or `null`.
 */
export function foreignBrowserRequest(request: GuardedRequest): Response | null {
  const url = new URL(request.url);
  if (!isLoopback(url.hostname)) {
    return refuse(
      `dev mode answers requests addressed to this machine by a loopback name ` +
        `(localhost, 127.0.0.1, [::1]) only; this one was addressed to ${
          JSON.stringify(shortForm(url.hostname))
        } (a DNS-rebinding page?)`,
    );
  }
  const site = request.headers.get("sec-fetch-site");
  if (site !== null && !OWN_SITES.has(site.toLowerCase())) {
    return refuse(
      `dev mode refuses requests a browser sent for another site (${shortForm(site)})`,
    );
  }
  const origin = request.headers.get("origin");
  if (origin !== null && originHost(origin) !== url.host) {
    return refuse(
      `dev mode refuses requests a browser sent for another origin (${shortForm(origin)})`,
    );
  }
  return null;
}

function originHost(origin: string): string | null {
  try {
    return new URL(origin).host;
  } catch {
    return null; // "null" (sandboxed frames, files) or garbage
  }
}

/** The `403`; a header it quotes shows its control characters as escapes, as every error does. */
function refuse(message: string): Response {
  return Response.json({ error: visibleText(message) }, { status: 403 });
}
