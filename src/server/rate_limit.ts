/**
 * Per-agent token buckets in memory (docs/protocol.md §1 step 3).
 *
 * @module
 */
import type { Clock } from "./clock.ts";

/** Options of {@link TokenBucketLimiter}. */
export interface TokenBucketOptions {
  /** Bucket capacity and refill per minute (refilled continuously). */
  perMinute: number;
  /** The dashboard's clock. */
  clock: Clock;
  /**
   * Buckets kept before full (idle) ones are dropped.
   * @default {100000}
   */
  maxKeys?: number;
}

/** The answer of {@link TokenBucketLimiter.take}. */
export type TakeResult = { ok: true } | { ok: false; retryAfterSecs: number };

interface Bucket {
  tokens: number;
  updatedAt: number;
}

/** A token bucket per key: `perMinute` requests at once, then `perMinute` a minute. */
export class TokenBucketLimiter {
  readonly #capacity: number;
  readonly #perMs: number;
  readonly #clock: Clock;
  readonly #maxKeys: number;
  readonly #buckets = new Map<string, Bucket>();

  /**
   * Makes an empty set of buckets.
   *
   * @param options Rate and clock.
   * @throws {RangeError} When `perMinute` is not above 0.
   */
  constructor(options: TokenBucketOptions) {
    if (!(options.perMinute > 0) || !Number.isFinite(options.perMinute)) {
      throw new RangeError(`perMinute must be above 0, got ${options.perMinute}`);
    }
    this.#capacity = options.perMinute;
    this.#perMs = options.perMinute / 60_000;
    this.#clock = options.clock;
    this.#maxKeys = options.maxKeys ?? 100_000;
  }

  /** How many buckets are kept (at most `maxKeys`). */
  get size(): number {
    return this.#buckets.size;
  }

  /**
   * Whether the key's bucket has a token, without taking it (nor keeping a bucket for a new key).
   *
   * @param key The bucket's key.
   * @returns `ok`, or how many whole seconds (at least 1) until a token is available.
   */
  peek(key: string): TakeResult {
    const bucket = this.#buckets.get(key);
    if (!bucket) return { ok: true };
    const elapsed = Math.max(0, this.#clock.now() - bucket.updatedAt);
    const tokens = Math.min(this.#capacity, bucket.tokens + elapsed * this.#perMs);
    if (tokens >= 1) return { ok: true };
    return { ok: false, retryAfterSecs: Math.max(1, Math.ceil((1 - tokens) / this.#perMs / 1000)) };
  }

  /**
   * Takes one token from the key's bucket.
   *
   * @param key The agent id.
   * @returns `ok`, or how many whole seconds (at least 1) until a token is available.
   */
  take(key: string): TakeResult {
    const now = this.#clock.now();
    let bucket = this.#buckets.get(key);
    if (!bucket) {
      if (this.#buckets.size >= this.#maxKeys) this.#sweep(now);
      bucket = { tokens: this.#capacity, updatedAt: now };
      this.#buckets.set(key, bucket);
    } else {
      const elapsed = Math.max(0, now - bucket.updatedAt);
      bucket.tokens = Math.min(this.#capacity, bucket.tokens + elapsed * this.#perMs);
      bucket.updatedAt = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { ok: true };
    }
    const waitMs = (1 - bucket.tokens) / this.#perMs;
    return { ok: false, retryAfterSecs: Math.max(1, Math.ceil(waitMs / 1000)) };
  }

  #sweep(now: number): void {
    for (const [key, bucket] of this.#buckets) {
      if (bucket.tokens + (now - bucket.updatedAt) * this.#perMs >= this.#capacity) {
        this.#buckets.delete(key);
      }
    }
    // Still full of busy buckets: forget the oldest (they restart full, a bounded leniency), a
    // tenth of them at once, so that a flood of new keys sweeps once per tenth rather than once
    // per key (each sweep reads every bucket).
    if (this.#buckets.size < this.#maxKeys) return;
    const keep = Math.floor(this.#maxKeys * 0.9);
    for (const key of this.#buckets.keys()) {
      if (this.#buckets.size <= keep) break;
      this.#buckets.delete(key);
    }
  }
}
