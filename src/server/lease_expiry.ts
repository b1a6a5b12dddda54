/**
 * What happens when leases end: commands queued again (their agents' waits woken), `lost` after
 * the last attempt, `cancelled` when a cancel was asked, `expired` when never taken in time; each
 * outcome logged.
 *
 * @module
 */
import { logger } from "../log/mod.ts";
import type { CommandStore, ExpireOutcome } from "../store/mod.ts";
import type { Clock } from "./clock.ts";
import type { StoreAvailability } from "./notify.ts";
import type { StoreHealth } from "./store_health.ts";

const log = logger("server");

/** What {@link expireLeases} needs. */
export interface LeaseExpiryDeps {
  /** The store. */
  store: Pick<CommandStore, "requeueExpired">;
  /** The dashboard's clock. */
  clock: Clock;
  /** Deliveries of one command before it is `lost`. */
  maxAttempts: number;
  /** Wakes the open waits of an agent (a command of it was queued again). */
  notify(agentId: string): void;
}

/**
 * Ends every lease that expired by the clock's now, logs each outcome and wakes the agents whose
 * commands were queued again.
 *
 * @param deps Store, clock, attempts and the waits.
 * @returns What changed.
 */
export async function expireLeases(deps: LeaseExpiryDeps): Promise<ExpireOutcome> {
  const outcome = await deps.store.requeueExpired(deps.clock.now(), deps.maxAttempts);
  const agents = new Set<string>();
  for (const command of outcome.requeued) {
    log.warning("lease of command {commandId} expired; queued again as attempt {attempt}", {
      commandId: command.id,
      agentId: command.agentId,
      attempt: command.attempt,
    });
    agents.add(command.agentId);
  }
  for (const command of outcome.lost) {
    log.error("command {commandId} is lost after {attempts} attempts", {
      commandId: command.id,
      agentId: command.agentId,
      attempts: command.attempt,
    });
  }
  for (const command of outcome.cancelled) {
    log.info("command {commandId} cancelled at the end of its lease", {
      commandId: command.id,
      agentId: command.agentId,
    });
  }
  for (const command of outcome.expired) {
    log.warning("command {commandId} expired: agent {agentId} did not take it in time", {
      commandId: command.id,
      agentId: command.agentId,
      attempt: command.attempt,
    });
  }
  for (const agentId of agents) deps.notify(agentId);
  return outcome;
}

/**
 * What the lease timer does with a failed expiry run: a store that went away is tracked by
 * `availability`, a full store waits for room, a failing one for a write to succeed (its failure
 * is logged once), anything else is logged.
 *
 * @param error The failure.
 * @param availability Whether the store is reachable.
 * @param storeHealth Whether the store is full, or failing.
 */
export function reportExpiryFailure(
  error: unknown,
  availability: StoreAvailability,
  storeHealth: StoreHealth,
): void {
  if (availability.observe(error)) return;
  if (storeHealth.map(error) === error) log.error("lease expiry failed: {error}", { error });
  else if (storeHealth.full) log.warning("lease expiry waits for the store to have room again");
  else log.warning("lease expiry waits for the store to work again");
}
