/**
 * The fleet over the network: `GET /api/v1/agents` (every agent, or a page of them by id: waiting /
 * online / offline, deployment, version, last seen, latest heartbeat figures, the command it is
 * running) and token
 * management (`POST /api/v1/agents`, `POST /api/v1/agents/{id}/rotate`,
 * `DELETE /api/v1/agents/{id}`), all with operator auth.
 *
 * @module
 */
import type { Hono, MiddlewareHandler } from "hono";
import { z } from "zod";
import {
  AGENT_ID_PATTERN,
  AGENT_ID_RULE,
  agentIdSchema,
  generateToken,
  LIST_LIMIT,
  shortForm,
} from "../protocol/mod.ts";
import { assertPossibleId } from "./ids.ts";
import { auditLogger } from "../log/mod.ts";
import { AGENT_SCOPES, type AgentScope, type AgentSeen, type CommandRecord } from "../store/mod.ts";
import { jsonBody, remoteOf } from "./auth/mod.ts";
import type { ServerEnv } from "./env.ts";
import { HttpError } from "./http_error.ts";
import type { RouteDeps } from "./route_deps.ts";
import { queryError, refuseMistypedQuery } from "./query.ts";

/** Where an agent stands. */
export type AgentState = "waiting" | "online" | "offline";

/** Where one agent stands, as `GET /api/v1/agents` shows it (its fields of the same names). */
export interface AgentStanding {
  id: string;
  state: AgentState;
  waiting: boolean;
  last_seen_at: string | null;
}

/** Options of {@link fleetRoutes}. */
export interface FleetRouteOptions {
  /** Operator authentication. */
  auth: MiddlewareHandler<ServerEnv>;
  /** An agent not waiting and not seen for this long is offline, in ms. */
  offlineAfterMs: number;
}

const audit = auditLogger();

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/**
 * Where an agent stands: waiting (an open long-poll), online (seen within `offlineAfterMs`),
 * else offline.
 *
 * @param waiting Whether it has an open wait.
 * @param lastSeenAt When it was last seen, in ms.
 * @param now Now, in ms.
 * @param offlineAfterMs The window.
 */
export function agentState(
  waiting: boolean,
  lastSeenAt: number | null,
  now: number,
  offlineAfterMs: number,
): AgentState {
  if (waiting) return "waiting";
  return lastSeenAt !== null && now - lastSeenAt < offlineAfterMs ? "online" : "offline";
}

// Strict: a field the route does not take (a `token` of one's own, say) is a 400, not ignored.
const addSchema = z.object({
  id: agentIdSchema,
  scopes: z.array(z.enum(AGENT_SCOPES)).min(1).optional(),
}).strict();

/**
 * Registers the fleet routes.
 *
 * @param app The Hono app.
 * @param deps The shared parts.
 * @param options Auth and the offline window.
 * @returns Counts agents that are not offline (for the metrics), and tells where one agent stands
 *   (for the console's page of a queued command), reading that agent alone.
 */
export function fleetRoutes(
  app: Hono<ServerEnv>,
  deps: RouteDeps,
  options: FleetRouteOptions,
): {
  online(): Promise<number>;
  agent(id: string): Promise<AgentStanding | null>;
} {
  const { store, clock, hub } = deps;
  const admin = options.auth;

  const lastSeenOf = (agent: AgentSeen) => deps.lastSeen(agent.id, agent.lastSeenAt);

  app.get("/api/v1/agents", admin, async function fleetRoute(c) {
    refuseMistypedQuery(c.req.url, ["limit", "after"]);
    const rawLimit = c.req.query("limit");
    const after = c.req.query("after") || undefined;
    let limit: number | undefined;
    if (rawLimit !== undefined && rawLimit !== "") {
      limit = Number(rawLimit);
      if (!/^\d+$/.test(rawLimit) || limit < 1 || limit > LIST_LIMIT.max) {
        throw queryError("limit", `must be a whole number from 1 to ${LIST_LIMIT.max}`);
      }
    }
    if (after !== undefined && !AGENT_ID_PATTERN.test(after)) {
      throw queryError("after", `must be ${AGENT_ID_RULE}`);
    }
    // A page is read as one (one more than asked tells whether another follows).
    let agents = await store.listAgents({
      ...(after !== undefined ? { after } : {}),
      ...(limit !== undefined ? { limit: limit + 1 } : {}),
    });
    const more = limit !== undefined && agents.length > limit;
    if (more) agents = agents.slice(0, limit);
    // The page's agents' commands alone, however many the fleet has in hand.
    const busy = new Map<string, CommandRecord>();
    for (const command of await store.commandsInHand(agents.map((agent) => agent.id))) {
      busy.set(command.agentId, command);
    }
    const now = clock.now();
    return c.json({
      agents: agents.map((agent) => {
        const waiting = hub.isWaiting(agent.id);
        const lastSeen = lastSeenOf(agent);
        const running = busy.get(agent.id);
        return {
          id: agent.id,
          state: agentState(waiting, lastSeen, now, options.offlineAfterMs),
          waiting,
          last_seen_at: iso(lastSeen),
          deployment_hash: agent.deploymentHash,
          labels: agent.labels,
          version: agent.version,
          instance_id: agent.instanceId,
          heartbeat_at: iso(agent.heartbeatAt),
          heartbeat: agent.heartbeat,
          running: running
            ? {
              id: running.id,
              name: running.name,
              status: running.status,
              attempt: running.attempt,
              delivered_at: iso(running.deliveredAt),
            }
            : null,
          queued: agent.queued,
          scopes: agent.scopes,
          has_token: agent.hasToken,
          created_at: iso(agent.createdAt),
        };
      }),
      ...(more ? { next_after: agents[agents.length - 1].id } : {}),
    });
  });

  app.post(
    "/api/v1/agents",
    admin,
    jsonBody(addSchema, { maxBodyBytes: 16 * 1024 }),
    async function addAgentRoute(c) {
      const body = c.get("body");
      const token = generateToken();
      const scopes = (body.scopes ? [...new Set(body.scopes)] : [...AGENT_SCOPES]) as AgentScope[];
      const added = await store.addAgent({ id: body.id, token, scopes, now: clock.now() });
      if (!added) {
        throw new HttpError(
          409,
          `agent ${body.id} already exists; give it a new token with POST /api/v1/agents/${body.id}/rotate`,
        );
      }
      audit.info("agent {agentId} added over the operator API", {
        agentId: body.id,
        scopes,
        remote: remoteOf(c),
      });
      return c.json({ id: body.id, token, scopes }, 201);
    },
  );

  app.post("/api/v1/agents/:id/rotate", admin, async function rotateAgentRoute(c) {
    const id = c.req.param("id");
    assertPossibleId("agent", id, AGENT_ID_PATTERN);
    const token = generateToken();
    if (!(await store.setAgentToken(id, token))) {
      throw new HttpError(404, `agent ${shortForm(id)} does not exist`);
    }
    // Waits and cancel-waits it holds were opened with the old token: they end now, with nothing.
    const dismissed = hub.dismiss(id) + deps.cancelWaiters.dismiss(id);
    audit.info("agent {agentId} token rotated over the operator API", {
      agentId: id,
      dismissed,
      remote: remoteOf(c),
    });
    return c.json({ id, token });
  });

  app.delete("/api/v1/agents/:id", admin, async function removeAgentRoute(c) {
    const id = c.req.param("id");
    assertPossibleId("agent", id, AGENT_ID_PATTERN);
    const removed = await store.removeAgent(id, clock.now());
    if (!removed) throw new HttpError(404, `agent ${shortForm(id)} does not exist`);
    deps.forgetAgent?.(id);
    const dismissed = hub.dismiss(id) + deps.cancelWaiters.dismiss(id);
    const commandsEnded = removed.ended.length;
    audit.info(
      "agent {agentId} removed over the operator API; {commandsEnded} of its commands ended",
      { agentId: id, commandsEnded, dismissed, remote: remoteOf(c) },
    );
    return c.json({ removed: true, id, commands_ended: commandsEnded });
  });

  return {
    async agent(id) {
      const agent = await store.getAgent(id);
      if (!agent) return null;
      const waiting = hub.isWaiting(id);
      const lastSeen = lastSeenOf(agent);
      return {
        id,
        state: agentState(waiting, lastSeen, clock.now(), options.offlineAfterMs),
        waiting,
        last_seen_at: iso(lastSeen),
      };
    },
    async online() {
      const now = clock.now();
      // Ids and last-seen times alone: a scrape at 10,000 agents took 150 ms reading each one's
      // heartbeat, labels and queue, which the count does not use.
      const agents = await store.listAgentsSeen();
      let online = 0;
      for (const agent of agents) {
        const state = agentState(
          hub.isWaiting(agent.id),
          lastSeenOf(agent),
          now,
          options.offlineAfterMs,
        );
        if (state !== "offline") online++;
      }
      return online;
    },
  };
}
