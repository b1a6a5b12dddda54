/**
 * The event streams one console session may hold open: a browser holds six connections at most,
 * so more is a script with the session's cookie, whose streams (connections the dashboard never
 * closes to make room) would in the end keep agents out.
 */
import assert from "node:assert/strict";
import { MAX_STREAMS_PER_SESSION, SessionStreams } from "../../src/server/web/session.ts";
import { ADMIN_TOKEN, json, makeDashboard, P, type TestDashboard } from "./_helpers.ts";

/** Logs in to the console as a browser does; returns the session's `Cookie` header. */
async function login(d: TestDashboard): Promise<string> {
  const form = await d.dashboard.app.request("/login");
  const loginCookie = form.headers.getSetCookie()[0].split(";")[0];
  const csrf = /name="csrf" value="([^"]+)"/.exec(await form.text())?.[1] ?? "";
  const done = await d.dashboard.app.request("/login", {
    method: "POST",
    headers: { Cookie: loginCookie, "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token: ADMIN_TOKEN, csrf, next: "/" }),
  });
  assert.equal(done.status, 303);
  return done.headers.getSetCookie()[0].split(";")[0];
}

Deno.test("one console session holds at most MAX_STREAMS_PER_SESSION event streams", async (t) => {
  await using d = await makeDashboard();
  const queued = await d.admin("POST", P.enqueue, { id: "c1", agent_id: "a1", name: "sleep 5" });
  assert.equal(queued.status, 202);
  const run = await d.admin("POST", "/api/v1/runs", {
    id: "r1",
    name: "sleep 5",
    target: { agents: ["a1", "a2"] },
  });
  assert.equal(run.status, 201);
  const session = await login(d);
  const open = (path: string, headers: Record<string, string> = { Cookie: session }) =>
    d.dashboard.app.request(path, { headers });
  const streams: Response[] = [];
  const before = d.dashboard.events.size; // the run's own subscriptions to its commands

  await t.step("up to the limit, commands' and runs' streams alike, each opens", async () => {
    for (let i = 0; i < MAX_STREAMS_PER_SESSION; i++) {
      const stream = await open(i % 2 ? "/api/v1/commands/c1/events" : "/api/v1/runs/r1/events");
      assert.equal(stream.status, 200, `stream ${i + 1}`);
      streams.push(stream);
    }
  });

  await t.step("one more is 429 saying why, with Retry-After, and opens nothing", async () => {
    const subscribed = d.dashboard.events.size;
    for (const path of ["/api/v1/commands/c1/events", "/api/v1/runs/r1/events"]) {
      const refused = await open(path);
      assert.equal(refused.status, 429, path);
      assert.ok(Number(refused.headers.get("Retry-After")) > 0);
      const body = await json(refused);
      assert.match(String(body.error), new RegExp(`${MAX_STREAMS_PER_SESSION} event streams open`));
      assert.equal(
        (body.details as Record<string, unknown>).max_streams,
        MAX_STREAMS_PER_SESSION,
      );
    }
    assert.equal(d.dashboard.events.size, subscribed);
  });

  await t.step(
    "the session's reads, its HEAD, another session and the admin token go on",
    async () => {
      const read = await open("/api/v1/commands/c1");
      assert.equal(read.status, 200);
      await read.body?.cancel();
      const head = await d.dashboard.app.request("/api/v1/commands/c1/events", {
        method: "HEAD",
        headers: { Cookie: session },
      });
      assert.equal(head.status, 200);
      const other = await open("/api/v1/commands/c1/events", { Cookie: await login(d) });
      assert.equal(other.status, 200);
      const admin = await open("/api/v1/commands/c1/events", {
        Authorization: `Bearer ${ADMIN_TOKEN}`,
      });
      assert.equal(admin.status, 200);
      await other.body?.cancel();
      await admin.body?.cancel();
    },
  );

  await t.step("a stream closed by its client gives its place back", async () => {
    await streams.pop()!.body?.cancel();
    const again = await open("/api/v1/commands/c1/events");
    assert.equal(again.status, 200);
    streams.push(again);
    const beyond = await open("/api/v1/commands/c1/events");
    assert.equal(beyond.status, 429);
    await beyond.body?.cancel();
  });

  for (const stream of streams) await stream.body?.cancel();
  assert.equal(d.dashboard.events.size, before);
});

Deno.test("SessionStreams counts each session's places; a release given twice counts once", () => {
  const streams = new SessionStreams(2);
  const first = streams.take("n1");
  const second = streams.take("n1");
  assert.ok(first && second);
  assert.equal(streams.take("n1"), undefined);
  assert.ok(streams.take("n2"), "another session has its own places");
  first();
  first();
  assert.equal(streams.openOf("n1"), 1);
  assert.ok(streams.take("n1"));
  assert.equal(streams.take("n1"), undefined);
  assert.throws(() => new SessionStreams(0), /max must be a whole number of at least 1, got 0/);
});
