import assert from "node:assert/strict";
import { signV2 } from "../../src/protocol/mod.ts";
import { closeLogging, setupLogging } from "../../src/log/mod.ts";
import { createApp } from "../../src/server/mod.ts";
import { openSqliteStore } from "../../src/store/mod.ts";
import { refusalReason } from "../../src/server/refusals.ts";
import { ADMIN_TOKEN_GUESSES_PER_MINUTE } from "../../src/server/auth/mod.ts";
import { LOGIN_ATTEMPTS_PER_MINUTE } from "../../src/server/web/routes.tsx";
import {
  ADMIN_TOKEN,
  agentHeaders,
  type AgentRequest,
  json,
  makeDashboard,
  P,
  postWithBodyHeldBack,
  reportBody,
  T0,
  type TestDashboard,
  TOKEN,
  TOKEN2,
} from "./_helpers.ts";

const ENQUEUE = { id: "cmd-001", name: "echo Hello from dashboard", params: {} };

async function expectError(
  response: Response,
  status: number,
  pattern: RegExp,
): Promise<Record<string, unknown>> {
  const body = await json(response);
  assert.equal(response.status, status, `status of ${JSON.stringify(body)}`);
  assert.equal(typeof body.error, "string");
  assert.match(body.error as string, pattern);
  assert.ok(response.headers.get("Date"), "every answer carries a Date header");
  assert.ok(!JSON.stringify(body).includes(TOKEN), "errors never echo a token");
  return body;
}

Deno.test("agent requests are verified in the order of PROTOCOL §1, each step with its answer", async (t) => {
  await using d = await makeDashboard({
    agents: {
      a1: { token: TOKEN },
      reader: { token: "r".repeat(43), scopes: ["commands:wait"] },
      bare: { token: null },
    },
  });

  await t.step("a correctly signed request passes every step", async () => {
    const response = await d.agent({ path: P.enqueue, body: ENQUEUE });
    assert.equal(response.status, 202);
    const answer = await json(response);
    assert.equal(answer.queued, true);
    assert.equal(answer.id, "cmd-001");
    assert.equal(response.headers.get("Date"), new Date(T0).toUTCString());
  });

  await t.step("1. X-Agent-Id missing → 401", async () => {
    const response = await d.agent({
      path: P.enqueue,
      body: ENQUEUE,
      headers: { "X-Agent-Id": undefined, Authorization: undefined },
    });
    await expectError(response, 401, /X-Agent-Id header is missing/);
  });

  await t.step("1. X-Agent-Id unknown or malformed → 401", async () => {
    await expectError(
      await d.agent({ path: P.enqueue, body: ENQUEUE, agentId: "ghost" }),
      401,
      /^agent id or bearer token is wrong \(the dashboard's audit log says which\)$/,
    );
    await expectError(
      await d.agent({ path: P.enqueue, body: ENQUEUE, agentId: "bad id!" }),
      401,
      /X-Agent-Id must be/,
    );
    // Given twice (a proxy adding its own), as the dashboard reads it: joined with ", ".
    const twice = new Headers(agentHeaders({
      path: P.enqueue,
      body: ENQUEUE,
      bodyText: JSON.stringify(ENQUEUE),
      now: d.clock.now(),
    }));
    twice.append("X-Agent-Id", "a2");
    await expectError(
      await d.dashboard.app.request(P.enqueue, {
        method: "POST",
        headers: twice,
        body: JSON.stringify(ENQUEUE),
      }),
      401,
      /^X-Agent-Id must be .*; it was given more than once$/,
    );
  });

  await t.step("2. bearer token missing, wrong, or the agent has none → 401", async () => {
    await expectError(
      await d.agent({ path: P.enqueue, body: ENQUEUE, headers: { Authorization: undefined } }),
      401,
      /bearer token is missing/,
    );
    await expectError(
      await d.agent({ path: P.enqueue, body: ENQUEUE, headers: { Authorization: "Bearer nope" } }),
      401,
      /^agent id or bearer token is wrong/,
    );
    await expectError(
      await d.agent({ path: P.enqueue, body: ENQUEUE, agentId: "bare", token: "x".repeat(43) }),
      401,
      /^agent id or bearer token is wrong/,
    );
  });

  await t.step("2. Authorization given twice or with another scheme → 401 saying so", async () => {
    // Two headers reach the steps joined with ", ", as a web `Headers` (and node's raw headers
    // as the lean routes read them) join them: the right token twice is still refused.
    for (const path of [P.enqueue, P.ack, P.wait()]) {
      const body = path === P.ack ? { command_id: "cmd-001", attempt: 1 } : ENQUEUE;
      const twice = await d.agent({
        path,
        method: path === P.wait() ? "GET" : "POST",
        body: path === P.wait() ? undefined : body,
        headers: { Authorization: `Bearer ${TOKEN}, Bearer ${TOKEN}` },
      });
      const answer = await expectError(
        twice,
        401,
        /^Authorization header must be one "Bearer <token>"; it was given more than once$/,
      );
      assert.ok(!JSON.stringify(answer).includes(TOKEN));
      // Counted in the metrics as a request without a usable token.
      assert.equal(refusalReason(answer.error as string), "missing_token");
    }
    await expectError(
      await d.agent({ path: P.enqueue, body: ENQUEUE, headers: { Authorization: "Basic YTpi" } }),
      401,
      /^Authorization header must be one "Bearer <token>"; it names no bearer token$/,
    );
  });

  await t.step("4. X-Timestamp missing or not an integer → 401", async () => {
    await expectError(
      await d.agent({ path: P.enqueue, body: ENQUEUE, headers: { "X-Timestamp": undefined } }),
      401,
      /X-Timestamp header is missing or not an integer/,
    );
    await expectError(
      await d.agent({ path: P.enqueue, body: ENQUEUE, headers: { "X-Timestamp": "12.5" } }),
      401,
      /not an integer/,
    );
    // What the signature covers is the value as sent: one with a no-break space (which no HTTP
    // parser strips) or given twice is no timestamp, not the integer inside it.
    const now = String(T0 / 1000);
    for (const timestamp of [`\u00a0${now}`, `${now}\u00a0`, `${now}, ${now}`]) {
      await expectError(
        await d.agent({ path: P.enqueue, body: ENQUEUE, headers: { "X-Timestamp": timestamp } }),
        401,
        /X-Timestamp header is missing or not an integer/,
      );
    }
    const twice = await d.dashboard.app.request(P.enqueue, {
      method: "POST",
      headers: [
        ...Object.entries(
          agentHeaders({
            path: P.enqueue,
            body: ENQUEUE,
            bodyText: JSON.stringify(ENQUEUE),
            now: T0,
          }),
        ),
        ["X-Timestamp", now],
      ],
      body: JSON.stringify(ENQUEUE),
    });
    await expectError(twice, 401, /X-Timestamp header is missing or not an integer/);
  });

  await t.step("4. X-Timestamp more than 300 s off → 401 saying so; 299 s is fine", async () => {
    const late = await expectError(
      await d.agent({ path: P.enqueue, body: { name: "echo a" }, signedAt: T0 - 301_000 }),
      401,
      // Either clock may be the wrong one (a dashboard's set hours off blamed every agent's).
      /^X-Timestamp is 301 s behind the dashboard's clock \(at most 300 s allowed\); one of the two clocks is wrong: set the agent machine's or the dashboard's right \(NTP\)$/,
    );
    assert.deepEqual(late.details, {
      skew_secs: -301,
      dashboard_time: new Date(T0).toISOString(),
    });
    await expectError(
      await d.agent({ path: P.enqueue, body: { name: "echo a" }, signedAt: T0 + 301_000 }),
      401,
      /301 s ahead of/,
    );
    const ok = await d.agent({ path: P.enqueue, body: { name: "echo a" }, signedAt: T0 - 299_000 });
    assert.equal(ok.status, 202);
  });

  await t.step(
    "5. a v2 signature over a changed path, timestamp, request id or body → 401",
    async () => {
      const body = JSON.stringify({ name: "echo signed" });
      const requestId = crypto.randomUUID();
      const timestamp = String(T0 / 1000);
      const signature = signV2(TOKEN, {
        method: "POST",
        pathAndQuery: P.enqueue,
        timestamp,
        requestId,
        body,
      });
      const send = (
        overrides: {
          path?: string;
          timestamp?: string;
          requestId?: string;
          body?: string;
          method?: string;
        },
      ) =>
        d.dashboard.app.request(overrides.path ?? P.enqueue, {
          method: overrides.method ?? "POST",
          headers: {
            "Content-Type": "application/json",
            "Authorization": `Bearer ${TOKEN}`,
            "X-Agent-Id": "a1",
            "X-Timestamp": overrides.timestamp ?? timestamp,
            "X-Request-Id": overrides.requestId ?? requestId,
            "X-Signature-Version": "2",
            "X-Agent-Signature": signature,
          },
          body: overrides.body ?? body,
        });
      await expectError(await send({ path: P.enqueue + "?x=1" }), 401, /signature is wrong/);
      await expectError(
        await send({ timestamp: String(T0 / 1000 + 1) }),
        401,
        /signature is wrong/,
      );
      await expectError(await send({ requestId: crypto.randomUUID() }), 401, /signature is wrong/);
      await expectError(
        await send({ body: JSON.stringify({ name: "echo forged" }) }),
        401,
        /signature is wrong/,
      );
      await expectError(await send({ path: P.report }), 401, /signature is wrong/);
      const genuine = await send({});
      assert.equal(genuine.status, 202, "the unchanged request passes");
    },
  );

  await t.step(
    "5. a missing signature, version 1 without the flag, an unknown version → 401",
    async () => {
      await expectError(
        await d.agent({
          path: P.enqueue,
          body: ENQUEUE,
          headers: { "X-Agent-Signature": undefined },
        }),
        401,
        /X-Agent-Signature header is missing/,
      );
      await expectError(
        await d.agent({ path: P.enqueue, body: ENQUEUE, v1: true }),
        401,
        /signature version 1 is not accepted/,
      );
      await expectError(
        await d.agent({ path: P.enqueue, body: ENQUEUE, headers: { "X-Signature-Version": "3" } }),
        401,
        /X-Signature-Version "3" is not supported/,
      );
      // As docs/protocol.md's conventions say: whole up to 200 characters, else cut and counted.
      for (
        const [version, shown] of [["3".repeat(40), "3".repeat(40)], [
          "3".repeat(300),
          `${"3".repeat(200)}… (300 characters)`,
        ]]
      ) {
        const response = await d.agent({
          path: P.enqueue,
          body: ENQUEUE,
          headers: { "X-Signature-Version": version },
        });
        assert.equal(response.status, 401);
        assert.equal(
          (await json(response)).error,
          `X-Signature-Version "${shown}" is not supported; send 2`,
        );
      }
    },
  );

  await t.step(
    "5. a signature in another encoding than standard padded base64 → 401 saying so",
    async () => {
      // 32 bytes, as an HMAC-SHA256 has, in the encodings a client might pick by mistake.
      const bytes = crypto.getRandomValues(new Uint8Array(32));
      const right = btoa(String.fromCharCode(...bytes));
      const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
      const url = right.replaceAll("+", "-").replaceAll("/", "_").replace(/=$/, "");
      for (
        const [label, signature, pattern] of [
          ["hex", hex, /this one is 64 characters of hex$/],
          ["base64url", url, /this one is 43 characters$/],
          ["unpadded", right.replace(/=$/, ""), /this one is 43 characters$/],
          // Two headers, as the dashboard reads them: joined with ", ".
          ["given twice", `${right}, ${right}`, /; it was given more than once$/],
        ] as const
      ) {
        const response = await d.agent({
          path: P.enqueue,
          body: ENQUEUE,
          headers: { "X-Agent-Signature": signature },
        });
        const answer = await expectError(
          response,
          401,
          /^X-Agent-Signature must be an HMAC-SHA256 in standard padded base64 \(44 characters/,
        );
        assert.match(answer.error as string, pattern, label);
      }
      // A well-formed signature of another key is only wrong.
      await expectError(
        await d.agent({
          path: P.enqueue,
          body: ENQUEUE,
          headers: { "X-Agent-Signature": "A".repeat(43) + "=" },
        }),
        401,
        /^signature is wrong$/,
      );
    },
  );

  await t.step("6. X-Request-Id missing → 400", async () => {
    await expectError(
      await d.agent({
        path: P.enqueue,
        body: ENQUEUE,
        requestId: "",
        headers: { "X-Request-Id": undefined },
      }),
      400,
      /X-Request-Id header is missing/,
    );
  });

  await t.step("6. X-Request-Id of more than 128 characters → 400, nothing kept", async () => {
    const longest = `${"r".repeat(127)}1`;
    const taken = await d.agent({
      path: P.enqueue,
      body: { id: "rid-128", name: "echo x" },
      requestId: longest,
    });
    assert.equal(taken.status, 202, "128 characters are taken");
    await expectError(
      await d.agent({
        path: P.enqueue,
        body: { id: "rid-129", name: "echo x" },
        requestId: `${longest}9`,
      }),
      400,
      /^X-Request-Id must be at most 128 characters$/,
    );
    assert.equal(await d.store.getCommand("rid-129"), null, "the refused enqueue stored nothing");
  });

  await t.step("6. the same request id again → 409 replay detected", async () => {
    const requestId = crypto.randomUUID();
    const first = await d.agent({ path: P.enqueue, body: { name: "echo once" }, requestId });
    assert.equal(first.status, 202);
    const replay = await d.agent({ path: P.enqueue, body: { name: "echo once" }, requestId });
    await expectError(replay, 409, /replay detected/);
    const other = await d.agent({
      path: P.enqueue,
      body: { name: "echo once" },
      agentId: "reader",
      token: "r".repeat(43),
      requestId,
    });
    assert.equal(other.status, 403, "request ids are per agent: another agent's is not a replay");
  });

  await t.step("6. ids differing only by a no-break space around them are two ids", async () => {
    const requestId = crypto.randomUUID();
    const plain = await d.agent({ path: P.enqueue, body: { name: "echo a" }, requestId });
    assert.equal(plain.status, 202);
    const spaced = await d.agent({
      path: P.enqueue,
      body: { name: "echo b" },
      requestId: `\u00a0${requestId}\u00a0`,
    });
    assert.equal(spaced.status, 202, await spaced.text());
  });

  await t.step(
    "6. a request id is forgotten after 660 s (and the clock-skew check still holds)",
    async () => {
      const requestId = crypto.randomUUID();
      assert.equal(
        (await d.agent({ path: P.enqueue, body: { name: "echo x" }, requestId })).status,
        202,
      );
      d.clock.advance(661_000);
      const later = await d.agent({ path: P.enqueue, body: { name: "echo x" }, requestId });
      assert.equal(later.status, 202, "a fresh signature with an old id after the window");
      const stale = await d.agent({
        path: P.enqueue,
        body: { name: "echo x" },
        requestId: crypto.randomUUID(),
        signedAt: d.clock.now() - 601_000,
      });
      assert.equal(stale.status, 401, "an old captured request fails on its timestamp");
    },
  );

  await t.step("7. a scope not granted → 403", async () => {
    const response = await d.agent({
      path: P.report,
      body: reportBody("cmd-001"),
      agentId: "reader",
      token: "r".repeat(43),
    });
    await expectError(response, 403, /agent reader is not granted the scope commands:report/);
  });

  await t.step("8. a body over 1 MiB → 413", async () => {
    const big = JSON.stringify({
      name: "echo",
      params: { metadata: { pad: "x".repeat(1024 * 1024) } },
    });
    const response = await d.agent({ path: P.enqueue, body: big });
    const body = await expectError(response, 413, /larger than 1048576 bytes/);
    assert.equal((body.details as { limit_bytes: number }).limit_bytes, 1048576);
  });

  await t.step("8. a body that is not JSON → 400", async () => {
    await expectError(await d.agent({ path: P.enqueue, body: "{not json" }), 400, /not JSON/);
    await expectError(
      await d.agent({ path: P.enqueue, body: new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x7d]) }),
      400,
      /not UTF-8/,
    );
  });

  await t.step("8. a body not of the schema → 400 naming the field", async () => {
    const missing = await expectError(
      await d.agent({ path: P.enqueue, body: { params: {} } }),
      400,
      /field "name"/,
    );
    assert.deepEqual((missing.details as Array<{ field: string }>)[0].field, "name");
    await expectError(
      await d.agent({ path: P.enqueue, body: { name: "x", params: { priority: "urgent" } } }),
      400,
      /field "params.priority"/,
    );
    await expectError(
      await d.agent({ path: P.report, body: reportBody("cmd-001", { status: "great" }) }),
      400,
      /field "status"/,
    );
    await expectError(
      await d.agent({ path: P.ack, body: { command_id: "cmd-001", attempt: 0 } }),
      400,
      /field "attempt"/,
    );
  });

  await t.step("an earlier step wins: a wrong token with a bad body is 401, not 400", async () => {
    await expectError(
      await d.agent({ path: P.enqueue, body: "{", headers: { Authorization: "Bearer nope" } }),
      401,
      /bearer token is wrong/,
    );
  });
});

Deno.test("an agent's 401 does not tell which agent ids exist; the audit log and the metrics do", async (t) => {
  const lines: string[] = [];
  setupLogging({ format: "json", level: "debug", write: (line) => lines.push(line) });
  try {
    await using d = await makeDashboard({
      agents: { a1: { token: TOKEN }, bare: { token: null } },
    });
    const answerTo = async (request: AgentRequest) => {
      const response = await d.agent(request);
      return { status: response.status, body: await response.text() };
    };
    await t.step("an unknown id, an agent without a token, a wrong token: one answer", async () => {
      const wrongToken = "w".repeat(43);
      const unknown = await answerTo({ path: P.enqueue, body: ENQUEUE, agentId: "ghost" });
      const bare = await answerTo({ path: P.enqueue, body: ENQUEUE, agentId: "bare" });
      const wrong = await answerTo({ path: P.enqueue, body: ENQUEUE, token: wrongToken });
      const ghostWrong = await answerTo({
        path: P.enqueue,
        body: ENQUEUE,
        agentId: "ghost",
        token: wrongToken,
      });
      assert.equal(unknown.status, 401);
      assert.deepEqual(bare, unknown);
      assert.deepEqual(wrong, unknown);
      assert.deepEqual(ghostWrong, unknown);
      // On a long-poll too.
      const waits = [
        await answerTo({ path: P.wait(), agentId: "ghost" }),
        await answerTo({ path: P.wait(), token: wrongToken }),
      ];
      assert.deepEqual(waits[0], unknown);
      assert.deepEqual(waits[1], unknown);
    });
    await t.step("no token at all: one answer whether the agent exists or not", async () => {
      const known = await answerTo({ path: P.enqueue, body: ENQUEUE, token: null });
      const unknown = await answerTo({
        path: P.enqueue,
        body: ENQUEUE,
        agentId: "ghost",
        token: null,
      });
      assert.equal(known.status, 401);
      assert.match(known.body, /bearer token is missing/);
      assert.deepEqual(unknown, known);
    });
    await t.step("the audit log says which it was", () => {
      const reasons = lines.map((line) => JSON.parse(line))
        .filter((r) => r.category === "status.audit" && r.status === 401)
        .map((r) => `${r.agentId}: ${r.reason}`);
      assert.ok(reasons.includes("ghost: agent ghost is not registered"), reasons.join("\n"));
      assert.ok(reasons.some((r) => r.startsWith("bare: agent bare has no token; give it one")));
      assert.ok(reasons.includes("a1: bearer token is wrong"), reasons.join("\n"));
    });
    await t.step("and the metrics count each reason", async () => {
      const text = await (await d.admin("GET", "/metrics")).text();
      for (
        const [reason, count] of [["unknown_agent", 3], ["no_agent_token", 1], ["wrong_token", 2]]
      ) {
        assert.match(
          text,
          new RegExp(`status_auth_refusals_total\\{reason="${reason}"\\} ${count}\\n`),
        );
      }
    });
  } finally {
    closeLogging();
  }
});

Deno.test("the clock skew is compared to the millisecond, not rounded", async () => {
  await using d = await makeDashboard();
  d.clock.advance(600);
  // X-Timestamp T0 + 301 s with the clock at T0 + 0.6 s: 300.4 s ahead (rounded, it was 300).
  const ahead = await expectError(
    await d.agent({ path: "/api/v1/agent/ping", signedAt: T0 + 301_000 }),
    401,
    /301 s ahead of the dashboard's clock \(at most 300 s allowed\)/,
  );
  assert.equal((ahead.details as { skew_secs: number }).skew_secs, 301);
  // X-Timestamp T0 - 300 s: 300.6 s behind.
  const behind = await expectError(
    await d.agent({ path: "/api/v1/agent/ping", signedAt: T0 - 300_000 }),
    401,
    /301 s behind/,
  );
  assert.equal((behind.details as { skew_secs: number }).skew_secs, -301);
  // T0 + 300 s: 299.4 s ahead.
  assert.equal((await d.agent({ path: "/api/v1/agent/ping", signedAt: T0 + 300_000 })).status, 200);
});

Deno.test("a request id is remembered for as long as its timestamp is accepted", async (t) => {
  await using d = await makeDashboard();
  const ping = (requestId: string, signedAt: number) =>
    d.agent({ path: "/api/v1/agent/ping", requestId, signedAt });

  await t.step("signed 300 s ahead and sent again 600 s later, 300 s behind → 409", async () => {
    const requestId = crypto.randomUUID();
    const signedAt = d.clock.now() + 300_000;
    assert.equal((await ping(requestId, signedAt)).status, 200);
    d.clock.advance(600_000);
    await expectError(await ping(requestId, signedAt), 409, /replay detected/);
    d.clock.advance(1);
    await expectError(await ping(requestId, signedAt), 401, /301 s behind/);
  });

  await t.step(
    "the auditor's case: 300.4 s ahead is refused; 299.4 s ahead is remembered",
    async () => {
      d.clock.advance(600 - (d.clock.now() % 1000));
      const second = Math.floor(d.clock.now() / 1000) * 1000;
      await expectError(await ping(crypto.randomUUID(), second + 301_000), 401, /ahead of/);
      const requestId = crypto.randomUUID();
      assert.equal((await ping(requestId, second + 300_000)).status, 200);
      d.clock.advance(599_350);
      await expectError(await ping(requestId, second + 300_000), 409, /replay detected/);
      d.clock.advance(1_000);
      await expectError(await ping(requestId, second + 300_000), 401, /301 s behind/);
    },
  );
});

Deno.test("the per-agent rate limit answers 429 with Retry-After, before the later steps", async (t) => {
  await using d = await makeDashboard({ rateLimitPerMinute: 3 });
  // An ack of an unknown command passes every step, then answers 404: it costs one token.
  const ack = (headers: Record<string, string> = {}, agent: Partial<AgentRequest> = {}) =>
    d.agent({ path: P.ack, body: { command_id: "nope", attempt: 1 }, headers, ...agent });
  for (let i = 0; i < 3; i++) {
    const response = await ack();
    assert.equal(response.status, 404);
    await response.body?.cancel();
  }
  await t.step("the fourth request in the minute is refused", async () => {
    const response = await ack();
    const body = await json(response);
    assert.equal(response.status, 429);
    assert.equal(response.headers.get("Retry-After"), "20");
    assert.match(body.error as string, /rate limit exceeded; retry in 20 s/);
  });
  await t.step("steps after the limit do not run: a bad timestamp still gets 429", async () => {
    const response = await ack({ "X-Timestamp": "nope" });
    assert.equal(response.status, 429);
    await response.body?.cancel();
  });
  await t.step("steps before it do: a wrong token is 401 and takes no token", async () => {
    const response = await ack({ Authorization: "Bearer x" });
    assert.equal(response.status, 401);
    await response.body?.cancel();
  });
  await t.step("other agents have their own bucket", async () => {
    const response = await ack({}, {
      agentId: "a2",
      token: "agent-token-a2-0123456789abcdefghijklmnopq",
    });
    assert.equal(response.status, 404);
    await response.body?.cancel();
  });
  await t.step("operators and enqueues never take from an agent's bucket", async () => {
    for (let i = 0; i < 5; i++) {
      const own = await d.agent({ path: P.enqueue, body: { name: `echo ${i}` } });
      assert.equal(own.status, 202, "the agent's own enqueue");
      await own.body?.cancel();
      const op = await d.admin("POST", P.enqueue, { name: `echo op ${i}`, agent_id: "a1" });
      assert.equal(op.status, 202);
      await op.body?.cancel();
      const read = await d.admin("GET", "/api/v1/commands?agent_id=a1");
      assert.equal(read.status, 200);
      await read.body?.cancel();
    }
  });
  await t.step("the bucket refills continuously", async () => {
    d.clock.advance(20_000);
    const refilled = await ack();
    assert.equal(refilled.status, 404);
    await refilled.body?.cancel();
    const again = await ack();
    assert.equal(again.status, 429);
    assert.equal(again.headers.get("Retry-After"), "20");
    await again.body?.cancel();
  });
  await t.step("the wait endpoint is limited too", async () => {
    const response = await d.agent({ path: P.wait() });
    assert.equal(response.status, 429);
    await response.body?.cancel();
  });
});

Deno.test("operators have their own rate limit, per client address, with Retry-After", async () => {
  await using d = await makeDashboard({ operatorRateLimitPerMinute: 2, rateLimitPerMinute: 2 });
  for (let i = 0; i < 2; i++) {
    const response = await d.admin("POST", P.enqueue, { name: `echo ${i}`, agent_id: "a1" });
    assert.equal(response.status, 202);
    await response.body?.cancel();
  }
  const refused = await d.admin("GET", "/api/v1/agents");
  assert.equal(refused.status, 429);
  assert.equal(refused.headers.get("Retry-After"), "30");
  await refused.body?.cancel();
  const seedCurl = await d.agent({ path: P.enqueue, body: { name: "echo seed" } });
  assert.equal(seedCurl.status, 429, "an enqueue is an operator's request however it is signed");
  await seedCurl.body?.cancel();
  const agentWait = await d.agent({ path: P.wait() });
  assert.notEqual(agentWait.status, 429, "the agent's own budget is untouched");
  await agentWait.body?.cancel();
  const health = await d.dashboard.app.request("/health");
  assert.equal(health.status, 200, "health is not limited");
  await health.body?.cancel();
});

Deno.test("an IPv6 client's addresses in one /64 share one operators' bucket", async () => {
  await using d = await makeDashboard({ operatorRateLimitPerMinute: 2 });
  const api = (remote: string) =>
    Promise.resolve(d.dashboard.app.fetch(
      new Request("http://localhost/api/v1/agents", {
        headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
      }),
      { remoteAddr: { transport: "tcp", hostname: remote, port: 50_000 } },
    ));
  for (let i = 1; i <= 2; i++) {
    const response = await api(`2001:db8::${i.toString(16)}`);
    assert.equal(response.status, 200);
    await response.body?.cancel();
  }
  const next = await api("2001:db8::ffff:1");
  assert.equal(next.status, 429, "another address of the /64 is the same client");
  await next.body?.cancel();
  const otherNet = await api("2001:db8:0:1::1");
  assert.equal(otherNet.status, 200, "another /64 is another client");
  await otherNet.body?.cancel();
});

Deno.test("wrong admin tokens are limited per address as console logins are, wherever they are sent", async (t) => {
  await using d = await makeDashboard();
  /** A request from a client address, as the HTTP server gives it. */
  const from = (remote: string, path: string, init: RequestInit = {}) =>
    Promise.resolve(d.dashboard.app.fetch(
      new Request(`http://localhost${path}`, init),
      { remoteAddr: { transport: "tcp", hostname: remote, port: 50_000 } },
    ));
  const bearer = (token: string, headers: Record<string, string> = {}) => ({
    headers: { Authorization: `Bearer ${token}`, ...headers },
  });
  const enqueue = (remote: string, token: string, headers: Record<string, string> = {}) =>
    from(remote, P.enqueue, {
      method: "POST",
      ...bearer(token, { "Content-Type": "application/json", ...headers }),
      body: JSON.stringify({ name: "echo guessed", agent_id: "a1" }),
    });
  const login = async (remote: string, token: string) => {
    const form = await from(remote, "/login");
    const cookie = form.headers.getSetCookie()[0].split(";")[0];
    const csrf = /name="csrf" value="([^"]*)"/.exec(await form.text())![1];
    return from(remote, "/login", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded", Cookie: cookie },
      body: new URLSearchParams({ csrf, token, next: "/" }).toString(),
    });
  };
  const expectLimited = async (response: Response, what: string) => {
    const text = await response.text();
    assert.equal(response.status, 429, `${what}: ${text}`);
    assert.ok(Number(response.headers.get("Retry-After")) >= 1, what);
  };

  await t.step("ten wrong tokens over the API, then even the right one waits", async () => {
    for (let i = 0; i < ADMIN_TOKEN_GUESSES_PER_MINUTE; i++) {
      await expectError(
        await from("192.0.2.7", "/api/v1/commands", bearer(`guess-${i}`)),
        401,
        /admin token is wrong/,
      );
    }
    const right = await from("192.0.2.7", "/api/v1/commands", bearer(ADMIN_TOKEN));
    await expectError(right, 429, /too many wrong admin tokens from this address/);
    assert.ok(Number(right.headers.get("Retry-After")) >= 1);
    await expectLimited(await enqueue("192.0.2.7", ADMIN_TOKEN), "an operator's enqueue");
    await expectLimited(
      await enqueue("192.0.2.7", ADMIN_TOKEN, { "X-Agent-Id": "a1" }),
      "an enqueue with the admin token beside an agent id",
    );
    await expectLimited(await login("192.0.2.7", ADMIN_TOKEN), "a console login");
    assert.equal(await d.store.getCommand("cmd-001"), null);
  });

  await t.step("another address is not held up", async () => {
    const other = await from("192.0.2.8", "/api/v1/commands", bearer(ADMIN_TOKEN));
    assert.equal(other.status, 200);
    await other.body?.cancel();
  });

  await t.step("an agent's own requests are not held up", async () => {
    const ping = await d.agent({ path: "/api/v1/agent/ping" });
    assert.equal(ping.status, 200);
    await ping.body?.cancel();
  });

  await t.step("a guess refills after 60/10 s", async () => {
    d.clock.advance(6_000);
    const right = await from("192.0.2.7", "/api/v1/commands", bearer(ADMIN_TOKEN));
    assert.equal(right.status, 200);
    await right.body?.cancel();
  });

  await t.step(
    "wrong tokens sent to the enqueue count too, beside an agent id or not",
    async () => {
      for (let i = 0; i < ADMIN_TOKEN_GUESSES_PER_MINUTE; i++) {
        const headers: Record<string, string> = i % 2 ? { "X-Agent-Id": "ghost" } : {};
        const wrong = await enqueue("192.0.2.9", `guess-${i}`, headers);
        assert.equal(wrong.status, 401, await wrong.text());
      }
      await expectLimited(await enqueue("192.0.2.9", ADMIN_TOKEN), "the enqueue");
      await expectLimited(
        await from("192.0.2.9", "/api/v1/agents", bearer(ADMIN_TOKEN)),
        "the operator API",
      );
    },
  );

  await t.step("wrong console logins count against the API", async () => {
    // The login form's own limit comes first; its wrong tokens leave the API fewer guesses.
    for (let i = 0; i < LOGIN_ATTEMPTS_PER_MINUTE; i++) {
      const wrong = await login("192.0.2.10", `guess-${i}`);
      assert.equal(wrong.status, 401);
      await wrong.body?.cancel();
    }
    for (let i = LOGIN_ATTEMPTS_PER_MINUTE; i < ADMIN_TOKEN_GUESSES_PER_MINUTE; i++) {
      const wrong = await from("192.0.2.10", "/api/v1/commands", bearer(`guess-${i}`));
      assert.equal(wrong.status, 401);
      await wrong.body?.cancel();
    }
    await expectLimited(
      await from("192.0.2.10", "/api/v1/commands", bearer(ADMIN_TOKEN)),
      "the operator API after wrong logins",
    );
  });
});

Deno.test("an IPv6 client's addresses in one /64 share its wrong admin tokens and console logins", async (t) => {
  await using d = await makeDashboard();
  const from = (remote: string, path: string, init: RequestInit = {}) =>
    Promise.resolve(d.dashboard.app.fetch(
      new Request(`http://localhost${path}`, init),
      { remoteAddr: { transport: "tcp", hostname: remote, port: 50_000 } },
    ));
  const api = (remote: string, token: string) =>
    from(remote, "/api/v1/commands", { headers: { Authorization: `Bearer ${token}` } });
  const login = async (remote: string, token: string) => {
    const form = await from(remote, "/login");
    const cookie = form.headers.getSetCookie()[0].split(";")[0];
    const csrf = /name="csrf" value="([^"]*)"/.exec(await form.text())![1];
    const response = await from(remote, "/login", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded", Cookie: cookie },
      body: new URLSearchParams({ csrf, token, next: "/" }).toString(),
    });
    await response.body?.cancel();
    return response.status;
  };

  await t.step("wrong admin tokens, each from another address of 2001:db8::/64", async () => {
    for (let i = 1; i <= ADMIN_TOKEN_GUESSES_PER_MINUTE; i++) {
      const wrong = await api(`2001:db8::${i.toString(16)}`, `guess-${i}`);
      assert.equal(wrong.status, 401);
      await wrong.body?.cancel();
    }
    const next = await api("2001:db8::ffff:1", ADMIN_TOKEN);
    await expectError(next, 429, /too many wrong admin tokens from this address/);
    const otherNet = await api("2001:db8:0:1::1", ADMIN_TOKEN);
    assert.equal(otherNet.status, 200, "another /64 is another client");
    await otherNet.body?.cancel();
  });

  await t.step("console logins, each from another address of 2001:db8:0:2::/64", async () => {
    for (let i = 1; i <= LOGIN_ATTEMPTS_PER_MINUTE; i++) {
      assert.equal(await login(`2001:db8:0:2::${i.toString(16)}`, ADMIN_TOKEN), 303);
    }
    assert.equal(await login("2001:db8:0:2:abcd::1", ADMIN_TOKEN), 429);
    assert.equal(await login("2001:db8:0:3::1", ADMIN_TOKEN), 303, "another /64 is another client");
  });

  await t.step("an IPv4 client on a dual-stack socket is its IPv4 address", async () => {
    for (let i = 0; i < ADMIN_TOKEN_GUESSES_PER_MINUTE; i++) {
      const wrong = await api("::ffff:192.0.2.7", `guess-${i}`);
      await wrong.body?.cancel();
    }
    await expectError(await api("::ffff:192.0.2.7", ADMIN_TOKEN), 429, /too many wrong/);
    const neighbour = await api("::ffff:192.0.2.8", ADMIN_TOKEN);
    assert.equal(neighbour.status, 200);
    await neighbour.body?.cancel();
  });
});

Deno.test("version 1 signatures are accepted only with acceptV1Signatures", async () => {
  await using d = await makeDashboard({ acceptV1Signatures: true });
  const ok = await d.agent({ path: P.enqueue, body: { name: "echo v1" }, v1: true });
  assert.equal(ok.status, 202);
  await ok.body?.cancel();
  const forged = await d.agent({
    path: P.enqueue,
    body: { name: "echo v1" },
    v1: true,
    headers: { "X-Agent-Signature": "AAAA" },
  });
  assert.equal(forged.status, 401);
  await forged.body?.cancel();
  const v2 = await d.agent({ path: P.enqueue, body: { name: "echo v2" } });
  assert.equal(v2.status, 202, "version 2 still works");
  await v2.body?.cancel();
});

Deno.test("wait checks steps 1–3 and the scope unless signatures are required on it", async (t) => {
  await t.step("default: bearer alone is enough", async () => {
    await using d = await makeDashboard();
    await d.agent({ path: P.enqueue, body: { id: "c1", name: "echo" } }).then((r) =>
      r.body?.cancel()
    );
    const response = await d.dashboard.app.request(P.wait(), {
      headers: { "X-Agent-Id": "a1", Authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(response.status, 200);
    assert.equal((await json(response)).id, "c1");
    const wrong = await d.dashboard.app.request(P.wait(), {
      headers: { "X-Agent-Id": "a1", Authorization: "Bearer wrong" },
    });
    assert.equal(wrong.status, 401);
    await wrong.body?.cancel();
  });
  await t.step("waitRequireSignature: unsigned waits are refused, signed ones pass", async () => {
    await using d = await makeDashboard({ waitRequireSignature: true });
    await d.agent({ path: P.enqueue, body: { id: "c1", name: "echo" } }).then((r) =>
      r.body?.cancel()
    );
    const unsigned = await d.dashboard.app.request(P.wait(), {
      headers: { "X-Agent-Id": "a1", Authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(unsigned.status, 401);
    await unsigned.body?.cancel();
    const tampered = await d.agent({
      path: P.wait("default", 1),
      headers: { "X-Request-Id": crypto.randomUUID() },
    });
    assert.equal(tampered.status, 401);
    await tampered.body?.cancel();
    const signed = await d.agent({ path: P.wait() });
    assert.equal(signed.status, 200);
    await signed.body?.cancel();
  });
});

Deno.test("operators authenticate with the admin token", async (t) => {
  await using d = await makeDashboard();
  await t.step("operator endpoints refuse a missing or wrong token", async () => {
    for (const path of ["/api/v1/commands", "/api/v1/agents", "/api/v1/commands/x"]) {
      const missing = await d.dashboard.app.request(path);
      await expectError(missing, 401, /bearer token is missing/);
      const wrong = await d.dashboard.app.request(path, {
        headers: { Authorization: "Bearer nope" },
      });
      await expectError(wrong, 401, /admin token is wrong/);
    }
    const cancel = await d.dashboard.app.request("/api/v1/commands/x/cancel", { method: "POST" });
    await expectError(cancel, 401, /bearer token is missing/);
  });
  await t.step("the seed's curl enqueue outside dev mode says which token to send", async () => {
    // curl -X POST .../enqueue -H 'Content-Type: application/json' -H 'X-Agent-Id: a1' -d ...
    const response = await d.dashboard.app.request(P.enqueue, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Agent-Id": "a1" },
      body: JSON.stringify(ENQUEUE),
    });
    assert.equal(response.headers.get("WWW-Authenticate"), 'Bearer realm="status"');
    await expectError(
      response,
      401,
      /^Authorization bearer token is missing; operators send the admin token \(STATUS_ADMIN_TOKEN\) as a bearer token, agents their own token and a signature$/,
    );
    assert.equal(await d.store.getCommand("cmd-001"), null, "nothing enqueued");
  });
  await t.step("an operator's enqueue naming no agent says the field is required", async () => {
    const response = await d.admin("POST", P.enqueue, ENQUEUE);
    const body = await expectError(
      response,
      400,
      /^field "agent_id": is required without an X-Agent-Id header: it names the agent that runs /,
    );
    assert.deepEqual(body.details, [{
      field: "agent_id",
      message: "is required without an X-Agent-Id header: it names the agent that runs the command",
    }]);
  });
  await t.step("an Authorization header given twice is refused saying so", async () => {
    const twice = new Headers();
    twice.append("Authorization", `Bearer ${ADMIN_TOKEN}`);
    twice.append("Authorization", `Bearer ${ADMIN_TOKEN}`);
    for (const [path, method] of [["/api/v1/commands", "GET"], [P.enqueue, "POST"]]) {
      const response = await d.dashboard.app.request(path, {
        method,
        headers: twice,
        body: method === "POST" ? JSON.stringify({ ...ENQUEUE, agent_id: "a1" }) : undefined,
      });
      const body = await expectError(response, 401, /it was given more than once/);
      assert.ok(!JSON.stringify(body).includes(ADMIN_TOKEN));
    }
    const basic = await d.dashboard.app.request("/api/v1/agents", {
      headers: { Authorization: "Basic YWRtaW46eA==" },
    });
    await expectError(basic, 401, /must be one "Bearer <token>"; it names no bearer token/);
  });
  await t.step("an agent token is not an admin token", async () => {
    const response = await d.dashboard.app.request("/api/v1/agents", {
      headers: { Authorization: `Bearer ${TOKEN}` },
    });
    await expectError(response, 401, /admin token is wrong/);
  });
  await t.step("enqueue with the admin token names the agent in the body", async () => {
    const ok = await d.admin("POST", P.enqueue, { id: "op-1", name: "echo op", agent_id: "a2" });
    assert.equal(ok.status, 202);
    const answer = await json(ok);
    assert.equal(answer.id, "op-1");
    assert.match(String(answer.warning), /agent a2 has never connected to this dashboard/);
    assert.equal((await d.store.getCommand("op-1"))?.agentId, "a2");
    await expectError(await d.admin("POST", P.enqueue, { name: "echo" }), 400, /field "agent_id"/);
    await expectError(
      await d.admin("POST", P.enqueue, { name: "echo", agent_id: "ghost" }),
      404,
      /agent ghost is not registered/,
    );
    const wrong = await d.dashboard.app.request(P.enqueue, {
      method: "POST",
      headers: { Authorization: "Bearer nope", "Content-Type": "application/json" },
      body: JSON.stringify({ name: "echo", agent_id: "a1" }),
    });
    await expectError(wrong, 401, /admin token is wrong/);
  });
  await t.step("an agent may enqueue only for itself", async () => {
    await expectError(
      await d.agent({ path: P.enqueue, body: { name: "echo", agent_id: "a2" } }),
      403,
      /an agent may enqueue only for itself/,
    );
  });
  await t.step("an agent's command id with a colon names that agent (a run's form)", async () => {
    // Else it would be taken for a2's part of run patch-1, and a2 would never get the run's own.
    await expectError(
      await d.agent({ path: P.enqueue, body: { id: "patch-1:a2", name: "echo" } }),
      403,
      /an id with ":" is a fan-out run's <run id>:<agent id>; an agent may name only its own \(…:a1\), not patch-1:a2/,
    );
    assert.equal(await d.store.getCommand("patch-1:a2"), null);
    const own = await d.agent({ path: P.enqueue, body: { id: "patch-1:a1", name: "echo" } });
    assert.equal(own.status, 202);
    await own.body?.cancel();
  });
  await t.step("health needs no auth", async () => {
    const response = await d.dashboard.app.request("/health");
    assert.equal(response.status, 200);
    assert.equal((await json(response)).status, "ok");
  });
  await t.step("unknown routes answer 404 JSON", async () => {
    await expectError(
      await d.dashboard.app.request("/api/v2/nothing"),
      404,
      /no route for GET \/api\/v2\/nothing/,
    );
  });
  assert.ok(ADMIN_TOKEN);
});

Deno.test("dev mode accepts the seed's curl example unchanged", async (t) => {
  await using d = await makeDashboard({ devMode: true });
  await t.step("enqueue with only X-Agent-Id", async () => {
    const response = await d.dashboard.app.request(
      "http://localhost:5000/api/v1/agent/commands/enqueue",
      {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Agent-Id": "test-agent" },
        body: '{"id":"cmd-001","name":"echo Hello from dashboard","params":{}}',
      },
    );
    assert.equal(response.status, 202);
    const answer = await json(response);
    assert.equal(answer.queued, true);
    assert.equal(answer.id, "cmd-001");
    const agent = await d.store.getAgent("test-agent");
    assert.equal(agent?.token, null, "registered on first sight");
  });
  await t.step(
    "an id with a colon is any id here (only a signed agent's names itself)",
    async () => {
      const response = await d.dashboard.app.request(P.enqueue, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Agent-Id": "other-agent" },
        body: '{"id":"deploy:42","name":"echo colon","params":{}}',
      });
      assert.equal(response.status, 202);
      await response.body?.cancel();
    },
  );
  await t.step("the unsigned agent waits, acks and reports", async () => {
    const headers = { "X-Agent-Id": "test-agent" };
    const wait = await d.dashboard.app.request(P.wait("dep-1"), { headers });
    assert.equal(wait.status, 200);
    assert.deepEqual(await json(wait), {
      id: "cmd-001",
      name: "echo Hello from dashboard",
      params: {},
      attempt: 1,
      lease_expires_at: new Date(T0 + 30_000).toISOString(),
    });
    const post = (path: string, body: unknown) =>
      d.dashboard.app.request(path, {
        method: "POST",
        headers: { ...headers, "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    assert.equal((await post(P.ack, { command_id: "cmd-001", attempt: 1 })).status, 200);
    const report = await post(P.report, reportBody("cmd-001"));
    assert.deepEqual(await json(report), { accepted: true });
  });
  await t.step("signature headers of a token-less agent are ignored", async () => {
    const response = await d.agent({
      path: P.enqueue,
      body: { name: "echo signed" },
      agentId: "test-agent",
      token: "z".repeat(43),
    });
    assert.equal(response.status, 202);
    await response.body?.cancel();
  });
  await t.step("operator endpoints need no admin token", async () => {
    const response = await d.dashboard.app.request("/api/v1/commands/cmd-001");
    const body = await json(response);
    assert.equal(response.status, 200);
    assert.equal(body.status, "success");
    const enqueue = await d.dashboard.app.request(P.enqueue, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: "echo op", agent_id: "other-agent" }),
    });
    assert.equal(enqueue.status, 202);
    await enqueue.body?.cancel();
  });
  await t.step("an agent that has a token must still authenticate", async () => {
    await d.store.addAgent({ id: "real", token: TOKEN, scopes: ["commands:enqueue"], now: T0 });
    const unsigned = await d.dashboard.app.request(P.enqueue, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Agent-Id": "real" },
      body: JSON.stringify({ name: "echo" }),
    });
    assert.equal(unsigned.status, 401);
    await unsigned.body?.cancel();
    const signed = await d.agent({ path: P.enqueue, body: { name: "echo" }, agentId: "real" });
    assert.equal(signed.status, 202);
    await signed.body?.cancel();
  });
});

Deno.test("a request id forgotten early (the cache was full) still cannot be replayed", async () => {
  await using d = await makeDashboard({ replayCacheSize: 2 });
  const ping = (agentId: string, requestId: string, signedAt: number) =>
    d.agent({
      path: "/api/v1/agent/ping",
      agentId,
      token: agentId === "a2" ? TOKEN2 : TOKEN,
      requestId,
      signedAt,
    });
  const signedAt = d.clock.now();
  assert.equal((await ping("a1", "r-1", signedAt)).status, 200);
  d.clock.advance(1000);
  assert.equal((await ping("a2", "r-1", d.clock.now())).status, 200);
  assert.equal((await ping("a2", "r-2", d.clock.now())).status, 200, "a1's r-1 is forgotten");
  await expectError(await ping("a1", "r-1", signedAt), 409, /replay detected/);
  assert.equal((await ping("a1", "r-2", d.clock.now())).status, 200, "a1's next request passes");
});

/** A signed agent POST of `d` whose body arrives only once `meanwhile` has run. */
function withBodyHeldBack(
  d: TestDashboard,
  path: string,
  body: unknown,
  meanwhile: () => Promise<void>,
  who: { agentId?: string; token?: string } = {},
): Promise<Response> {
  const bodyText = JSON.stringify(body);
  const headers = agentHeaders({ path, body, bodyText, now: d.clock.now(), ...who });
  return postWithBodyHeldBack(d.dashboard.app, path, headers, bodyText, meanwhile);
}

Deno.test("a token rotated or an agent removed while a request's body arrives refuses that request", async (t) => {
  const TOKEN3 = "agent-token-a3-0123456789abcdefghijklmnopq";
  await using d = await makeDashboard({
    agents: { a1: { token: TOKEN }, a2: { token: TOKEN2 }, a3: { token: TOKEN3 } },
  });

  await t.step("a body held back with nothing changed meanwhile is taken", async () => {
    const answer = await withBodyHeldBack(d, P.enqueue, { id: "slow-0", name: "echo" }, () => {
      d.clock.advance(20_000);
      return Promise.resolve();
    });
    assert.equal(answer.status, 202);
    await answer.body?.cancel();
  });

  await t.step("an enqueue whose body arrives after a rotation: 401, nothing stored", async () => {
    const answer = await withBodyHeldBack(
      d,
      P.enqueue,
      { id: "slow-1", name: "echo" },
      async () => {
        const rotated = await d.admin("POST", "/api/v1/agents/a1/rotate");
        assert.equal(rotated.status, 200);
        await rotated.body?.cancel();
      },
    );
    await expectError(answer, 401, /^agent id or bearer token is wrong/);
    assert.equal(await d.store.getCommand("slow-1"), null);
  });

  await t.step(
    "a report whose body arrives after the agent's removal: 401, its command stays cancelled",
    async () => {
      const enqueued = await d.admin("POST", P.enqueue, {
        agent_id: "a2",
        id: "slow-2",
        name: "echo",
      });
      assert.equal(enqueued.status, 202);
      await enqueued.body?.cancel();
      const a2 = { agentId: "a2", token: TOKEN2 };
      const delivered = await d.agent({ path: P.wait("default", 1), ...a2 });
      assert.equal(delivered.status, 200);
      await delivered.body?.cancel();
      const acked = await d.agent({
        path: P.ack,
        body: { command_id: "slow-2", attempt: 1 },
        ...a2,
      });
      assert.equal(acked.status, 200);
      await acked.body?.cancel();
      const answer = await withBodyHeldBack(d, P.report, reportBody("slow-2"), async () => {
        const removed = await d.admin("DELETE", "/api/v1/agents/a2");
        assert.equal(removed.status, 200);
        await removed.body?.cancel();
      }, a2);
      await expectError(answer, 401, /^agent id or bearer token is wrong/);
      const command = await d.store.getCommand("slow-2");
      assert.equal(command?.status, "cancelled");
      assert.equal(command?.result, null, "the removal's end is not replaced");
    },
  );

  await t.step(
    "a heartbeat (a route of the Hono app) after a rotation: 401, nothing kept",
    async () => {
      const answer = await withBodyHeldBack(
        d,
        "/api/v1/agent/heartbeat",
        { version: "9.9.9" },
        async () => {
          const rotated = await d.admin("POST", "/api/v1/agents/a3/rotate");
          assert.equal(rotated.status, 200);
          await rotated.body?.cancel();
        },
        { agentId: "a3", token: TOKEN3 },
      );
      await expectError(answer, 401, /^agent id or bearer token is wrong/);
      const agents = (await json(await d.admin("GET", "/api/v1/agents"))).agents as Array<
        Record<string, unknown>
      >;
      assert.equal(agents.find((agent) => agent.id === "a3")?.version, null);
    },
  );
});

Deno.test("every 401 carries a WWW-Authenticate challenge, other refusals none", async (t) => {
  await using d = await makeDashboard({ agents: { a1: { token: TOKEN } } });
  const refusals: Array<[string, () => Response | Promise<Response>, number]> = [
    [
      "a wait with a wrong token",
      () => d.agent({ path: P.wait("dep-1", 1), token: "w".repeat(43) }),
      401,
    ],
    [
      "a wait of an unknown agent",
      () => d.agent({ path: P.wait("dep-1", 1), agentId: "nobody" }),
      401,
    ],
    ["an ack with a wrong signature", () =>
      d.agent({
        path: P.ack,
        body: { command_id: "c1", attempt: 1 },
        headers: { "X-Agent-Signature": "AAAA" },
      }), 401],
    [
      "a report signed 400 s ago",
      () => d.agent({ path: P.report, body: reportBody("c1"), signedAt: T0 - 400_000 }),
      401,
    ],
    [
      "a ping without a token",
      () => d.agent({ path: "/api/v1/agent/ping", headers: { Authorization: undefined } }),
      401,
    ],
    [
      "an enqueue without any credentials",
      () => d.dashboard.app.request(P.enqueue, { method: "POST", body: JSON.stringify(ENQUEUE) }),
      401,
    ],
    [
      "an operator read without the admin token",
      () => d.dashboard.app.request("/api/v1/commands"),
      401,
    ],
    [
      "an operator read with a wrong admin token",
      () =>
        d.dashboard.app.request("/api/v1/agents", { headers: { Authorization: "Bearer nope" } }),
      401,
    ],
    ["a console login with a wrong admin token", async () => {
      const form = await d.dashboard.app.request("/login");
      const cookie = form.headers.getSetCookie()[0].split(";")[0];
      const csrf = /name="csrf" value="([^"]*)"/.exec(await form.text())![1];
      return await d.dashboard.app.request("/login", {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded", Cookie: cookie },
        body: new URLSearchParams({ csrf, token: "not-the-admin-token", next: "/" }).toString(),
      });
    }, 401],
    [
      "a report of an unknown command (404)",
      () => d.agent({ path: P.report, body: reportBody("c1") }),
      404,
    ],
    ["a replayed request id (409)", async () => {
      (await d.agent({ path: "/api/v1/agent/ping", requestId: "r-1" })).body?.cancel();
      return await d.agent({ path: "/api/v1/agent/ping", requestId: "r-1" });
    }, 409],
  ];
  for (const [label, send, status] of refusals) {
    await t.step(label, async () => {
      const response = await send();
      await response.body?.cancel();
      assert.equal(response.status, status);
      assert.equal(
        response.headers.get("WWW-Authenticate"),
        status === 401 ? 'Bearer realm="status"' : null,
      );
    });
  }
});

Deno.test("createApp refuses an admin token that Authorization: Bearer cannot carry", async () => {
  const store = openSqliteStore(":memory:");
  try {
    for (const adminToken of ["admin token 0123456789", "admin-token-é0123456789", "short"]) {
      assert.throws(
        () => createApp({ store, adminToken }),
        /adminToken must be 16 to 1024 printable ASCII characters, without spaces/,
        JSON.stringify(adminToken),
      );
    }
  } finally {
    await store.close();
  }
});

Deno.test("a hint naming an agent id that begins with a dash puts -- before it", async () => {
  // "status agents add -x" would be read as an unknown option.
  await using d = await makeDashboard();
  const response = await d.admin("POST", P.enqueue, { agent_id: "-x", name: "echo hi" });
  await expectError(
    response,
    404,
    /^agent -x is not registered; add it with "status agents add -- -x"$/,
  );
});
