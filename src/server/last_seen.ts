/**
 * When each agent was last seen, and on which deployment it last waited.
 *
 * Last-seen times are kept in memory (`GET /api/v1/agents` shows them) and written to the store in
 * one transaction for every agent seen, at most once per flush interval and at the dashboard's
 * close; a request never waits for that write. On a store shared by several instances the others
 * know when an agent was seen only from the store: an agent new to this instance is written within
 * a second, and the agents holding a long-poll here are written as seen at every interval.
 *
 * @module
 */
import { logger } from "../log/mod.ts";
import type { CommandStore } from "../store/mod.ts";
import { type Clock, monotonicNow, type TimerId } from "./clock.ts";
import type { StoreHealth } from "./store_health.ts";

const log = logger("server");

/** Options of {@link LastSeen}. */
export interface LastSeenOptions {
  /** Where the times are written. */
  store: Pick<CommandStore, "touchAgents">;
  /** The dashboard's clock (and its timer for the writes). */
  clock: Clock;
  /** Told of every write that succeeded or failed for lack of space. */
  storeHealth: StoreHealth;
  /** How often the unwritten times are written at most, in ms. */
  flushMs: number;
  /** Agents whose time is kept in memory at most; the least recently seen are forgotten first. */
  max: number;
  /**
   * On a store shared by several instances: the agents holding a wait or cancel-wait here now.
   * Each write records them as seen at its time (a long-poll is held up to 120 s, longer than an
   * agent stays online unseen), writes go on every `flushMs` while any are held, and an agent this
   * instance had not seen is written within {@link FIRST_SIGHT_WRITE_MS}.
   * @default {undefined} (one instance: its memory is the whole truth)
   */
  held?(): Iterable<string>;
}

/** How soon an agent this instance had not seen is written, on a shared store, in ms. */
export const FIRST_SIGHT_WRITE_MS = 1000;

/** The agents' last-seen times and the deployment hash of each agent's latest wait. */
export class LastSeen {
  readonly #options: LastSeenOptions;
  /** Most recently seen last. */
  readonly #times = new Map<string, number>();
  /** When each agent of {@link LastSeen.#times} was seen on the monotonic clock. */
  readonly #monotonic = new Map<string, number>();
  /** Only of agents whose time is kept: forgotten with it. */
  readonly #waitHashes = new Map<string, string>();
  #unwritten = new Map<string, number>();
  #timer: TimerId | undefined;
  /** When the timer fires, in ms. */
  #armedAt = 0;
  #closed = false;

  /**
   * Makes an empty record.
   *
   * @param options Store, clock, write interval and bound.
   */
  constructor(options: LastSeenOptions) {
    this.#options = options;
  }

  /** How many agents' times are in memory (at most `max`). */
  get size(): number {
    return this.#times.size;
  }

  /**
   * Notes that an agent was seen now; arms the write timer when none is armed.
   *
   * @param agentId The agent.
   */
  seen(agentId: string): void {
    const { clock, max, flushMs } = this.#options;
    const now = clock.now();
    const first = !this.#times.has(agentId);
    // Beyond the bound the least recently seen is forgotten here (its time is in the store, or
    // in the unwritten batch until the next write).
    this.#times.delete(agentId);
    this.#times.set(agentId, now);
    this.#monotonic.set(agentId, monotonicNow(clock));
    if (this.#times.size > max) {
      const oldest = this.#times.keys().next().value!;
      this.#times.delete(oldest);
      this.#monotonic.delete(oldest);
      this.#waitHashes.delete(oldest);
    }
    this.#unwritten.set(agentId, now);
    if (this.#unwritten.size >= max) void this.flush();
    this.#arm(first && this.#options.held ? Math.min(FIRST_SIGHT_WRITE_MS, flushMs) : flushMs);
  }

  /** Makes sure a write happens within `ms`. */
  #arm(ms: number): void {
    const { clock } = this.#options;
    const at = clock.now() + ms;
    if (this.#closed || (this.#timer !== undefined && this.#armedAt <= at)) return;
    clock.clearTimeout(this.#timer);
    this.#armedAt = at;
    this.#timer = clock.setTimeout(() => {
      this.#timer = undefined;
      void this.flush();
    }, ms);
  }

  /**
   * The freshest time an agent was seen, as known in memory.
   *
   * @param agentId The agent.
   * @returns Ms since the epoch, or `null`.
   */
  get(agentId: string): number | null {
    return this.#times.get(agentId) ?? null;
  }

  /**
   * When an agent was last seen, from memory and the store's time: on a store shared by several
   * instances the later of the two (another instance may have seen it since). On one instance its
   * memory is the whole truth, and is read on the monotonic clock: the time as the dashboard's
   * clock reads it now, less how long ago the agent was seen. A step of the wall clock since the
   * sighting is then no age: after a step back the store keeps the time from before it, ahead of
   * the clock, and an agent that stopped was shown online for as long as the step.
   *
   * @param agentId The agent.
   * @param stored The time the store holds, or `null`.
   * @returns Ms since the epoch, or `null` when it was never seen.
   */
  freshest(agentId: string, stored: number | null): number | null {
    const at = this.#times.get(agentId);
    if (at === undefined) return stored;
    const { clock, held } = this.#options;
    if (held) return Math.max(at, stored ?? 0);
    return clock.now() - Math.max(0, monotonicNow(clock) - this.#monotonic.get(agentId)!);
  }

  /**
   * Notes the deployment hash of an agent's wait; kept while the agent's time is (a wait is seen
   * first), so at most `max` of them.
   *
   * @param agentId The agent.
   * @param hash The deployment hash it waits on.
   */
  noteWaitHash(agentId: string, hash: string): void {
    if (!this.#times.has(agentId)) return;
    if (this.#waitHashes.get(agentId) !== hash) this.#waitHashes.set(agentId, hash);
  }

  /**
   * The deployment hash of the agent's latest wait since the dashboard started.
   *
   * @param agentId The agent.
   * @returns The hash, if it waited.
   */
  lastWaitHash(agentId: string): string | undefined {
    return this.#waitHashes.get(agentId);
  }

  /**
   * Forgets an agent that was removed, so that one added again under its id starts unseen (its
   * last-seen time and latest wait hash were the removed one's, and were written into its row).
   *
   * @param agentId The agent.
   */
  forget(agentId: string): void {
    this.#times.delete(agentId);
    this.#monotonic.delete(agentId);
    this.#unwritten.delete(agentId);
    this.#waitHashes.delete(agentId);
  }

  /** Writes the unwritten times to the store now (one transaction); a failure is logged. */
  async flush(): Promise<void> {
    const { clock, store, storeHealth, held } = this.#options;
    clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    let holding = false;
    if (held) {
      const now = clock.now();
      for (const agentId of held()) {
        this.#unwritten.set(agentId, now);
        holding = true;
      }
    }
    // While long-polls are held here, their agents are written again at the next interval.
    if (holding) this.#arm(this.#options.flushMs);
    if (this.#unwritten.size === 0) return;
    const batch = this.#unwritten;
    this.#unwritten = new Map();
    try {
      await store.touchAgents(batch);
      storeHealth.wrote();
    } catch (error) {
      storeHealth.map(error);
      log.warning("could not record when {count} agents were seen: {error}", {
        count: batch.size,
        error,
      });
    }
  }

  /** Arms no more writes (at close; a last {@link LastSeen.flush} writes what is left). */
  stop(): void {
    this.#closed = true;
  }
}
