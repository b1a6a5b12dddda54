/**
 * Request ids seen recently (docs/protocol.md §1 step 6): an in-memory map with expiry, bounded in
 * size, swept lazily on insert, no timer per entry; on the SQLite store also kept in the database,
 * so that a restarted dashboard still knows them.
 *
 * @module
 */
import type { RequestIdJournal } from "../store/mod.ts";
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
    this.#evictForOne();
    this.#seen.set(id, { expiresAt: now + this.#windowMs, sentAtMs });
    return true;
  }

  /**
   * Remembers an id that was accepted before (by a dashboard that ran before this one), until
   * `expiresAt`; over the bound, the oldest is forgotten as {@link ReplayCache.remember} does. Call
   * it before any `remember`, the soonest to expire first.
   *
   * @param id The scoped request id.
   * @param expiresAt When it may be forgotten, in ms.
   * @param sentAtMs When it was sent, in ms, if known.
   */
  restore(id: string, expiresAt: number, sentAtMs?: number): void {
    if (expiresAt <= this.#clock.now()) return;
    this.#seen.delete(id);
    this.#evictForOne();
    this.#seen.set(id, { expiresAt, sentAtMs });
  }

  /** Forgets the oldest ids until one more fits, raising their scopes' floors. */
  #evictForOne(): void {
    while (this.#seen.size >= this.#maxEntries) {
      const [oldest, forgotten] = this.#seen.entries().next().value as [string, Seen];
      this.#seen.delete(oldest);
      if (forgotten.sentAtMs !== undefined) this.#raiseFloor(oldest, forgotten);
    }
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

/** Options of {@link keptReplayGuard}. */
export interface KeptReplayGuardOptions {
  /** The ids in memory (checked first, and the only ones checked). */
  cache: ReplayCache;
  /** Where accepted ids are kept across restarts. */
  journal: RequestIdJournal;
  /** How long an id is remembered, in ms (the cache's window). */
  windowMs: number;
  /** The dashboard's clock. */
  clock: Clock;
  /**
   * Told when the kept ids cannot be read at start, or when an id cannot be kept (once, until
   * one is kept again).
   */
  onError(error: unknown, what: "read" | "keep"): void;
}

/**
 * A {@link RequestIdGuard} of one dashboard whose store keeps ids ({@link RequestIdJournal}: the
 * SQLite store): the cache decides, filled first with the ids kept by the dashboard that ran
 * before, and every id it accepts is kept too. Keeping one is not waited for: it is committed with
 * the store's next commit, no later than what the request itself writes, so a request whose
 * effect a restarted dashboard could see is refused by it as a replay.
 *
 * @param options The cache, the store, the window and the clock.
 * @returns The guard.
 */
export function keptReplayGuard(options: KeptReplayGuardOptions): RequestIdGuard {
  const { cache, journal, windowMs, clock, onError } = options;
  let restored: Promise<void> | null = journal.keptRequestIds(clock.now()).then(
    (kept) => {
      for (const id of kept) cache.restore(id.key, id.expiresAt, id.sentAtMs ?? undefined);
    },
    (error) => onError(error, "read"),
  ).finally(() => restored = null);
  // A store that fails (a full disk) fails every request's id: told once, until one is kept.
  let failing = false;
  const keep = (key: string, sentAtMs: number | undefined) => {
    const now = clock.now();
    journal.keepRequestId({ key, expiresAt: now + windowMs, sentAtMs: sentAtMs ?? null }, now)
      .then(() => failing = false, (error) => {
        if (!failing) onError(error, "keep");
        failing = true;
      });
  };
  return {
    async remember(id, sentAtMs) {
      if (restored) await restored;
      const fresh = cache.remember(id, sentAtMs);
      if (fresh) keep(id, sentAtMs);
      return fresh;
    },
  };
}
