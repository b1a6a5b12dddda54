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
