/**
 * Opening the store a `--db` value names: a `postgres://` (or `postgresql://`) URL opens the
 * PostgreSQL store, anything else is a SQLite file path (or `:memory:`).
 *
 * @module
 */
import type { PostgresStoreOptions } from "./postgres.ts";
import { isPostgresUrl } from "./url.ts";
import { openSqliteStore, type SqliteStoreOptions } from "./sqlite.ts";
import type { CommandStore } from "./types.ts";
import { StoreError } from "./errors.ts";

/** Options of {@link openStore}, per kind of store. */
export interface OpenStoreOptions {
  /** Options of a SQLite store. */
  sqlite?: SqliteStoreOptions;
  /** Options of a PostgreSQL store. */
  postgres?: PostgresStoreOptions;
}

/**
 * Opens (creating or migrating) the store that `db` names.
 *
 * @param db A SQLite file path, `":memory:"`, or a `postgres://user:password@host:port/db` URL.
 * @param options Options of each kind of store.
 * @returns The open store.
 * @throws {TypeError} When `db` is not a string.
 * @throws {StoreError} When it cannot be opened (see {@link openSqliteStore} and
 *   {@link openPostgresStore}).
 *
 * @example A SQLite store in memory
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "./open.ts";
 *
 * await using store = await openStore(":memory:");
 * assert.equal(await store.hasAgentWithToken(), false);
 * ```
 */
export async function openStore(
  db: string,
  options: OpenStoreOptions = {},
): Promise<CommandStore> {
  if (typeof db !== "string") {
    throw new TypeError(
      `db must be a SQLite file path or a postgres:// URL, got ${
        typeof db === "object" ? JSON.stringify(db) : String(db)
      }`,
    );
  }
  if (isPostgresUrl(db)) {
    // Loaded only here: a SQLite dashboard never loads the PostgreSQL driver.
    const { openPostgresStore } = await import("./postgres.ts");
    return await openPostgresStore(db.trim(), options.postgres);
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(db.trim());
  if (scheme) {
    // mysql://, sqlite://, a postgres:// mistyped: not a file name (nor to be quoted: a password).
    throw new StoreError(
      `cannot open a database at a ${scheme[1]}:// URL: --db takes a SQLite file path or a ` +
        "postgres:// (postgresql://) URL",
    );
  }
  return openSqliteStore(db, options.sqlite);
}
