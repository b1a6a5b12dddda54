/**
 * Guesses of the admin token. Every place that compares a client's token with
 * `STATUS_ADMIN_TOKEN` (the operator API's bearer token, an operator's enqueue, the console's
 * login) counts a wrong one against the client's address, and refuses every admin token from an
 * address that has used up its guesses until one refills, the right token included: answering
 * the right one would tell it apart from the wrong ones at any rate.
 *
 * @module
 */
import { addressKey } from "../address_key.ts";
import type { Clock } from "../clock.ts";
import { type TakeResult, TokenBucketLimiter } from "../rate_limit.ts";

/**
 * Wrong admin tokens a minute one client address may send (a burst of as many, then refilled): a
 * guesser gets 60 a minute instead of the operators' 3000, while a script of a few wrong tokens
 * does not lock its address's operators out (the login form has its own 10 a minute).
 */
export const ADMIN_TOKEN_GUESSES_PER_MINUTE = 60;

/** Options of {@link AdminTokenGuesses}. */
export interface AdminTokenGuessesOptions {
  /** The dashboard's clock. */
  clock: Clock;
  /**
   * Wrong admin tokens a minute per address.
   * @default {60}
   */
  perMinute?: number;
}

/**
 * Counts wrong admin tokens per client address (an IPv6 client by its /64: see {@link addressKey}).
 *
 * @example Ten wrong tokens, then even the right one waits
 * ```ts
 * import assert from "node:assert/strict";
 * import { FakeClock } from "../clock.ts";
 * import { AdminTokenGuesses } from "./guesses.ts";
 *
 * const clock = new FakeClock();
 * const guesses = new AdminTokenGuesses({ clock, perMinute: 10 });
 * for (let i = 0; i < 10; i++) {
 *   assert.equal(guesses.check("192.0.2.7").ok, true);
 *   guesses.wrong("192.0.2.7");
 * }
 * assert.deepEqual(guesses.check("192.0.2.7"), { ok: false, retryAfterSecs: 6 });
 * assert.equal(guesses.check("192.0.2.8").ok, true);
 * clock.advance(6_000);
 * assert.equal(guesses.check("192.0.2.7").ok, true);
 * ```
 */
export class AdminTokenGuesses {
  readonly #limiter: TokenBucketLimiter;

  /**
   * Makes an empty count.
   *
   * @param options Clock and rate.
   * @throws {RangeError} When `perMinute` is not above 0.
   */
  constructor(options: AdminTokenGuessesOptions) {
    this.#limiter = new TokenBucketLimiter({
      perMinute: options.perMinute ?? ADMIN_TOKEN_GUESSES_PER_MINUTE,
      clock: options.clock,
    });
  }

  /**
   * Whether an admin token from this address may be compared now.
   *
   * @param remote The client's address (`undefined`: not known, one shared count; an IPv6
   *   address counts for its whole /64).
   * @returns `ok`, or how many whole seconds until it may.
   */
  check(remote: string | undefined): TakeResult {
    return this.#limiter.peek(addressKey(remote) ?? "unknown");
  }

  /**
   * Counts a wrong admin token from this address.
   *
   * @param remote The client's address.
   */
  wrong(remote: string | undefined): void {
    this.#limiter.take(addressKey(remote) ?? "unknown");
  }
}
