/**
 * Why `node:http` could not parse a request, in words a client can act on: from the parser's error
 * code where it names the fault, else (Deno's parser reports most faults as a bare `HPE_ERROR`)
 * from where in the request the parser stopped. The words are always ours: nothing the client sent
 * is repeated.
 *
 * @module
 */
import { METHODS } from "node:http";

/** A parse error as `node:http` hands it to `clientError` (the fields used here). */
export interface ParseFailure {
  /** llhttp's error name, e.g. `HPE_INVALID_CONTENT_LENGTH`; `HPE_ERROR` when unnamed. */
  code?: string;
  /** The bytes the parser was given when it failed. */
  rawPacket?: Uint8Array;
  /** Where in {@link ParseFailure.rawPacket} it stopped. */
  bytesParsed?: number;
}

/** The request whose head was parsed and whose body was being read when the parser failed. */
export interface BodyInProgress {
  /** Its `Transfer-Encoding` header, if any. */
  transferEncoding?: string;
}

/** The reasons given, one per kind of fault. */
export const PARSE_FAILURE_REASONS = {
  contentLength:
    "invalid Content-Length: it must be one decimal number, given once, and not with " +
    "Transfer-Encoding",
  transferEncoding:
    "invalid Transfer-Encoding: only chunked is accepted, and not with Content-Length",
  http10TransferEncoding:
    "Transfer-Encoding in an HTTP/1.0 request, which has no chunked encoding: send " +
    "Content-Length, or HTTP/1.1",
  chunked:
    "broken chunked encoding: a chunk size that is not a hexadecimal number, or a chunk not " +
    "followed by CRLF",
  requestLine: "invalid request line: it must be METHOD /path HTTP/1.1",
  method: "unknown method in the request line (methods are upper case: GET, POST, ...)",
  target: "invalid request target in the request line",
  version: "invalid HTTP version: HTTP/1.1 and HTTP/1.0 are served",
  header:
    "invalid header line: it must be a name, a colon and a value, with no space before the colon " +
    "and no control characters",
  lineEnd: "a line of the request does not end with CRLF",
  endedEarly: "the request ended before it was complete",
  afterClose: "data after a request that closed the connection",
  http2: "HTTP/2 is not served: use HTTP/1.1",
  unknown: "the request is not valid HTTP/1.1",
} as const;

/** The faults llhttp names itself. */
const BY_CODE: Record<string, string> = {
  HPE_INVALID_CONTENT_LENGTH: PARSE_FAILURE_REASONS.contentLength,
  HPE_UNEXPECTED_CONTENT_LENGTH: PARSE_FAILURE_REASONS.contentLength,
  HPE_INVALID_TRANSFER_ENCODING: PARSE_FAILURE_REASONS.transferEncoding,
  HPE_INVALID_CHUNK_SIZE: PARSE_FAILURE_REASONS.chunked,
  HPE_INVALID_METHOD: PARSE_FAILURE_REASONS.method,
  HPE_INVALID_URL: PARSE_FAILURE_REASONS.target,
  HPE_INVALID_VERSION: PARSE_FAILURE_REASONS.version,
  HPE_INVALID_HEADER_TOKEN: PARSE_FAILURE_REASONS.header,
  HPE_CR_EXPECTED: PARSE_FAILURE_REASONS.lineEnd,
  HPE_LF_EXPECTED: PARSE_FAILURE_REASONS.lineEnd,
  HPE_INVALID_EOF_STATE: PARSE_FAILURE_REASONS.endedEarly,
  HPE_CLOSED_CONNECTION: PARSE_FAILURE_REASONS.afterClose,
  HPE_PAUSED_H2_UPGRADE: PARSE_FAILURE_REASONS.http2,
};

const HEADER_NAME = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t]*:/;
const CHUNKED_LAST = /(?:^|,)[ \t]*chunked[ \t]*$/i;
/** A request line's shape: a method, a target and a version (what each may be is checked apart). */
const REQUEST_LINE = /^(\S+) \S+ HTTP\/(\d+\.\d+)\r?$/;
const LF = 0x0a;
const CR = 0x0d;

/** Whether a line starting at `start` of the packet follows an empty line (ends a head). */
function followsEmptyLine(packet: Uint8Array, start: number): boolean {
  if (start < 2 || packet[start - 1] !== LF) return false;
  return packet[start - 2] === LF ||
    (start >= 3 && packet[start - 2] === CR && packet[start - 3] === LF);
}

/** Why a request line was refused: its version, its method, or its shape. */
function requestLineFault(line: string): string {
  const parts = REQUEST_LINE.exec(line);
  if (parts === null) return PARSE_FAILURE_REASONS.requestLine;
  const [, method, version] = parts;
  if (version === "2.0") return PARSE_FAILURE_REASONS.http2;
  if (version !== "1.1" && version !== "1.0") return PARSE_FAILURE_REASONS.version;
  if (!METHODS.includes(method)) return PARSE_FAILURE_REASONS.method;
  return PARSE_FAILURE_REASONS.requestLine;
}

/**
 * Says why a request could not be parsed.
 *
 * @param failure The parser's error.
 * @param body The request whose body was being read, when the head was parsed already.
 * @returns One of {@link PARSE_FAILURE_REASONS}.
 *
 * @example A repeated Content-Length, as Deno's parser reports it
 * ```ts
 * import assert from "node:assert/strict";
 * import { PARSE_FAILURE_REASONS, parseFailureReason } from "./http_parse_error.ts";
 *
 * const head = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
 * const rawPacket = new TextEncoder().encode(head);
 * const reason = parseFailureReason({ code: "HPE_ERROR", rawPacket, bytesParsed: 61 });
 * assert.equal(reason, PARSE_FAILURE_REASONS.contentLength);
 * ```
 */
export function parseFailureReason(failure: ParseFailure, body?: BodyInProgress): string {
  const named = failure.code === undefined ? undefined : BY_CODE[failure.code];
  if (named !== undefined) return named;
  // Only the framing of a body can be broken: a chunked one, or one of another coding.
  if (body?.transferEncoding !== undefined) {
    return CHUNKED_LAST.test(body.transferEncoding)
      ? PARSE_FAILURE_REASONS.chunked
      : PARSE_FAILURE_REASONS.transferEncoding;
  }
  const packet = failure.rawPacket;
  const at = failure.bytesParsed;
  if (packet === undefined || at === undefined || packet.byteLength === 0) {
    return PARSE_FAILURE_REASONS.unknown;
  }
  // The line the parser stopped in.
  const stop = Math.min(Math.max(0, at), packet.byteLength - 1);
  const start = stop === 0 ? 0 : packet.lastIndexOf(LF, stop - 1) + 1;
  const end = Math.min(start + 256, packet.byteLength);
  let line = "";
  for (let i = start; i < end && packet[i] !== LF; i++) line += String.fromCharCode(packet[i]);
  // A line after an empty line is a request line: of a request pipelined behind one read whole.
  if (followsEmptyLine(packet, start)) return requestLineFault(line);
  const name = HEADER_NAME.exec(line)?.[1].toLowerCase();
  if (name === "content-length") return PARSE_FAILURE_REASONS.contentLength;
  if (name === "transfer-encoding") return PARSE_FAILURE_REASONS.transferEncoding;
  if (name !== undefined || start > 0) return PARSE_FAILURE_REASONS.header;
  return requestLineFault(line);
}
