/**
 * Reading a request body once, hashing it as it streams, keeping at most the size limit in memory.
 *
 * @module
 */
import { createHash, createHmac } from "node:crypto";
import { HttpError } from "./http_error.ts";

/** A body as read by {@link readBody}. */
export interface RawBody {
  /** The bytes, or `null` when the body was larger than the limit. */
  bytes: Uint8Array | null;
  /** The body's size in bytes. */
  size: number;
  /** Lowercase hex SHA-256 of the body (signature version 2). */
  sha256Hex: string;
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
 * @throws {HttpError} `413` beyond the hard limit.
 */
export async function readBody(request: Request, options: ReadBodyOptions): Promise<RawBody> {
  const tooLarge = () =>
    new HttpError(413, `request body is larger than ${options.limit} bytes`, {
      details: { limit_bytes: options.limit },
    });
  if (request.body === null && options.hmacKey === undefined) {
    // A GET (every wait): nothing to read or hash again.
    return { bytes: new Uint8Array(0), size: 0, sha256Hex: EMPTY_SHA256_HEX };
  }
  const declared = Number(request.headers.get("content-length") ?? NaN);
  if (Number.isFinite(declared) && declared > options.hardLimit) throw tooLarge();
  const hash = createHash("sha256");
  const hmac = options.hmacKey === undefined ? undefined : createHmac("sha256", options.hmacKey);
  const chunks: Uint8Array[] = [];
  let size = 0;
  let kept = true;
  if (request.body) {
    const reader = request.body.getReader();
    try {
      while (true) {
        const { done, value } = await reader.read();
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
