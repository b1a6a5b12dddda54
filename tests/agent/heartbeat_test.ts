import assert from "node:assert/strict";
import { until } from "../_until.ts";
import {
  defaultMetricsSources,
  MetricsCollector,
  parseDf,
  parseProcStat,
  runHeartbeat,
} from "../../src/agent/mod.ts";
import { DashboardClient } from "../../src/agent/client.ts";
import { fleetHeartbeat, HEARTBEAT_404_EVERY } from "../../src/agent/heartbeat.ts";
import { StubDashboard } from "../_stub_dashboard.ts";
import { captureLogs, RecordingClock } from "./_helpers.ts";

Deno.test("metrics parsers read /proc/stat and df -Pk output", () => {
  assert.deepEqual(
    parseProcStat("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n"),
    { busy: 150, total: 1000 },
  );
  assert.equal(parseProcStat("intr 1 2 3"), undefined);
  const df = "Filesystem 1024-blocks Used Available Capacity Mounted on\n" +
    "/dev/root 1000 400 600 40% /\n";
  assert.deepEqual(parseDf(df), { total: 1000 * 1024, available: 600 * 1024 });
  assert.equal(parseDf("garbage"), undefined);
});

Deno.test("the collector computes CPU use from deltas and leaves out what it cannot read", async () => {
  const times = [{ busy: 100, total: 1000 }, { busy: 350, total: 1500 }];
  const collector = new MetricsCollector("agent-1", {
    cpuTimes: () => times.shift(),
    memory: () => ({
      total: 1000,
      free: 100,
      available: 250,
      buffers: 0,
      cached: 0,
      swapTotal: 0,
      swapFree: 0,
    }),
    disk: () => Promise.resolve({ total: 2000, available: 500 }),
  });
  const sample = await collector.collect();
  assert.equal(sample.agent_id, "agent-1");
  assert.equal(sample.cpu_percent, 50);
  assert.deepEqual(sample.memory, { total_bytes: 1000, available_bytes: 250, used_percent: 75 });
  assert.deepEqual(sample.disk, {
    path: "/",
    total_bytes: 2000,
    available_bytes: 500,
    used_percent: 75,
  });
  assert.equal(sample.load_avg, undefined);
});

Deno.test("the default sources measure this host under --allow-all", async () => {
  const { sources, missing } = defaultMetricsSources();
  assert.deepEqual(missing, []);
  const collector = new MetricsCollector("agent-1", sources);
  const sample = await collector.collect();
  assert.ok(sample.memory && sample.memory.total_bytes > 0);
  assert.ok(sample.disk && sample.disk.total_bytes > 0);
  assert.equal(sample.load_avg?.length, 3);
});

Deno.test("the heartbeat posts samples to the webhook with a bounded retry", async (t) => {
  await t.step("same origin as the dashboard: signed, retried after a 500", async () => {
    using logs = captureLogs();
    await using stub = new StubDashboard();
    let failures = 0;
    stub.override = (seen) => {
      if (seen.kind === "metrics" && failures < 1) {
        failures++;
        return Response.json({ error: "busy" }, { status: 503 });
      }
    };
    const stop = new AbortController();
    const token = "0123456789abcdef0123456789abcdef";
    const done = runHeartbeat({
      agentId: "agent-1",
      intervalSecs: 30,
      webhook: `${stub.url}/metrics`,
      dashboardUrl: stub.url,
      agentToken: token,
      retryDelayMs: 10,
      sources: { sources: { loadavg: () => [1, 2, 3] }, missing: ["memory is skipped"] },
      clock: new RecordingClock(),
    }, stop.signal);
    await stub.until(() => stub.metrics.length >= 1, 10_000, "a sample");
    stop.abort();
    await done;
    const posts = stub.seen.filter((s) => s.kind === "metrics");
    assert.equal(posts[0].headers.get("X-Agent-Id"), "agent-1");
    assert.equal(posts[0].headers.get("Authorization"), `Bearer ${token}`);
    assert.equal(posts[0].headers.get("Content-Type"), "application/json");
    assert.equal((stub.metrics[0] as { agent_id: string }).agent_id, "agent-1");
    assert.deepEqual((stub.metrics[0] as { load_avg: number[] }).load_avg, [1, 2, 3]);
    assert.ok(logs.has("metrics heartbeat started"));
    assert.equal(logs.messages().filter((m) => /memory is skipped/.test(m)).length, 1);
    assert.ok(logs.records.some((r) => r.message === "metrics heartbeat" && r.level === "debug"));
  });

  await t.step("a signed heartbeat is not followed to where a redirect leads", async () => {
    using logs = captureLogs();
    await using stub = new StubDashboard();
    await using elsewhere = new StubDashboard();
    stub.override = (seen) =>
      seen.kind === "metrics"
        ? new Response(null, { status: 307, headers: { Location: `${elsewhere.url}/metrics` } })
        : undefined;
    const stop = new AbortController();
    const done = runHeartbeat({
      agentId: "agent-1",
      intervalSecs: 30,
      webhook: `${stub.url}/metrics`,
      dashboardUrl: stub.url,
      agentToken: "0123456789abcdef0123456789abcdef",
      retryDelayMs: 10,
      sources: { sources: {}, missing: [] },
      clock: new RecordingClock(),
    }, stop.signal);
    await until(() => logs.has("metrics heartbeat not delivered to the webhook"), "given up");
    stop.abort();
    await done;
    // The recording clock does not wait: a sample or two more may come before the stop.
    assert.ok(stub.seen.filter((s) => s.kind === "metrics").length >= 1);
    assert.deepEqual(elsewhere.seen, []);
    const record = logs.records.find((r) =>
      r.message === "metrics heartbeat not delivered to the webhook"
    );
    assert.match(String(record?.error), /redirects \(307\); not followed/);
  });

  await t.step(
    "a webhook that cannot be reached is named with the reason, not 'fetch failed'",
    async () => {
      using logs = captureLogs();
      const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = closed.addr.port;
      closed.close();
      const stop = new AbortController();
      const done = runHeartbeat({
        agentId: "agent-1",
        intervalSecs: 30,
        webhook: `http://127.0.0.1:${port}/metrics`,
        retries: 0,
        sources: { sources: {}, missing: [] },
        clock: new RecordingClock(),
      }, stop.signal);
      await until(() => logs.has("metrics heartbeat not delivered to the webhook"), "given up");
      stop.abort();
      await done;
      const record = logs.records.find((r) =>
        r.message === "metrics heartbeat not delivered to the webhook"
      );
      assert.equal(record?.error, "connection refused");
    },
  );

  await t.step("another origin never gets the token; failures are given up", async () => {
    using logs = captureLogs();
    await using stub = new StubDashboard();
    stub.override = (seen) =>
      seen.kind === "metrics" ? Response.json({ error: "down" }, { status: 500 }) : undefined;
    const stop = new AbortController();
    const done = runHeartbeat({
      agentId: "agent-1",
      intervalSecs: 30,
      webhook: `${stub.url}/metrics?key=hook-secret-path`,
      dashboardUrl: "http://dashboard.example:5000",
      agentToken: "0123456789abcdef0123456789abcdef",
      retries: 2,
      retryDelayMs: 10,
      sources: { sources: {}, missing: [] },
      clock: new RecordingClock(),
    }, stop.signal);
    await stub.until(() => stub.seen.filter((s) => s.kind === "metrics").length >= 3, 10_000);
    await until(() => logs.has("metrics heartbeat not delivered to the webhook"), "given up");
    stop.abort();
    await done;
    const posts = stub.seen.filter((s) => s.kind === "metrics");
    assert.equal(posts[0].headers.get("Authorization"), null);
    assert.equal(posts[0].headers.get("X-Agent-Id"), "agent-1");
    assert.ok(logs.has("metrics heartbeat not delivered to the webhook"));
    // The webhook's path and query (often its secret) are never logged: its origin only.
    for (const record of logs.records) {
      assert.ok(!JSON.stringify(record).includes("hook-secret-path"), JSON.stringify(record));
    }
    assert.ok(logs.records.some((r) => r.webhook === `${stub.url}/…`));
  });
});

Deno.test("a heartbeat the dashboard refuses is one warning per answer, not silence nor one a sample", async () => {
  using logs = captureLogs();
  const answers = [413, 413, 413, 401, 401, 500, 503, 200, 413];
  let at = 0;
  const client = new DashboardClient({
    dashboardUrl: "http://dashboard.invalid",
    agentId: "agent-1",
    fetch: () =>
      Promise.resolve(
        answers[at] === 200
          ? Response.json({ recorded: true })
          : Response.json({ error: `refused ${answers[at]}` }, { status: answers[at] }),
      ),
  });
  const send = fleetHeartbeat({
    client,
    version: "1.0.0",
    deploymentHash: "default",
    instanceId: () => "i-1",
    labels: { role: "web" },
  });
  const sample = await new MetricsCollector("agent-1", {}, () => 0).collect();
  for (at = 0; at < answers.length; at++) await send(sample, new AbortController().signal);
  const warnings = logs.records.filter((r) => r.level === "warning");
  // A refusal does not go away by itself: the fleet view lacks the figures and labels until
  // someone acts, so it is said (once per answer); a 5xx is the poll loop's to tell.
  assert.deepEqual(warnings.map((r) => [r.status, r.error]), [
    [413, "refused 413"],
    [401, "refused 401"],
  ]);
  assert.match(String(warnings[0].message), /refused the heartbeat/);
  assert.equal(
    logs.records.filter((r) => r.message === "heartbeat not delivered to the dashboard").length,
    6,
    "the rest at debug level",
  );
});

Deno.test("heartbeats answered 404 are backed off, not stopped for good", async (t) => {
  // One 404 (a dashboard redeployed behind a proxy, a route missing for a moment) stopped the
  // heartbeats until the agent restarted: the fleet view lost the agent's figures and labels.
  const sending = (answer: (request: number) => number) => {
    const sent: number[] = [];
    let sample = 0;
    const client = new DashboardClient({
      dashboardUrl: "http://dashboard.invalid",
      agentId: "agent-1",
      fetch: () => {
        sent.push(sample);
        const status = answer(sent.length);
        return Promise.resolve(
          status === 200
            ? Response.json({ recorded: true })
            : Response.json({ error: "no route for POST /api/v1/agent/heartbeat" }, { status }),
        );
      },
    });
    const send = fleetHeartbeat({
      client,
      version: "1.0.0",
      deploymentHash: "default",
      instanceId: () => "i-1",
      labels: {},
    });
    return {
      sent,
      async samples(n: number) {
        const taken = await new MetricsCollector("agent-1", {}, () => 0).collect();
        for (; n > 0; n--, sample++) await send(taken, new AbortController().signal);
      },
    };
  };

  await t.step("sent again after 1, 2, 4 samples, and said when it is taken again", async () => {
    using logs = captureLogs();
    const heartbeats = sending((request) => request <= 3 ? 404 : 200);
    await heartbeats.samples(12);
    assert.deepEqual(heartbeats.sent, [0, 2, 5, 10, 11]);
    assert.equal(
      logs.records.filter((r) => /no heartbeat endpoint/.test(String(r.message))).length,
      1,
    );
    const again = logs.records.find((r) => /takes heartbeats again/.test(String(r.message)));
    assert.equal(again?.times, 3);
    assert.equal(again?.level, "info");
  });

  await t.step(
    `a dashboard that keeps answering 404 gets one sample in ${HEARTBEAT_404_EVERY}`,
    async () => {
      using logs = captureLogs();
      const heartbeats = sending(() => 404);
      await heartbeats.samples(200);
      const gaps = heartbeats.sent.slice(1).map((at, i) => at - heartbeats.sent[i]);
      assert.deepEqual(gaps.slice(0, 6), [2, 3, 5, 9, 16, 16]);
      assert.ok(gaps.every((gap) => gap <= HEARTBEAT_404_EVERY), `${gaps}`);
      assert.equal(
        logs.records.filter((r) => r.level === "info").length,
        1,
        "one line while it lasts",
      );
    },
  );
});
