/**
 * Store locations: which `--db` values name a PostgreSQL database, and how to print one without
 * its password. Kept apart from the PostgreSQL store so that a SQLite dashboard never loads the
 * PostgreSQL driver.
 *
 * @module
 */

import { rawUserInfo } from "../log/redact.ts";

export { redactUrl } from "../log/redact.ts";

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
  const socket = readSocket(url);
  if (typeof socket === "string") return socket;
  if (socket !== null) url = socket.url;
  const [stray] = ["host", "port"].filter((key) => queryKeys(url).includes(key));
  if (stray !== undefined) {
    return `its ?${stray}= is read only with a Unix socket's directory (?host=/var/run/postgresql); ` +
      "give a server's host and port in the URL itself (postgres://user@host:5432/database)";
  }
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
  const inQuery = [...parsed.searchParams.keys()].find((key) => /^(ssl)?password$/i.test(key));
  if (inQuery !== undefined) {
    return `its password is given as ?${inQuery}=, which the driver would send to the server as a ` +
      "setting of that name; give it in the user information instead " +
      "(postgres://user:password@host/database, percent-encoded)";
  }
  const own = [...parsed.searchParams.keys()].find((key) =>
    Object.hasOwn(CONNECTION_SETTINGS, key.toLowerCase())
  );
  if (own !== undefined) {
    return `its ?${own}= would change a setting status gives each connection itself ` +
      `(${CONNECTION_SETTINGS[own.toLowerCase()]}); remove it from the URL`;
  }
  for (const [key, value] of parsed.searchParams) {
    const ended = TIMEOUT_SETTINGS[key.toLowerCase()];
    const ms = ended === undefined ? null : durationMs(value);
    if (ms !== null && ms > 0 && ms < TIMEOUT_FLOOR_MS) {
      return `its ?${key}=${value.trim()} would make the server end status's ${ended} after ${ms} ms, ` +
        "failing most calls (answered 503 as if the database were away); give at least 1s, or 0 " +
        "for none, or remove it from the URL";
    }
  }
  const sslmode = lastParam(parsed, "sslmode");
  if (sslmode !== null && !SSL_MODES.includes(sslmode)) {
    return `its sslmode must be one of ${SSL_MODES.join(", ")}, got ` +
      JSON.stringify(sslmode.slice(0, 40));
  }
  return null;
}

/**
 * The settings the PostgreSQL store gives each connection itself, which a URL's query parameter of
 * the same name (in any case; the driver sends it to the server after the store's, and an empty one
 * in its place) would change, with why the store needs its own value.
 */
export const CONNECTION_SETTINGS: Readonly<Record<string, string>> = {
  bytea_output: "hex, the format the driver reads commands' output in",
  client_encoding: "UTF8, the encoding the driver reads and writes",
  default_transaction_isolation: "read committed, which its transactions are written for",
  idle_in_transaction_session_timeout:
    "the operation timeout, so that a frozen instance's transaction does not hold its locks",
};

/**
 * The server's timeouts a URL's query parameter sets for each connection (the driver sends them
 * as settings), which below {@link TIMEOUT_FLOOR_MS} fail most of the store's calls, with what
 * each ends.
 */
const TIMEOUT_SETTINGS: Readonly<Record<string, string>> = {
  statement_timeout: "statements",
  lock_timeout: "waits for a lock",
  transaction_timeout: "transactions",
};

/** The least timeout of {@link TIMEOUT_SETTINGS} a URL may give (other than 0, none), in ms. */
export const TIMEOUT_FLOOR_MS = 1000;

/** PostgreSQL's time units, in ms. */
const TIME_UNITS: Readonly<Record<string, number>> = {
  us: 0.001,
  ms: 1,
  s: 1000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/**
 * A time setting's value as PostgreSQL reads the plain forms (`200`, `200ms`, `1.5 s`, `2min`;
 * milliseconds without a unit), in whole ms as the server rounds it (`300us` is 0, none); `null`
 * for any other form (the server judges it).
 */
function durationMs(value: string): number | null {
  const match = /^\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|ms|s|min|h|d)?\s*$/.exec(value);
  if (match === null) return null;
  return Math.round(Number(match[1]) * TIME_UNITS[match[2] ?? "ms"]);
}

/** The driver's options the PostgreSQL store sets itself: the URL's own are not read. */
const STORE_OPTIONS = ["max", "connect_timeout", "idle_timeout", "fetch_types", "debug", "backoff"];

/**
 * The query parameters of a `postgres://` URL that the driver would read as its own options, but
 * that the store sets itself (its pool's size, its timeouts, the array types it needs), so that
 * they are not read; in the order written.
 *
 * @param url A `postgres://` URL.
 * @returns Their names, or an empty list (also when the URL cannot be read).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { unreadParams } from "./url.ts";
 *
 * assert.deepEqual(unreadParams("postgres://u@db/s?max=50&sslmode=require"), ["max"]);
 * ```
 */
export function unreadParams(url: string): string[] {
  try {
    return [...new Set(driverUrl(url).searchParams.keys())]
      .filter((key) => STORE_OPTIONS.includes(key));
  } catch {
    return [];
  }
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

/** The port of a host given without one. */
const DEFAULT_PORT = 5432;

/**
 * The hosts and ports of a URL that names a host by its IPv6 address
 * (`postgres://u@[fd00::5]:5432/db`), for the driver given apart: it splits each `host:port` of a
 * URL at its first colon, and would look up the host name `[`. `null` when no host is an IPv6
 * address (the driver reads the URL itself), or when the hosts cannot be read (see
 * {@link postgresUrlProblem}).
 *
 * @param url A `postgres://` URL.
 * @returns The hosts (without brackets) and their ports (5432 when not given), or `null`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { driverHosts } from "./url.ts";
 *
 * assert.deepEqual(driverHosts("postgres://u@[::1]:5433/s"), { host: ["::1"], port: [5433] });
 * assert.equal(driverHosts("postgres://u@db:5433/s"), null);
 * ```
 */
export function driverHosts(url: string): { host: string[]; port: number[] } | null {
  let authority = url.slice(url.indexOf("://") + 3).split(/[/?#]/)[0];
  authority = authority.slice(authority.lastIndexOf("@") + 1);
  if (!authority.includes("[")) return null;
  const host: string[] = [];
  const port: number[] = [];
  for (const entry of authority.split(",")) {
    const match = /^(?:\[([0-9A-Fa-f:.]+(?:%25[^\]]+)?)\]|([^:[\]]*))(?::(\d{1,5}))?$/.exec(entry);
    if (match === null) return null;
    const number = match[3] === undefined ? DEFAULT_PORT : Number(match[3]);
    if (number < 1 || number > 65535) return null;
    try {
      host.push(decodeURIComponent(match[1] ?? match[2]) || "localhost");
    } catch {
      return null;
    }
    port.push(number);
  }
  return { host, port };
}

/**
 * The Unix-domain socket a URL names, as libpq reads it: a `?host=` that is a directory
 * (`postgres:///status?host=/var/run/postgresql`), or a host that is one, percent-encoded
 * (`postgres://%2Fvar%2Frun%2Fpostgresql/status`); the socket is the file `.s.PGSQL.<port>` in
 * it, of the URL's port (or `?port=`; default 5432). The driver reads neither form (it would send
 * `?host=` to the server as a setting, and look the encoded host up as a name): it is given the
 * socket's path apart, and the URL without the host, `?host=` and `?port=`.
 *
 * @param url A `postgres://` URL.
 * @returns The socket's path and the URL for the driver, or `null` when the URL names no socket
 *   (or names one badly: see {@link postgresUrlProblem}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { driverSocket } from "./url.ts";
 *
 * assert.deepEqual(driverSocket("postgres:///status?host=/var/run/postgresql"), {
 *   path: "/var/run/postgresql/.s.PGSQL.5432",
 *   url: "postgres://localhost/status",
 * });
 * assert.deepEqual(driverSocket("postgres://u@%2Ftmp:5433/status?sslmode=disable"), {
 *   path: "/tmp/.s.PGSQL.5433",
 *   url: "postgres://u@localhost/status?sslmode=disable",
 * });
 * assert.equal(driverSocket("postgres://u@db/status"), null);
 * ```
 */
export function driverSocket(url: string): { path: string; url: string } | null {
  const socket = readSocket(url);
  return typeof socket === "string" ? null : socket;
}

/** {@link driverSocket}, or why the socket it names cannot be used. */
function readSocket(url: string): { path: string; url: string } | string | null {
  const scheme = url.indexOf("://") + 3;
  const end = url.slice(scheme).search(/[/?#]/);
  const authority = end === -1 ? url.slice(scheme) : url.slice(scheme, scheme + end);
  const rest = end === -1 ? "" : url.slice(scheme + end);
  const at = authority.lastIndexOf("@");
  const hostPort = /^(.*?)(?::(\d*))?$/.exec(authority.slice(at + 1))!;
  const [pathAndQuery, fragment] = splitOnce(rest, "#");
  const [path, query] = splitOnce(pathAndQuery, "?");
  let params: URLSearchParams;
  let host: string;
  try {
    params = new URLSearchParams(query ?? "");
    host = decodeURIComponent(hostPort[1]);
  } catch {
    return null;
  }
  const directory = params.getAll("host").at(-1) ?? host;
  if (!directory.startsWith("/")) return null;
  if (directory.includes(",")) {
    return "it names several Unix socket directories; status connects through one";
  }
  const port = params.getAll("port").at(-1) || hostPort[2] || String(DEFAULT_PORT);
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    return `its port must be a number from 1 to 65535, got ${JSON.stringify(port.slice(0, 40))}`;
  }
  const driverUrl = withoutParams(
    `${url.slice(0, scheme)}${authority.slice(0, at + 1)}localhost${path}` +
      `${query === undefined ? "" : `?${query}`}${fragment === undefined ? "" : `#${fragment}`}`,
    ["host", "port"],
  );
  return { path: `${directory.replace(/\/+$/, "")}/.s.PGSQL.${Number(port)}`, url: driverUrl };
}

/**
 * `url` without the query parameters `names` (in any case), the others as written.
 *
 * @param url A URL.
 * @param names The parameters' names, in lower case.
 * @returns The URL without them (without its `?` when none is left).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { withoutParams } from "./url.ts";
 *
 * assert.equal(
 *   withoutParams("postgres://u@db/s?Application_Name=x&sslmode=require", ["application_name"]),
 *   "postgres://u@db/s?sslmode=require",
 * );
 * ```
 */
export function withoutParams(url: string, names: readonly string[]): string {
  const [beforeFragment, fragment] = splitOnce(url, "#");
  const [base, query] = splitOnce(beforeFragment, "?");
  if (query === undefined) return url;
  const kept = query.split("&").filter((pair) => {
    if (pair === "") return false;
    const key = pair.split("=")[0].replaceAll("+", " ");
    try {
      return !names.includes(decodeURIComponent(key).toLowerCase());
    } catch {
      return true;
    }
  });
  return `${base}${kept.length > 0 ? `?${kept.join("&")}` : ""}` +
    `${fragment === undefined ? "" : `#${fragment}`}`;
}

/** `text` split at the first `separator`: what comes before, and after (`undefined`: none). */
function splitOnce(text: string, separator: string): [string, string | undefined] {
  const at = text.indexOf(separator);
  return at === -1 ? [text, undefined] : [text.slice(0, at), text.slice(at + 1)];
}

/** The decoded keys of a URL's query, `[]` when it has none or it cannot be read. */
function queryKeys(url: string): string[] {
  const query = splitOnce(splitOnce(url, "#")[0], "?")[1];
  try {
    return [...new URLSearchParams(query ?? "").keys()];
  } catch {
    return [];
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
 * `text` without the password of `url` (as written and percent-decoded), for messages built from
 * a driver's errors: the password part of a URL (`:password@`) becomes `:***@`, and every other
 * occurrence of the password becomes `***` unless it lies within the user name, which the
 * message shows anyway (`postgres:postgres@` keeps `user "postgres"` readable; blanking it would
 * tell the reader of `postgres://postgres:***@db` the password).
 *
 * @param text The message.
 * @param url The URL that was used.
 * @returns The message without the password.
 *
 * @example A password equal to the user name
 * ```ts
 * import assert from "node:assert/strict";
 * import { withoutPassword } from "./url.ts";
 *
 * const url = "postgres://postgres:postgres@db/status";
 * assert.equal(
 *   withoutPassword(`${url}: password authentication failed for user "postgres"`, url),
 *   'postgres://postgres:***@db/status: password authentication failed for user "postgres"',
 * );
 * ```
 */
export function withoutPassword(text: string, url: string): string {
  const match = /^postgres(?:ql)?:\/\/([^/?#]*?):([^/?#]*)@/i.exec(url.trim());
  // Written with @ / ? # unencoded, the password meant runs on to the URL's last @.
  const raw = rawUserInfo(url.trim());
  const secrets = new Set([...withDecoded(match?.[2] ?? ""), ...withDecoded(raw?.password ?? "")]);
  if (secrets.size === 0) return text;
  let out = text;
  for (const secret of secrets) out = out.replaceAll(`:${secret}@`, ":***@");
  const users = [...withDecoded(match?.[1] ?? ""), ...withDecoded(raw?.user ?? "")]
    .flatMap((user) => occurrences(out, user));
  const hidden = [...secrets].flatMap((secret) => occurrences(out, secret))
    .filter(([start, end]) => !users.some(([from, to]) => from <= start && end <= to))
    .sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const [start, end] of hidden) {
    const last = merged.at(-1);
    if (last && start <= last[1]) last[1] = Math.max(last[1], end);
    else merged.push([start, end]);
  }
  let redacted = "";
  let at = 0;
  for (const [start, end] of merged) {
    redacted += `${out.slice(at, start)}***`;
    at = end;
  }
  return redacted + out.slice(at);
}

/** `text` and its percent-decoded form (when it decodes), without the empty string. */
function withDecoded(text: string): Set<string> {
  const forms = new Set([text]);
  try {
    forms.add(decodeURIComponent(text));
  } catch {
    // not percent-encoded as it should be; the raw form stands
  }
  forms.delete("");
  return forms;
}

/** The `[start, end)` of every occurrence of `part` in `text`, overlapping ones included. */
function occurrences(text: string, part: string): Array<[number, number]> {
  const found: Array<[number, number]> = [];
  if (part === "") return found;
  for (let i = text.indexOf(part); i !== -1; i = text.indexOf(part, i + 1)) {
    found.push([i, i + part.length]);
  }
  return found;
}
