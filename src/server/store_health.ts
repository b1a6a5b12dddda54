/**
 * Whether the store works: `full` when a write fails because its disk is full, `failing` when the
 * store fails in another way (a disk I/O error, a damaged or read-only file); cleared by the next
 * write that committed a change, or, when only a read failed, by the next read that succeeds.
 * `/health` reports it (`503`) without flapping: the health probe itself, a wait, a request that
 * changed nothing, and a read while writes fail leave it as it is. A full store's failures are
 * answered `507 Insufficient Storage` with `Retry-After`, a failing store's `503` with
 * `Retry-After`, so that agents wait instead of hammering.
 *
 * @module
 */
import { logger } from "../log/mod.ts";
import { StoreError, StoreFullError, StoreUnavailableError } from "../store/mod.ts";
import type { Clock } from "./clock.ts";
import { HttpError } from "./http_error.ts";

/** Seconds a client is asked to wait after a `507`. */
export const STORE_FULL_RETRY_AFTER_SECS = 30;
/** Seconds a client is asked to wait after a `503` of a store that failed. */
export const STORE_FAILED_RETRY_AFTER_SECS = 30;

const log = logger("server");

/** The store's state as `/health` shows it. */
export interface StoreState {
  /**
   * `ok`; `full` since a write failed for lack of space; `failing` since a call failed in the
   * store itself (a disk I/O error, a damaged database, a file that can no longer be written).
   */
  status: "ok" | "full" | "failing";
  /** When the store became full or failing (ISO 8601). */
  since?: string;
  /** The store's message. */
  error?: string;
}

/** Tracks whether the store is full, or failing. */
export class StoreHealth {
  readonly #clock: Clock;
  #trouble: { status: "full" | "failing"; since: number; message: string; read: boolean } | null =
    null;
  /** Failures of calls that only read, and of the others, as the store's wrapper saw them. */
  readonly #readFailures = new WeakSet<object>();
  readonly #otherFailures = new WeakSet<object>();

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
    return this.#trouble?.status === "full";
  }

  /** The state for `/health`. */
  state(): StoreState {
    const trouble = this.#trouble;
    if (trouble === null) return { status: "ok" };
    return {
      status: trouble.status,
      since: new Date(trouble.since).toISOString(),
      error: trouble.message,
    };
  }

  /**
   * Turns a store-full error into the `507` to answer, and another failure of the store (a
   * {@link StoreError} other than {@link StoreUnavailableError}, which `StoreAvailability` tracks)
   * into a `503`, and records it; other errors are returned unchanged.
   *
   * @param error What a route or the store threw.
   * @returns The `HttpError` to answer, or `error` itself.
   */
  map(error: unknown): unknown {
    if (error instanceof StoreFullError) {
      this.#enter("full", error);
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
    if (!(error instanceof StoreError) || error instanceof StoreUnavailableError) return error;
    this.#enter("failing", error);
    return new HttpError(
      503,
      "the dashboard's store failed (its log, and GET /health with the admin token, say why); " +
        `retry in ${STORE_FAILED_RETRY_AFTER_SECS} s`,
      {
        headers: { "Retry-After": String(STORE_FAILED_RETRY_AFTER_SECS) },
        details: { retry_after_secs: STORE_FAILED_RETRY_AFTER_SECS },
        cause: error,
      },
    );
  }

  /** A write committed a change: the store has room, and works, again. */
  wrote(): void {
    const trouble = this.#trouble;
    if (trouble === null) return;
    const secs = Math.round((this.#clock.now() - trouble.since) / 1000);
    if (trouble.status === "full") {
      log.info("the store has room again; writes are accepted", { fullSecs: secs });
    } else log.info("the store works again: a write succeeded", { failingSecs: secs });
    this.#trouble = null;
  }

  /** A call that only reads succeeded: a store that only a read found failing works again. */
  read(): void {
    const trouble = this.#trouble;
    if (trouble === null || !trouble.read) return;
    log.info("the store works again: a read succeeded", {
      failingSecs: Math.round((this.#clock.now() - trouble.since) / 1000),
    });
    this.#trouble = null;
  }

  /**
   * A store call failed with `error` (told by the store's wrapper before the error is mapped): a
   * failing store that only reads found (no write failed with that error too: a failed commit
   * fails the reads that waited for it) ends at a read that succeeds.
   *
   * @param error The call's failure.
   * @param read Whether the call only reads.
   */
  failed(error: unknown, read: boolean): void {
    if (typeof error !== "object" || error === null) return;
    (read ? this.#readFailures : this.#otherFailures).add(error);
  }

  #enter(status: "full" | "failing", error: Error): void {
    const trouble = this.#trouble;
    const read = status === "failing" && this.#readFailures.has(error) &&
      !this.#otherFailures.has(error);
    if (trouble !== null && trouble.status === status && !read) trouble.read = false;
    if (trouble?.status !== status) {
      this.#trouble = { status, since: this.#clock.now(), message: error.message, read };
      if (status === "full") {
        log.error("the store is full; writes are refused with 507 until space is freed: {error}", {
          error: error.message,
        });
      } else {
        log.error(
          "the store failed: {error}; /health answers 503 until it works again",
          { error: error.message },
        );
      }
    } else if (trouble.message !== error.message) {
      trouble.message = error.message;
      if (status === "failing") log.error("the store failed: {error}", { error: error.message });
    }
  }
}
