/**
 * Several dashboard instances on one shared store (PostgreSQL): how an instance learns of what the
 * others did, and how it lives through the database going away.
 *
 * ## Events between instances
 *
 * The store sends an event inside the transaction of each change another instance may be waiting
 * for (`LISTEN`/`NOTIFY`: delivered when it commits): a command became claimable for an agent, or a
 * command's cancel was recorded. {@link connectInstances} passes them to the instance's own
 * {@link WaiterHub} and {@link CancelWaiters}, exactly as the local routes do after their writes.
 * The in-process paths are unchanged, and they are all a single instance (SQLite) has.
 *
 * Events are not queued while the listening connection is down. Whenever it is established (at
 * start too) or established again, and whenever the store comes back after an outage, every open
 * wait and cancel-wait is checked against the store once ({@link resyncWaits}), and every event
 * stream reads its command again: a
 * missed event is repaired by that re-check (a missed `revoked` one too: a wait opened with a token
 * that is no longer the agent's ends), and nothing polls on a timer. While the store cannot listen
 * again, `GET /health` says so ({@link StoreAvailability.sharedHealth}).
 *
 * ## The store going away
 *
 * {@link StoreAvailability} is told of every {@link StoreUnavailableError}. It marks the store down
 * (`GET /health` answers `503`), and probes it with a trivial query after 250 ms, 500 ms, 1 s, ...
 * up to 5 s between probes, until it answers; then the waits are re-checked and the lease timer
 * re-armed. Down again within 5 s of coming back, the probes go on backing off from where they
 * were. Requests that need the store meanwhile fail fast with `503` and `Retry-After`
 * ({@link unavailableError}); the agents back off and retry.
 *
 * @module
 */
import { logger } from "../log/mod.ts";
import {
  type CommandStore,
  type SharedStore,
  type StorePing,
  type StoreSubscription,
  StoreUnavailableError,
  type WatchedFileStore,
} from "../store/mod.ts";
import { type Clock, monotonicNow, systemClock, type TimerId } from "./clock.ts";
import type { CancelWaiters } from "./cancel_waiters.ts";
import { HttpError } from "./http_error.ts";
import type { WaiterHub } from "./waiters.ts";

const log = logger("server");

/** `Retry-After` of a `503` while the store is unavailable, in seconds. */
export const STORE_RETRY_AFTER_SECS = 2;

/**
 * The answer to a request that failed because the store is unavailable, or `null` for any other
 * error.
 *
 * @param error What a route or the store threw.
 * @returns A `503` with `Retry-After`, or `null`.
 */
export function unavailableError(error: unknown): HttpError | null {
  if (!(error instanceof StoreUnavailableError)) return null;
  return new HttpError(503, "the dashboard's database is unavailable; retry later", {
    headers: { "Retry-After": String(STORE_RETRY_AFTER_SECS) },
    details: { retry_after_secs: STORE_RETRY_AFTER_SECS },
    cause: error,
  });
}

/** Options of {@link StoreAvailability}. */
export interface StoreAvailabilityOptions {
  /** Resolves when the store answers (with how far this instance's clock is off, if it is). */
  ping(): Promise<StorePing | void>;
  /** Called once each time the store is reachable again after being down. */
  onRecovered?(): void;
  /**
   * The clock of the probes and of the outage's times.
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * First delay between probes, in ms (doubles up to `maxDelayMs`).
   * @default {250}
   */
  minDelayMs?: number;
  /**
   * Largest delay between probes, in ms.
   * @default {5000}
   */
  maxDelayMs?: number;
}

/** Whether the store is reachable, and the reconnection probe while it is not. */
export class StoreAvailability {
  readonly #options: StoreAvailabilityOptions;
  #down: { since: number; error: string } | null = null;
  #timer: TimerId | undefined;
  #delay: number;
  /** When the store last came back (the clock's monotonic ms), or `null`. */
  #recoveredAt: number | null = null;
  /** Since when, and why, this instance has not heard the other instances' events, or `null`. */
  #deaf: { since: number; error: string } | null = null;
  /** How far this instance's clock was last found ahead of the store's, when off; or `null`. */
  #clockAheadMs: number | null = null;
  #closed = false;
  readonly #clock: Clock;

  /**
   * Starts healthy.
   *
   * @param options The probe and what to do on recovery.
   */
  constructor(options: StoreAvailabilityOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#delay = options.minDelayMs ?? 250;
  }

  /** Whether the store is known to be unreachable. */
  get down(): boolean {
    return this.#down !== null;
  }

  /**
   * Whether this instance does not hear the other instances' events now (see
   * {@link StoreAvailability.notificationsLost}): one that revokes an agent's token may be missed.
   */
  get deaf(): boolean {
    return this.#deaf !== null;
  }

  /** Why it is down and since when (ms), or `null`. */
  get outage(): { since: number; error: string } | null {
    return this.#down;
  }

  /**
   * Looks at an error of the store: an unavailable store is marked down and probed until it is
   * back.
   *
   * @param error Any error.
   * @returns Whether it was a {@link StoreUnavailableError}.
   */
  observe(error: unknown): boolean {
    if (!(error instanceof StoreUnavailableError)) return false;
    if (this.#down === null && !this.#closed) {
      const now = this.#clock.now();
      // Down again right after coming back (the store answers the probe, but not what the
      // instance needs, e.g. a connection to listen on): the probes keep backing off instead of
      // starting again at the first delay, which made the health flap several times a second.
      const maxDelay = this.#options.maxDelayMs ?? 5000;
      // On the monotonic clock: a wall clock set back made every outage for that long a relapse.
      const relapse = this.#recoveredAt !== null &&
        monotonicNow(this.#clock) - this.#recoveredAt < maxDelay;
      this.#delay = relapse ? Math.min(this.#delay * 2, maxDelay) : this.#options.minDelayMs ?? 250;
      this.#down = { since: now, error: error.message };
      log.error("store unavailable: {error}; retrying with backoff", { error: error.message });
      this.#schedule();
    }
    return true;
  }

  /**
   * Probes the store now (for `GET /health`).
   *
   * @returns Whether it answered.
   */
  async check(): Promise<boolean> {
    if (this.#down) return false;
    try {
      this.#clockAheadMs = (await this.#options.ping())?.clockAheadMs ?? null;
      return true;
    } catch (error) {
      if (!this.observe(error)) throw error;
      return false;
    }
  }

  /**
   * This instance stopped hearing the other instances' events (its listening connection was lost
   * and could not listen again): its waits are then served at their agents' next poll only.
   *
   * @param error Why.
   */
  notificationsLost(error: unknown): void {
    this.#deaf ??= {
      since: this.#clock.now(),
      error: (error as Error)?.message ?? String(error),
    };
  }

  /** This instance hears the other instances' events again. */
  notificationsBack(): void {
    this.#deaf = null;
  }

  /**
   * What `GET /health` adds on a shared store: nothing while all is well; `notifications` with
   * `status` `"down"`, `since` and `error` while the other instances' events are not heard;
   * `clock` with `status` `"off"`, `ahead_secs` (negative: behind) and `error` while this
   * instance's clock is off the database server's (as its last probe found).
   *
   * @param withError Whether the notifications' `error` (which may name the database's host) is
   *   given: as for the store's own error, only to the admin token or in dev mode.
   */
  sharedHealth(withError = true): {
    notifications?: { status: "down"; since: string; error?: string };
    clock?: { status: "off"; ahead_secs: number; error: string };
  } {
    const health: ReturnType<StoreAvailability["sharedHealth"]> = {};
    if (this.#deaf !== null) {
      health.notifications = {
        status: "down",
        since: new Date(this.#deaf.since).toISOString(),
        ...(withError ? { error: this.#deaf.error } : {}),
      };
    }
    if (this.#clockAheadMs !== null) {
      const secs = Math.round(this.#clockAheadMs / 100) / 10;
      health.clock = {
        status: "off",
        ahead_secs: secs,
        error:
          `this instance's clock is ${Math.abs(secs)} s ${
            secs > 0 ? "ahead of" : "behind"
          } the database server's: leases and queued commands' time to live are ended by each ` +
          "instance's own clock; set its clock right (NTP)",
      };
    }
    return health;
  }

  /** Stops probing. */
  close(): void {
    this.#closed = true;
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(): void {
    if (this.#closed || this.#timer !== undefined) return;
    this.#timer = this.#clock.setTimeout(async () => {
      this.#timer = undefined;
      try {
        this.#clockAheadMs = (await this.#options.ping())?.clockAheadMs ?? null;
      } catch (error) {
        if (this.#closed) return;
        if (this.#down) this.#down = { ...this.#down, error: (error as Error).message };
        this.#delay = Math.min(this.#delay * 2, this.#options.maxDelayMs ?? 5000);
        this.#schedule();
        return;
      }
      if (this.#closed) return;
      const now = this.#clock.now();
      const since = this.#down?.since ?? now;
      this.#down = null;
      this.#recoveredAt = monotonicNow(this.#clock);
      log.info("store reachable again after {secs} s", {
        secs: Math.round((now - since) / 100) / 10,
      });
      this.#options.onRecovered?.();
    }, this.#delay);
  }
}

/** How many agents {@link dismissRevokedWaits} looks up at a time. */
const REVOKE_CHECK_BATCH = 32;

/**
 * Ends the open waits and cancel-waits whose agent was removed, or whose token was rotated, since
 * they were opened: they are answered with no command (no cancel), and the agent's next request
 * authenticates anew. The check behind the `revoked` event, for when that event may have been
 * missed (the listening connection was down) or was never sent (another process changed the
 * SQLite file).
 *
 * @param store The store.
 * @param hub The open waits.
 * @param cancelWaiters The open cancel-waits.
 * @returns How many waits and cancel-waits were ended.
 */
export async function dismissRevokedWaits(
  store: CommandStore,
  hub: WaiterHub,
  cancelWaiters: CancelWaiters,
): Promise<number> {
  const agentIds = [...new Set([...hub.waitingAgents(), ...cancelWaiters.waitingAgents()])];
  let dismissed = 0;
  for (let start = 0; start < agentIds.length; start += REVOKE_CHECK_BATCH) {
    const batch = agentIds.slice(start, start + REVOKE_CHECK_BATCH);
    const agents = await Promise.all(batch.map((id) => store.getAgent(id)));
    batch.forEach((id, i) => {
      const agent = agents[i];
      const token = agent?.scopes.includes("commands:wait") ? agent.token : undefined;
      dismissed += hub.dismissStale(id, token) + cancelWaiters.dismissStale(id, token);
    });
  }
  if (dismissed > 0) {
    log.info("ended {count} waits and cancel-waits opened with a token that is no longer valid", {
      count: dismissed,
    });
  }
  return dismissed;
}

/** How often {@link watchOtherWriters} looks, in ms. */
export const OTHER_WRITERS_LOOK_MS = 1000;

/**
 * Looks every `everyMs` whether another process committed to the store's file (the SQLite file,
 * opened by `status agents rotate --db` while the dashboard runs), and calls `changed` when one
 * did: the dashboard then ends the waits opened with a token replaced that way
 * ({@link dismissRevokedWaits}). One look is one `PRAGMA data_version`, read from memory. A look
 * that fails is passed to `failed` (a file removed or replaced under the store: the dashboard is
 * told of it before a write fails).
 *
 * @param options The store, the clock of the timer, how often, and what to call.
 * @returns Stops looking.
 */
export function watchOtherWriters(options: {
  store: WatchedFileStore;
  clock: Clock;
  everyMs?: number;
  changed(): void;
  failed?(error: unknown): void;
}): { close(): void } {
  const { store, clock } = options;
  const everyMs = options.everyMs ?? OTHER_WRITERS_LOOK_MS;
  let seen: number | undefined;
  let timer: TimerId | undefined;
  let closed = false;
  const look = () => {
    timer = undefined;
    if (closed) return;
    try {
      const count = store.otherCommits();
      if (seen !== undefined && count !== seen) options.changed();
      seen = count;
    } catch (error) {
      if (options.failed) options.failed(error);
      else log.debug("could not look for other writers of the store: {error}", { error });
    }
    timer = clock.setTimeout(look, everyMs);
  };
  look();
  return {
    close() {
      closed = true;
      clock.clearTimeout(timer);
    },
  };
}

/** How many commands of open cancel-waits {@link resyncWaits} looks up at a time. */
const CANCEL_CHECK_BATCH = 32;

/**
 * Re-checks every open wait and cancel-wait against the store: waits opened with a token that is
 * no longer valid end ({@link dismissRevokedWaits}), the others' pumps claim again, and a
 * cancel-wait whose command's cancel is recorded is answered.
 *
 * @param store The store.
 * @param hub The open waits.
 * @param cancelWaiters The open cancel-waits.
 * @param cancelAsked Whether a command's agent should stop it.
 */
export async function resyncWaits(
  store: CommandStore,
  hub: WaiterHub,
  cancelWaiters: CancelWaiters,
  cancelAsked: (command: NonNullable<Awaited<ReturnType<CommandStore["getCommand"]>>>) => boolean,
): Promise<void> {
  await dismissRevokedWaits(store, hub, cancelWaiters);
  hub.notifyAll();
  // Several at a time: one after the other, the last of thousands of cancel-waits (one per
  // running command) heard of a missed cancel only after thousands of round trips.
  const ids = cancelWaiters.commandIds();
  for (let start = 0; start < ids.length; start += CANCEL_CHECK_BATCH) {
    const batch = ids.slice(start, start + CANCEL_CHECK_BATCH);
    const commands = await Promise.all(batch.map((id) => store.getCommand(id)));
    commands.forEach((command, i) => {
      if (command && cancelAsked(command)) cancelWaiters.notify(batch[i]);
    });
  }
}

/** What {@link connectInstances} wires together. */
export interface InstanceLinks {
  /** The shared store. */
  store: CommandStore & SharedStore;
  /** This instance's open waits. */
  hub: WaiterHub;
  /** This instance's open cancel-waits. */
  cancelWaiters: CancelWaiters;
  /** Re-checks every open wait and cancel-wait (after missed events). */
  resync(): Promise<void>;
  /** Told of store failures. */
  availability: StoreAvailability;
  /** A command changed (anything: its event streams re-read it). */
  changed?(commandId: string): void;
  /** Any command may have changed (events were missed): every event stream re-reads its own. */
  changedAll?(): void;
  /**
   * The clock of the link's retries ({@link InstanceLink}).
   * @default {systemClock}
   */
  clock?: Clock;
}

/**
 * Subscribes to the events of the other instances and passes them to this instance's waits;
 * re-checks the waits whenever events may have been missed.
 *
 * @param links The store, the waits and the health tracker.
 * @returns The subscription (close it at shutdown), or `null` when the store was unavailable
 *   (call again once it recovers).
 */
export async function connectInstances(links: InstanceLinks): Promise<StoreSubscription | null> {
  const { store, hub, cancelWaiters, availability } = links;
  const resync = () => {
    links.resync().catch((error) => {
      if (!availability.observe(error)) {
        log.error("re-check of open waits failed: {error}", { error });
      }
    });
  };
  try {
    return await store.subscribe({
      event(event) {
        if (event.type === "queued") hub.notify(event.agentId);
        else if (event.type === "cancel") {
          cancelWaiters.notify(event.commandId);
          links.changed?.(event.commandId);
        } else if (event.type === "changed") links.changed?.(event.commandId);
        else if (event.type === "revoked") {
          hub.dismiss(event.agentId);
          cancelWaiters.dismiss(event.agentId);
        }
      },
      resync() {
        log.info("notifications reconnected; re-checking open waits");
        availability.notificationsBack();
        resync();
        links.changedAll?.();
      },
      lost(error) {
        availability.notificationsLost(error);
      },
    });
  } catch (error) {
    if (!availability.observe(error)) throw error;
    return null;
  }
}
