/**
 * Errors of the store.
 *
 * @module
 */

/**
 * The store cannot be opened or used: a bad path, a foreign or newer database, a closed store, or
 * one that fails while it runs (a disk I/O error, a damaged file; the dashboard answers `503` and
 * says so in `/health`). `startServer` throws a `ConfigError` whose `cause` is one when it cannot
 * open its store.
 *
 * @example Tell a store that cannot be opened from other start failures
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConfigError, startServer, StoreError } from "../../mod.ts";
 *
 * const error = await startServer({ db: "/no/such/directory/status.db", port: 0 })
 *   .catch((e) => e);
 * assert.ok(error instanceof ConfigError);
 * assert.ok(error.cause instanceof StoreError);
 * assert.match(error.message, /the directory \/no\/such\/directory does not exist/);
 * ```
 */
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
 * The store's server cannot be reached now (connection refused or dropped, server restarting), or
 * could not finish the call now (a PostgreSQL statement timeout, a deadlock or serialization failure
 * the store's own retries did not get past, resources of the moment), or another process holds a
 * SQLite file's lock: the operation did not happen, or its outcome is unknown, and may be retried
 * later. The dashboard answers `503` with `Retry-After` and says so in
 * `/health`; `startServer` throws a `ConfigError` whose `cause` is one when its store's migration
 * waited for another process's lock in vain.
 *
 * @example Start a dashboard, trying again while its store is unavailable
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConfigError, type RunningServer, startServer, StoreUnavailableError } from "../../mod.ts";
 *
 * async function startPatiently(db: string, attempts = 5): Promise<RunningServer> {
 *   for (let attempt = 1;; attempt++) {
 *     try {
 *       return await startServer({ db, port: 0 });
 *     } catch (error) {
 *       const later = error instanceof ConfigError && error.cause instanceof StoreUnavailableError;
 *       if (!later || attempt === attempts) throw error;
 *       await new Promise((resolve) => setTimeout(resolve, 1000));
 *     }
 *   }
 * }
 *
 * await using server = await startPatiently(":memory:");
 * assert.equal(server.devMode, true);
 * ```
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
 * the same write succeeds once space is freed, without a restart. The dashboard answers `507` and
 * says so in `/health`; `startServer` throws a `ConfigError` whose `cause` is one when a SQLite
 * file's disk has no room even to read it.
 *
 * @example Advice for a dashboard that did not start
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConfigError, StoreFullError } from "../../mod.ts";
 *
 * function advice(error: unknown): string {
 *   if (error instanceof ConfigError && error.cause instanceof StoreFullError) {
 *     return "free some space on the database's disk, then start it again";
 *   }
 *   return error instanceof Error ? error.message : String(error);
 * }
 *
 * const full = new ConfigError("cannot open database status.db: no space is left on its disk", {
 *   cause: new StoreFullError("cannot open database status.db: no space is left on its disk"),
 * });
 * assert.equal(advice(full), "free some space on the database's disk, then start it again");
 * ```
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
 * Covers {@link StoreUnavailableError}, Node's and the PostgreSQL driver's error codes (a connect
 * to a Unix socket that is not there, `ENOENT`, too), SQLSTATE class 08 and the server-shutdown
 * codes, and Deno's connection errors.
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
  // A Unix socket's file is missing while its server is down (or before it starts).
  if (code === "ENOENT") return (error as { syscall?: unknown }).syscall === "connect";
  return CONNECTION_CODES.has(code) || UNAVAILABLE_SQLSTATES.has(code) || code.startsWith("08");
}
