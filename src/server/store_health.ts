/**
 * Whether the store can write: set when a write fails because its disk is full, cleared by the next
 * write that succeeds. `/health` reports it, and such a failure is answered `507 Insufficient
 * Storage` with `Retry-After`, so that agents wait instead of hammering.
 *
 * @module
 */
import { logger } from "../log/mod.ts";
import { StoreFullError } from "../store/mod.ts";
import type { Clock } from "./clock.ts";
import { HttpError } from "./http_error.ts";

/** Seconds a client is asked to wait after a `507`. */
export const STORE_FULL_RETRY_AFTER_SECS = 30;

const log = logger("server");

/** The store's state as `/health` shows it. */
export interface StoreState {
  /** `ok`, or `full` since a write failed for lack of space. */
  status: "ok" | "full";
  /** When the store became full (ISO 8601). */
  since?: string;
  /** The store's message. */
  error?: string;
}

/** Tracks whether the store is full. */
export class StoreHealth {
  readonly #clock: Clock;
  #fullSince: number | null = null;
  #message = "";

  /**
   * Makes a tracker (the store is assumed able to write).
   *
   * @param clock The dashboard's clock.
   */
  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Whether the last write failed for lack of space. */
  get full(): boolean {
    return this.#fullSince !== null;
  }

  /** The state for `/health`. */
  state(): StoreState {
    if (this.#fullSince === null) return { status: "ok" };
    return {
      status: "full",
      since: new Date(this.#fullSince).toISOString(),
      error: this.#message,
    };
  }

  /**
   * Turns a store-full error into the `507` to answer (and records it); other errors are returned
   * unchanged.
   *
   * @param error What a route or the store threw.
   * @returns The `HttpError` to answer, or `error` itself.
   */
  map(error: unknown): unknown {
    if (!(error instanceof StoreFullError)) return error;
    if (this.#fullSince === null) {
      this.#fullSince = this.#clock.now();
      log.error("the store is full; writes are refused with 507 until space is freed: {error}", {
        error: error.message,
      });
    }
    this.#message = error.message;
    return new HttpError(
      507,
      `the dashboard's store is full (no space left on its disk); retry in ` +
        `${STORE_FULL_RETRY_AFTER_SECS} s`,
      {
        headers: { "Retry-After": String(STORE_FULL_RETRY_AFTER_SECS) },
        details: { retry_after_secs: STORE_FULL_RETRY_AFTER_SECS },
        cause: error,
      },
    );
  }

  /** A write succeeded: the store has room again. */
  wrote(): void {
    if (this.#fullSince === null) return;
    log.info("the store has room again; writes are accepted", {
      fullSecs: Math.round((this.#clock.now() - this.#fullSince) / 1000),
    });
    this.#fullSince = null;
    this.#message = "";
  }
}
