/**
 * The event streams' machinery (`sse.ts`) under clients that do not behave, over real sockets: a
 * flood of streams with the admin token, a follower that never reads (and one that reads slowly),
 * a storm of streams opened and closed.
 */
import assert from "node:assert/strict";
import { until } from "../_until.ts";
import { closeLogging, setupLogging } from "../../src/log/mod.ts";
import {
  OpenStreams,
  STALLED_KEEP_ALIVES,
  streamLimitFor,
  STREAMS_SHARE_OF_CONNECTIONS,
} from "../../src/server/sse.ts";
import { LIVE_OUTPUT_HEAD_BYTES, LIVE_OUTPUT_TAIL_BYTES } from "../../src/server/live_output.ts";
import { ServerResponse } from "node:http";
import { ADMIN_TOKEN, agentHeaders, FakeClock, makeDashboard, P, T0 } from "./_helpers.ts";
import { closeQuietly, rawConnect, readAll, readAnswer, send } from "./_sockets.ts";
import { adminServer, agentCall, enqueue, streamHead } from "./_streams.ts";

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

/** What the dashboard wrote to the answers of event streams: the most it held unsent, and in all. */
function watchStreamWrites(): { maxBuffered: number; written: number } & Disposable {
  const write = ServerResponse.prototype.write;
  const seen = {
    maxBuffered: 0,
    written: 0,
    [Symbol.dispose]() {
      ServerResponse.prototype.write = write;
    },
  };
  ServerResponse.prototype.write = function (this: ServerResponse, ...args: unknown[]) {
    const result = (write as (...a: unknown[]) => boolean).apply(this, args);
    if (this.req?.url?.endsWith("/events")) {
      const chunk = args[0] as string | Uint8Array;
      seen.written += typeof chunk === "string" ? chunk.length : chunk.byteLength;
      seen.maxBuffered = Math.max(seen.maxBuffered, this.writableLength);
    }
    return result;
  } as typeof write;
  return seen;
}

Deno.test("a follower that never reads holds a bounded buffer under 50 MB of output, and is dropped once it took nothing for four keep-alives", async () => {
  const lines: string[] = [];
  setupLogging({ format: "json", level: "info", write: (line) => lines.push(line) });
  try {
    await neverReads(lines);
  } finally {
    closeLogging();
  }
});

async function neverReads(lines: string[]): Promise<void> {
  const clock = new FakeClock(T0);
  await using fixture = await adminServer({ clock });
  const { server } = fixture;
  await enqueue(server, "c1");
  const waited = await agentCall(server, clock.now(), P.wait("default", 1));
  assert.equal((await waited.json()).id, "c1");
  const acked = await agentCall(server, clock.now(), P.ack, { command_id: "c1", attempt: 1 });
  assert.equal(acked.status, 200);
  await acked.body?.cancel();

  using writes = watchStreamWrites();
  const conn = await rawConnect(server);
  try {
    await send(conn, streamHead("c1"));
    await until(() => server.dashboard.streams.open === 1, "the stream is open");
    // 50 MB of output arrives for the command in 32 KiB chunks, each stored (the dashboard keeps
    // the first and the last 32 KiB) and published as the output route does; its follower reads
    // none of it.
    const chunk = new Uint8Array(32 * 1024).fill(0x61);
    for (let offset = 0; offset < 50_000_000; offset += chunk.length) {
      const outcome = await fixture.store.appendOutput({
        commandId: "c1",
        attempt: 1,
        stream: "stdout",
        offset,
        data: chunk,
        now: clock.now(),
        keep: { headBytes: LIVE_OUTPUT_HEAD_BYTES, tailBytes: LIVE_OUTPUT_TAIL_BYTES },
      });
      assert.equal(outcome.outcome, "stored");
      server.dashboard.events.publish("c1", "output");
      await new Promise((resolve) => setTimeout(resolve, 0)); // the stream's turn
    }
    // Were every chunk read and sent as it came, what the socket cannot take would pile up in
    // the dashboard (67 MB of events in base64). The stream reads the store again only once its
    // client took what it was sent: it read a few megabytes of the 50 (what the kernel's buffers
    // took), node's buffer of the answer holds a few events at most, and nothing more waits.
    assert.ok(
      fixture.readOutputBytes() < 16 * 1024 * 1024,
      `${fixture.readOutputBytes()} bytes were read to be sent`,
    );
    assert.ok(writes.maxBuffered < 1024 * 1024, `${writes.maxBuffered} bytes waited in node`);
    assert.ok(writes.written < 16 * 1024 * 1024, `${writes.written} bytes were written`);
    assert.equal(server.dashboard.streams.open, 1, "the stream waits for its reader");

    const stallMs = STALLED_KEEP_ALIVES * 15_000;
    clock.advance(stallMs - 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(server.dashboard.streams.open, 1, "not dropped before the time");
    clock.advance(1);
    await until(() => server.dashboard.streams.open === 0, "the stalled stream ends");
    assert.equal(server.dashboard.events.size, 0);
    const rest = await readAll(conn, 5000);
    assert.ok(rest.closed, "its connection is closed");
    const said = lines.filter((line) => line.includes("took nothing for"));
    assert.equal(said.length, 1);
    assert.match(said[0], /"secs":60/);
    assert.match(said[0], /"path":"\/api\/v1\/commands\/c1\/events"/);
  } finally {
    closeQuietly(conn);
  }
}

Deno.test("a follower that reads slowly is not dropped as long as it takes something every four keep-alives", async () => {
  await using d = await makeDashboard({ outputBounds: { headBytes: 1 << 20, tailBytes: 1 << 20 } });
  const enqueued = await d.admin("POST", P.enqueue, { id: "c1", name: "echo hi", agent_id: "a1" });
  assert.equal(enqueued.status, 202);
  assert.equal((await d.agent({ path: P.wait() })).status, 200);
  const controller = new AbortController();
  const response = await d.dashboard.app.request("/api/v1/commands/c1/events", {
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
    signal: controller.signal,
  });
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  const next = async () => decoder.decode((await reader.read()).value);
  assert.match(await next(), /^retry: 1000/);
  assert.match(await next(), /^id: 0:delivered\.1\.0\nevent: status\n/);
  /** Stores `n` chunks of output and wakes the stream once: it sends them in one read. */
  const output = async (from: number, n: number) => {
    for (let i = from; i < from + n; i++) {
      await d.store.appendOutput({
        commandId: "c1",
        attempt: 1,
        stream: "stdout",
        offset: i * 8,
        data: new TextEncoder().encode(`line${String(i).padStart(3, "0")}\n`),
        now: d.clock.now(),
        keep: { headBytes: 1 << 20, tailBytes: 1 << 20 },
      });
    }
    d.dashboard.events.publish("c1", "output");
  };
  const keepAliveMs = 15_000;
  const stallMs = STALLED_KEEP_ALIVES * keepAliveMs;
  try {
    await output(0, 50);
    // One event every 50 s of the dashboard's clock: slower than the output, never stopped.
    for (let i = 0; i < 50; i++) {
      assert.match(await next(), new RegExp(`^id: ${i + 1}:delivered\\.1\\.0\\nevent: output\\n`));
      d.clock.advance(50_000);
    }
    assert.equal(d.dashboard.streams.open, 1, "still followed after 2,500 s");
    // Then it stops reading while more waits for it.
    await output(50, 20);
    let event = await next();
    while (event.startsWith(": keep-alive")) event = await next();
    assert.match(event, /^id: 51:delivered\.1\.0\nevent: output\n/);
    d.clock.advance(stallMs - 1);
    assert.equal(d.dashboard.streams.open, 1);
    d.clock.advance(1);
    await until(() => d.dashboard.streams.open === 0, "the stalled stream ends");
    // Made in process, the stream has no connection to close: its reader gets the error.
    await assert.rejects(reader.read(), /the client took nothing for 60 s/);
    assert.equal(d.dashboard.events.size, 0);
  } finally {
    controller.abort();
  }
});

Deno.test("a storm of 500 event streams opened and closed leaves no listener, timer or place behind", async () => {
  const clock = new FakeClock(T0);
  await using fixture = await adminServer({ clock });
  const { server } = fixture;
  await enqueue(server, "c1");
  const run = await fetch(`${server.url}/api/v1/runs`, {
    method: "POST",
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify({ id: "r1", name: "echo hi", target: { agents: ["a1"] } }),
  });
  assert.equal(run.status, 201);
  await run.body?.cancel();
  const hub = server.dashboard.events.size; // the run's own subscription to its command
  const timers = clock.pending;
  for (let i = 0; i < 500; i++) {
    const conn = await rawConnect(server);
    await send(
      conn,
      streamHead("c1").replace("/commands/c1/", i % 2 ? "/commands/c1/" : "/runs/r1/"),
    );
    // Half are closed once the stream has begun, half before it is answered.
    if (i % 4 < 2) await conn.read(new Uint8Array(1024));
    conn.close();
  }
  await until(
    () => server.dashboard.streams.open === 0 && server.dashboard.events.size === hub,
    "every stream has ended",
  );
  assert.equal(server.dashboard.runs.subscribers, 0, "no run listener is left");
  assert.equal(clock.pending, timers, "no keep-alive or stall timer is left");
});
