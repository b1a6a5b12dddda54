/**
 * The event streams' machinery (`sse.ts`) under clients that do not behave: a flood of streams
 * with the admin token, over real sockets.
 */
import assert from "node:assert/strict";
import { until } from "../_until.ts";
import { closeLogging, setupLogging } from "../../src/log/mod.ts";
import { OpenStreams, streamLimitFor, STREAMS_SHARE_OF_CONNECTIONS } from "../../src/server/sse.ts";
import { type RunningServer, startServer } from "../../src/server/mod.ts";
import { AGENT_SCOPES, openSqliteStore, type SqliteStore } from "../../src/store/mod.ts";
import { ADMIN_TOKEN, agentHeaders, P, TOKEN } from "./_helpers.ts";
import { closeQuietly, rawConnect, readAnswer, send } from "./_sockets.ts";

/** A dashboard with the admin token and agent `a1`, on a socket. */
async function adminServer(
  options: { maxConnections?: number } = {},
): Promise<{ server: RunningServer; store: SqliteStore } & AsyncDisposable> {
  const store = openSqliteStore(":memory:");
  await store.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now: Date.now() });
  const server = await startServer({
    store,
    port: 0,
    adminToken: ADMIN_TOKEN,
    availableDescriptors: "plenty",
    maxConnections: options.maxConnections,
    operatorRateLimitPerMinute: 1_000_000,
    rateLimitPerMinute: 1_000_000,
    eventKeepAliveMs: 60_000,
  });
  return {
    server,
    store,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
      await store.close();
    },
  };
}

/** Enqueues a command for `a1` with the admin token. */
async function enqueue(server: RunningServer, id: string): Promise<void> {
  const answer = await fetch(`${server.url}${P.enqueue}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify({ id, name: "echo hi", agent_id: "a1" }),
  });
  assert.equal(answer.status, 202);
  await answer.body?.cancel();
}

/** The head of a request for a command's event stream with the admin token. */
function streamHead(id: string): string {
  return `GET /api/v1/commands/${id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
    `Authorization: Bearer ${ADMIN_TOKEN}\r\n\r\n`;
}

Deno.test("streamLimitFor leaves agents three quarters of the connections, at least one stream", () => {
  assert.equal(STREAMS_SHARE_OF_CONNECTIONS, 4);
  assert.equal(streamLimitFor(20_000), 5000);
  assert.equal(streamLimitFor(41), 10);
  assert.equal(streamLimitFor(3), 1);
  assert.equal(streamLimitFor(1), 1);
});

Deno.test("OpenStreams counts places up to its limit; a release given twice counts once", () => {
  const streams = new OpenStreams(8);
  assert.equal(streams.max, 2);
  const first = streams.take();
  const second = streams.take();
  assert.ok(first && second);
  assert.equal(streams.take(), undefined, "beyond the limit");
  assert.equal(streams.open, 2);
  first();
  first();
  assert.equal(streams.open, 1);
  streams.limitTo(4);
  assert.equal(streams.max, 1);
  assert.equal(streams.take(), undefined, "the lower limit holds at once");
  second();
  assert.equal(streams.open, 0);
});

Deno.test("a flood of event streams with the admin token leaves agents room to connect", async () => {
  const lines: string[] = [];
  setupLogging({ format: "json", level: "info", write: (line) => lines.push(line) });
  try {
    await flood(lines);
  } finally {
    closeLogging();
  }
});

async function flood(lines: string[]): Promise<void> {
  // 40 connections: streams hold 10 at most, and agents always have the 30 others.
  await using fixture = await adminServer({ maxConnections: 40 });
  const { server } = fixture;
  await enqueue(server, "c1");
  const run = await fetch(`${server.url}/api/v1/runs`, {
    method: "POST",
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify({ id: "r1", name: "echo hi", target: { agents: ["a1"] } }),
  });
  assert.equal(run.status, 201);
  await run.body?.cancel();
  const before = server.dashboard.events.size; // the run's own subscription to its command
  assert.equal(server.dashboard.streams.max, 10);
  const conns: Deno.Conn[] = [];
  try {
    const answers: string[] = [];
    for (let i = 0; i < 40; i++) {
      const conn = await rawConnect(server);
      conns.push(conn);
      await send(conn, streamHead("c1"));
      // A stream sends its head and first events; a refusal is a whole JSON answer.
      answers.push((await readAnswer(conn, 5000)).text);
    }
    const opened = answers.filter((text) => text.startsWith("HTTP/1.1 200 "));
    const refused = answers.filter((text) => text.startsWith("HTTP/1.1 429 "));
    assert.equal(opened.length, 10);
    assert.equal(refused.length, 30);
    assert.match(refused[0], /\r\nretry-after: 15\r\n/i);
    assert.match(
      refused[0],
      /"error":"the dashboard has 10 event streams open, the most it holds at once \(a quarter of its connection limit, MAX_CONNECTIONS, so that agents can always connect\); close streams you no longer read, or try again in 15 s"/,
    );
    assert.match(refused[0], /"max_streams":10/);
    const runStream = await fetch(`${server.url}/api/v1/runs/r1/events`, {
      headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    assert.equal(runStream.status, 429, "a run's stream counts in the same limit");
    await runStream.body?.cancel();
    assert.equal(server.dashboard.streams.open, 10);
    assert.equal(
      server.dashboard.events.size,
      before + 10,
      "a refused stream subscribes to nothing",
    );
    assert.equal(server.listener.connections, 40, "every connection is still open");

    // Old behaviour: every connection held a stream, and the agent's connection was closed at
    // once without an answer ("fetch failed").
    const path = P.wait("default", 5);
    const waited = await fetch(`${server.url}${path}`, {
      headers: agentHeaders({ path, bodyText: "", now: Date.now() }),
    });
    assert.equal(waited.status, 200);
    assert.equal((await waited.json()).id, "c1");

    const metrics = await fetch(`${server.url}/metrics`, {
      headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    assert.match(await metrics.text(), /^status_event_streams_open 10$/m);
  } finally {
    for (const conn of conns) closeQuietly(conn);
  }
  await until(
    () => server.dashboard.streams.open === 0,
    "the closed streams give their places back",
  );
  assert.equal(server.dashboard.events.size, before);
  const said = lines.filter((line) => line.includes("event stream limit reached"));
  assert.equal(said.length, 1, "one warning for the 31 refusals");
  assert.match(said[0], /"max":10/);
  assert.equal(
    lines.filter((line) => line.includes("below the event stream limit again")).length,
    1,
  );
}
