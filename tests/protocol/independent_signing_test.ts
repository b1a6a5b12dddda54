/**
 * Signs agent requests as a third-party implementer would from docs/protocol.md §1 alone (with
 * node:crypto, not this project's signing code) and checks that the dashboard accepts them and
 * refuses each after a one-byte change of any signed part.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash, createHmac } from "node:crypto";
import { makeDashboard, T0, TOKEN } from "../server/_helpers.ts";
import { closeQuietly, rawConnect, readAnswer, send } from "../server/_sockets.ts";
import { AGENT_SCOPES, openSqliteStore } from "../../src/store/mod.ts";
import { startServer } from "../../src/server/mod.ts";

interface Signed {
  method: string;
  target: string;
  timestamp: string;
  requestId: string;
  body: string;
}

/** The doc's words: five lines joined by "\n", HMAC-SHA256 keyed by the token, padded base64. */
function headersOf(parts: Signed, signedAs: Signed = parts): Record<string, string> {
  const canonical = [
    signedAs.method,
    signedAs.target,
    signedAs.timestamp,
    signedAs.requestId,
    createHash("sha256").update(Buffer.from(signedAs.body, "utf8")).digest("hex"),
  ].join("\n");
  const headers: Record<string, string> = {
    "Authorization": `Bearer ${TOKEN}`,
    "X-Agent-Id": "a1",
    "X-Timestamp": parts.timestamp,
    "X-Request-Id": parts.requestId,
    "X-Signature-Version": "2",
    "X-Agent-Signature": createHmac("sha256", Buffer.from(TOKEN, "utf8")).update(canonical)
      .digest("base64"),
  };
  if (parts.body !== "") headers["Content-Type"] = "application/json";
  return headers;
}

/** Changes one byte (the last) of a string. */
function oneByteOff(text: string): string {
  const last = text.at(-1)!;
  return text.slice(0, -1) + (last === "1" ? "2" : "1");
}

Deno.test("a request signed from the doc's words alone is accepted; one byte off, refused", async () => {
  await using dashboard = await makeDashboard({ waitRequireSignature: true });
  const app = dashboard.dashboard.app;
  const send = (parts: Signed, signedAs?: Signed) =>
    app.request(parts.target, {
      method: parts.method,
      headers: headersOf(parts, signedAs),
      body: parts.body === "" ? undefined : parts.body,
    });
  let n = 0;
  const newId = () => `0b0e8f9c-0000-4000-8000-${String(++n).padStart(12, "0")}`;
  const timestamp = String(T0 / 1000);
  const requests: Omit<Signed, "requestId">[] = [
    { method: "GET", target: "/api/v1/agent/ping?probe=1", timestamp, body: "" },
    {
      method: "GET",
      target: "/api/v1/agent/commands/wait/d%C3%A9p-1?timeout=1",
      timestamp,
      body: "",
    },
    {
      method: "POST",
      target: "/api/v1/agent/heartbeat?probe=1",
      timestamp,
      body: JSON.stringify({ agent_id: "a1", cpu_percent: 1.5, note: "é" }),
    },
  ];
  for (const request of requests) {
    const signed: Signed = { ...request, requestId: newId() };
    // Each signed part one byte off between what was signed and what is sent (each attempt with
    // an id of its own, so that a refusal is the signature's, not a replay's).
    const sent: [string, Signed][] = [
      ["target", { ...signed, target: oneByteOff(signed.target) }],
      ["timestamp", { ...signed, timestamp: oneByteOff(signed.timestamp) }],
      ["request id", { ...signed, requestId: oneByteOff(signed.requestId) }],
    ];
    if (signed.body !== "") sent.push(["body", { ...signed, body: oneByteOff(signed.body) }]);
    for (const [part, changed] of sent) {
      const requestId = part === "request id" ? changed.requestId : newId();
      const signedAs = {
        ...signed,
        requestId: part === "request id" ? signed.requestId : requestId,
      };
      const response = await send({ ...changed, requestId }, signedAs);
      const answer = await response.json();
      assert.equal(
        response.status,
        401,
        `${request.target}, ${part} one byte off: ${answer.error}`,
      );
      assert.match(answer.error, /signature/i);
    }
    const response = await send(signed);
    const text = await response.text();
    assert.ok(response.status === 200 || response.status === 204, `${request.target}: ${text}`);
  }
});

Deno.test("a version 1 signature made from the doc's words (the body alone) is accepted, with X-Signature-Version absent or 1", async () => {
  await using dashboard = await makeDashboard({ acceptV1Signatures: true });
  const app = dashboard.dashboard.app;
  let n = 0;
  const send = (version: string | undefined, body: string, signedBody: string) => {
    const headers: Record<string, string> = {
      "Authorization": `Bearer ${TOKEN}`,
      "X-Agent-Id": "a1",
      "X-Timestamp": String(T0 / 1000),
      "X-Request-Id": `v1-${++n}`,
      "Content-Type": "application/json",
      "X-Agent-Signature": createHmac("sha256", Buffer.from(TOKEN, "utf8")).update(signedBody)
        .digest("base64"),
    };
    if (version !== undefined) headers["X-Signature-Version"] = version;
    return app.request("/api/v1/agent/heartbeat", { method: "POST", headers, body });
  };
  const body = JSON.stringify({ agent_id: "a1", cpu_percent: 1.5 });
  for (const version of [undefined, "1"]) {
    const accepted = await send(version, body, body);
    assert.equal(accepted.status, 200, `version ${version}: ${await accepted.text()}`);
    const changed = await send(version, body.replace("1.5", "1.6"), body);
    assert.equal(changed.status, 401, `version ${version}, body one byte off`);
    assert.match((await changed.json()).error, /signature/i);
  }
});

Deno.test("a query's ' sent raw may be signed as the doc says, %27, or exactly as sent", async () => {
  await using store = openSqliteStore(":memory:");
  await store.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now: Date.now() });
  await using server = await startServer({
    availableDescriptors: "plenty",
    store,
    port: 0,
    adminToken: "a".repeat(40),
  });
  let n = 0;
  const answerTo = async (sentTarget: string, signedTarget: string) => {
    const parts: Signed = {
      method: "GET",
      target: signedTarget,
      timestamp: String(Math.floor(Date.now() / 1000)),
      requestId: `quote-${++n}`,
      body: "",
    };
    const head = Object.entries(headersOf(parts)).map(([name, value]) => `${name}: ${value}\r\n`)
      .join("");
    const conn = await rawConnect(server);
    try {
      await send(conn, `GET ${sentTarget} HTTP/1.1\r\nHost: 127.0.0.1\r\n${head}\r\n`);
      return (await readAnswer(conn)).text;
    } finally {
      closeQuietly(conn);
    }
  };
  // Without another character that needs encoding, and with one (the %XX of the é).
  for (const query of ["?name='x'", "?name='x'&note=%C3%A9"]) {
    const target = `/api/v1/agent/ping${query}`;
    const signed = target.replaceAll("'", "%27");
    const raw = await answerTo(target, signed);
    assert.match(raw, /^HTTP\/1\.1 200 /, `${target} signed ${signed}: ${raw}`);
    const encoded = await answerTo(signed, signed);
    assert.match(encoded, /^HTTP\/1\.1 200 /, `${signed}: ${encoded}`);
    // Signed exactly as sent, as the first specification put it: the same request (on ping, only
    // while nothing else in the target needs encoding; on a wait, always).
    if (!query.includes("%")) {
      const asSent = await answerTo(target, target);
      assert.match(asSent, /^HTTP\/1\.1 200 /, `${target} signed as sent: ${asSent}`);
    }
    const wait = `/api/v1/agent/commands/wait/default${query}&timeout=0`;
    const waitAsSent = await answerTo(wait, wait);
    assert.match(waitAsSent, /^HTTP\/1\.1 204 /, `${wait} signed as sent: ${waitAsSent}`);
    const waitEncoded = await answerTo(wait, wait.replaceAll("'", "%27"));
    assert.match(waitEncoded, /^HTTP\/1\.1 204 /, `${wait} signed encoded: ${waitEncoded}`);
    // Either form of another target is still refused.
    const other = await answerTo(target, `${target}&more=1`);
    assert.match(other, /^HTTP\/1\.1 401 /, `${target} signed for another: ${other}`);
  }
});
