/**
 * Errors of the store.
 *
 * @module
 */

/** The store cannot be opened or used: a bad path, a foreign or newer database, a closed store. */
export class StoreError extends Error {
  /**
   * Makes a store error.
   *
   * @param message What failed, naming the database path.
   * @param options The cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StoreError";
  }
}

/**
 * The store's server cannot be reached now (connection refused or dropped, server restarting):
 * the operation did not happen, or its outcome is unknown, and may be retried later. The dashboard
 * answers `503` with `Retry-After` and says so in `/health`.
 */
export class StoreUnavailableError extends StoreError {
  /**
   * Makes the error.
   *
   * @param message What could not be reached, without credentials.
   * @param options The cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StoreUnavailableError";
  }
}

/**
 * The store cannot write because its disk (or quota) is full. Nothing of the failed write was kept;
 * the same write succeeds once space is freed, without a restart.
 */
export class StoreFullError extends StoreError {
  /**
   * Makes a store-full error.
   *
   * @param message What failed, naming the database path.
   * @param options The cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StoreFullError";
  }
}

/** SQLSTATE codes that mean the database server is not there (now): shutting down, starting, too
 * many connections, a file it needs gone. */
const UNAVAILABLE_SQLSTATES = new Set(["57P01", "57P02", "57P03", "53300", "58P01"]);
/** Error codes (Node's and the PostgreSQL driver's) of a connection that failed or dropped. */
const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
]);

/**
 * Whether an error means that a connection to a server (the database, or a client's socket) could
 * not be made or was lost: nothing is wrong with the program, and the same work may succeed later.
 * Covers {@link StoreUnavailableError}, Node's and the PostgreSQL driver's error codes, SQLSTATE
 * class 08 and the server-shutdown codes, and Deno's connection errors.
 *
 * @example A dropped connection, and an ordinary bug
 * ```ts
 * import assert from "node:assert/strict";
 * import { isConnectionFailure } from "./errors.ts";
 *
 * assert.ok(isConnectionFailure(Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" })));
 * assert.ok(isConnectionFailure(new Deno.errors.BrokenPipe("broken pipe")));
 * assert.ok(!isConnectionFailure(new TypeError("x is undefined")));
 * ```
 *
 * @param error Any thrown value.
 * @returns Whether it is a connection failure.
 */
export function isConnectionFailure(error: unknown): boolean {
  if (error instanceof StoreUnavailableError) return true;
  if (
    error instanceof Deno.errors.ConnectionRefused ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.NotConnected
  ) {
    return true;
  }
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== "string") {
    // Deno's node:net reports a refused connection with the message only on some paths.
    return error instanceof Error &&
      /ECONNREFUSED|ECONNRESET|connection refused/i.test(error.message);
  }
  return CONNECTION_CODES.has(code) || UNAVAILABLE_SQLSTATES.has(code) || code.startsWith("08");
}
