/**
 * Console sessions and CSRF tokens, without server-side storage.
 *
 * A session is a cookie `v1.<expiry secs>.<nonce>.<mac>`: the MAC is an HMAC-SHA-256 over the
 * rest with a key derived from the admin token, so a session survives a dashboard restart, is
 * accepted by every dashboard instance that shares the admin token, and ends when the token is
 * rotated. Logging out revokes the nonce in this process until the session would have expired.
 * In dev mode (no admin token) the key is random per process and a session is issued to anyone
 * who opens a page: it only carries the CSRF token.
 *
 * The CSRF token of a session is another HMAC of its nonce, so it needs no storage either. Before
 * login, the login form is protected by a double-submit token: a short-lived cookie whose value
 * the form repeats.
 *
 * @module
 */
import { createHmac, randomBytes } from "node:crypto";
import { constantTimeEqual } from "../../protocol/mod.ts";
import type { Clock } from "../clock.ts";

/** Name of the session cookie. */
export const SESSION_COOKIE = "status_session";
/** Name of the cookie of the login form's CSRF token. */
export const LOGIN_CSRF_COOKIE = "status_login_csrf";
/** How long a login form may be left open, in seconds. */
export const LOGIN_FORM_TTL_SECS = 3600;

/** What {@link SessionKeeper.read} found in a cookie. */
export type SessionCheck =
  /** A valid session. */
  | { state: "valid"; nonce: string; expiresAt: number; csrf: string }
  /** A genuine session that has expired (or was logged out). */
  | { state: "expired" }
  /** No cookie, or a cookie that is not ours (forged, from another admin token, malformed). */
  | { state: "none" };

/** Options of {@link SessionKeeper}. */
export interface SessionKeeperOptions {
  /** The admin token the key derives from; absent in dev mode (a random key). */
  adminToken?: string;
  /** The dashboard's clock. */
  clock: Clock;
  /**
   * Session lifetime, in seconds.
   * @default {43200}
   */
  ttlSecs?: number;
}

function mac(key: Uint8Array, text: string): string {
  return createHmac("sha256", key).update(text).digest("base64url");
}

/** Issues and checks console sessions and CSRF tokens. */
export class SessionKeeper {
  readonly #key: Uint8Array;
  readonly #clock: Clock;
  /** Session lifetime, in seconds. */
  readonly ttlSecs: number;
  /** Logged-out nonces → their expiry in ms, dropped once expired. */
  readonly #revoked = new Map<string, number>();

  /**
   * Makes a keeper.
   *
   * @param options Admin token, clock and lifetime.
   * @throws {RangeError} When `ttlSecs` is not a whole number from 60 to 30 days.
   */
  constructor(options: SessionKeeperOptions) {
    const ttl = options.ttlSecs ?? 43_200;
    if (!Number.isInteger(ttl) || ttl < 60 || ttl > 30 * 86_400) {
      throw new RangeError(`ttlSecs must be a whole number from 60 to 2592000, got ${ttl}`);
    }
    this.ttlSecs = ttl;
    this.#clock = options.clock;
    this.#key = options.adminToken
      ? createHmac("sha256", options.adminToken).update("status console session key v1").digest()
      : randomBytes(32);
  }

  /**
   * Issues a new session.
   *
   * @returns The cookie value, its expiry in ms and its CSRF token.
   */
  issue(): { value: string; expiresAt: number; csrf: string } {
    const expiresSecs = Math.floor(this.#clock.now() / 1000) + this.ttlSecs;
    const nonce = randomBytes(18).toString("base64url");
    const body = `v1.${expiresSecs}.${nonce}`;
    return {
      value: `${body}.${mac(this.#key, body)}`,
      expiresAt: expiresSecs * 1000,
      csrf: this.#csrfOf(nonce),
    };
  }

  /**
   * Checks a session cookie's value.
   *
   * @param value The cookie value, if any.
   * @returns Whether it is valid, expired, or not a session at all.
   */
  read(value: string | undefined): SessionCheck {
    if (!value) return { state: "none" };
    const match = /^v1\.(\d{1,12})\.([A-Za-z0-9_-]{24})\.([A-Za-z0-9_-]{43})$/.exec(value);
    if (!match) return { state: "none" };
    const [, expires, nonce, given] = match;
    if (!constantTimeEqual(given, mac(this.#key, `v1.${expires}.${nonce}`))) {
      return { state: "none" };
    }
    const expiresAt = Number(expires) * 1000;
    const now = this.#clock.now();
    if (expiresAt <= now || this.#revoked.has(nonce)) return { state: "expired" };
    return { state: "valid", nonce, expiresAt, csrf: this.#csrfOf(nonce) };
  }

  /**
   * Checks every session cookie a request carries, the first valid one counting. A browser sends
   * several of one name when another was set for a longer path or for the parent domain (by
   * another site under it, or over plain HTTP), and sends that one first: reading only the first
   * would lock the operator out, again after every login.
   *
   * @param values The cookie values, as {@link cookiesOf} gives them.
   * @returns The first valid session; else expired if one was, else none.
   */
  readAll(values: readonly string[]): SessionCheck {
    let found: SessionCheck = { state: "none" };
    for (const value of values) {
      const check = this.read(value);
      if (check.state === "valid") return check;
      if (check.state === "expired") found = check;
    }
    return found;
  }

  /**
   * Ends a session in this process (logout).
   *
   * @param session A valid session.
   */
  revoke(session: { nonce: string; expiresAt: number }): void {
    const now = this.#clock.now();
    for (const [nonce, expiresAt] of this.#revoked) {
      if (expiresAt <= now) this.#revoked.delete(nonce);
    }
    this.#revoked.set(session.nonce, session.expiresAt);
  }

  /**
   * Whether a submitted CSRF token is the session's.
   *
   * @param session A valid session.
   * @param given The submitted token.
   */
  checkCsrf(session: { csrf: string }, given: string | undefined): boolean {
    return typeof given === "string" && given !== "" && constantTimeEqual(given, session.csrf);
  }

  /** A random token for the login form (double-submit: cookie and field). */
  loginToken(): string {
    return randomBytes(24).toString("base64url");
  }

  #csrfOf(nonce: string): string {
    return mac(this.#key, `csrf.${nonce}`);
  }
}

/** How many event streams one console session may hold open at once. */
export const MAX_STREAMS_PER_SESSION = 16;

/**
 * The event streams each console session holds open. A browser holds at most six connections to
 * one server (HTTP/1.1), so a session with more open is a script with the session's cookie, not
 * its pages: each stream is a connection the dashboard never closes to make room, and enough of
 * them would keep agents out.
 */
export class SessionStreams {
  /** Session nonce → its open streams; a session with none has no entry. */
  readonly #open = new Map<string, number>();
  /** The most streams a session may hold. */
  readonly max: number;

  /**
   * Makes the count.
   *
   * @param max The most streams a session may hold.
   * @throws {RangeError} When `max` is not a whole number of at least 1.
   */
  constructor(max: number = MAX_STREAMS_PER_SESSION) {
    if (!Number.isInteger(max) || max < 1) {
      throw new RangeError(`max must be a whole number of at least 1, got ${max}`);
    }
    this.max = max;
  }

  /**
   * Takes a place for a stream of a session.
   *
   * @param nonce The session's nonce.
   * @returns The place's release (once is enough; again does nothing), or `undefined` when the
   *   session holds {@link SessionStreams.max} already.
   */
  take(nonce: string): (() => void) | undefined {
    const open = this.#open.get(nonce) ?? 0;
    if (open >= this.max) return undefined;
    this.#open.set(nonce, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#open.get(nonce) ?? 1) - 1;
      if (left > 0) this.#open.set(nonce, left);
      else this.#open.delete(nonce);
    };
  }

  /** How many streams a session holds open. */
  openOf(nonce: string): number {
    return this.#open.get(nonce) ?? 0;
  }
}

/**
 * A `Set-Cookie` value.
 *
 * @param name Cookie name.
 * @param value Cookie value (base64url or empty).
 * @param options Lifetime in seconds (0 deletes) and whether it is `Secure`.
 */
export function cookieHeader(
  name: string,
  value: string,
  options: { maxAgeSecs: number; secure: boolean },
): string {
  const parts = [
    `${name}=${value}`,
    "Path=/",
    `Max-Age=${options.maxAgeSecs}`,
    "HttpOnly",
    "SameSite=Strict",
  ];
  if (options.maxAgeSecs === 0) parts.push("Expires=Thu, 01 Jan 1970 00:00:00 GMT");
  if (options.secure) parts.push("Secure");
  return parts.join("; ");
}

/**
 * One cookie of a `Cookie` header.
 *
 * @param header The request's `Cookie` header.
 * @param name The cookie name.
 * @returns Its value, or `undefined`.
 */
export function cookieOf(header: string | null | undefined, name: string): string | undefined {
  return cookiesOf(header, name)[0];
}

/**
 * Every cookie of a name in a `Cookie` header, in the order sent (a browser sends one per path and
 * domain it was set for).
 *
 * @param header The request's `Cookie` header.
 * @param name The cookie name.
 * @returns Their values; none when there is no such cookie.
 */
export function cookiesOf(header: string | null | undefined, name: string): string[] {
  const values: string[] = [];
  if (!header) return values;
  for (const part of header.split(";")) {
    const index = part.indexOf("=");
    if (index > 0 && part.slice(0, index).trim() === name) {
      values.push(part.slice(index + 1).trim());
    }
  }
  return values;
}
