/**
 * Operator endpoints (docs/protocol.md §3) and `GET /health`; `GET /api/v1/agents` is in
 * `routes_fleet.ts`.
 *
 * @module
 */
import type { Context, Hono, MiddlewareHandler } from "hono";
import {
  AGENT_ID_PATTERN,
  AGENT_ID_RULE,
  ANY_COMMAND_ID_PATTERN,
  COMMAND_STATUSES,
  type CommandStatus,
  constantTimeEqual,
  LIST_LIMIT,
  shortForm,
} from "../protocol/mod.ts";
import { assertPossibleId } from "./ids.ts";
import { auditLogger } from "../log/mod.ts";
import { adminAuth, bearerOf, operatorRateLimit, remoteOf } from "./auth/mod.ts";
import type { ServerEnv } from "./env.ts";
import { HttpError } from "./http_error.ts";
import { queryError, refuseMistypedQuery } from "./query.ts";
import { STORE_RETRY_AFTER_SECS } from "./notify.ts";
import type { RouteDeps } from "./route_deps.ts";
import { monotonicNow } from "./clock.ts";
import { listCursor, parseListCursor } from "./list_cursor.ts";
import { every } from "hono/combine";
import { commandSummaryView, commandView } from "./views.ts";
import { commandWithLiveOutput } from "./live_output.ts";
import { VERSION } from "../version.ts";

const audit = auditLogger();

/**
 * Registers the operator endpoints and `/health`.
 *
 * @param app The Hono app.
 * @param deps The shared parts.
 * @param startedAt When the dashboard started, in ms of the clock's monotonic time.
 */
export function operatorRoutes(app: Hono<ServerEnv>, deps: RouteDeps, startedAt: number): void {
  const { store, clock, hub } = deps;
  const limit = operatorRateLimit(deps.operatorLimiter);
  const auth = adminAuth({
    adminToken: deps.adminToken,
    devMode: deps.devMode,
    guesses: deps.adminGuesses,
  });
  const admin: MiddlewareHandler<ServerEnv> = every(limit, auth);

  /**
   * Whether a `/health` request may read what failed in the store (its error names the database's
   * file or host): in dev mode, or with the admin token. A wrong token counts against its address
   * as anywhere else (§8), and none is compared from an address with no guesses left; the health
   * is answered either way.
   */
  const readsStoreError = (c: Context<ServerEnv>): boolean => {
    if (deps.devMode) return true;
    const given = bearerOf(c.req.raw);
    if (!given || !deps.adminToken) return false;
    const remote = remoteOf(c);
    if (!deps.adminGuesses.check(remote).ok) return false;
    if (constantTimeEqual(given, deps.adminToken)) return true;
    deps.adminGuesses.wrong(remote);
    return false;
  };

  // 503 while the store is unreachable (a shared store; probed), full or failing: the dashboard
  // answers, but cannot take new work.
  app.get("/health", async function healthRoute(c) {
    // A probe that found the store failing (a disk I/O error) is told as the state below.
    const reachable = await deps.availability.check().catch((error) => {
      if (deps.storeHealth.map(error) === error) throw error;
      return true;
    });
    if (!reachable) {
      const outage = deps.availability.outage;
      c.header("Retry-After", String(STORE_RETRY_AFTER_SECS));
      return c.json({
        status: "unavailable",
        store: {
          status: "down",
          ...(outage ? { since: new Date(outage.since).toISOString() } : {}),
          ...(outage && readsStoreError(c) ? { error: outage.error } : {}),
        },
        version: VERSION,
        dev_mode: deps.devMode,
        waiting: hub.size,
        time: new Date(clock.now()).toISOString(),
      }, 503);
    }
    const { error, ...state } = deps.storeHealth.state();
    const shared = deps.availability.sharedHealth(false);
    // Asked once: a wrong token is one guess however many errors there are to show.
    const reveals = (error !== undefined || shared.notifications !== undefined) &&
      readsStoreError(c);
    const store = error !== undefined && reveals ? { ...state, error } : state;
    return c.json({
      status: store.status === "ok" ? "ok" : `store_${store.status}`,
      version: VERSION,
      dev_mode: deps.devMode,
      waiting: hub.size,
      cancel_waiting: deps.cancelWaiters.size,
      store,
      ...(reveals ? deps.availability.sharedHealth(true) : shared),
      time: new Date(clock.now()).toISOString(),
      uptime_secs: Math.max(0, Math.round((monotonicNow(clock) - startedAt) / 1000)),
    }, store.status === "ok" ? 200 : 503);
  });

  app.get("/api/v1/commands/:id", admin, async function getCommandRoute(c) {
    const id = c.req.param("id");
    assertPossibleId("command", id, ANY_COMMAND_ID_PATTERN);
    const command = await store.getCommand(id);
    if (!command) throw new HttpError(404, `command ${shortForm(id)} does not exist`);
    return c.json(await commandWithLiveOutput(store, command));
  });

  app.get("/api/v1/commands", admin, async function listCommandsRoute(c) {
    refuseMistypedQuery(c.req.url, ["agent_id", "status", "limit", "before", "output"]);
    const agentId = c.req.query("agent_id") || undefined;
    const status = c.req.query("status") || undefined;
    const rawLimit = c.req.query("limit");
    const rawBefore = c.req.query("before") || undefined;
    const output = c.req.query("output") || "full";
    if (output !== "full" && output !== "none") {
      throw queryError("output", "must be full or none");
    }
    if (agentId !== undefined && !AGENT_ID_PATTERN.test(agentId)) {
      throw queryError("agent_id", `must be ${AGENT_ID_RULE}`);
    }
    if (status !== undefined && !COMMAND_STATUSES.includes(status as CommandStatus)) {
      throw queryError("status", `must be one of ${COMMAND_STATUSES.join(", ")}`);
    }
    let limit: number = LIST_LIMIT.default;
    if (rawLimit !== undefined && rawLimit !== "") {
      limit = Number(rawLimit);
      if (!/^\d+$/.test(rawLimit) || limit < 1 || limit > LIST_LIMIT.max) {
        throw queryError("limit", `must be a whole number from 1 to ${LIST_LIMIT.max}`);
      }
    }
    let before: number | undefined;
    if (rawBefore !== undefined) {
      before = parseListCursor(rawBefore);
      if (before === undefined) {
        throw queryError("before", "must be the next_before of an earlier page of this list");
      }
    }
    // One more than the page: whether a next page exists, without a read of it.
    const commands = await store.listCommands({
      agentId,
      status: status as CommandStatus | undefined,
      before,
      withoutOutput: output === "none",
      limit: limit + 1,
    });
    const page = commands.slice(0, limit);
    return c.json({
      commands: page.map(output === "none" ? commandSummaryView : commandView),
      ...(commands.length > limit ? { next_before: listCursor(page[page.length - 1]) } : {}),
    });
  });

  app.post("/api/v1/commands/:id/cancel", admin, async function cancelRoute(c) {
    const id = c.req.param("id");
    assertPossibleId("command", id, ANY_COMMAND_ID_PATTERN);
    const outcome = await store.cancel(id, clock.now());
    if (outcome.outcome === "not_found") {
      throw new HttpError(404, `command ${shortForm(id)} does not exist`);
    }
    audit.info("command cancel {commandId}: {outcome}", {
      commandId: id,
      outcome: outcome.outcome,
      agentId: outcome.command.agentId,
      remote: remoteOf(c),
    });
    // A running command's agent waits for this in a cancel-wait; wake it.
    if (outcome.outcome !== "final") deps.cancelWaiters.notify(id);
    switch (outcome.outcome) {
      case "cancelled":
        return c.json({ cancelled: true, command: commandView(outcome.command) }, 200);
      case "requested":
        return c.json(
          { cancelled: false, cancel_requested: true, command: commandView(outcome.command) },
          202,
        );
      case "final":
        throw new HttpError(
          409,
          `command ${id} is already ${outcome.command.status} and cannot be cancelled`,
          { details: { status: outcome.command.status } },
        );
    }
  });
}
