/**
 * One agent's request bodies on their way at once are capped (`src/server/auth/body_slots.ts`):
 * a stolen token sending bodies slowly holds at most 8 megabytes and 8 connections.
 */
import assert from "node:assert/strict";
import { until } from "../_until.ts";
import { BodySlots, MAX_BODIES_PER_AGENT } from "../../src/server/auth/mod.ts";
import { agentCall } from "../../src/server/auth/mod.ts";
import { HttpError } from "../../src/server/http_error.ts";
import { signedHeaders } from "../../src/protocol/mod.ts";
import { startServer } from "../../src/server/mod.ts";
import { AGENT_SCOPES, openSqliteStore } from "../../src/store/mod.ts";
import {
  ADMIN_TOKEN,
  agentHeaders,
  json,
  makeDashboard,
  P,
  reportBody,
  TOKEN,
  TOKEN2,
} from "./_helpers.ts";
import { closeQuietly, rawConnect, send } from "./_sockets.ts";

const encoder = new TextEncoder();

Deno.test("BodySlots counts each agent's bodies, gives a slot back once, keeps no idle agent", () => {
  const slots = new BodySlots(2);
  const call = agentCall(new Request("http://dashboard/", { method: "POST" }));
  const first = slots.enter(call, "a1");
  const second = slots.enter(call, "a1");
  const other = slots.enter(call, "a2");
  assert.equal(slots.total, 3);
  assert.equal(slots.agents, 2);
  assert.throws(() => slots.enter(call, "a1"), (error) => {
    assert.ok(error instanceof HttpError);
    assert.equal(error.status, 429);
    assert.match(error.message, /agent a1 is already sending 2 request bodies at once/);
    return true;
  });
  first();
  first(); // a second call gives back nothing more
  assert.equal(slots.total, 2);
  slots.enter(call, "a1")();
  second();
  other();
  assert.equal(slots.total, 0);
  assert.equal(slots.agents, 0, "an agent with no body on its way is not kept");
  assert.throws(() => new BodySlots(0), RangeError);
  assert.throws(() => new BodySlots(1.5), RangeError);
});

/** A signed agent request whose body starts and then waits for `finish`. */
function heldRequest(
  app: { request(path: string, init: RequestInit): Response | Promise<Response> },
  path: string,
  now: number,
  token?: string | null,
) {
  const reading = Promise.withResolvers<void>();
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
      c.enqueue(encoder.encode("{"));
    },
    // Asked for more once the dashboard took the first chunk: it is reading the body.
    pull: () => reading.resolve(),
  });
  const headers = agentHeaders({ path, method: "POST", bodyText: "{}", now, token });
  const answer = Promise.resolve(app.request(path, { method: "POST", headers, body }));
  return {
    reading: reading.promise,
    async finish(): Promise<number> {
      controller.enqueue(encoder.encode("}"));
      controller.close();
      const response = await answer;
      await response.body?.cancel();
      return response.status;
    },
  };
}

Deno.test("an agent with 8 bodies on their way is answered 429 at once; other agents and its waits are not", async () => {
  await using d = await makeDashboard();
  const app = d.dashboard.app;
  const now = d.clock.now();
  // The report's lean route and the output's Hono route share the agent's slots.
  const held = [
    ...Array.from({ length: 4 }, () => heldRequest(app, P.report, now)),
    ...Array.from({ length: 4 }, () => heldRequest(app, "/api/v1/agent/commands/c1/output", now)),
  ];
  await Promise.all(held.map((request) => request.reading));
  assert.equal(d.dashboard.bodiesArriving, MAX_BODIES_PER_AGENT);

  const ninth = await d.agent({ path: P.report, body: reportBody("nothing-1") });
  assert.equal(ninth.status, 429);
  assert.equal(ninth.headers.get("Retry-After"), "1");
  const refused = await json(ninth);
  assert.match(
    refused.error as string,
    /^rate limit exceeded: agent a1 is already sending 8 request bodies at once, the most one agent may; send them one after another \(retry in 1 s\)$/,
  );
  assert.deepEqual(refused.details, { retry_after_secs: 1, max_bodies: 8 });
  const heartbeat = await d.agent({ path: "/api/v1/agent/heartbeat", body: {} });
  assert.equal(heartbeat.status, 429, "every route with a body counts");
  await heartbeat.body?.cancel();

  // Another agent's body is read; the agent's own requests without a body are answered.
  const other = await d.agent({
    path: P.report,
    body: reportBody("nothing-2"),
    agentId: "a2",
    token: TOKEN2,
  });
  assert.equal(other.status, 404);
  await other.body?.cancel();
  const ping = await d.agent({ path: "/api/v1/agent/ping" });
  assert.equal(ping.status, 200);
  await ping.body?.cancel();

  // Once the bodies have arrived, the agent's slots are free again.
  for (const request of held) assert.notEqual(await request.finish(), 429);
  assert.equal(d.dashboard.bodiesArriving, 0);
  const after = await d.agent({ path: P.report, body: reportBody("nothing-3") });
  assert.equal(after.status, 404);
  await after.body?.cancel();
});

Deno.test("bodies sent slowly on their own connections hold at most 8 of one agent's slots", async () => {
  await using store = openSqliteStore(":memory:");
  for (const [id, token] of [["a1", TOKEN], ["a2", TOKEN2]]) {
    await store.addAgent({ id, token, scopes: AGENT_SCOPES, now: Date.now() });
  }
  await using server = await startServer({
    availableDescriptors: "plenty",
    store,
    port: 0,
    adminToken: ADMIN_TOKEN,
    rateLimitPerMinute: 1_000_000,
  });
  const signed = (agentId: string, token: string, body: string) => ({
    ...signedHeaders({ agentId, token, method: "POST", pathAndQuery: P.report, body }),
    "Content-Type": "application/json",
  });
  const report = (agentId: string, token: string) => {
    const body = JSON.stringify(reportBody("nothing"));
    return fetch(`${server.url}${P.report}`, {
      method: "POST",
      headers: signed(agentId, token, body),
      body,
    });
  };
  const slow: Deno.Conn[] = [];
  try {
    for (let i = 0; i < MAX_BODIES_PER_AGENT; i++) {
      const conn = await rawConnect(server);
      slow.push(conn);
      // A megabyte announced, ten bytes sent.
      const headers = Object.entries(signed("a1", TOKEN, "{}"))
        .map(([name, value]) => `${name}: ${value}\r\n`).join("");
      await send(
        conn,
        `POST ${P.report} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}` +
          `Content-Length: 1048576\r\n\r\n{"pad": "x`,
      );
    }
    await until(
      () => server.dashboard.bodiesArriving === MAX_BODIES_PER_AGENT,
      "the dashboard reads the 8 bodies",
    );
    const ninth = await report("a1", TOKEN);
    assert.equal(ninth.status, 429);
    assert.equal(ninth.headers.get("Retry-After"), "1");
    assert.match((await ninth.json()).error, /agent a1 is already sending 8 request bodies/);
    const other = await report("a2", TOKEN2);
    assert.equal(other.status, 404, "another agent is served");
    await other.body?.cancel();
  } finally {
    for (const conn of slow) closeQuietly(conn);
  }
  await until(
    () => server.dashboard.bodiesArriving === 0,
    "the closed connections' slots are free",
  );
  const after = await report("a1", TOKEN);
  assert.equal(after.status, 404);
  await after.body?.cancel();
});

Deno.test("a token-less agent's bodies in dev mode are not counted: the seed's curl enqueues as it", async () => {
  await using d = await makeDashboard({ devMode: true });
  const app = d.dashboard.app;
  const held = Array.from(
    { length: MAX_BODIES_PER_AGENT },
    () => heldRequest(app, P.report, d.clock.now(), null),
  );
  await Promise.all(held.map((request) => request.reading));
  const enqueued = await d.agent({ path: P.enqueue, body: { name: "echo hi" }, token: null });
  assert.equal(enqueued.status, 202);
  await enqueued.body?.cancel();
  assert.equal(d.dashboard.bodiesArriving, 0);
  for (const request of held) assert.notEqual(await request.finish(), 429);
});
