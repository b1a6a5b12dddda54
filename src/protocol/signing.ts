/**
 * Request signing and verification (docs/protocol.md §1): canonical string version 2 (method, path
 * and query, timestamp, request id, body hash) and the Status Panel agent's version 1 (body only).
 *
 * @module
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { HEADER } from "./headers.ts";
import { shownValue } from "./short_form.ts";

/** The parts of a request that a version 2 signature covers. */
export interface SignedParts {
  /** HTTP method, upper case. */
  method: string;
  /** Path and query exactly as sent, e.g. `/api/v1/agent/commands/wait/dep-1?timeout=30`. */
  pathAndQuery: string;
  /** `X-Timestamp`: unix time in whole seconds, as a string. */
  timestamp: string;
  /** `X-Request-Id`. */
  requestId: string;
  /** The exact body bytes (empty for GET). */
  body: Uint8Array | string;
}

const encoder = new TextEncoder();

/** Refuses parts a signature would silently cover as "undefined" (and never match). */
function checkParts(parts: SignedParts): void {
  if (parts === null || typeof parts !== "object") {
    throw new TypeError(`the signed parts must be an object, got ${String(parts)}`);
  }
  for (const name of ["method", "pathAndQuery", "timestamp", "requestId"] as const) {
    if (typeof parts[name] !== "string") {
      throw new TypeError(`${name} must be a string, got ${shownValue(parts[name])}`);
    }
  }
  if (typeof parts.body !== "string" && !(parts.body instanceof Uint8Array)) {
    throw new TypeError(`body must be a string or a Uint8Array, got ${shownValue(parts.body)}`);
  }
}

/** Refuses a token that is not a non-empty string, without quoting it (a secret). */
function checkToken(token: unknown): void {
  if (typeof token !== "string" || token === "") {
    throw new TypeError(
      `token must be a non-empty string, got ${token === "" ? "an empty string" : typeof token}`,
    );
  }
}

function bytesOf(body: Uint8Array | string): Uint8Array {
  return typeof body === "string" ? encoder.encode(body) : body;
}

/**
 * Builds the version 2 canonical string: five lines joined by `\n`.
 *
 * @example The five signed lines
 * ```ts
 * import assert from "node:assert/strict";
 * import { canonicalStringV2 } from "./signing.ts";
 *
 * const text = canonicalStringV2({
 *   method: "GET",
 *   pathAndQuery: "/api/v1/agent/commands/wait/default?timeout=30",
 *   timestamp: "1768212000",
 *   requestId: "5f0c1a9e-0000-4000-8000-000000000000",
 *   body: "",
 * });
 * assert.equal(text.split("\n").length, 5);
 * ```
 *
 * @param parts The signed parts of the request.
 * @returns The string that is HMACed.
 * @throws {TypeError} When a part is missing or not a string (the body a string or bytes).
 */
export function canonicalStringV2(parts: SignedParts): string {
  checkParts(parts);
  const bodyHash = createHash("sha256").update(bytesOf(parts.body)).digest("hex");
  return canonicalStringV2Hashed({ ...parts, bodySha256Hex: bodyHash });
}

/** The parts of a version 2 signature with the body already hashed (a verifier that streams it). */
export interface HashedSignedParts extends Omit<SignedParts, "body"> {
  /** Lowercase hex SHA-256 of the exact body bytes. */
  bodySha256Hex: string;
}

/**
 * Builds the version 2 canonical string from an already computed body hash.
 *
 * @param parts The signed parts, the body as its SHA-256 hex digest.
 * @returns The string that is HMACed.
 */
export function canonicalStringV2Hashed(parts: HashedSignedParts): string {
  return [
    parts.method.toUpperCase(),
    parts.pathAndQuery,
    parts.timestamp,
    parts.requestId,
    parts.bodySha256Hex,
  ].join("\n");
}

/**
 * Signs (or, on the dashboard, recomputes the signature of) a request with signature version 2
 * from an already computed body hash.
 *
 * @param token The agent's token (the HMAC key).
 * @param parts The signed parts, the body as its SHA-256 hex digest.
 * @returns Base64 (standard alphabet, padded) HMAC-SHA256.
 */
export function signV2Hashed(token: string, parts: HashedSignedParts): string {
  return createHmac("sha256", token).update(canonicalStringV2Hashed(parts)).digest("base64");
}

/**
 * Signs a request with signature version 2.
 *
 * @example Sign a wait request
 * ```ts
 * import { signV2 } from "./signing.ts";
 *
 * const signature = signV2("an-agent-token-of-at-least-32-characters", {
 *   method: "GET",
 *   pathAndQuery: "/api/v1/agent/commands/wait/default?timeout=30",
 *   timestamp: String(Math.floor(Date.now() / 1000)),
 *   requestId: crypto.randomUUID(),
 *   body: "",
 * });
 * console.log(signature); // base64 HMAC-SHA256
 * ```
 *
 * @param token The agent's token (the HMAC key).
 * @param parts The signed parts of the request.
 * @returns Base64 (standard alphabet, padded) HMAC-SHA256.
 * @throws {TypeError} When `token` is not a non-empty string, or a part is missing or not a
 *   string (the body a string or bytes): it would be signed as "undefined".
 */
export function signV2(token: string, parts: SignedParts): string {
  checkToken(token);
  return createHmac("sha256", token).update(canonicalStringV2(parts)).digest("base64");
}

/**
 * Signs a body with the Status Panel agent's version 1 scheme (HMAC over the body alone).
 *
 * @example Sign a body the version 1 way
 * ```ts
 * import { signV1 } from "./signing.ts";
 *
 * const body = JSON.stringify({ command_id: "c1" });
 * console.log(signV1("an-agent-token-of-at-least-32-characters", body));
 * ```
 *
 * @param token The agent's token.
 * @param body The exact body bytes.
 * @returns Base64 HMAC-SHA256 of the body.
 */
export function signV1(token: string, body: Uint8Array | string): string {
  return createHmac("sha256", token).update(bytesOf(body)).digest("base64");
}

/**
 * Compares two strings in time that depends only on their lengths.
 *
 * @returns Whether they are equal.
 */
export function constantTimeEqual(a: string, b: string): boolean {
  const left = encoder.encode(a);
  const right = encoder.encode(b);
  if (left.length !== right.length) {
    // Compare anyway so that the time does not reveal where the strings differ.
    timingSafeEqual(left, left);
    return false;
  }
  return timingSafeEqual(left, right);
}

/** Options of {@link signedHeaders}. */
export interface SignOptions {
  /** The agent id. */
  agentId: string;
  /** The agent token; without one, only `X-Agent-Id` is sent (dev mode). */
  token?: string;
  /** HTTP method. */
  method: string;
  /** Path and query exactly as sent. */
  pathAndQuery: string;
  /** Body bytes or string (empty for GET). */
  body?: Uint8Array | string;
  /** @internal Current time in milliseconds; injectable for tests. */
  now?: number;
  /** Request id; a fresh UUID v4 when absent. */
  requestId?: string;
}

/**
 * Builds the headers of a signed agent request (version 2).
 *
 * @example Headers of a signed report
 * ```ts
 * import assert from "node:assert/strict";
 * import { signedHeaders } from "./signing.ts";
 *
 * const body = JSON.stringify({ command_id: "c1", status: "success" });
 * const headers = signedHeaders({
 *   agentId: "web-1",
 *   token: "an-agent-token-of-at-least-32-characters",
 *   method: "POST",
 *   pathAndQuery: "/api/v1/agent/commands/report",
 *   body,
 * });
 * assert.equal(headers["X-Agent-Id"], "web-1");
 * ```
 *
 * @param options Who signs what.
 * @returns Headers to merge into the request.
 * @throws {TypeError} When `agentId` is not a non-empty string, a `token` not a string, or (with
 *   a token) a signed part is missing or not a string.
 */
export function signedHeaders(options: SignOptions): Record<string, string> {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`signedHeaders's options must be an object, got ${String(options)}`);
  }
  if (typeof options.agentId !== "string" || options.agentId === "") {
    throw new TypeError(`agentId must be a non-empty string, got ${shownValue(options.agentId)}`);
  }
  // Without a token (undefined, or empty as an unset variable), only X-Agent-Id is sent.
  if (options.token !== undefined && options.token !== null && options.token !== "") {
    checkToken(options.token);
  }
  const timestamp = String(Math.floor((options.now ?? Date.now()) / 1000));
  const requestId = options.requestId ?? crypto.randomUUID();
  const headers: Record<string, string> = {
    [HEADER.agentId]: options.agentId,
    [HEADER.timestamp]: timestamp,
    [HEADER.requestId]: requestId,
  };
  if (options.token) {
    headers[HEADER.authorization] = `Bearer ${options.token}`;
    headers[HEADER.signatureVersion] = "2";
    headers[HEADER.signature] = signV2(options.token, {
      method: options.method,
      pathAndQuery: options.pathAndQuery,
      timestamp,
      requestId,
      body: options.body ?? "",
    });
  }
  return headers;
}

/**
 * Makes a new agent token: 32 random bytes as base64url (43 characters).
 *
 * @example A new agent token
 * ```ts
 * import { generateToken } from "./signing.ts";
 *
 * console.log(generateToken());
 * ```
 *
 * @returns The token.
 */
export function generateToken(): string {
  return randomBytes(32).toString("base64url");
}
