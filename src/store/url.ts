/**
 * Store locations: which `--db` values name a PostgreSQL database, and how to print one without
 * its password. Kept apart from the PostgreSQL store so that a SQLite dashboard never loads the
 * PostgreSQL driver.
 *
 * @module
 */

/**
 * A connection URL without its password, for messages.
 *
 * @param url A `postgres://` URL.
 * @returns The URL with the password replaced by `***`.
 */
export function redactUrl(url: string): string {
  if (!isPostgresUrl(url)) return url;
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@]*@/, "//$1:***@");
  }
}

/** Whether `db` names a PostgreSQL database (`postgres://` or `postgresql://`). */
export function isPostgresUrl(db: string): boolean {
  return /^postgres(ql)?:\/\//i.test(db.trim());
}

/** The `sslmode` values libpq takes. */
export const SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];

/**
 * Why `url` cannot name a PostgreSQL database, in words that never quote it (it may hold a
 * password), or `null` when it can. Hosts are read as the driver reads them: several
 * `host:port` pairs separated by commas are taken.
 *
 * @param url A `postgres://` URL.
 * @returns The problem, or `null`.
 */
export function postgresUrlProblem(url: string): string | null {
  let parsed: URL;
  try {
    parsed = driverUrl(url);
  } catch {
    return "it is not a URL the driver can read (is the port a number from 1 to 65535, and are " +
      "characters such as @ : / # ? % in the user name or password percent-encoded?)";
  }
  try {
    decodeURIComponent(parsed.username);
    decodeURIComponent(parsed.password);
  } catch {
    return "its user name or password has a % that is not followed by two hexadecimal digits " +
      "(write a % itself as %25)";
  }
  const sslmode = lastParam(parsed, "sslmode");
  if (sslmode !== null && !SSL_MODES.includes(sslmode)) {
    return `its sslmode must be one of ${SSL_MODES.join(", ")}, got ` +
      JSON.stringify(sslmode.slice(0, 40));
  }
  return null;
}

/**
 * The `sslmode` of a connection URL as the driver (postgres.js) reads it: percent-decoded, and
 * of a key given more than once the last value.
 *
 * @param url A `postgres://` URL.
 * @returns The value, or `null` when the URL has none or cannot be read.
 *
 * @example Encoded and repeated
 * ```ts
 * import assert from "node:assert/strict";
 * import { sslModeOf } from "./url.ts";
 *
 * assert.equal(sslModeOf("postgres://u@db/s?sslmode=%72equire"), "require");
 * assert.equal(sslModeOf("postgres://u@db/s?sslmode=allow&sslmode=require"), "require");
 * assert.equal(sslModeOf("postgres://u@db/s"), null);
 * ```
 */
export function sslModeOf(url: string): string | null {
  try {
    return lastParam(driverUrl(url), "sslmode");
  } catch {
    return null;
  }
}

/** `url` parsed as the driver parses it: of several comma-separated hosts, the first is kept. */
function driverUrl(url: string): URL {
  let hosts = url.slice(url.indexOf("://") + 3).split(/[?/]/)[0];
  hosts = decodeURIComponent(hosts.slice(hosts.indexOf("@") + 1));
  return new URL(url.replace(hosts, hosts.split(",")[0]));
}

/** The last value of query parameter `name`, as the driver keeps it, or `null`. */
function lastParam(url: URL, name: string): string | null {
  return url.searchParams.getAll(name).at(-1) ?? null;
}

/**
 * `text` with every occurrence of the password of `url` (as written and percent-decoded)
 * replaced by `***`, for messages built from a driver's errors.
 *
 * @param text The message.
 * @param url The URL that was used.
 * @returns The message without the password.
 */
export function withoutPassword(text: string, url: string): string {
  const match = /^postgres(?:ql)?:\/\/[^/?#]*?:([^/?#]*)@/i.exec(url.trim());
  if (!match || match[1] === "") return text;
  const secrets = new Set([match[1]]);
  try {
    secrets.add(decodeURIComponent(match[1]));
  } catch {
    // not percent-encoded as it should be; the raw form is replaced
  }
  let out = text;
  for (const secret of secrets) out = out.split(secret).join("***");
  return out;
}
