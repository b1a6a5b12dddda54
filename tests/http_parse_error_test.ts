import assert from "node:assert/strict";
import { PARSE_FAILURE_REASONS as R, parseFailureReason } from "../src/http_parse_error.ts";

/** A parse failure as Deno's `node:http` reports it: `HPE_ERROR`, the packet, where it stopped. */
function unnamed(packet: string, at: number | "end") {
  const rawPacket = new TextEncoder().encode(packet);
  return { code: "HPE_ERROR", rawPacket, bytesParsed: at === "end" ? packet.length : at };
}

Deno.test("parseFailureReason names the fault llhttp names", () => {
  assert.equal(parseFailureReason({ code: "HPE_INVALID_CONTENT_LENGTH" }), R.contentLength);
  assert.equal(parseFailureReason({ code: "HPE_UNEXPECTED_CONTENT_LENGTH" }), R.contentLength);
  assert.equal(parseFailureReason({ code: "HPE_INVALID_TRANSFER_ENCODING" }), R.transferEncoding);
  assert.equal(parseFailureReason({ code: "HPE_INVALID_CHUNK_SIZE" }), R.chunked);
  assert.equal(parseFailureReason({ code: "HPE_INVALID_VERSION" }), R.version);
  assert.equal(parseFailureReason({ code: "HPE_PAUSED_H2_UPGRADE" }), R.http2);
});

Deno.test("parseFailureReason finds the fault of a bare HPE_ERROR from where the parser stopped", async (t) => {
  // Where Deno 2.9's parser stops on each of these.
  const cases: Array<[string, string, number, string]> = [
    [
      "a repeated Content-Length",
      "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef",
      61,
      R.contentLength,
    ],
    [
      "a negative Content-Length",
      "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
      42,
      R.contentLength,
    ],
    ["a request line that is not one", "GARBAGE\r\n\r\n", 1, R.requestLine],
    ["an unknown HTTP version", "GET / HTTP/9.9\r\nHost: h\r\n\r\n", 14, R.version],
    ["HTTP/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", 15, R.version],
    ["HTTP/2.0 with a method", "GET / HTTP/2.0\r\n\r\n", 15, R.http2],
    ["an unknown method", "FOO / HTTP/1.1\r\nHost: h\r\n\r\n", 1, R.method],
    ["a method in lower case", "get / HTTP/1.1\r\nHost: h\r\n\r\n", 0, R.method],
    ["a control character in the target", "GET /\x01 HTTP/1.1\r\n\r\n", 5, R.requestLine],
    ["a header without a colon", "GET / HTTP/1.1\r\nHost h\r\n\r\n", 20, R.header],
    [
      "a space before a header's colon",
      "GET / HTTP/1.1\r\nHost: h\r\nX-A : b\r\n\r\n",
      28,
      R.header,
    ],
  ];
  for (const [name, packet, at, reason] of cases) {
    await t.step(name, () => assert.equal(parseFailureReason(unnamed(packet, at)), reason));
  }
  await t.step("junk pipelined behind a request read whole is a request line, not a header", () => {
    const first = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    assert.equal(parseFailureReason(unnamed(`${first}junk\r\n\r\n`, first.length)), R.requestLine);
    const body = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}";
    assert.equal(
      parseFailureReason(unnamed(`${body}junk\r\n\r\n`, body.length)),
      R.requestLine,
    );
    assert.equal(
      parseFailureReason(unnamed(`${first}FOO / HTTP/1.1\r\n\r\n`, first.length + 1)),
      R.method,
    );
    assert.equal(
      parseFailureReason(unnamed(`${first}GET / HTTP/1.2\n\n`, first.length + 14)),
      R.version,
    );
  });
  await t.step("a header line of a head split across packets is still a header line", () => {
    assert.equal(parseFailureReason(unnamed("X-A : b\r\n\r\n", 3)), R.header);
  });
  await t.step("nothing to go by", () => {
    assert.equal(parseFailureReason({ code: "HPE_ERROR" }), R.unknown);
    assert.equal(parseFailureReason(unnamed("", 0)), R.unknown);
  });
  await t.step("a position beyond the packet", () => {
    assert.equal(parseFailureReason(unnamed("GARBAGE", 99)), R.requestLine);
  });
});

Deno.test("parseFailureReason blames the framing of a body being read", () => {
  const chunk = unnamed("ZZ\r\nabc\r\n0\r\n\r\n", 0);
  assert.equal(parseFailureReason(chunk, { transferEncoding: "chunked" }), R.chunked);
  assert.equal(parseFailureReason(chunk, { transferEncoding: "gzip, chunked" }), R.chunked);
  assert.equal(parseFailureReason(chunk, { transferEncoding: "gzip" }), R.transferEncoding);
  assert.equal(
    parseFailureReason(chunk, { transferEncoding: "chunked, gzip" }),
    R.transferEncoding,
  );
});

Deno.test("parseFailureReason never repeats what the client sent", () => {
  const secret = "Bearer s3cr3t-token";
  const packet = `GET / HTTP/1.1\r\nHost: h\r\nAuthorization: ${secret}\r\nX-<script> : 1\r\n\r\n`;
  for (let at = 0; at <= packet.length; at++) {
    const reason = parseFailureReason(unnamed(packet, at));
    assert.ok(Object.values(R).includes(reason as typeof R[keyof typeof R]), reason);
    assert.doesNotMatch(reason, /s3cr3t|script/);
  }
});
