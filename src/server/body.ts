/**
 * Reading a request body once, hashing it as it streams, keeping at most the size limit in memory.
 *
 * @module
 */
import { createHash, createHmac, type Hash, type Hmac } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { Buffer } from "node:buffer";
import type { Socket } from "node:net";
import { HttpError } from "./http_error.ts";

/** A body as read by {@link readBody}. */
export interface RawBody {
  /** The bytes, or `null` when the body was larger than the limit. */
  bytes: Uint8Array | null;
  /** The body's size in bytes. */
  size: number;
  /**
   * Lowercase hex SHA-256 of the body (signature version 2). For a body within the limit it is
   * computed when first read: a request no signature covers (the admin token's) never pays for it.
   */
  readonly sha256Hex: string;
  /** Base64 HMAC-SHA256 of the body with `hmacKey` (signature version 1), when a key was given. */
  hmacBase64?: string;
}

/** Lowercase hex SHA-256 of the empty body. */
const EMPTY_SHA256_HEX = createHash("sha256").digest("hex");

/** Options of {@link readBody}. */
export interface ReadBodyOptions {
  /** Bodies up to this size are kept. */
  limit: number;
  /** Beyond this size reading stops at once with `413`; between the two only the hash is kept. */
  hardLimit: number;
  /** Key of a version 1 HMAC over the body. */
  hmacKey?: string;
}

/**
 * Reads the body of a request.
 *
 * @param request The request.
 * @param options Size limits and an optional HMAC key.
 * @returns Bytes (when within the limit), size and digests.
 * @throws {HttpError} `413` beyond the hard limit; `400` when the body ends early or its chunked
 *   encoding is broken.
 */
export async function readBody(
  request: Request | null,
  options: ReadBodyOptions,
): Promise<RawBody> {
  const tooLarge = () => tooLargeError(options);
  // No request: a lean long-poll on node:http (a GET), whose body is taken as empty.
  const bodiless = request === null || request.method === "GET" || request.method === "HEAD";
  if (bodiless && options.hmacKey === undefined) {
    // A GET (every wait): nothing to read or hash again.
    return { bytes: new Uint8Array(0), size: 0, sha256Hex: EMPTY_SHA256_HEX };
  }
  const declared = Number(request?.headers.get("content-length") ?? NaN);
  if (Number.isFinite(declared) && declared > options.hardLimit) throw tooLarge();
  if (!bodiless && Number.isFinite(declared) && declared <= options.limit) {
    // A body of a declared length within the limit (every agent call): read at once. On
    // `node:http` this reads the socket's chunks straight (`@hono/node-server`'s fast path)
    // instead of building a web `Request` and a stream around them, and the HTTP parser holds the
    // body to its declared length.
    return digested(await readWhole(request), options, tooLarge);
  }
  const stream = request?.body ?? null;
  const hash = createHash("sha256");
  const hmac = options.hmacKey === undefined ? undefined : createHmac("sha256", options.hmacKey);
  const chunks: Uint8Array[] = [];
  let size = 0;
  let kept = true;
  if (stream) {
    const reader = stream.getReader();
    try {
      while (true) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (error) {
          // The client's fault: it went away, or cut the body or its chunked encoding short.
          throw cutShort(error);
        }
        const { done, value } = chunk;
        if (done) break;
        size += value.byteLength;
        if (size > options.hardLimit) {
          await reader.cancel().catch(() => {});
          throw tooLarge();
        }
        hash.update(value);
        hmac?.update(value);
        if (kept && size > options.limit) {
          kept = false;
          chunks.length = 0;
        }
        if (kept) chunks.push(value);
      }
    } finally {
      reader.releaseLock();
    }
  }
  let bytes: Uint8Array | null = null;
  if (kept) {
    bytes = new Uint8Array(size);
    let offset = 0;
    for (const chunk of chunks) {
      bytes.set(chunk, offset);
      offset += chunk.byteLength;
    }
  }
  return {
    bytes,
    size,
    sha256Hex: hash.digest("hex"),
    hmacBase64: hmac?.digest("base64"),
  };
}

/** Reads a whole body with `arrayBuffer()`; a failure is the client's, as in the streamed read. */
async function readWhole(request: Request): Promise<Uint8Array> {
  try {
    return new Uint8Array(await request.arrayBuffer());
  } catch (error) {
    throw cutShort(error);
  }
}

/** The `413` of a body beyond the hard limit. */
function tooLargeError(options: ReadBodyOptions): HttpError {
  return new HttpError(413, `request body is larger than ${options.limit} bytes`, {
    details: { limit_bytes: options.limit },
  });
}

/** The `400` of a body the client went away from, or cut short. */
function cutShort(error: unknown): HttpError {
  return new HttpError(
    400,
    `request body could not be read to its end: ${(error as Error)?.message ?? error}`,
    { cause: error },
  );
}

/** Listens to a body's `error` events once reading began (an `error` nobody hears is thrown). */
function ignoreError(): void {}

/**
 * Reads the body of a request straight from `node:http`'s `IncomingMessage`, as {@link readBody}
 * reads a web request's: the same limits, digests and errors, without a web `Request` or stream.
 * A body declared beyond the hard limit is refused unread; one that grows beyond it is refused
 * as soon as it does, and reading stops (what is left is {@link drainIncoming}'s).
 *
 * @param incoming The request.
 * @param declared Its `Content-Length` header, if any.
 * @param options Size limits and an optional HMAC key.
 * @returns Bytes (when within the limit), size and digests.
 * @throws {HttpError} `413` beyond the hard limit; `400` when the body ends early (the client went
 *   away, or its chunked encoding is broken).
 */
export function readIncoming(
  incoming: IncomingMessage,
  declared: string | null,
  options: ReadBodyOptions,
): Promise<RawBody> {
  const length = Number(declared ?? NaN);
  if (Number.isFinite(length) && length > options.hardLimit) {
    return Promise.reject(tooLargeError(options));
  }
  return new Promise<RawBody>((resolve, reject) => {
    let chunks: Buffer[] | null = [];
    let size = 0;
    // Beyond the limit only the digests are kept, made as the body streams.
    let hash: Hash | undefined;
    let hmac: Hmac | undefined;
    const stop = () => {
      incoming.off("data", onData);
      incoming.off("end", onEnd);
      incoming.off("close", onClose);
      incoming.off("error", onFailure);
    };
    let settled = false;
    /** Takes a chunk; `false` once the body is beyond the hard limit (refused, reading stops). */
    const take = (chunk: Buffer): boolean => {
      size += chunk.byteLength;
      if (size > options.hardLimit) {
        settled = true;
        stop();
        incoming.pause();
        reject(tooLargeError(options));
        return false;
      }
      if (chunks !== null && size > options.limit) {
        hash = createHash("sha256");
        hmac = options.hmacKey === undefined ? undefined : createHmac("sha256", options.hmacKey);
        for (const kept of chunks) {
          hash.update(kept);
          hmac?.update(kept);
        }
        chunks = null;
      }
      if (chunks !== null) chunks.push(chunk);
      else {
        hash!.update(chunk);
        hmac?.update(chunk);
      }
      return true;
    };
    const onData = (chunk: Buffer) => void take(chunk);
    const onEnd = () => {
      if (settled) return;
      settled = true;
      stop();
      if (chunks === null) {
        resolve({
          bytes: null,
          size,
          sha256Hex: hash!.digest("hex"),
          hmacBase64: hmac?.digest("base64"),
        });
        return;
      }
      const bytes = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size);
      resolve(digested(bytes, options, () => tooLargeError(options)));
    };
    // The connection went away (or the stream failed) before the body's end was read. A body
    // the parser had seen whole is still in the stream's buffer: it is the request as sent (as
    // `@hono/node-server` recovers it), else the body was cut short.
    const onFailure = (error: unknown) => {
      if (settled) return;
      stop();
      if (incoming.complete) {
        let chunk: Buffer | null;
        while ((chunk = incoming.read() as Buffer | null) !== null) if (!take(chunk)) return;
        if (!Number.isFinite(length) || size === length) {
          onEnd();
          return;
        }
      }
      settled = true;
      reject(cutShort(error ?? new Error("the body is shorter than its Content-Length")));
    };
    const onClose = () => onFailure(new Error("the client closed the connection"));
    incoming.on("error", ignoreError);
    if (incoming.destroyed) {
      // Gone before the body was asked for (while the auth steps ran): no event will come.
      onClose();
      return;
    }
    if (incoming.complete) {
      // The usual case: the whole body came with the head and waits in the stream's buffer;
      // read at once (its `end` follows), without listeners or turns of the stream.
      onFailure(undefined);
      return;
    }
    incoming.on("error", onFailure);
    incoming.on("close", onClose);
    incoming.on("end", onEnd);
    incoming.on("data", onData);
  });
}

/** How long what is left of an unread body is read (and thrown away) after the answer, in ms. */
const DRAIN_MS = 500;
/** How much of an unread body is thrown away before the connection is closed instead. */
const DRAIN_MAX_BYTES = 64 * 1024 * 1024;

/**
 * Reads and throws away what is left of a request's body after its answer (a body refused unread,
 * or beyond the hard limit), so that `node:http` can read the connection's next request; a body
 * still arriving after {@link DRAIN_MS}, or larger than {@link DRAIN_MAX_BYTES}, closes the
 * connection instead (as `@hono/node-server` does for the requests it answers).
 *
 * @param incoming The answered request.
 */
export function drainIncoming(incoming: IncomingMessage): void {
  if (incoming.readableEnded || incoming.destroyed) return;
  let drained = 0;
  const done = () => {
    clearTimeout(timer);
    incoming.off("data", onData);
    incoming.off("end", done);
    incoming.off("close", done);
  };
  const close = () => {
    done();
    const socket = incoming.socket as (Socket & { destroySoon?: () => void }) | null;
    if (!socket || socket.destroyed) return;
    if (typeof socket.destroySoon === "function") socket.destroySoon();
    else socket.destroy();
  };
  const onData = (chunk: Buffer) => {
    drained += chunk.byteLength;
    if (drained > DRAIN_MAX_BYTES) close();
  };
  const timer = setTimeout(close, DRAIN_MS);
  incoming.on("error", ignoreError);
  incoming.on("data", onData);
  incoming.on("end", done);
  incoming.on("close", done);
  incoming.resume();
}

/** The {@link RawBody} of a body read whole, held to the same limits as a streamed one. */
function digested(
  bytes: Uint8Array,
  options: ReadBodyOptions,
  tooLarge: () => HttpError,
): RawBody {
  const size = bytes.byteLength;
  if (size > options.hardLimit) throw tooLarge();
  const hmacBase64 = options.hmacKey === undefined
    ? undefined
    : createHmac("sha256", options.hmacKey).update(bytes).digest("base64");
  if (size > options.limit) {
    // The bytes are not kept: the digest is made now.
    return { bytes: null, size, sha256Hex: sha256HexOf(bytes), hmacBase64 };
  }
  return new KeptBody(bytes, hmacBase64);
}

function sha256HexOf(bytes: Uint8Array): string {
  return bytes.byteLength === 0
    ? EMPTY_SHA256_HEX
    : createHash("sha256").update(bytes).digest("hex");
}

/** A body within the limit: its SHA-256 is made when first asked for. */
class KeptBody implements RawBody {
  readonly bytes: Uint8Array;
  readonly size: number;
  readonly hmacBase64: string | undefined;
  #sha256Hex: string | undefined;

  constructor(bytes: Uint8Array, hmacBase64: string | undefined) {
    this.bytes = bytes;
    this.size = bytes.byteLength;
    this.hmacBase64 = hmacBase64;
  }

  get sha256Hex(): string {
    return this.#sha256Hex ??= sha256HexOf(this.bytes);
  }
}

/** The deepest nesting of arrays and objects a JSON body may have. */
export const MAX_JSON_DEPTH = 64;

/** What is wrong with a parsed JSON body, as {@link jsonProblem} finds it. */
export type JsonProblem =
  /** Arrays and objects nested deeper than allowed. */
  | { kind: "too_deep" }
  /**
   * A number beyond the range of a double (a literal such as `1e400`, which `JSON.parse` makes
   * `Infinity` and `JSON.stringify` would store as `null`), at `path`.
   */
  | { kind: "non_finite"; path: Array<string | number> };

/** One array or object on the walk of {@link jsonProblem}, with the way to it. */
interface JsonNode {
  value: object;
  depth: number;
  parent: JsonNode | null;
  key: string | number;
}

/**
 * What is wrong with a parsed JSON value, if anything: arrays and objects nested deeper than `max`,
 * or a number that is not finite. Checked without recursion, so a hostile body cannot exhaust the
 * stack here or later in validation.
 *
 * @param value A value from `JSON.parse`.
 * @param max The deepest nesting allowed.
 * @returns The first problem found, or `null`.
 */
export function jsonProblem(value: unknown, max: number): JsonProblem | null {
  if (typeof value === "number") return Number.isFinite(value) ? null : nonFinite(null, []);
  if (value === null || typeof value !== "object") return null;
  const stack: JsonNode[] = [{ value, depth: 1, parent: null, key: "" }];
  while (stack.length > 0) {
    const node = stack.pop()!;
    if (node.depth > max) return { kind: "too_deep" };
    const item = node.value;
    const isArray = Array.isArray(item);
    const keys = isArray ? null : Object.keys(item);
    const length = isArray ? item.length : keys!.length;
    for (let i = 0; i < length; i++) {
      const key = isArray ? i : keys![i];
      const child = (item as Record<string | number, unknown>)[key];
      if (typeof child === "number") {
        if (!Number.isFinite(child)) return nonFinite(node, [key]);
      } else if (child !== null && typeof child === "object") {
        stack.push({ value: child, depth: node.depth + 1, parent: node, key });
      }
    }
  }
  return null;
}

/** The problem of a non-finite number under `node`, with its path from the top. */
function nonFinite(node: JsonNode | null, rest: Array<string | number>): JsonProblem {
  const path = rest;
  for (let at = node; at !== null && at.parent !== null; at = at.parent) path.unshift(at.key);
  return { kind: "non_finite", path };
}
