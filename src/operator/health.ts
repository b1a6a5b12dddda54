/**
 * A quick diagnosis of a dashboard from where the operator (or an agent) stands: is the URL a
 * reachable `status` dashboard, are the admin token and the agent's credentials accepted, and how
 * far apart are the two clocks. `status health` (alias `status ping`) prints it.
 *
 * @module
 */
import {
  dashboardUrlProblem,
  idWord,
  LIVE_PATHS,
  MAX_CLOCK_SKEW_SECS,
  PATHS,
  signedHeaders,
} from "../protocol/mod.ts";
import { timeoutSignal } from "../clock.ts";
import { checkOptionNames } from "../options.ts";
import { redactUrl } from "../log/redact.ts";
import { describeFetchFailure } from "../fetch_failure.ts";
import { readBodyBounded } from "../read_bounded.ts";

/** Largest `/health` or error answer read, in bytes (a broken or hostile server's is not). */
const MAX_HEALTH_ANSWER_BYTES = 1024 * 1024;

/** One finding. */
export interface HealthCheck {
  /** What was checked: `dashboard`, `clock`, `operator`, `agent`. */
  name: string;
  /** `ok`, `warning` (works, but look at it), `failed`, or `skipped` (nothing to check with). */
  outcome: "ok" | "warning" | "failed" | "skipped";
  /** One sentence. */
  message: string;
}

/** What {@link checkHealth} found. */
export interface HealthReport {
  /** The dashboard URL checked (a password in it shown as `***`). */
  url: string;
  /** The findings, in order. */
  checks: HealthCheck[];
  /** Dashboard clock minus this machine's, in seconds, when known. */
  clockOffsetSecs: number | null;
  /** Whether every check is ok, a warning or skipped. */
  ok: boolean;
}

/** Options of {@link checkHealth}. */
export interface HealthOptions {
  /** The dashboard's base URL. */
  dashboardUrl: string;
  /** `STATUS_ADMIN_TOKEN`, to check operator access. */
  adminToken?: string;
  /** `AGENT_ID`, to check an agent's credentials (with `agentToken`, signed). */
  agentId?: string;
  /** `AGENT_TOKEN`. */
  agentToken?: string;
  /** @internal `fetch`; for tests. */
  fetch?: typeof fetch;
  /**
   * Deadline of each request, in ms.
   * @default {10000}
   */
  timeoutMs?: number;
}

async function errorOf(response: Response): Promise<string> {
  const text = await readBodyBounded(response, MAX_HEALTH_ANSWER_BYTES).catch(() => "") ?? "";
  try {
    const body = JSON.parse(text);
    if (typeof body?.error === "string") return body.error;
  } catch {
    // not JSON
  }
  return text.trim().slice(0, 200) || `HTTP ${response.status}`;
}

/**
 * The JSON body of an answer, read up to `maxBytes`; `undefined` when it is not JSON or larger.
 */
async function jsonOf(response: Response, maxBytes = MAX_HEALTH_ANSWER_BYTES): Promise<unknown> {
  const text = await readBodyBounded(response, maxBytes).catch(() => undefined);
  try {
    return JSON.parse(text ?? "");
  } catch {
    return undefined;
  }
}

/** What a `404` of `/health` says: a path prefix the dashboard does not have, or not one. */
const NO_HEALTH_ROUTE = `answered HTTP 404: it has no ${PATHS.health}; is DASHBOARD_URL (or ` +
  "--dashboard-url) the dashboard's base URL?";

/**
 * What a `/health` answer that is JSON but not `"status": "ok"` says: the dashboard answers, but
 * its store is down or full (`503`, `store.status`), or it is some other program.
 */
function notOk(httpStatus: number, health: unknown): string {
  const body = health !== null && typeof health === "object"
    ? health as Record<string, unknown>
    : {};
  const store = body.store as Record<string, unknown> | undefined;
  if (typeof store?.status === "string" && store.status !== "ok") {
    const since = typeof store.since === "string" ? ` since ${store.since}` : "";
    const why = typeof store.error === "string" ? `: ${store.error}` : "";
    return `answers (HTTP ${httpStatus}), but its store is ${store.status}${since}${why}`;
  }
  if (httpStatus === 404) return NO_HEALTH_ROUTE;
  const status = typeof body.status === "string"
    ? `with status ${JSON.stringify(body.status)}`
    : 'without "status": "ok"';
  return `answered HTTP ${httpStatus} ${status}; is it a status dashboard?`;
}

/** What a 3xx answer says (its body is dropped), or `undefined` for another answer. */
async function redirectOf(response: Response): Promise<string | undefined> {
  if (response.status < 300 || response.status >= 400) return undefined;
  await response.body?.cancel();
  const location = response.headers.get("Location");
  return `the dashboard redirects (${response.status}) to ${
    location === null ? "no Location" : JSON.stringify(location.slice(0, 300))
  }, which neither this check nor the agent follows: set DASHBOARD_URL to the address it leads to`;
}

/**
 * Why the dashboard refused an agent's credentials, from the operator API's list of agents: the id
 * is not registered, the agent has no token, no token was given for it, or the token is not its
 * own. `undefined` when the list cannot be read.
 *
 * @param get Sends a `GET` to the dashboard.
 * @param adminToken The admin token (none in dev mode).
 * @param agentId The agent id refused.
 * @param tokenGiven Whether an agent token was sent.
 */
async function agentRefusalCause(
  get: (path: string, headers?: Record<string, string>) => Promise<Response>,
  adminToken: string | undefined,
  agentId: string,
  tokenGiven: boolean,
): Promise<string | undefined> {
  try {
    const response = await get(
      PATHS.agents,
      adminToken ? { Authorization: `Bearer ${adminToken}` } : {},
    );
    if (!response.ok) {
      await response.body?.cancel();
      return undefined;
    }
    const text = await readBodyBounded(response, 64 * MAX_HEALTH_ANSWER_BYTES);
    const agents = (JSON.parse(text ?? "") as { agents?: unknown }).agents;
    if (!Array.isArray(agents)) return undefined;
    const agent = agents.find((a) => a?.id === agentId) as { has_token?: unknown } | undefined;
    const word = idWord(agentId);
    if (agent === undefined) {
      return `the dashboard has no agent ${agentId}: add it with "status agents add ${word}"`;
    }
    if (agent.has_token === false) {
      return `agent ${agentId} has no token: give it one with "status agents rotate ${word}"`;
    }
    if (!tokenGiven) {
      return `agent ${agentId} has a token and none was given: set AGENT_TOKEN (or ` +
        `--agent-token) to the one "status agents add" or "status agents rotate ${word}" printed`;
    }
    return `agent ${agentId} is registered, so AGENT_TOKEN is not its token: use the one ` +
      `"status agents add" or "status agents rotate ${word}" printed`;
  } catch {
    return undefined;
  }
}

/**
 * Checks a dashboard: reachability, version and mode, clock offset, admin token, agent
 * credentials.
 *
 * @example Check a dashboard
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkHealth, startServer } from "../../mod.ts";
 *
 * await using server = await startServer({ db: ":memory:", port: 0 });
 * const report = await checkHealth({ dashboardUrl: server.url });
 * assert.ok(report.ok);
 * assert.equal(report.checks[0].name, "dashboard");
 * ```
 *
 * @param options URL, credentials, injectables.
 * @returns The findings.
 * @throws {TypeError} When `dashboardUrl` is not an http(s) URL, or holds a control character or
 *   a space inside (nothing is sent).
 * @throws {RangeError} When `timeoutMs` is not a finite number above 0 (nothing is sent).
 */
export async function checkHealth(options: HealthOptions): Promise<HealthReport> {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`checkHealth's options must be an object, got ${String(options)}`);
  }
  checkOptionNames("checkHealth", options, {
    dashboardUrl: true,
    adminToken: true,
    agentId: true,
    agentToken: true,
    fetch: true,
    timeoutMs: true,
  });
  if (
    !URL.canParse(options.dashboardUrl) || !/^https?:$/.test(new URL(options.dashboardUrl).protocol)
  ) {
    throw new TypeError(
      `dashboard URL must be an http:// or https:// URL, got ${
        JSON.stringify(redactUrl(String(options.dashboardUrl)))
      }`,
    );
  }
  const odd = typeof options.dashboardUrl === "string"
    ? dashboardUrlProblem(options.dashboardUrl)
    : null;
  if (odd !== null) {
    throw new TypeError(
      `dashboard URL ${JSON.stringify(redactUrl(options.dashboardUrl.trim()))} cannot be ` +
        `taken: ${odd}`,
    );
  }
  const doFetch = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? 10_000;
  if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs)) {
    throw new RangeError(`timeoutMs must be a finite number above 0, got ${timeoutMs}`);
  }
  // As the operator client and the agent do: a query or fragment is not part of the base URL
  // (`.../?x=1` + `/health` would ask for the console's page).
  const url = new URL(options.dashboardUrl);
  url.search = "";
  url.hash = "";
  const base = url.href.replace(/\/+$/, "");
  const checks: HealthCheck[] = [];
  // Redirects are not followed, as the agent follows none: a signed ping or the admin token is
  // not sent where one leads, and a check is not passed by another server's answer.
  const get = (path: string, headers: Record<string, string> = {}) =>
    doFetch(base + path, { headers, redirect: "manual", signal: timeoutSignal(timeoutMs) });

  let health: Record<string, unknown>;
  let offset: number | null = null;
  let answered: number | undefined;
  try {
    const sentAt = Date.now();
    // With the admin token, a store that failed is told with what failed (its file or host).
    const response = await get(
      PATHS.health,
      options.adminToken ? { Authorization: `Bearer ${options.adminToken}` } : {},
    );
    const receivedAt = Date.now();
    const redirect = await redirectOf(response);
    if (redirect !== undefined) throw new Error(redirect);
    const text = await readBodyBounded(response, MAX_HEALTH_ANSWER_BYTES);
    if (text === undefined) {
      throw new Error(
        `the answer to ${PATHS.health} is larger than ${MAX_HEALTH_ANSWER_BYTES} bytes; is it a ` +
          "status dashboard?",
      );
    }
    answered = response.status;
    health = JSON.parse(text);
    if (!response.ok || health?.status !== "ok") {
      checks.push({
        name: "dashboard",
        outcome: "failed",
        message: notOk(response.status, health),
      });
      return { url: redactUrl(base), checks, clockOffsetSecs: null, ok: false };
    }
    const rtt = receivedAt - sentAt;
    const serverMs = typeof health.time === "string"
      ? Date.parse(health.time)
      : Date.parse(response.headers.get("Date") ?? "");
    if (!Number.isNaN(serverMs)) offset = (serverMs - (sentAt + receivedAt) / 2) / 1000;
    checks.push({
      name: "dashboard",
      outcome: "ok",
      message: `reachable (${rtt} ms), version ${health.version ?? "unknown"}, dev mode ${
        health.dev_mode ? "on" : "off"
      }, agents waiting: ${health.waiting ?? 0}`,
    });
  } catch (error) {
    const message = answered === 404
      ? NO_HEALTH_ROUTE
      : answered !== undefined
      ? `answered HTTP ${answered}, but not as a status dashboard (no JSON /health)`
      : `not reachable: ${
        error instanceof TypeError
          ? describeFetchFailure(error)
          : (error as Error).name === "TimeoutError"
          ? `no answer within ${timeoutMs / 1000} s`
          : (error as Error).message
      }`;
    checks.push({ name: "dashboard", outcome: "failed", message });
    return { url: redactUrl(base), checks, clockOffsetSecs: null, ok: false };
  }

  if (offset === null) {
    checks.push({ name: "clock", outcome: "skipped", message: "the dashboard sent no time" });
  } else {
    const abs = Math.abs(offset);
    const side = offset >= 0 ? "ahead of" : "behind";
    const text = `the dashboard is ${abs.toFixed(1)} s ${side} this machine`;
    checks.push(
      abs > MAX_CLOCK_SKEW_SECS
        ? {
          name: "clock",
          outcome: "failed",
          message: `${text}: more than ${MAX_CLOCK_SKEW_SECS} s, so signed agent requests ` +
            "are refused; fix the clocks (NTP)",
        }
        : abs > 30
        ? { name: "clock", outcome: "warning", message: `${text}; keep it small with NTP` }
        : { name: "clock", outcome: "ok", message: text },
    );
  }

  let operatorAccepted = false;
  if (!options.adminToken && !health.dev_mode) {
    checks.push({
      name: "operator",
      outcome: "skipped",
      message: "no STATUS_ADMIN_TOKEN is set; operator commands will be refused",
    });
  } else {
    const headers: Record<string, string> = options.adminToken
      ? { Authorization: `Bearer ${options.adminToken}` }
      : {};
    const response = await get(`${PATHS.commands}?limit=1`, headers).catch((e) => e as Error);
    const redirect = response instanceof Error ? undefined : await redirectOf(response);
    if (response instanceof Error) {
      checks.push({ name: "operator", outcome: "failed", message: response.message });
    } else if (redirect !== undefined) {
      checks.push({ name: "operator", outcome: "failed", message: redirect });
    } else if (response.ok) {
      // Another program answering every path (a web app's page for any address) accepts no
      // token: only the dashboard's list of commands says the token was taken.
      // A command is at most a few hundred KiB (its params, the head and tail of its output).
      const list = await jsonOf(response, 16 * MAX_HEALTH_ANSWER_BYTES) as
        | { commands?: unknown }
        | undefined;
      if (Array.isArray(list?.commands)) {
        operatorAccepted = true;
        checks.push({
          name: "operator",
          outcome: "ok",
          message: options.adminToken ? "admin token accepted" : "dev mode: no admin token needed",
        });
      } else {
        checks.push({
          name: "operator",
          outcome: "failed",
          message: `answered ${PATHS.commands} with HTTP ${response.status} but no list of ` +
            'commands ({"commands": [...]}); is it a status dashboard?',
        });
      }
    } else {
      checks.push({
        name: "operator",
        outcome: "failed",
        message: `admin token refused (HTTP ${response.status}): ${await errorOf(response)}`,
      });
    }
  }

  if (!options.agentId) {
    checks.push({ name: "agent", outcome: "skipped", message: "no AGENT_ID given" });
  } else {
    const headers = signedHeaders({
      agentId: options.agentId,
      token: options.agentToken,
      method: "GET",
      pathAndQuery: new URL(base + LIVE_PATHS.ping).pathname,
      body: "",
    });
    const response = await get(LIVE_PATHS.ping, headers).catch((e) => e as Error);
    const redirect = response instanceof Error ? undefined : await redirectOf(response);
    if (response instanceof Error) {
      checks.push({ name: "agent", outcome: "failed", message: response.message });
    } else if (redirect !== undefined) {
      checks.push({ name: "agent", outcome: "failed", message: redirect });
    } else if (response.ok) {
      const body = await jsonOf(response) as { agent_id?: unknown; signed?: unknown } | undefined;
      checks.push(
        body?.agent_id !== options.agentId
          // Not the dashboard's ping answer, which names the agent: nothing was checked.
          ? {
            name: "agent",
            outcome: "failed",
            message: `answered ${LIVE_PATHS.ping} with HTTP ${response.status} but not ` +
              `{"agent_id": ${JSON.stringify(options.agentId)}, ...}; is it a status dashboard?`,
          }
          : {
            name: "agent",
            outcome: "ok",
            message: body?.signed === false
              ? `${options.agentId}: accepted unsigned (dev mode)`
              : `${options.agentId}: token and signature accepted`,
          },
      );
    } else if (response.status === 404) {
      await response.body?.cancel();
      checks.push({
        name: "agent",
        outcome: "skipped",
        message: "this dashboard has no ping endpoint; agent credentials not checked",
      });
    } else {
      const refused = `${options.agentId} refused (HTTP ${response.status}): ${await errorOf(
        response,
      )}`;
      // The dashboard answers an unknown agent as a wrong token (so that no one can list the
      // agent ids); the operator, whose admin token was accepted, may see which it was.
      const why = response.status === 401 && operatorAccepted
        ? await agentRefusalCause(get, options.adminToken, options.agentId, !!options.agentToken)
        : undefined;
      checks.push({
        name: "agent",
        outcome: "failed",
        message: why === undefined ? refused : `${refused}; ${why}`,
      });
    }
  }
  return {
    url: redactUrl(base),
    checks,
    clockOffsetSecs: offset === null ? null : Math.round(offset * 10) / 10,
    ok: checks.every((c) => c.outcome !== "failed"),
  };
}
