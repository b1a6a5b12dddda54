/**
 * Enqueueing a command: stored and handed to an open wait of its agent in one step, and, when it
 * cannot be delivered now, the sentence that says why (for the enqueue's answer).
 *
 * @module
 */
import { DEFAULT_OFFLINE_AFTER_SECS } from "../defaults.ts";
import type { AgentRecord, EnqueueOutcome, NewCommand } from "../store/mod.ts";
import type { RouteDeps } from "./route_deps.ts";

/**
 * Why a command just queued cannot be delivered now, for the enqueue's answer: the agent never
 * connected, is offline, or waits only on other deployment hashes.
 *
 * @param deps The shared parts.
 * @param agentId The target agent.
 * @param deploymentHash The command's deployment hash, if any.
 * @param expiresAt When the command expires, if ever.
 * @param known The agent's stored record as the caller just read it (spares reading it again).
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
  known?: Pick<AgentRecord, "lastSeenAt">,
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
  const stored = known
    ? known.lastSeenAt
    : (await deps.store.getAgent(agentId))?.lastSeenAt ?? null;
  const lastSeen = deps.lastSeen(agentId, stored);
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
 * @param stored Called with the store's outcome once it is committed, before a woken wait is
 *   answered.
 * @returns The store's outcome.
 */
export async function enqueueAndWake(
  deps: Pick<RouteDeps, "store" | "hub" | "leases" | "deliveryLeaseMs">,
  command: NewCommand,
  stored?: (outcome: EnqueueOutcome) => void,
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
      stored?.(outcome);
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
