/**
 * What a failed `fetch` says, in words: Deno's fetch throws "fetch failed" and keeps the reason
 * (connection refused, a name that does not resolve, a TLS failure, ...) in the error's `cause`.
 *
 * @module
 */

/**
 * Describes why a `fetch` failed, from the error and its cause.
 *
 * @param error What `fetch` threw.
 * @returns A short reason, such as `connection refused` or `the host name does not resolve`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { describeFetchFailure } from "./fetch_failure.ts";
 *
 * const error = new TypeError("fetch failed", {
 *   cause: new Error("client error (Connect): tcp connect error: Connection refused (os error 111)"),
 * });
 * assert.equal(describeFetchFailure(error), "connection refused");
 * ```
 */
export function describeFetchFailure(error: unknown): string {
  const cause = (error as { cause?: unknown } | null)?.cause;
  const text = [
    error instanceof Error ? error.message : String(error),
    cause instanceof Error ? cause.message : "",
  ].join(" ");
  if (/connection refused/i.test(text)) return "connection refused";
  if (/dns error|name or service not known|failed to lookup/i.test(text)) {
    return "the host name does not resolve";
  }
  if (/connection reset/i.test(text)) return "the connection was reset";
  // The usual mix-up of http:// and https://: name it, not the client's parser.
  if (/invalid HTTP version/i.test(text)) {
    return "it answered, but not in HTTP (if it serves HTTPS, the URL must begin with https://)";
  }
  if (/corrupt message|InvalidContentType/i.test(text)) {
    return "the TLS handshake failed: it answered, but not in TLS (if it serves plain HTTP, the " +
      "URL must begin with http://)";
  }
  // A name the certificate does not hold is told in a sentence, with the names it does hold:
  // `invalid peer certificate: certificate not valid for name "a"; certificate is only valid for
  // DnsName("b")`.
  const wrongName = /invalid peer certificate: certificate not valid for name (.*)$/im.exec(text);
  if (wrongName) {
    const [asked, ...held] = [...wrongName[1].matchAll(/"([^"]*)"/g)].map((m) => m[1]);
    return `the TLS handshake failed: the dashboard's certificate is not valid for the host name ` +
      `in the URL (${asked ?? "?"}${
        held.length ? `; it was issued for ${held.join(", ")}` : ""
      }); use a name it was issued for`;
  }
  // "invalid peer certificate: UnknownIssuer", or "...: Other(OtherError(CaUsedAsEndEntity))";
  // an expired one (or one not valid yet) may be told in a sentence too.
  const refused = /invalid peer certificate: *([\w()]+)( expired| not valid yet)?/i.exec(text);
  if (refused) {
    const reason = refused[2] === undefined
      ? /(\w+)\)*$/.exec(refused[1])?.[1] ?? refused[1]
      : /expired/i.test(refused[2])
      ? "Expired"
      : "NotValidYet";
    return `the TLS handshake failed: ${certificateProblem(reason)}`;
  }
  if (/certificate|tls|ssl/i.test(text)) return "the TLS handshake failed";
  // The dashboard took the request and closed the connection, or answered a head hyper refuses.
  if (/connection closed before message completed/i.test(text)) {
    return "the connection was closed before an answer came";
  }
  if (/message head is too large/i.test(text)) {
    return "the answer's status line and headers are too large";
  }
  const detail = cause instanceof Error ? cause.message : text.trim();
  return detail.replace(REQUEST_PREFIX, "").replace(/^client error \(\w+\): /, "");
}

/**
 * What Deno puts before the reason: `error sending request for url (URL): ` before a connection
 * is made, `error sending request from LOCAL for URL (REMOTE): ` after.
 */
const REQUEST_PREFIX = /^error sending request (?:for url \([^)]*\)|from \S+ for \S+ \([^)]*\)): /;

/** Why this side refused the dashboard's certificate, and what makes it accepted. */
function certificateProblem(reason: string): string {
  switch (reason) {
    case "UnknownIssuer":
      return "the dashboard's certificate is not issued by a CA this machine trusts (self-signed, " +
        "or a private CA?); give its CA certificate to Deno with DENO_CERT=/path/to/ca.pem";
    case "CaUsedAsEndEntity":
      return "the dashboard serves a CA certificate as its own (as a bare `openssl req -x509` " +
        "makes); serve a certificate with basicConstraints CA:FALSE, issued by a CA this " +
        "machine trusts (DENO_CERT=/path/to/ca.pem)";
    case "NotValidForName":
      return "the dashboard's certificate is not valid for the host name in the URL; use a name " +
        "it was issued for";
    case "Expired":
      return "the dashboard's certificate has expired (or this machine's clock is wrong)";
    case "NotValidYet":
      return "the dashboard's certificate is not valid yet (is this machine's clock wrong?)";
    default:
      return `the dashboard's certificate was refused (${reason})`;
  }
}
