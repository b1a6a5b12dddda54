/**
 * Coalesced timeouts of long-polls: one timer for every open wait instead of one each.
 *
 * A wait's deadline is rounded up to the next whole second and the wait is kept in that second's
 * bucket (a `Map` from second to a `Set` of waits). One timer is armed for the earliest non-empty
 * bucket; when it fires, every bucket that is due ends at once and the timer is armed again for
 * the next one. A wait of N seconds therefore ends between N and N + 1 s, and 10,000 waits cost at
 * most one event-loop wake-up a second instead of one each. Nothing is armed while no wait is
 * open.
 *
 * @module
 */
import { type Clock, monotonicNow, systemClock, type TimerId } from "./clock.ts";

/** Longest delay `setTimeout` accepts, in ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Width of a bucket, in ms. */
const BUCKET_MS = 1000;

/** Options of {@link Deadlines}. */
export interface DeadlinesOptions<T> {
  /** Called with each item whose deadline passed (it is already removed). */
  onExpire(item: T): void;
  /**
   * The clock the deadlines are measured and timed on (its monotonic time, so that a wall clock
   * stepped back does not hold every wait for the step, nor one stepped forward end them all);
   * tests inject a fake one and advance it (or call {@link Deadlines.expireDue} after moving it).
   * @default {systemClock}
   */
  clock?: Clock;
}

/**
 * Items with deadlines, ended in whole-second batches by one timer.
 *
 * @example End a wait at its (rounded) deadline
 * ```ts
 * import assert from "node:assert/strict";
 * import { Deadlines } from "./deadlines.ts";
 * import { FakeClock } from "./clock.ts";
 *
 * const clock = new FakeClock(10_200);
 * const ended: string[] = [];
 * const deadlines = new Deadlines<string>({ clock, onExpire: (w) => ended.push(w) });
 * deadlines.add("w1", 2_000); // due at 12.2 s, ends in the bucket of second 13
 * assert.equal(deadlines.armedAt, 13_000);
 * clock.advance(2_300); // 12.5 s
 * assert.deepEqual(ended, []);
 * clock.advance(500); // 13 s
 * assert.deepEqual(ended, ["w1"]);
 * assert.equal(deadlines.armedAt, null);
 * ```
 */
export class Deadlines<T> {
  readonly #onExpire: (item: T) => void;
  readonly #clock: Clock;
  /** Second (deadline rounded up) → the items due then. */
  readonly #buckets = new Map<number, Set<T>>();
  #timer: TimerId | undefined;
  #armedAt: number | null = null;

  /**
   * Makes an empty set of deadlines; nothing is armed.
   *
   * @param options What to do at a deadline, and the clock.
   */
  constructor(options: DeadlinesOptions<T>) {
    this.#onExpire = options.onExpire;
    this.#clock = options.clock ?? systemClock;
  }

  /** When the one timer fires next, in the clock's monotonic ms; `null` when nothing is armed. */
  get armedAt(): number | null {
    return this.#armedAt;
  }

  /** How many buckets (distinct seconds) hold items. */
  get buckets(): number {
    return this.#buckets.size;
  }

  /**
   * Adds an item due `timeoutMs` from now (rounded up to the next whole second).
   *
   * @param item The item; add each item once.
   * @param timeoutMs How long from now.
   * @returns The bucket key; pass it to {@link Deadlines.delete}.
   */
  add(item: T, timeoutMs: number): number {
    const key = Math.ceil((monotonicNow(this.#clock) + Math.max(0, timeoutMs)) / BUCKET_MS);
    let bucket = this.#buckets.get(key);
    if (!bucket) {
      bucket = new Set();
      this.#buckets.set(key, bucket);
      if (this.#armedAt === null || key * BUCKET_MS < this.#armedAt) this.#arm(key * BUCKET_MS);
    }
    bucket.add(item);
    return key;
  }

  /**
   * Removes an item before its deadline (it was answered). The timer is stopped when no item is
   * left.
   *
   * @param item The item.
   * @param key What {@link Deadlines.add} returned for it.
   */
  delete(item: T, key: number): void {
    const bucket = this.#buckets.get(key);
    if (!bucket?.delete(item)) return;
    if (bucket.size === 0) this.#buckets.delete(key);
    if (this.#buckets.size === 0) this.#disarm();
  }

  /** Ends every item whose bucket is due by the clock's now, then re-arms for the next bucket. */
  expireDue(): void {
    const now = monotonicNow(this.#clock);
    for (const [key, bucket] of this.#buckets) {
      if (key * BUCKET_MS > now) continue;
      this.#buckets.delete(key);
      for (const item of bucket) this.#onExpire(item);
    }
    let next = Infinity;
    for (const key of this.#buckets.keys()) next = Math.min(next, key);
    if (next === Infinity) this.#disarm();
    else this.#arm(next * BUCKET_MS);
  }

  /** Stops the timer and forgets every item (without calling `onExpire`). */
  clear(): void {
    this.#buckets.clear();
    this.#disarm();
  }

  #arm(at: number): void {
    if (this.#armedAt === at) return;
    this.#clock.clearTimeout(this.#timer);
    this.#armedAt = at;
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, at - monotonicNow(this.#clock)));
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.#armedAt = null;
      this.expireDue();
    }, delay);
  }

  #disarm(): void {
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedAt = null;
  }
}
