/**
 * Lease expiry in production: one timer, armed at the earliest lease end of the whole store and
 * re-armed when a new lease could end earlier or after each expiry run. Never a poll per waiter or
 * per command.
 *
 * @module
 */
import type { Clock, TimerId } from "./clock.ts";

/** Longest delay `setTimeout` accepts, in ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Options of {@link LeaseTimer}. */
export interface LeaseTimerOptions {
  /** The dashboard's clock. */
  clock: Clock;
  /** The earliest lease end in the store, or `null`. */
  nextExpiry(): Promise<number | null>;
  /** Ends every lease that expired by now (and wakes the waiters of requeued commands). */
  expire(): Promise<unknown>;
  /** Called with a failure of the store; the timer is re-armed a second later. */
  onError?(error: unknown): void;
  /**
   * Whether the timer is armed at all; when `false`, only explicit {@link LeaseTimer.run} calls
   * expire leases (tests with an injected clock).
   * @default {true}
   */
  enabled?: boolean;
  /**
   * Look the earliest lease up again at least this often, in ms, even when none is due earlier:
   * with a store shared by several instances, leases taken by another instance (which may die
   * before they end) are only seen that way.
   * @default {undefined} (never: every lease is taken through this timer's dashboard)
   */
  maxIdleMs?: number;
}

/** One timer for every lease of the store. */
export class LeaseTimer {
  readonly #options: LeaseTimerOptions;
  #timer: TimerId | undefined;
  #armedAt: number | null = null;
  #closed = false;
  #chain: Promise<void> = Promise.resolve();

  /**
   * Makes an unarmed timer.
   *
   * @param options Clock, store queries and what to do at expiry.
   */
  constructor(options: LeaseTimerOptions) {
    this.#options = options;
  }

  /** When the timer fires next, in ms since the epoch; `null` when unarmed. */
  get armedAt(): number | null {
    return this.#armedAt;
  }

  /**
   * Makes sure the timer fires no later than `at` (a new lease's end).
   *
   * @param at A lease end in ms since the epoch.
   */
  schedule(at: number): void {
    if (this.#closed || this.#options.enabled === false) return;
    if (this.#armedAt !== null && this.#armedAt <= at) return;
    this.#arm(at);
  }

  /** Arms the timer at the store's earliest lease end (at start-up). */
  start(): Promise<void> {
    return this.#enqueue(() => this.#refresh());
  }

  /** Runs an expiry now and re-arms; serial with other runs. */
  run(): Promise<void> {
    return this.#enqueue(async () => {
      await this.#options.expire();
      await this.#refresh();
    });
  }

  /** Stops the timer for good. */
  close(): void {
    this.#closed = true;
    this.#disarm();
  }

  #enqueue(step: () => Promise<void>): Promise<void> {
    const next = this.#chain.then(async () => {
      if (this.#closed) return;
      try {
        await step();
      } catch (error) {
        this.#options.onError?.(error);
        if (!this.#closed) this.#arm(this.#options.clock.now() + 1000);
      }
    });
    this.#chain = next;
    return next;
  }

  async #refresh(): Promise<void> {
    const next = await this.#options.nextExpiry();
    if (this.#closed) return;
    const idle = this.#options.maxIdleMs;
    const lookup = idle === undefined ? null : this.#options.clock.now() + idle;
    if (next === null && lookup === null) this.#disarm();
    else this.#arm(Math.min(next ?? Infinity, lookup ?? Infinity));
  }

  #arm(at: number): void {
    this.#disarm();
    if (this.#options.enabled === false) return;
    this.#armedAt = at;
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, at - this.#options.clock.now()));
    this.#timer = this.#options.clock.setTimeout(() => {
      this.#timer = undefined;
      this.#armedAt = null;
      void this.run();
    }, delay);
  }

  #disarm(): void {
    this.#options.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedAt = null;
  }
}
