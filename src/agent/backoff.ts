/**
 * Back-off delays of the poll loop: exponential growth with full jitter up to a cap, computed by
 * `cockatiel`'s {@link ExponentialBackoff} and its full-jitter generator, and `Retry-After`.
 *
 * @module
 */
import { DEFAULT_POLLING_BACKOFF_MAX_SECS, DEFAULT_POLLING_BACKOFF_SECS } from "../defaults.ts";
import { ExponentialBackoff, fullJitterGenerator, type IBackoff } from "cockatiel";
import { type Clock, systemClock } from "./clock.ts";

/** Options of {@link PollBackoff}. */
export interface PollBackoffOptions {
  /**
   * The first delay's upper bound, in seconds (`POLLING_BACKOFF_SECS`).
   * @default {5}
   */
  initialSecs?: number;
  /**
   * The largest delay, in seconds (`POLLING_BACKOFF_MAX_SECS`).
   * @default {60}
   */
  maxSecs?: number;
}

/**
 * Delays between failed attempts: attempt `n` (from 0) waits a uniformly random time in
 * `[0, min(max, initial × 2ⁿ))` ("full jitter"). A success resets the sequence.
 *
 * @example Delays stay under the cap
 * ```ts
 * import assert from "node:assert/strict";
 * import { PollBackoff } from "./backoff.ts";
 *
 * const backoff = new PollBackoff({ initialSecs: 1, maxSecs: 4 });
 * for (let i = 0; i < 10; i++) assert.ok(backoff.next() < 4000);
 * backoff.reset();
 * assert.equal(backoff.attempts, 0);
 * ```
 */
export class PollBackoff {
  readonly #factory: ExponentialBackoff<number>;
  #current: IBackoff<unknown> | undefined;
  #attempts = 0;

  /**
   * Creates a back-off sequence.
   *
   * @param options Initial and largest delay.
   * @throws {RangeError} When a delay is not a positive number or the cap is below the start.
   */
  constructor(options: PollBackoffOptions = {}) {
    const initialSecs = options.initialSecs ?? DEFAULT_POLLING_BACKOFF_SECS;
    const maxSecs = options.maxSecs ?? DEFAULT_POLLING_BACKOFF_MAX_SECS;
    if (!(initialSecs > 0) || !Number.isFinite(initialSecs)) {
      throw new RangeError(`initialSecs must be a positive number, got ${initialSecs}`);
    }
    if (!(maxSecs >= initialSecs) || !Number.isFinite(maxSecs)) {
      throw new RangeError(`maxSecs must be a number at least initialSecs, got ${maxSecs}`);
    }
    this.#factory = new ExponentialBackoff({
      generator: fullJitterGenerator,
      initialDelay: initialSecs * 1000,
      maxDelay: maxSecs * 1000,
      exponent: 2,
    });
  }

  /** How many delays were handed out since the last reset. */
  get attempts(): number {
    return this.#attempts;
  }

  /**
   * Returns the next delay.
   *
   * @returns Milliseconds to wait before the next attempt.
   */
  next(): number {
    this.#current = this.#current ? this.#current.next(undefined) : this.#factory.next();
    this.#attempts++;
    return this.#current.duration;
  }

  /** Starts the sequence again (after a success). */
  reset(): void {
    this.#current = undefined;
    this.#attempts = 0;
  }
}

/** Options of {@link retryWhile}. */
export interface RetryOptions<T = unknown> {
  /** Calls after the first, at most. */
  retries: number;
  /** Upper bound of the first delay, in ms (full jitter, doubling up to four times this). */
  initialDelayMs: number;
  /**
   * Clock of the delays.
   * @default {systemClock}
   */
  clock?: Clock;
  /** Ends a delay early, and no delay follows a call made after it aborted. */
  signal?: AbortSignal;
  /**
   * The shortest delay after a result, in ms (a `Retry-After` it carries); the jittered delay is
   * waited when it is longer.
   * @default {() => 0}
   */
  minDelayMs?: (result: T) => number;
}

/**
 * Calls `fn` again while its result is `retryable`, after delays with full jitter (attempt `n`
 * from 0 waits up to `min(4 × initial, initial × 2ⁿ)`, and at least what `minDelayMs` says of the
 * result), at most `retries` more times, on the injected clock.
 *
 * @example Retry a flaky call twice at most
 * ```ts
 * import assert from "node:assert/strict";
 * import { retryWhile } from "./backoff.ts";
 *
 * let calls = 0;
 * const result = await retryWhile(() => Promise.resolve(++calls), (n) => n < 5, {
 *   retries: 2,
 *   initialDelayMs: 1,
 * });
 * assert.equal(result, 3);
 * ```
 *
 * @param fn The call.
 * @param retryable Whether a result is worth another call.
 * @param options Retries, delays, clock and signal.
 * @returns The first result that is not retryable, or the last one.
 */
export async function retryWhile<T>(
  fn: () => Promise<T>,
  retryable: (result: T) => boolean,
  options: RetryOptions<T>,
): Promise<T> {
  const clock = options.clock ?? systemClock;
  const delays = new ExponentialBackoff({
    generator: fullJitterGenerator,
    initialDelay: options.initialDelayMs,
    maxDelay: options.initialDelayMs * 4,
  });
  let delay: IBackoff<unknown> | undefined;
  for (let retry = 0;; retry++) {
    const result = await fn();
    if (!retryable(result) || retry >= options.retries || options.signal?.aborted) return result;
    delay = delay ? delay.next(undefined) : delays.next();
    await clock.sleep(Math.max(delay.duration, options.minDelayMs?.(result) ?? 0), options.signal);
  }
}

/** The longest `Retry-After` honoured, in seconds; longer values are cut to it. */
export const MAX_RETRY_AFTER_SECS = 3600;

/**
 * Shortest wait a `Retry-After` gets, in ms: `0`, a date already past (or the agent's clock
 * ahead of the dashboard's) would otherwise make the agent ask again in a tight loop.
 */
export const MIN_RETRY_AFTER_MS = 1000;

/**
 * The start of an HTTP date in each of its three forms (RFC 9110 §5.6.7: `Sun, 06 Nov 1994 ...`,
 * `Sunday, 06-Nov-94 ...`, `Sun Nov  6 ...`): a day name. `Date.parse` alone reads far more as a
 * date (`-5` is May 2001).
 */
const HTTP_DATE_START = /^(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,? +\S/i;

/**
 * Reads a `Retry-After` header: delay seconds or an HTTP date.
 *
 * @param value The header value, or `null` when absent.
 * @param now The current time in milliseconds.
 * @returns Milliseconds to wait (at least {@link MIN_RETRY_AFTER_MS}, at most
 *   {@link MAX_RETRY_AFTER_SECS}), or `undefined` when the header is absent or unreadable
 *   (neither seconds nor an HTTP date: `-5`, `soon`).
 *
 * @example Seconds and dates
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRetryAfter } from "./backoff.ts";
 *
 * assert.equal(parseRetryAfter("2", 0), 2000);
 * assert.equal(parseRetryAfter("Thu, 01 Jan 1970 00:00:05 GMT", 0), 5000);
 * assert.equal(parseRetryAfter("Thursday, 01-Jan-70 00:00:05 GMT", 0), 5000);
 * assert.equal(parseRetryAfter("0", 0), 1000);
 * assert.equal(parseRetryAfter("1.5", 0), 1500);
 * assert.equal(parseRetryAfter("30.0", 0), 30_000);
 * assert.equal(parseRetryAfter("soon", 0), undefined);
 * assert.equal(parseRetryAfter("-5", 0), undefined);
 * ```
 */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  let ms: number;
  // Seconds, also with a fraction (`1.5`, `30.0`), which Date.parse would read as a date.
  if (/^\d+(\.\d+)?$/.test(text)) {
    ms = Number(text) * 1000;
  } else if (!HTTP_DATE_START.test(text)) {
    return undefined;
  } else {
    const date = Date.parse(text);
    if (Number.isNaN(date)) return undefined;
    ms = Math.max(0, date - now);
  }
  return Math.min(Math.max(ms, MIN_RETRY_AFTER_MS), MAX_RETRY_AFTER_SECS * 1000);
}
