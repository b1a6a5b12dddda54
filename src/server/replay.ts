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
   * Ids kept at most; beyond that the oldest is forgotten early. What an id forgotten early could
   * let through is closed by its scope's floor (see {@link ReplayCache.remember}).
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
   * @param sentAtMs When the request says it was sent (its signed `X-Timestamp`), in ms.
   * @returns `true` when the id is new, `false` when it was seen within the window (a replay) or
   * cannot be told apart from one.
   */
  remember(id: string, sentAtMs?: number): boolean | Promise<boolean>;
}

/** One remembered id. */
interface Seen {
  expiresAt: number;
  sentAtMs: number | undefined;
}

/**
 * Remembers request ids for a window, at most `maxEntries` of them.
 *
 * An id forgotten before its window ended (the bound was reached) could be used again while its
 * signed timestamp is still accepted. So its scope (the part of the id before the first `\n`, the
 * agent) keeps a floor: the latest `sentAtMs` among its ids forgotten early, and a request of that
 * scope sent at or before the floor is refused as a possible replay. An agent's own requests carry
 * its clock's time, which only moves on, so the floor refuses only the requests that were already
 * seen (or, with a clock set back, refuses until that clock passes the floor again).
 */
export class ReplayCache implements RequestIdGuard {
  readonly #windowMs: number;
  readonly #clock: Clock;
  readonly #maxEntries: number;
  /** Id → when it is forgotten and when it was sent; insertion order is expiry order. */
  readonly #seen = new Map<string, Seen>();
  /** Scope → the latest `sentAtMs` among its ids forgotten early, and until when that matters. */
  readonly #floors = new Map<string, { sentAtMs: number; until: number }>();
  #floorsSweptAt = 0;

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

  /** How many scopes have a floor (ids forgotten before their window ended). */
  get floors(): number {
    return this.#floors.size;
  }

  /**
   * Records an id.
   *
   * @param id The request id (scoped by the caller, e.g. `agent\nrequest-id`).
   * @param sentAtMs When the request was sent (its signed timestamp), in ms; without it, an id
   *   forgotten early can be used again.
   * @returns `true` when the id is new, `false` when it was seen within the window (a replay) or
   * was sent no later than an id of its scope that was forgotten early.
   */
  remember(id: string, sentAtMs?: number): boolean {
    const now = this.#clock.now();
    for (const [key, seen] of this.#seen) {
      if (seen.expiresAt > now) break;
      this.#seen.delete(key);
    }
    this.#sweepFloors(now);
    const seen = this.#seen.get(id);
    if (seen !== undefined && seen.expiresAt > now) return false;
    if (sentAtMs !== undefined) {
      const floor = this.#floors.get(scopeOf(id));
      if (floor !== undefined && sentAtMs <= floor.sentAtMs) return false;
    }
    this.#seen.delete(id);
    while (this.#seen.size >= this.#maxEntries) {
      const [oldest, forgotten] = this.#seen.entries().next().value as [string, Seen];
      this.#seen.delete(oldest);
      if (forgotten.sentAtMs !== undefined) this.#raiseFloor(oldest, forgotten);
    }
    this.#seen.set(id, { expiresAt: now + this.#windowMs, sentAtMs });
    return true;
  }

  #raiseFloor(id: string, forgotten: Seen): void {
    const scope = scopeOf(id);
    const floor = this.#floors.get(scope);
    if (floor === undefined || forgotten.sentAtMs! > floor.sentAtMs) {
      // After the forgotten id's own window, it would have been forgotten anyway.
      this.#floors.set(scope, { sentAtMs: forgotten.sentAtMs!, until: forgotten.expiresAt });
    } else {
      floor.until = Math.max(floor.until, forgotten.expiresAt);
    }
  }

  /** Drops the floors that no longer matter, at most ten times a window. */
  #sweepFloors(now: number): void {
    if (this.#floors.size === 0 || now - this.#floorsSweptAt < this.#windowMs / 10) return;
    this.#floorsSweptAt = now;
    for (const [scope, floor] of this.#floors) {
      if (floor.until <= now) this.#floors.delete(scope);
    }
  }
}

function scopeOf(id: string): string {
  const end = id.indexOf("\n");
  return end === -1 ? "" : id.slice(0, end);
}
