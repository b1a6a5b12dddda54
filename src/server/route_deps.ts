/**
 * What the dashboard's routes share ({@link RouteDeps}, built once by `createApp`), and the one
 * answer every agent route gives for a command it may not know about.
 *
 * @module
 */
import type { Context } from "hono";
import { shortForm } from "../protocol/mod.ts";
import type { CommandStore } from "../store/mod.ts";
import { type AdminTokenGuesses, type AgentCall, type AuthContext, refuse } from "./auth/mod.ts";
import type { CancelWaiters } from "./cancel_waiters.ts";
import type { Clock } from "./clock.ts";
import type { RefusalLines } from "../log/refusal_lines.ts";
import type { ServerEnv } from "./env.ts";
import { HttpError } from "./http_error.ts";
import type { InstanceRegistry } from "./instances.ts";
import type { LeaseTimer } from "./leases.ts";
import type { StoreAvailability } from "./notify.ts";
import type { TokenBucketLimiter } from "./rate_limit.ts";
import type { RequestIdGuard } from "./replay.ts";
import type { StoreHealth } from "./store_health.ts";
import type { WaiterHub } from "./waiters.ts";

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
  /** How many audit lines of refused requests are still written (a flood is not). */
  refusalLines: RefusalLines;
  /** Wrong admin tokens per client address, shared by the API, the enqueue and the login. */
  adminGuesses: AdminTokenGuesses;
  /** Queue expiry of a command whose params set no `ttl_secs`, in seconds. */
  queueTtlSecs: number;
  /** An agent's own enqueue is refused while it has this many commands not final. */
  maxOpenCommandsForAgentEnqueue: number;
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
  /**
   * When an agent was last seen, from memory and `stored` (the store's time), as
   * `LastSeen.freshest` tells it; `null` when never.
   */
  lastSeen(agentId: string, stored: number | null): number | null;
  /** Forgets what memory holds of a removed agent (its last-seen time, its latest wait hash). */
  forgetAgent?(agentId: string): void;
  /** Whether the store is full (`507`s, `/health`). */
  storeHealth: StoreHealth;
  /** Which agent process holds each agent id (one agent per id). */
  instances?: InstanceRegistry;
}

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
  const message = `command ${shortForm(commandId)} does not exist`;
  if (outcome === "forbidden") {
    refuse(from, 404, message, "command of another agent named");
  }
  return new HttpError(404, message);
}
