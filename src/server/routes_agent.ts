/**
 * Agent-facing endpoints (PROTOCOL.md §2) on the Hono app: ack, report and the seed-compatible
 * enqueue. The long-polls (wait and our extension cancel-wait, see the module doc of `mod.ts`) are
 * answered before Hono by `wait_route.ts`, with the same auth steps.
 *
 * @module
 */
import type { Context, Hono } from "hono";
import { createHash } from "node:crypto";
import { DEFAULT_OFFLINE_AFTER_SECS } from "../defaults.ts";
import {
  ackRequestSchema,
  AGENT_ID_PATTERN,
  type EnqueueRequest,
  enqueueRequestSchema,
  HEADER,
  reportRequestSchema,
} from "../protocol/mod.ts";
import { auditLogger, logger } from "../log/mod.ts";
import type { CommandStore, EnqueueOutcome, NewCommand } from "../store/mod.ts";
import {
  type AgentCall,
  agentPipeline,
  type AuthContext,
  hasBearer,
  jsonBody,
  operatorRateLimit,
  refuse,
} from "./auth/mod.ts";
import type { ServerEnv } from "./env.ts";
import type { CancelWaiters } from "./cancel_waiters.ts";
import type { Clock } from "./clock.ts";
import { HttpError } from "./http_error.ts";
import type { LeaseTimer } from "./leases.ts";
import type { StoreAvailability } from "./notify.ts";
import type { TokenBucketLimiter } from "./rate_limit.ts";
import type { RequestIdGuard } from "./replay.ts";
import type { StoreHealth } from "./store_health.ts";
import type { InstanceRegistry } from "./instances.ts";
import type { WaiterHub } from "./waiters.ts";

/**
 * The answer to an agent naming a command that does not exist or is another agent's: the same
 * `404` for both, so that an agent cannot learn which ids exist (the audit log tells them apart).
 *
 * @param from The request, for the audit log.
 * @param commandId The command id the agent named.
 * @param outcome Whether the command is missing or belongs to another agent.
 * @returns The error to throw.
 */
export function unknownCommand<E extends ServerEnv>(
  from: Context<E> | AgentCall,
  commandId: string,
  outcome: "not_found" | "forbidden",
): HttpError {
  const message = `command ${commandId} does not exist`;
  if (outcome === "forbidden") {
    refuse(from, 404, message, "command of another agent named");
  }
  return new HttpError(404, message);
}

/** What the routes share; built once by `createApp`. */
export interface RouteDeps {
  store: CommandStore;
  clock: Clock;
  hub: WaiterHub;
  cancelWaiters: CancelWaiters;
  leases: LeaseTimer;
  devMode: boolean;
  adminToken?: string;
  auth: AuthContext;
  /** The agents' buckets (one per agent id). */
  limiter: TokenBucketLimiter;
  /** The operators' buckets (one per client address), for operator routes and enqueues. */
  operatorLimiter: TokenBucketLimiter;
  /** Queue expiry of a command whose params set no `ttl_secs`, in seconds. */
  queueTtlSecs: number;
  /**
   * An agent with no open wait that was not seen for this long is offline (`OFFLINE_AFTER_SECS`,
   * as the fleet view says), in ms.
   * @default {90000}
   */
  offlineAfterMs?: number;
  /** The deployment hashes of an agent's open waits. */
  waitingHashes(agentId: string): string[];
  /** Records the deployment hash of an agent's wait (for the enqueue's warning). */
  noteWaitHash?(agentId: string, hash: string): void;
  /** The deployment hash of the agent's latest wait since the dashboard started, if any. */
  lastWaitHash?(agentId: string): string | undefined;
  replay: RequestIdGuard;
  /** Whether the store is reachable; told of every failure to reach it. */
  availability: StoreAvailability;
  waitRequireSignature: boolean;
  acceptV1Signatures: boolean;
  defaultTimeoutSecs: number;
  /** Length of the delivery lease (`ACK_TIMEOUT_SECS`), in ms. */
  deliveryLeaseMs: number;
  maxBodyBytes: number;
  /** The freshest last-seen time of an agent known in memory. */
  lastSeen(agentId: string): number | null;
  /** Whether the store is full (`507`s, `/health`). */
  storeHealth: StoreHealth;
  /** Which agent process holds each agent id (one agent per id). */
  instances?: InstanceRegistry;
}

const log = logger("server");
const audit = auditLogger();

/** JSON with object keys sorted and `undefined` members left out (for digests). */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/**
 * Digest of what an enqueue asks for: the target agent, the name and the params (absent params
 * equal `{}`; key order does not matter). Two enqueues of one id are "the same body" when their
 * fingerprints are equal.
 *
 * @param agentId The target agent.
 * @param body The enqueue request.
 * @returns Hex SHA-256.
 */
export function enqueueFingerprint(agentId: string, body: EnqueueRequest): string {
  const canonical = canonicalJson({
    agent_id: agentId,
    name: body.name,
    params: body.params ?? {},
  });
  return createHash("sha256").update(canonical).digest("hex");
}

/**
 * Why a command just queued cannot be delivered now, for the enqueue's answer: the agent never
 * connected, is offline, or waits only on other deployment hashes.
 *
 * @param deps The shared parts.
 * @param agentId The target agent.
 * @param deploymentHash The command's deployment hash, if any.
 * @param expiresAt When the command expires, if ever.
 * @returns One sentence, or `undefined` when an open wait can take it.
 */
export async function deliveryWarning(
  deps: Pick<
    RouteDeps,
    "store" | "clock" | "lastSeen" | "waitingHashes" | "lastWaitHash" | "offlineAfterMs"
  >,
  agentId: string,
  deploymentHash: string | null,
  expiresAt: number | null,
): Promise<string | undefined> {
  const expiry = expiresAt === null ? "" : ` (it expires at ${new Date(expiresAt).toISOString()})`;
  const until = `until it does${expiry}`;
  const forHash = (what: string) =>
    `${what}, not ${deploymentHash}; the command waits in the queue for a wait on ` +
    `${deploymentHash}${expiry}`;
  const hashes = deps.waitingHashes(agentId);
  if (hashes.length > 0) {
    if (deploymentHash === null || hashes.includes(deploymentHash)) return undefined;
    return forHash(`agent ${agentId} is waiting for deployment ${hashes.join(", ")}`);
  }
  const stored = (await deps.store.getAgent(agentId))?.lastSeenAt ?? null;
  const memory = deps.lastSeen(agentId);
  const lastSeen = memory === null ? stored : Math.max(memory, stored ?? 0);
  if (lastSeen === null) {
    return `agent ${agentId} has never connected to this dashboard; the command waits in the ` +
      `queue ${until}`;
  }
  const ago = deps.clock.now() - lastSeen;
  if (ago < (deps.offlineAfterMs ?? DEFAULT_OFFLINE_AFTER_SECS * 1000)) {
    // Between two waits (running a command): its latest wait says which deployment it serves.
    const latest = deps.lastWaitHash?.(agentId);
    if (deploymentHash === null || latest === undefined || latest === deploymentHash) {
      return undefined;
    }
    return forHash(`agent ${agentId} last waited for deployment ${latest}`);
  }
  return `agent ${agentId} is offline (last seen ${Math.round(ago / 1000)} s ago, at ${
    new Date(lastSeen).toISOString()
  }); the command waits in the queue ${until}`;
}

/**
 * Stores a new queued command. When an open wait of its agent matches, the store claims the
 * command for it in the enqueue's transaction (one commit on the wake-up path) and the hub answers
 * that wait before this returns; the claim's lease and the command's queue expiry are scheduled.
 *
 * @param deps The shared parts.
 * @param command The command.
 * @returns The store's outcome.
 */
export async function enqueueAndWake(
  deps: Pick<RouteDeps, "store" | "hub" | "leases" | "deliveryLeaseMs">,
  command: NewCommand,
): Promise<EnqueueOutcome> {
  const outcome = await deps.hub.enqueue<EnqueueOutcome>(
    command.agentId,
    command.params.deployment_hash ?? null,
    async (claimFor) => {
      const outcome = await deps.store.enqueue(
        command,
        claimFor === null ? undefined : {
          deploymentHash: claimFor,
          deliveryLeaseMs: deps.deliveryLeaseMs,
        },
      );
      const claimed = outcome.outcome === "created" ? outcome.claimed ?? null : null;
      if (claimed?.leaseExpiresAt != null) deps.leases.schedule(claimed.leaseExpiresAt);
      return { result: outcome, claimed };
    },
  );
  if (outcome.outcome === "created" && outcome.command.expiresAt !== null) {
    deps.leases.schedule(outcome.command.expiresAt);
  }
  return outcome;
}

/**
 * Registers `ack`, `report` and `enqueue` (the long-polls are in `wait_route.ts`).
 *
 * @param app The Hono app.
 * @param deps The shared parts.
 */
export function agentRoutes(app: Hono<ServerEnv>, deps: RouteDeps): void {
  const { store, clock } = deps;
  const body = { maxBodyBytes: deps.maxBodyBytes };

  app.post(
    "/api/v1/agent/commands/ack",
    agentPipeline(deps, "commands:wait"),
    jsonBody(ackRequestSchema, body),
    async function ackRoute(c) {
      const request = c.get("body");
      const agent = c.get("agent");
      const outcome = await store.ack({
        commandId: request.command_id,
        agentId: agent.id,
        attempt: request.attempt,
        now: clock.now(),
        defaultTimeoutSecs: deps.defaultTimeoutSecs,
      });
      switch (outcome.outcome) {
        case "not_found":
        case "forbidden":
          throw unknownCommand(c, request.command_id, outcome.outcome);
        case "stale":
          throw new HttpError(
            409,
            `attempt ${request.attempt} of command ${request.command_id} is no longer current`,
            { details: { status: outcome.command.status, attempt: outcome.command.attempt } },
          );
      }
      const { command } = outcome;
      if (command.leaseExpiresAt !== null) deps.leases.schedule(command.leaseExpiresAt);
      log.debug("command acked {commandId}", () => ({
        commandId: command.id,
        attempt: command.attempt,
      }));
      return c.json({
        acked: true,
        lease_expires_at: command.leaseExpiresAt === null
          ? null
          : new Date(command.leaseExpiresAt).toISOString(),
      });
    },
  );

  app.post(
    "/api/v1/agent/commands/report",
    agentPipeline(deps, "commands:report"),
    jsonBody(reportRequestSchema, body),
    async function reportRoute(c) {
      const report = c.get("body");
      const agent = c.get("agent");
      const r = report.result ?? null;
      const outcome = await store.report({
        commandId: report.command_id,
        agentId: agent.id,
        attempt: report.attempt ?? null,
        status: report.status,
        result: r && {
          exitCode: r.exit_code,
          signal: r.signal,
          durationSecs: r.duration_secs,
          stdout: r.stdout,
          stderr: r.stderr,
          stdoutTruncatedBytes: r.stdout_truncated_bytes,
          stderrTruncatedBytes: r.stderr_truncated_bytes,
          stdoutEncoding: r.stdout_encoding ?? null,
          stderrEncoding: r.stderr_encoding ?? null,
        },
        error: report.error ?? null,
        startedAt: report.started_at ?? null,
        completedAt: report.completed_at ?? null,
        now: clock.now(),
      });
      switch (outcome.outcome) {
        case "not_found":
        case "forbidden":
          throw unknownCommand(c, report.command_id, outcome.outcome);
        case "conflict":
          throw new HttpError(409, outcome.reason);
      }
      const duplicate = outcome.outcome === "duplicate";
      audit.info("command reported {commandId} {status}", {
        commandId: report.command_id,
        agentId: agent.id,
        status: report.status,
        attempt: report.attempt,
        duplicate,
      });
      return c.json(duplicate ? { accepted: true, duplicate: true } : { accepted: true });
    },
  );

  // Enqueue: an operator with the admin token, an operator of a dev-mode dashboard (no
  // X-Agent-Id: the body names the agent), or the target agent's own signed request.
  const agentEnqueue = agentPipeline(deps, "commands:enqueue", true, true);
  app.post(
    "/api/v1/agent/commands/enqueue",
    operatorRateLimit(deps.operatorLimiter),
    async function enqueueAuth(c, next) {
      if (deps.adminToken && hasBearer(c, deps.adminToken)) {
        c.set("via", "admin");
        await next();
      } else if (!c.req.header(HEADER.agentId)) {
        if (!deps.devMode) {
          throw refuse(
            c,
            401,
            c.req.header(HEADER.authorization)
              ? "admin token is wrong"
              : "X-Agent-Id header is missing; operators send the admin token as a bearer token",
            "authentication failed",
          );
        }
        c.set("via", "dev-operator");
        await next();
      } else {
        await agentEnqueue(c, async () => {
          const unsigned = c.get("unsigned");
          c.set("via", unsigned ? "dev-agent" : "agent");
          // A signed request is the agent itself; an unsigned one (the seed's curl) is not.
          if (!unsigned) deps.auth.seen?.(c.get("agent").id);
          await next();
        });
      }
    },
    jsonBody(enqueueRequestSchema, body),
    async function enqueueRoute(c) {
      const request = c.get("body");
      const via = c.get("via");
      const now = clock.now();
      let target: string;
      if (via === "admin" || via === "dev-operator") {
        const named = request.agent_id ?? c.req.header(HEADER.agentId);
        if (!named || !AGENT_ID_PATTERN.test(named)) {
          throw new HttpError(400, `field "agent_id": names the agent that runs the command`, {
            details: [{ field: "agent_id", message: "required without X-Agent-Id" }],
          });
        }
        target = named;
        if (deps.devMode) {
          await store.ensureAgent(target, now);
        } else if (!(await store.getAgent(target))) {
          throw new HttpError(
            404,
            `agent ${target} is not registered; add it with "status agents add ${target}"`,
          );
        }
      } else {
        const agent = c.get("agent");
        target = agent.id;
        if (request.agent_id !== undefined && request.agent_id !== agent.id) {
          if (via !== "dev-agent") {
            throw new HttpError(
              403,
              `field "agent_id": an agent may enqueue only for itself; operators use the admin token`,
            );
          }
          target = request.agent_id;
          await store.ensureAgent(target, now);
        }
      }
      const id = request.id ?? crypto.randomUUID();
      const params = request.params ?? {};
      const command = {
        id,
        agentId: target,
        name: request.name,
        params,
        fingerprint: enqueueFingerprint(target, request),
        now,
        expiresAt: now + (params.ttl_secs ?? deps.queueTtlSecs) * 1000,
      };
      const outcome = await enqueueAndWake(deps, command);
      if (outcome.outcome === "conflict") {
        audit.warning("enqueue conflict {commandId}", { commandId: id, agentId: target, via });
        throw new HttpError(
          409,
          `command ${id} already exists with a different body; use a new id`,
        );
      }
      const duplicate = outcome.outcome === "duplicate";
      const stored = outcome.command;
      audit.info("command enqueued {commandId} for {agentId}", {
        commandId: id,
        agentId: target,
        via,
        priority: outcome.command.priority,
        deploymentHash: outcome.command.deploymentHash ?? undefined,
        duplicate,
      });
      const answer: Record<string, unknown> = { queued: true, id };
      if (duplicate) answer.duplicate = true;
      answer.expires_at = stored.expiresAt === null
        ? null
        : new Date(stored.expiresAt).toISOString();
      const warning = stored.status === "queued"
        ? await deliveryWarning(deps, stored.agentId, stored.deploymentHash, stored.expiresAt)
        : undefined;
      if (warning) {
        answer.warning = warning;
        log.info("command {commandId} cannot be delivered now: {warning}", {
          commandId: id,
          warning,
        });
      }
      return c.json(answer, 202);
    },
  );
}
