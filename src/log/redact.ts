/**
 * Redaction of secrets in log records: properties named like a secret, and registered secret
 * values wherever they appear.
 *
 * @module
 */

const SECRET_KEY = /token|signature|authorization|secret|password/i;
const REDACTED = "[redacted]";

const secretValues = new Set<string>();

/**
 * Registers a secret value so that it is replaced in every later log line.
 *
 * @param value The secret; values shorter than 8 characters are ignored.
 */
export function registerSecret(value: string | undefined): void {
  if (value && value.length >= 8) secretValues.add(value);
}

/** How far a password is looked for after `scheme://user:`, in characters. */
const MAX_PASSWORD_CHARS = 1024;

/**
 * The password of a URL's user information (`scheme://user:password@host`), up to the last `@`
 * before white space (see {@link rawUserInfo}) within {@link MAX_PASSWORD_CHARS}: bounded, so that
 * a line of many `x://y:` is not scanned to its end from each of them.
 */
const URL_PASSWORD = new RegExp(
  `(\\b[a-z][a-z0-9+.-]*:\\/\\/[^\\s/?#@:]*:)\\S{0,${MAX_PASSWORD_CHARS}}@`,
  "gi",
);

/** The password of a URL the parser does not take, up to its first `@` (bounded). */
const UNPARSED_PASSWORD = new RegExp(`\\/\\/([^:/@]*):[^@]{0,${MAX_PASSWORD_CHARS}}@`);

/** `scheme://user:` and what follows it up to the last `@` before white space, bounded. */
const RAW_USERINFO = new RegExp(
  `^([a-z][a-z0-9+.-]*:\\/\\/([^\\s:/?#@]*):)(\\S{0,${MAX_PASSWORD_CHARS}})@`,
  "i",
);

/**
 * A URL's user information as written, when its password holds a character it should have
 * percent-encoded (`@ / ? #`): the URL parser ends the user information at the first of them and
 * reads the rest as a host, port, path, query or fragment (`postgres://u:123/x@db` is host `u`,
 * port 123, no password), but the password meant runs on to the URL's last `@`. An `@` in the
 * path or query after a password makes it hide too much, never too little. A port, a path and a
 * query or fragment that holds the `@` (`http://h:8080/p?u=a@b`) are not a password.
 *
 * @param url A URL, or any other text.
 * @returns `scheme://user:`, the user, the password as written and where the user information
 *   ends (after its `@`); `null` when the URL has no such password.
 */
export function rawUserInfo(
  url: string,
): { prefix: string; user: string; password: string; end: number } | null {
  const match = RAW_USERINFO.exec(url);
  if (match === null || !/[/?#@]/.test(match[3]) || isPortPathQuery(match[3])) return null;
  return { prefix: match[1], user: match[2], password: match[3], end: match[0].length };
}

/**
 * Whether what follows `scheme://name:` up to an `@` reads as a port, a path and a query or
 * fragment that holds the `@` (`http://h:8080/p?u=a@b`: host `h`, port 8080, `@b` in the query),
 * not as a password: a port, then `/`, then a `?` or `#` before any `@`. A password written
 * unencoded with `/` and `?` after leading digits (`12/x?y`) is the price, and is shown.
 */
function isPortPathQuery(text: string): boolean {
  const match = /^(\d{1,5})\/[^?#@]*[?#]/.exec(text);
  return match !== null && Number(match[1]) <= 65535;
}

/**
 * One URL without the password of its user information, for messages: `scheme://user:***@host`.
 * A URL that cannot be parsed has the password part cut out as text.
 *
 * @param url A URL (`https://…`, `postgres://…`), or any other text, returned as given.
 * @returns The URL with its password replaced by `***`, otherwise as given (a trailing `/` is not
 *   added).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { redactUrl } from "./redact.ts";
 *
 * assert.equal(redactUrl("https://ops:hunter2@dash:5000"), "https://ops:***@dash:5000");
 * assert.equal(redactUrl("postgres://status:pw@db:5432/status"), "postgres://status:***@db:5432/status");
 * assert.equal(redactUrl("./status.db"), "./status.db");
 * assert.equal(redactUrl("postgres://status@db/status?password=pw"), "postgres://status@db/status?password=***");
 * // Not a URL the parser takes (the port): the password is still hidden.
 * assert.equal(redactUrl("https://ops:hunter2@dash:99999"), "https://ops:***@dash:99999");
 * // A password with / ? # @ not percent-encoded: hidden whole.
 * assert.equal(redactUrl("postgres://status:12/x@db/status"), "postgres://status:***@db/status");
 * ```
 */
export function redactUrl(url: string): string {
  const shown = url.replace(QUERY_PASSWORD, "$1***");
  const raw = rawUserInfo(shown);
  if (raw !== null) return `${raw.prefix}***@${shown.slice(raw.end)}`;
  let parsed: URL;
  try {
    parsed = new URL(shown);
  } catch {
    return shown.replace(UNPARSED_PASSWORD, "//$1:***@");
  }
  // One whose port, path and query hold an @ may hold another URL's password there.
  if (parsed.password === "") return withoutUrlPasswords(shown);
  parsed.password = "***";
  return shown.endsWith("/") ? parsed.href : parsed.href.replace(/\/+$/, "");
}

/** A password given in a URL's query, as libpq takes it (`?password=...`, `&sslpassword=...`). */
const QUERY_PASSWORD = /([?&](?:ssl)?password=)[^&#]*/gi;

/**
 * A string with every registered secret replaced, and the password of any URL in it
 * (`https://user:***@host`).
 *
 * @param text The text.
 * @returns The text, safe to log.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { redactString } from "./redact.ts";
 *
 * assert.equal(redactString("https://ops:hunter2@dash:5000/"), "https://ops:***@dash:5000/");
 * ```
 */
export function redactString(text: string): string {
  let out = text.includes("://") && text.includes("@") ? withoutUrlPasswords(text) : text;
  for (const secret of secretValues) {
    if (out.includes(secret)) out = out.replaceAll(secret, REDACTED);
  }
  return out;
}

/**
 * `text` with the password of every URL in it replaced (`scheme://user:***@host`); a URL whose
 * port, path and query hold an `@` ({@link isPortPathQuery}) is kept, but a URL within it is not.
 */
function withoutUrlPasswords(text: string): string {
  return text.replace(
    URL_PASSWORD,
    (whole, prefix: string) =>
      isPortPathQuery(whole.slice(prefix.length, -1))
        ? prefix + withoutUrlPasswords(whole.slice(prefix.length))
        : `${prefix}***@`,
  );
}

/** Levels of objects in a logged value that are written; deeper ones are {@link TOO_DEEP}. */
const MAX_DEPTH = 4;
/** What stands for an object deeper than {@link MAX_DEPTH}. */
const TOO_DEEP = "[too deep]";

/**
 * A value safe to log: properties named like a secret redacted, strings as {@link redactString}
 * leaves them, errors as their name and message, values with a `toJSON` (dates, URLs) as what it
 * gives, big integers as their digits. Objects deeper than {@link MAX_DEPTH} levels are replaced,
 * not written as they are (unredacted, perhaps circular: that record would be lost).
 *
 * @param key The property name the value is logged under (`""`: none).
 * @param value The value.
 * @param depth How deep it is in the logged value.
 * @returns A copy that `JSON.stringify` writes, with nothing secret in it.
 */
export function redactValue(key: string, value: unknown, depth = 0): unknown {
  if (SECRET_KEY.test(key) && value !== null && value !== undefined && value !== "") {
    return REDACTED;
  }
  if (typeof value === "string") return redactString(value);
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Error) {
    return { name: value.name, message: redactString(value.message) };
  }
  if (value && typeof value === "object") {
    if (depth >= MAX_DEPTH) return TOO_DEEP;
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === "function") {
      let json: unknown;
      try {
        json = toJSON.call(value, key);
      } catch {
        return Object.prototype.toString.call(value);
      }
      return redactValue(key, json, depth + 1);
    }
    if (Array.isArray(value)) return value.map((v) => redactValue("", v, depth + 1));
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = redactValue(k, v, depth + 1);
    return out;
  }
  return value;
}
