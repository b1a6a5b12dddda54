import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import {
  canonicalStringV2,
  constantTimeEqual,
  generateToken,
  parseWaitAnswer,
  signedHeaders,
  signV1,
  signV2,
} from "../../src/protocol/mod.ts";

const TOKEN = "0123456789abcdef0123456789abcdef";

Deno.test("canonical string v2 is the five lines of PROTOCOL §1", () => {
  const text = canonicalStringV2({
    method: "post",
    pathAndQuery: "/api/v1/agent/commands/wait/dep-1?timeout=30",
    timestamp: "1768212000",
    requestId: "6f1c1f3e-2a6b-4d0e-9b7a-1b2c3d4e5f60",
    body: "",
  });
  assert.equal(
    text,
    "POST\n/api/v1/agent/commands/wait/dep-1?timeout=30\n1768212000\n" +
      "6f1c1f3e-2a6b-4d0e-9b7a-1b2c3d4e5f60\n" +
      // SHA-256 of the empty string
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
});

Deno.test("v2 signature is base64 HMAC-SHA256 of the canonical string and binds every part", async (t) => {
  const parts = {
    method: "POST",
    pathAndQuery: "/api/v1/agent/commands/report",
    timestamp: "1768212000",
    requestId: "req-1",
    body: '{"command_id":"c1"}',
  };
  const signature = signV2(TOKEN, parts);
  assert.equal(
    signature,
    createHmac("sha256", TOKEN).update(canonicalStringV2(parts)).digest("base64"),
  );
  assert.match(signature, /^[A-Za-z0-9+/]{43}=$/);
  for (
    const [name, change] of [
      ["method", { method: "GET" }],
      ["path", { pathAndQuery: "/api/v1/agent/commands/ack" }],
      ["timestamp", { timestamp: "1768212001" }],
      ["request id", { requestId: "req-2" }],
      ["body", { body: '{"command_id":"c2"}' }],
    ] as const
  ) {
    await t.step(`a changed ${name} changes the signature`, () => {
      assert.notEqual(signV2(TOKEN, { ...parts, ...change }), signature);
    });
  }
});

Deno.test("v1 signature covers the body alone", () => {
  assert.equal(signV1(TOKEN, "{}"), createHmac("sha256", TOKEN).update("{}").digest("base64"));
});

Deno.test("signedHeaders carries every header of PROTOCOL §1", () => {
  const headers = signedHeaders({
    agentId: "agent-1",
    token: TOKEN,
    method: "GET",
    pathAndQuery: "/x",
    now: 1_768_212_000_500,
    requestId: "r1",
  });
  assert.deepEqual(Object.keys(headers).sort(), [
    "Authorization",
    "X-Agent-Id",
    "X-Agent-Signature",
    "X-Request-Id",
    "X-Signature-Version",
    "X-Timestamp",
  ]);
  assert.equal(headers["X-Timestamp"], "1768212000");
  assert.equal(headers["Authorization"], `Bearer ${TOKEN}`);
  assert.equal(
    headers["X-Agent-Signature"],
    signV2(TOKEN, {
      method: "GET",
      pathAndQuery: "/x",
      timestamp: "1768212000",
      requestId: "r1",
      body: "",
    }),
  );
  const unsigned = signedHeaders({ agentId: "a", method: "GET", pathAndQuery: "/x" });
  assert.equal(unsigned["Authorization"], undefined);
  assert.match(unsigned["X-Request-Id"], /^[0-9a-f-]{36}$/);
});

Deno.test("constant-time compare and token generation", () => {
  assert.ok(constantTimeEqual("abc", "abc"));
  assert.ok(!constantTimeEqual("abc", "abd"));
  assert.ok(!constantTimeEqual("abc", "abcd"));
  const token = generateToken();
  assert.match(token, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(generateToken(), token);
});

Deno.test("wait answers: bare command and Stacker envelope", async (t) => {
  await t.step("bare command", () => {
    const answer = parseWaitAnswer({ id: "c1", name: "echo hi", params: {}, attempt: 2 });
    assert.equal(answer.kind, "command");
    if (answer.kind === "command") {
      assert.equal(answer.command.id, "c1");
      assert.equal(answer.command.attempt, 2);
      assert.equal(answer.stacker, false);
    }
  });
  await t.step("bare command whose params and attempt are null", () => {
    // A dashboard that serializes a missing value as null was refused ("field \"params\":
    // expected object"), its command never acked and delivered again for good.
    const answer = parseWaitAnswer({
      id: "c1",
      name: "echo hi",
      params: null,
      attempt: null,
      deployment_hash: null,
      lease_expires_at: null,
    });
    assert.deepEqual(answer, {
      kind: "command",
      stacker: false,
      command: {
        id: "c1",
        name: "echo hi",
        params: {},
        attempt: 1,
        deployment_hash: null,
        lease_expires_at: null,
      },
    });
    assert.throws(() => parseWaitAnswer({ id: "c1", name: "echo hi", params: [] }));
  });
  await t.step("Stacker envelope with an item", () => {
    const answer = parseWaitAnswer({
      item: { command_id: "c2", type: "uname -a", parameters: { timeout_secs: 5 } },
      meta: { next_poll_secs: 3 },
    });
    assert.deepEqual(answer, {
      kind: "command",
      stacker: true,
      command: { id: "c2", name: "uname -a", params: { timeout_secs: 5 }, attempt: 1 },
    });
  });
  await t.step("Stacker envelope without an item", () => {
    assert.deepEqual(parseWaitAnswer({ item: null, meta: { next_poll_secs: 7 } }), {
      kind: "empty",
      nextPollSecs: 7,
    });
  });
  await t.step("Stacker envelope whose empty fields are null", () => {
    // A dashboard that serializes a missing value as null (serde's Option) is read as one that
    // leaves it out: no hint, attempt 1.
    for (const meta of [null, { next_poll_secs: null }]) {
      assert.deepEqual(parseWaitAnswer({ item: null, meta }), {
        kind: "empty",
        nextPollSecs: undefined,
      });
    }
    assert.deepEqual(
      parseWaitAnswer({
        item: { command_id: "c3", type: "uptime", parameters: null, attempt: null },
        meta: null,
      }),
      {
        kind: "command",
        stacker: true,
        command: { id: "c3", name: "uptime", params: {}, attempt: 1 },
      },
    );
  });
  await t.step("neither form", () => {
    assert.throws(() => parseWaitAnswer({ hello: 1 }));
  });
});
