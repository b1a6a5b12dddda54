/**
 * Request ids seen recently (PROTOCOL.md §1 step 6): an in-memory map with expiry, bounded in size,
 * swept lazily on insert. No timer per entry.
 *
 * @module
 */
import type { Clock } from "./clock.ts";

/** Options of {@link ReplayCache}. */
export interface ReplayCacheOptions {
  /** How long an id is remembered, in ms. */
  windowMs: number;
  /** The dashboard's clock. */
  clock: Clock;
  /**
   * Ids kept at most; beyond that the oldest is forgotten early. A version 2 signature binds the
   * timestamp, so a forgotten id older than the clock-skew window still cannot be replayed.
   * @default {200000}
   */
  maxEntries?: number;
}

/**
 * Where request ids are remembered: {@link ReplayCache} in memory (one dashboard), or the shared
 * store's table (several instances on PostgreSQL), so that an id used at one instance is refused by
 * every other.
 */
export interface RequestIdGuard {
  /**
   * Records an id.
   *
   * @param id The request id scoped by the caller (`agent\nrequest-id`).
   * @returns `true` when the id is new, `false` when it was seen within the window (a replay).
   */
  remember(id: string): boolean | Promise<boolean>;
}

/** Remembers request ids for a window. */
export class ReplayCache implements RequestIdGuard {
  readonly #windowMs: number;
  readonly #clock: Clock;
  readonly #maxEntries: number;
  /** Id → expiry; insertion order is expiry order. */
  readonly #seen = new Map<string, number>();

  /**
   * Makes an empty cache.
   *
   * @param options Window, clock and size bound.
   * @throws {RangeError} When the window or the bound is not above 0.
   */
  constructor(options: ReplayCacheOptions) {
    if (!(options.windowMs > 0)) {
      throw new RangeError(`windowMs must be above 0, got ${options.windowMs}`);
    }
    const maxEntries = options.maxEntries ?? 200_000;
    if (!(maxEntries > 0)) throw new RangeError(`maxEntries must be above 0, got ${maxEntries}`);
    this.#windowMs = options.windowMs;
    this.#clock = options.clock;
    this.#maxEntries = maxEntries;
  }

  /** How many ids are remembered. */
  get size(): number {
    return this.#seen.size;
  }

  /**
   * Records an id.
   *
   * @param id The request id (scoped by the caller, e.g. `agent\nrequest-id`).
   * @returns `true` when the id is new, `false` when it was seen within the window (a replay).
   */
  remember(id: string): boolean {
    const now = this.#clock.now();
    for (const [key, expiresAt] of this.#seen) {
      if (expiresAt > now) break;
      this.#seen.delete(key);
    }
    const expiresAt = this.#seen.get(id);
    if (expiresAt !== undefined && expiresAt > now) return false;
    this.#seen.delete(id);
    while (this.#seen.size >= this.#maxEntries) {
      const oldest = this.#seen.keys().next().value as string;
      this.#seen.delete(oldest);
    }
    this.#seen.set(id, now + this.#windowMs);
    return true;
  }
}
