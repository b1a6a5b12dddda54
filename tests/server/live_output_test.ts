/**
 * Live output on the dashboard: chunks stored once, bounded like a final result with a marker
 * where bytes were dropped, and the per-command event stream (SSE) resumable with Last-Event-ID.
 */
import assert from "node:assert/strict";
import { until } from "../_until.ts";
import { parseServerSentEvents } from "../../src/operator/mod.ts";
import { fromBase64, toBase64 } from "../../src/protocol/mod.ts";
import { json, makeDashboard, P, reportBody, type TestDashboard } from "./_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function deliver(d: TestDashboard, id: string, name = "echo hi") {
  const enqueued = await d.admin("POST", P.enqueue, { id, name, agent_id: "a1" });
  assert.equal(enqueued.status, 202);
  const waited = await d.agent({ path: P.wait() });
  assert.equal(waited.status, 200);
  assert.equal((await json(waited)).id, id);
  const acked = await d.agent({ path: P.ack, body: { command_id: id, attempt: 1 } });
  assert.equal(acked.status, 200);
}

function chunk(
  d: TestDashboard,
  id: string,
  offset: number,
  text: string | Uint8Array,
  extra = {},
) {
  const bytes = typeof text === "string" ? encoder.encode(text) : text;
  return d.agent({
    path: `/api/v1/agent/commands/${id}/output`,
    body: { attempt: 1, stream: "stdout", offset, data: toBase64(bytes), ...extra },
  });
}

Deno.test("dashboard stores live output once, bounded, with a marker where bytes were dropped", async (t) => {
  await using d = await makeDashboard({ outputBounds: { headBytes: 8, tailBytes: 8 } });
  await deliver(d, "c1");

  await t.step("a chunk sent twice is stored once", async () => {
    const first = await chunk(d, "c1", 0, "hello\n");
    assert.equal(first.status, 200);
    assert.deepEqual(await json(first), { stored: true, gap_bytes: 0 });
    const again = await chunk(d, "c1", 0, "hello\n");
    assert.equal(again.status, 200);
    assert.deepEqual(await json(again), { stored: true, duplicate: true });
    const view = await json(await d.admin("GET", "/api/v1/commands/c1"));
    const live = view.live_output as Record<string, unknown>;
    assert.equal(live.stdout, "hello\n");
    assert.equal(live.stdout_bytes, 6);
    assert.equal(live.stdout_truncated_bytes, 0);
    assert.equal(live.stderr, "");
  });

  await t.step("past the bounds: head, a marker with the dropped count, and the tail", async () => {
    await chunk(d, "c1", 6, "0123456789abcdef"); // 22 bytes in all
    const view = await json(await d.admin("GET", "/api/v1/commands/c1"));
    const live = view.live_output as Record<string, unknown>;
    assert.equal(live.stdout, "hello\n01\n[... 6 bytes dropped ...]\n89abcdef");
    assert.equal(live.stdout_truncated_bytes, 6);
    assert.equal(live.stdout_bytes, 22);
  });

  await t.step("a gap (a chunk that never came) is visible", async () => {
    const answer = await json(await chunk(d, "c1", 30, "XY"));
    assert.equal(answer.gap_bytes, 8);
    const live = (await json(await d.admin("GET", "/api/v1/commands/c1")))
      .live_output as Record<string, unknown>;
    assert.match(String(live.stdout), /\[\.\.\. \d+ bytes dropped \.\.\.\]\n.*XY$/s);
    assert.equal(live.stdout_bytes, 32);
  });

  await t.step("a chunk arriving after a later one does not fill the gap (docs §9)", async () => {
    // Bytes before where the stream has reached are skipped, whether they arrived or not.
    const view = async () => (await json(await d.admin("GET", "/api/v1/commands/c1"))).live_output;
    const before = await view();
    const late = await chunk(d, "c1", 28, "gh");
    assert.deepEqual(await json(late), { stored: true, duplicate: true });
    assert.deepEqual(await view(), before);
  });

  await t.step("binary output is shown as base64", async () => {
    await chunk(d, "c1", 0, new Uint8Array([0xff, 0xfe]), { stream: "stderr" });
    const live = (await json(await d.admin("GET", "/api/v1/commands/c1")))
      .live_output as Record<string, unknown>;
    assert.equal(live.stderr_encoding, "base64");
    assert.deepEqual([...fromBase64(String(live.stderr))], [0xff, 0xfe]);
  });

  await t.step("bad chunks are refused and change nothing", async () => {
    const undelivered = await chunk(d, "c1", 0, "x", { attempt: 2 });
    assert.equal(undelivered.status, 409);
    const foreign = await d.agent({
      agentId: "a2",
      token: "agent-token-a2-0123456789abcdefghijklmnopq",
      path: "/api/v1/agent/commands/c1/output",
      body: { attempt: 1, stream: "stdout", offset: 0, data: toBase64(encoder.encode("x")) },
    });
    // Another agent's command gets the same answer as an unknown one.
    assert.equal(foreign.status, 404);
    assert.deepEqual(await foreign.json(), { error: "command c1 does not exist" });
    const unknown = await chunk(d, "nope", 0, "x");
    assert.equal(unknown.status, 404);
    const notBase64 = await d.agent({
      path: "/api/v1/agent/commands/c1/output",
      body: { attempt: 1, stream: "stdout", offset: 0, data: "not base64!" },
    });
    assert.equal(notBase64.status, 400);
    assert.match(String((await json(notBase64)).error), /data/);
    const badStream = await d.agent({
      path: "/api/v1/agent/commands/c1/output",
      body: { attempt: 1, stream: "stdin", offset: 0, data: "eA==" },
    });
    assert.equal(badStream.status, 400);
    const unsigned = await d.agent({
      path: "/api/v1/agent/commands/c1/output",
      body: { attempt: 1, stream: "stdout", offset: 100, data: "eA==" },
      headers: { "X-Agent-Signature": "AAAA" },
    });
    assert.equal(unsigned.status, 401);
    const chunks = await d.store.listOutput("c1", { attempt: 1 });
    assert.ok(chunks.every((c) => c.offset < 100), "nothing of a refused chunk was stored");
  });

  await t.step("once final, the result is shown and not the live output", async () => {
    const reported = await d.agent({ path: P.report, body: reportBody("c1") });
    assert.equal(reported.status, 200);
    const view = await json(await d.admin("GET", "/api/v1/commands/c1"));
    assert.equal(view.live_output, undefined);
    assert.equal((view.result as Record<string, unknown>).stdout, "Hello from dashboard\n");
  });
});

Deno.test("live output cut in the middle of a character stays text, cut back to whole characters", async (t) => {
  await using d = await makeDashboard({ outputBounds: { headBytes: 7, tailBytes: 7 } });
  const live = async (id: string) =>
    (await json(await d.admin("GET", `/api/v1/commands/${id}`))).live_output as Record<
      string,
      unknown
    >;

  await t.step("by the bounds: the head and the tail keep whole characters", async () => {
    await deliver(d, "u1");
    // 16 two-byte characters: the head's 7 bytes end in the middle of the 4th, the tail's 7
    // bytes begin in the middle of the 13th.
    await chunk(d, "u1", 0, "é".repeat(16));
    const view = await live("u1");
    assert.equal(view.stdout_encoding, undefined);
    assert.equal(view.stdout, "ééé\n[... 20 bytes dropped ...]\nééé");
    assert.equal(view.stdout_truncated_bytes, 20);
    assert.equal(view.stdout_bytes, 32);
  });

  await t.step("by a gap: the bytes of the cut characters count as dropped", async () => {
    await deliver(d, "u2");
    const euro = encoder.encode("€"); // three bytes
    await chunk(d, "u2", 0, new Uint8Array([0x61, euro[0], euro[1]]));
    await chunk(d, "u2", 5, new Uint8Array([euro[2], 0x62]));
    const view = await live("u2");
    assert.equal(view.stdout_encoding, undefined);
    assert.equal(view.stdout, "a\n[... 5 bytes dropped ...]\nb");
    assert.equal(view.stdout_truncated_bytes, 5);
  });

  await t.step("bytes that are not UTF-8 elsewhere are still base64, whole", async () => {
    await deliver(d, "u3");
    await chunk(d, "u3", 0, new Uint8Array([0xff, 0x61, 0xc3]));
    await chunk(d, "u3", 9, new Uint8Array([0xa9]));
    const view = await live("u3");
    assert.equal(view.stdout_encoding, "base64");
    assert.deepEqual(
      [...fromBase64(String(view.stdout))],
      [0xff, 0x61, 0xc3, ...encoder.encode("\n[... 6 bytes dropped ...]\n"), 0xa9],
    );
    assert.equal(view.stdout_truncated_bytes, 6);
  });
});

interface Received {
  id: string | undefined;
  event: string;
  data: Record<string, unknown>;
}

/** Reads events until `stop` says so (or the stream ends); then closes the connection. */
async function readEvents(
  d: TestDashboard,
  id: string,
  stop: (events: Received[]) => boolean,
  lastEventId?: string,
): Promise<Received[]> {
  const controller = new AbortController();
  const headers: Record<string, string> = { Authorization: "Bearer admin-token-0123456789abcdef" };
  if (lastEventId) headers["Last-Event-ID"] = lastEventId;
  const response = await d.dashboard.app.request(`/api/v1/commands/${id}/events`, {
    headers,
    signal: controller.signal,
  });
  assert.equal(response.status, 200);
  assert.match(response.headers.get("Content-Type") ?? "", /^text\/event-stream/);
  const events: Received[] = [];
  for await (const event of parseServerSentEvents(response.body!)) {
    events.push({ id: event.id, event: event.event, data: JSON.parse(event.data) });
    if (stop(events)) break;
  }
  controller.abort();
  return events;
}

Deno.test("the event stream resumed with Last-Event-ID misses and repeats nothing, and ends with the result", async () => {
  await using d = await makeDashboard({ realClock: true });
  await deliver(d, "s1");
  await chunk(d, "s1", 0, "one\n");
  await chunk(d, "s1", 4, "two\n");

  const first = await readEvents(
    d,
    "s1",
    (events) => events.filter((e) => e.event === "output").length === 2,
  );
  assert.equal(first[0].event, "status");
  assert.equal(first[0].data.status, "running");
  const lastId = first.at(-1)!.id;
  assert.ok(lastId, "every event has an id");

  // Meanwhile: more output, then the final report.
  await chunk(d, "s1", 8, "three\n");
  await chunk(d, "s1", 4, "two\n"); // a retried chunk: stored once, not sent again
  await d.agent({ path: P.report, body: reportBody("s1") });

  const second = await readEvents(d, "s1", () => false, lastId);
  assert.deepEqual(second.map((e) => e.event), ["output", "end"], "no repeated status");
  const outputs = [...first, ...second].filter((e) => e.event === "output");
  assert.deepEqual(outputs.map((e) => e.data.offset), [0, 4, 8]);
  const text = outputs.map((e) => decoder.decode(fromBase64(String(e.data.data)))).join("");
  assert.equal(text, "one\ntwo\nthree\n");
  const end = second.at(-1)!;
  assert.equal(end.data.status, "success");
  assert.equal((end.data.result as Record<string, unknown>).exit_code, 0);
});

Deno.test("the event stream of a command already final resumes after the last chunk's id, which names no status", async () => {
  await using d = await makeDashboard({ realClock: true });
  await deliver(d, "f1");
  await chunk(d, "f1", 0, "one\n");
  await chunk(d, "f1", 4, "two\n");
  await d.agent({ path: P.report, body: reportBody("f1") });

  const first = await readEvents(d, "f1", (events) => events.length === 1);
  assert.equal(first[0].event, "output");
  assert.match(first[0].id ?? "", /^\d+:$/, "no status was sent: the id has none");

  const second = await readEvents(d, "f1", () => false, first[0].id);
  assert.deepEqual(second.map((e) => [e.event, e.data.offset]), [["output", 4], [
    "end",
    undefined,
  ]]);
});

Deno.test("the event stream wakes on new output at once and needs the admin token", async () => {
  await using d = await makeDashboard({ realClock: true, eventKeepAliveMs: 60_000 });
  await deliver(d, "w1");
  const refused = await d.dashboard.app.request("/api/v1/commands/w1/events");
  assert.equal(refused.status, 401);
  await refused.body?.cancel();
  const missing = await d.admin("GET", "/api/v1/commands/nope/events");
  assert.equal(missing.status, 404);
  const reading = readEvents(d, "w1", (events) => events.some((e) => e.event === "output"));
  // The stream is open (subscribed) before the chunk arrives; the chunk wakes it.
  await until(() => d.dashboard.events.size === 1, "the stream is subscribed");
  await chunk(d, "w1", 0, "late\n");
  const events = await reading;
  assert.equal(events.at(-1)!.event, "output");
  assert.equal(d.dashboard.events.size, 0, "the subscription ended with the connection");
});

Deno.test("a HEAD of the event stream answers its headers and leaves no stream behind", async () => {
  await using d = await makeDashboard({ realClock: true, eventKeepAliveMs: 60_000 });
  await deliver(d, "head1");
  const head = await d.admin("HEAD", "/api/v1/commands/head1/events");
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("content-type"), "text/event-stream; charset=utf-8");
  assert.equal(head.body, null);
  // Old behaviour: a stream was made and subscribed for it, and nothing ever ended it (the
  // connection's end does not abort a request that was answered).
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(d.dashboard.events.size, 0);
});

Deno.test("a follower that does not read holds no backlog: it gets what the dashboard keeps when it reads again", async () => {
  await using d = await makeDashboard({
    realClock: true,
    eventKeepAliveMs: 60_000,
    outputBounds: { headBytes: 8, tailBytes: 8 },
  });
  await deliver(d, "slow1");
  const controller = new AbortController();
  const response = await d.dashboard.app.request("/api/v1/commands/slow1/events", {
    headers: { Authorization: "Bearer admin-token-0123456789abcdef" },
    signal: controller.signal,
  });
  const events = parseServerSentEvents(response.body!)[Symbol.asyncIterator]();
  assert.equal((await events.next()).value?.event, "status");
  // The follower stops reading while 300 chunks of 8 bytes arrive, each one waking its stream.
  // Each is stored (the dashboard keeps the first and the last 8 bytes), and nothing of them
  // may pile up for the follower.
  let sent = 0;
  const wrapped = d.dashboard.events;
  const unsubscribe = wrapped.subscribe("slow1", () => sent++);
  for (let i = 0; i < 300; i++) {
    assert.equal(
      (await chunk(d, "slow1", i * 8, `line${String(i).padStart(3, "0")}\n`)).status,
      200,
    );
    await new Promise((resolve) => setTimeout(resolve, 0)); // the stream's turn
  }
  unsubscribe();
  assert.equal(sent, 300);
  await d.agent({ path: P.report, body: reportBody("slow1") });
  const outputs: number[] = [];
  for (;;) {
    const next = await events.next();
    if (next.done) break;
    if (next.value.event === "output") outputs.push(JSON.parse(next.value.data).offset);
    if (next.value.event === "end") break;
  }
  controller.abort();
  // Old behaviour: every chunk was queued for it as it came (300 events, all in memory).
  assert.ok(outputs.length <= 4, `a slow follower got ${outputs.length} chunks`);
  assert.equal(outputs.at(-1), 299 * 8, "it ends with the last chunk");
});

Deno.test("closing the dashboard ends a stream whose reader stopped reading", async () => {
  await using d = await makeDashboard({ realClock: true, eventKeepAliveMs: 60_000 });
  await deliver(d, "stalled");
  const response = await d.admin("GET", "/api/v1/commands/stalled/events");
  const events = parseServerSentEvents(response.body!)[Symbol.asyncIterator]();
  assert.equal((await events.next()).value?.event, "status");
  await chunk(d, "stalled", 0, "one\n");
  await chunk(d, "stalled", 4, "two\n"); // the stream waits for its reader now
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(d.dashboard.events.size, 1);
  await d.dashboard.close();
  // Ended by the close itself, not by a read that lets it look again.
  await until(() => d.dashboard.events.size === 0, "the stream ends without being read");
  const seen: string[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const ended = await Promise.race([
    (async () => {
      for (let next = await events.next(); !next.done; next = await events.next()) {
        seen.push(next.value.event);
      }
      return true;
    })(),
    new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), 5000)),
  ]);
  clearTimeout(timer);
  assert.ok(ended, `the stream ended (events after the close: ${seen})`);
  assert.ok(!seen.includes("end"));
});

Deno.test("closing the dashboard ends open event streams (shutdown does not wait for them)", async () => {
  await using d = await makeDashboard({ realClock: true, eventKeepAliveMs: 60_000 });
  await deliver(d, "x1");
  const reading = readEvents(d, "x1", () => false);
  await until(() => d.dashboard.events.size === 1, "the stream is subscribed");
  await d.dashboard.close();
  const events = await reading;
  assert.deepEqual(events.map((e) => e.event), ["status"], "the stream ended without an end");
});

Deno.test("live output of a command final for longer than the retention is pruned", async () => {
  await using d = await makeDashboard({ liveOutputRetentionSecs: 600 });
  await deliver(d, "r1");
  await chunk(d, "r1", 0, "kept a while\n");
  await d.agent({ path: P.report, body: reportBody("r1") });
  assert.equal(await d.dashboard.pruneOutput(), 0, "within the retention");
  d.clock.advance(601_000);
  assert.equal(await d.dashboard.pruneOutput(), 1);
  assert.deepEqual(await d.store.listOutput("r1"), []);
  const view = await json(await d.admin("GET", "/api/v1/commands/r1"));
  assert.equal((view.result as Record<string, unknown>).stdout, "Hello from dashboard\n");
});

Deno.test("a chunk ending beyond 2^53 - 1 is a 400, and the stream goes on", async () => {
  await using d = await makeDashboard();
  await deliver(d, "c1");
  // The auditor's chunk: offset 2^53 - 1 and 3 bytes ("aGkK").
  for (const offset of [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER - 2]) {
    const refused = await chunk(d, "c1", offset, "hi\n");
    const answer = await json(refused);
    assert.equal(refused.status, 400);
    assert.equal(
      answer.error,
      `field "offset": offset plus the data's length must be at most ${Number.MAX_SAFE_INTEGER}`,
    );
  }
  const next = await chunk(d, "c1", 0, "hello\n");
  assert.equal(next.status, 200);
  assert.deepEqual(await json(next), { stored: true, gap_bytes: 0 });
  const view = await d.admin("GET", "/api/v1/commands/c1");
  assert.equal(view.status, 200);
  assert.equal(((await json(view)).live_output as { stdout: string }).stdout, "hello\n");
  // Ending exactly at 2^53 - 1 is the largest accepted, and later chunks are answered.
  const edge = await chunk(d, "c1", Number.MAX_SAFE_INTEGER - 3, "hi\n");
  assert.equal(edge.status, 200);
  await edge.body?.cancel();
  const after = await chunk(d, "c1", 6, "more");
  assert.equal(after.status, 200);
  assert.deepEqual(await json(after), { stored: true, duplicate: true });
  assert.equal((await d.admin("GET", "/api/v1/commands/c1")).status, 200);
});
