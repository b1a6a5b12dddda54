/**
 * The dashboard's Prometheus metrics: parsed as Prometheus text with a real parser, counters that
 * move as commands run, and the admin token outside dev mode (or `--metrics-bind`).
 */
import assert from "node:assert/strict";
// @ts-types="./_prometheus_parser.d.ts"
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { until } from "../_until.ts";
import { parseStrict } from "../_prom_strict.ts";
import { CommandEvents, DashboardMetrics, startServer } from "../../src/server/mod.ts";
import { openSqliteStore } from "../../src/store/mod.ts";
import { observeStore } from "../../src/server/observed_store.ts";
import { routeLabel } from "../../src/server/metrics.ts";
import { ADMIN_TOKEN, json, makeDashboard, P, reportBody, type TestDashboard } from "./_helpers.ts";
import { closeQuietly, rawConnect, readAll, send } from "./_sockets.ts";

interface Family {
  name: string;
  type: string;
  metrics: Array<{
    value?: string;
    labels?: Record<string, string>;
    count?: string;
    sum?: string;
    buckets?: Record<string, string>;
  }>;
}

async function scrape(d: TestDashboard): Promise<Map<string, Family>> {
  const response = await d.admin("GET", "/metrics");
  assert.equal(response.status, 200);
  assert.match(response.headers.get("Content-Type") ?? "", /^text\/plain; version=0\.0\.4/);
  const families = parsePrometheusTextFormat(await response.text()) as Family[];
  return new Map(families.map((f) => [f.name, f]));
}

function value(families: Map<string, Family>, name: string, labels: Record<string, string> = {}) {
  const family = families.get(name);
  assert.ok(family, `metric ${name} is exported`);
  const metric = family.metrics.find((m) =>
    Object.entries(labels).every(([k, v]) => m.labels?.[k] === v)
  );
  if (!metric) return 0;
  return Number(metric.value ?? metric.count);
}

Deno.test("/metrics answers while the store does not: status_store_up 0, the store's gauges NaN", async () => {
  await using d = await makeDashboard();
  await d.admin("POST", P.enqueue, { id: "m1", name: "echo hi", agent_id: "a1" });
  const up = await scrape(d);
  assert.equal(value(up, "status_store_up"), 1);
  assert.equal(value(up, "status_commands", { status: "queued" }), 1);
  assert.equal(value(up, "status_agents_online"), 0);

  await d.store.close();
  const down = await scrape(d);
  assert.equal(value(down, "status_store_up"), 0);
  assert.ok(Number.isNaN(value(down, "status_agents_online")), "not known, not 0");
  assert.ok(Number.isNaN(value(down, "status_commands", { status: "queued" })));
  assert.ok(value(down, "status_http_requests_total", { route: "/metrics", status: "200" }) >= 1);
  assert.ok(value(down, "process_resident_memory_bytes") > 0, "the process's own are there");
});

Deno.test("a scrape while the store does not answer spells its NaN as the text format does", async () => {
  // prom-client writes "Nan": Prometheus reads it (its float parser ignores case), but the text
  // format, OpenMetrics and docs/protocol.md spell it NaN, and a strict reader refused the scrape.
  await using d = await makeDashboard();
  await d.store.close();
  const text = await (await d.admin("GET", "/metrics")).text();
  const families = parseStrict(text);
  assert.equal(families.get("status_store_up")?.samples[0].value, 0);
  assert.ok(Number.isNaN(families.get("status_agents_online")?.samples[0].value));
  assert.match(text, /^status_agents_online NaN$/m);
  assert.match(text, /^status_commands\{status="queued"\} NaN$/m);
});

Deno.test("/metrics parses as Prometheus text and its counters move as commands run", async () => {
  await using d = await makeDashboard();
  const before = await scrape(d);
  for (
    const [name, type] of [
      ["status_agents_waiting", "GAUGE"],
      ["status_agents_online", "GAUGE"],
      ["status_commands", "GAUGE"],
      ["status_store_up", "GAUGE"],
      ["status_commands_finished_total", "COUNTER"],
      ["status_command_delivery_latency_seconds", "HISTOGRAM"],
      ["status_command_duration_seconds", "HISTOGRAM"],
      ["status_http_requests_total", "COUNTER"],
      ["status_auth_refusals_total", "COUNTER"],
      ["status_rate_limit_refusals_total", "COUNTER"],
      ["status_leases_expired_total", "COUNTER"],
      ["status_redeliveries_total", "COUNTER"],
      ["status_store_operation_duration_seconds", "HISTOGRAM"],
    ]
  ) {
    assert.equal(before.get(name)?.type, type, `${name} is a ${type}`);
  }
  assert.equal(value(before, "status_commands_finished_total", { status: "success" }), 0);

  // One command through its whole life, a lease that expires, and a refused request.
  await d.admin("POST", P.enqueue, { id: "m1", name: "echo hi", agent_id: "a1" });
  assert.equal(value(await scrape(d), "status_commands", { status: "queued" }), 1);
  d.clock.advance(250);
  assert.equal((await d.agent({ path: P.wait() })).status, 200);
  await d.agent({ path: P.ack, body: { command_id: "m1", attempt: 1 } });
  await d.agent({ path: P.report, body: reportBody("m1") });
  await d.admin("POST", P.enqueue, { id: "m2", name: "echo lease", agent_id: "a1" });
  assert.equal((await d.agent({ path: P.wait() })).status, 200);
  d.clock.advance(31_000);
  await d.dashboard.expireLeases();
  assert.equal((await d.agent({ path: P.wait() })).status, 200); // redelivered, attempt 2
  const refused = await d.agent({
    path: P.ack,
    body: { command_id: "m2", attempt: 2 },
    token: "wrong-token-0123456789",
  });
  assert.equal(refused.status, 401);

  const after = await scrape(d);
  assert.equal(value(after, "status_commands_finished_total", { status: "success" }), 1);
  assert.equal(value(after, "status_commands", { status: "success" }), 1);
  assert.equal(value(after, "status_commands", { status: "delivered" }), 1);
  assert.equal(value(after, "status_leases_expired_total", { outcome: "requeued" }), 1);
  assert.equal(value(after, "status_redeliveries_total"), 1);
  assert.equal(value(after, "status_auth_refusals_total", { reason: "wrong_token" }), 1);
  assert.equal(value(after, "status_command_duration_seconds"), 1, "one duration observed");
  const latency = after.get("status_command_delivery_latency_seconds")!.metrics[0];
  assert.equal(Number(latency.count), 2, "two first deliveries");
  assert.ok(Number(latency.sum) >= 0.25, "enqueue to delivery took the clock's 250 ms");
  assert.ok(
    value(after, "status_http_requests_total", {
      route: "/api/v1/agent/commands/report",
      status: "200",
    }) >= 1,
  );
  // The parser drops the labels of labelled histograms; read that one from the registry.
  const registry = (d.dashboard.metrics as DashboardMetrics).registry;
  const storeLatency = (await registry.getMetricsAsJSON())
    .find((m) => m.name === "status_store_operation_duration_seconds")!;
  const reportCount = storeLatency.values.find((v) =>
    (v as { metricName?: string }).metricName ===
      "status_store_operation_duration_seconds_count" &&
    v.labels.operation === "report"
  );
  assert.equal(reportCount?.value, 1, "one report transaction timed");
});

Deno.test("an agent's reported duration of 1e308 s leaves the duration histogram's sum finite", async () => {
  // duration_secs is any non-negative JSON number: two reports of 1e308 s made the sum +Inf until
  // the dashboard restarted, and rate(sum) / rate(count) with it.
  await using d = await makeDashboard();
  for (const id of ["huge-1", "huge-2"]) {
    await (await d.admin("POST", P.enqueue, { id, name: "echo hi", agent_id: "a1" })).body
      ?.cancel();
    assert.equal((await d.agent({ path: P.wait() })).status, 200);
    const base = reportBody(id);
    const report = await d.agent({
      path: P.report,
      body: { ...base, result: { ...base.result, duration_secs: 1e308 } },
    });
    assert.equal(report.status, 200);
    await report.body?.cancel();
  }
  const families = parseStrict(await (await d.admin("GET", "/metrics")).text());
  const samples = families.get("status_command_duration_seconds")!.samples;
  const sample = (name: string) => samples.find((s) => s.name === name)!.value;
  assert.equal(sample("status_command_duration_seconds_count"), 2);
  assert.ok(Number.isFinite(sample("status_command_duration_seconds_sum")));
  assert.equal(
    samples.find((s) => s.labels.le === "+Inf")!.value,
    2,
    "both beyond the last bucket",
  );
});

Deno.test("a late report of a lost command counts again under its status, as docs/protocol.md §14 says", async () => {
  await using d = await makeDashboard({ maxAttempts: 1 });
  await (await d.admin("POST", P.enqueue, { id: "late-1", name: "echo hi", agent_id: "a1" })).body
    ?.cancel();
  assert.equal((await d.agent({ path: P.wait() })).status, 200);
  d.clock.advance(31_000);
  assert.deepEqual((await d.dashboard.expireLeases()).lost.map((c) => c.id), ["late-1"]);
  const report = await d.agent({ path: P.report, body: reportBody("late-1") });
  assert.deepEqual(await json(report), { accepted: true });
  const families = await scrape(d);
  assert.equal(value(families, "status_commands_finished_total", { status: "lost" }), 1);
  assert.equal(value(families, "status_commands_finished_total", { status: "success" }), 1);
  assert.equal(value(families, "status_commands", { status: "lost" }), 0, "each command once");
  assert.equal(value(families, "status_commands", { status: "success" }), 1);
});

Deno.test("each route is counted under its own pattern, as docs/protocol.md §14 says", async () => {
  await using d = await makeDashboard();
  const labels = d.dashboard.routes.map((route) => {
    const path = route.path.replace(/:[A-Za-z_]+/g, "x");
    return [`${route.method} ${route.path}`, routeLabel(path)];
  });
  // The wait's label has kept its first name; a console page's trailing-slash redirect, which
  // only sends the browser on, is counted with the paths no route has.
  const own = (route: string) =>
    route.endsWith("/") && route !== "GET /"
      ? "other"
      : route === "GET /api/v1/agent/commands/wait/:deployment_hash"
      ? "/api/v1/agent/commands/wait/:hash"
      : route.slice(route.indexOf(" ") + 1);
  assert.deepEqual(labels, labels.map(([route]) => [route, own(route)]));
  assert.equal(routeLabel("/api/v1/commands/x/y"), "other", "a made-up path is no label");
});

Deno.test("/metrics refuses a request without the admin token outside dev mode", async () => {
  await using d = await makeDashboard();
  const anonymous = await d.dashboard.app.request("/metrics");
  assert.equal(anonymous.status, 401);
  assert.match(String((await json(anonymous)).error), /STATUS_ADMIN_TOKEN/);
  const wrong = await d.dashboard.app.request("/metrics", {
    headers: { Authorization: "Bearer not-the-admin-token" },
  });
  assert.equal(wrong.status, 401);
  await wrong.body?.cancel();
  const refusals = await scrape(d);
  assert.equal(value(refusals, "status_auth_refusals_total", { reason: "missing_token" }), 1);
  assert.equal(value(refusals, "status_auth_refusals_total", { reason: "wrong_token" }), 1);
});

Deno.test("/metrics is open in dev mode", async () => {
  await using d = await makeDashboard({ devMode: true });
  const response = await d.dashboard.app.request("/metrics");
  assert.equal(response.status, 200);
  assert.ok(parsePrometheusTextFormat(await response.text()).length > 5);
});

Deno.test("--metrics-bind serves /metrics without the token on its own address", async () => {
  await using store = openSqliteStore(":memory:");
  await using server = await startServer({
    availableDescriptors: "plenty",
    store,
    port: 0,
    adminToken: ADMIN_TOKEN,
    metricsBind: "127.0.0.1:0",
  });
  assert.ok(server.metricsUrl);
  const open = await fetch(server.metricsUrl);
  assert.equal(open.status, 200);
  const families = parsePrometheusTextFormat(await open.text()) as Family[];
  assert.ok(families.some((f) => f.name === "status_commands"));
  const other = await fetch(server.metricsUrl.replace("/metrics", "/api/v1/commands"));
  assert.equal(other.status, 404, "only /metrics is served there");
  await other.body?.cancel();
  const main = await fetch(`${server.url}/metrics`);
  assert.equal(main.status, 401, "the main address still needs the token");
  await main.body?.cancel();
});

Deno.test("--metrics-bind's listener closes a stalled request head after --header-timeout-secs too", async () => {
  await using store = openSqliteStore(":memory:");
  await using server = await startServer({
    availableDescriptors: "plenty",
    store,
    port: 0,
    adminToken: ADMIN_TOKEN,
    metricsBind: "127.0.0.1:0",
    headerTimeoutSecs: 1,
  });
  const port = Number(new URL(server.metricsUrl!).port);
  const half = await rawConnect({ port });
  try {
    await send(half, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    const started = Date.now();
    const answer = await readAll(half, 8000);
    assert.ok(answer.closed, "closed");
    assert.match(answer.text, /^HTTP\/1\.1 408 /);
    // The main port's 1 s, not the default 10 s (the check runs every second or so).
    assert.ok(Date.now() - started < 6000, `closed after ${Date.now() - started} ms`);
  } finally {
    closeQuietly(half);
  }
});

Deno.test("--metrics-bind on a busy address is a clear error and leaves nothing listening", async () => {
  using busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await using store = openSqliteStore(":memory:");
  await assert.rejects(
    () =>
      startServer({
        availableDescriptors: "plenty",
        store,
        port: 0,
        adminToken: ADMIN_TOKEN,
        metricsBind: `127.0.0.1:${busy.addr.port}`,
      }),
    /cannot serve metrics on 127\.0\.0\.1:\d+: the address is already in use/,
  );
});

Deno.test("rate-limit refusals are counted", async () => {
  await using d = await makeDashboard({ rateLimitPerMinute: 1 });
  assert.equal((await d.agent({ path: P.ack, body: { command_id: "x", attempt: 1 } })).status, 404);
  const limited = await d.agent({ path: P.ack, body: { command_id: "x", attempt: 1 } });
  assert.equal(limited.status, 429);
  const families = await scrape(d);
  assert.equal(value(families, "status_rate_limit_refusals_total"), 1);
  assert.equal(
    value(families, "status_http_requests_total", {
      route: "/api/v1/agent/commands/ack",
      status: "429",
    }),
    1,
  );
});

Deno.test("requests to the runs API and the console are counted under their routes, not other", async () => {
  await using d = await makeDashboard();
  const paths: Array<[string, string]> = [
    ["/api/v1/runs", "/api/v1/runs"],
    ["/api/v1/runs/run-1", "/api/v1/runs/:id"],
    ["/api/v1/runs/run-2/events", "/api/v1/runs/:id/events"],
    ["/", "/"],
    ["/commands", "/commands"],
    ["/commands/c-1", "/commands/:id"],
    ["/runs/new", "/runs/new"],
    ["/runs/run-3", "/runs/:id"],
    ["/login", "/login"],
    ["/static/console.js", "/static/console.js"],
  ];
  for (const [path] of paths) await (await d.admin("GET", path)).body?.cancel();
  await (await d.admin("POST", "/api/v1/runs/run-4/cancel")).body?.cancel();
  await (await d.admin("GET", "/no/such/path")).body?.cancel();
  const families = await scrape(d);
  const counted = (route: string) =>
    families.get("status_http_requests_total")!.metrics
      .filter((m) => m.labels?.route === route)
      .reduce((sum, m) => sum + Number(m.value), 0);
  for (const [path, route] of paths) assert.equal(counted(route), 1, `${path} as ${route}`);
  assert.equal(counted("/api/v1/runs/:id/cancel"), 1);
  assert.equal(counted("other"), 1, "only the unknown path");
});

Deno.test("a queue expiry counts a finished expired command, not an expired lease", async () => {
  await using d = await makeDashboard();
  const enqueued = await d.admin("POST", P.enqueue, {
    id: "ttl-m",
    name: "echo late",
    agent_id: "a1",
    params: { ttl_secs: 5 },
  });
  assert.equal(enqueued.status, 202);
  await enqueued.body?.cancel();
  d.clock.advance(5_000);
  assert.deepEqual((await d.dashboard.expireLeases()).expired.map((c) => c.id), ["ttl-m"]);
  const families = await scrape(d);
  assert.equal(value(families, "status_commands_finished_total", { status: "expired" }), 1);
  assert.deepEqual(
    families.get("status_leases_expired_total")!.metrics.filter((m) => Number(m.value) > 0),
    [],
    "no lease was taken, none expired",
  );
});

Deno.test("status_agents_waiting counts agents, not waits: one agent's several waits are one", async () => {
  await using d = await makeDashboard();
  const waits = [
    d.agent({ path: P.wait("default", 30) }),
    d.agent({ path: P.wait("default", 30) }),
    d.agent({ path: P.wait("other-hash", 30) }),
  ];
  await until(() => d.dashboard.hub.size === 3, "three waits held");
  assert.equal(value(await scrape(d), "status_agents_waiting"), 1);
  d.dashboard.hub.close();
  for (const wait of waits) await (await wait).body?.cancel();
  assert.equal(value(await scrape(d), "status_agents_waiting"), 0);
});

Deno.test("a command a wait gave back and delivered again is timed once, at its first delivery", async () => {
  const store = openSqliteStore(":memory:");
  const metrics = new DashboardMetrics();
  const observed = observeStore(store, { events: new CommandEvents(), metrics });
  try {
    await observed.ensureAgent("a1", 0);
    const enqueued = await observed.enqueue({
      id: "rel-1",
      agentId: "a1",
      name: "echo hi",
      params: {},
      fingerprint: "fp-rel-1",
      now: 0,
    });
    assert.equal(enqueued.outcome, "created");
    const claim = (now: number) =>
      observed.claimNext({
        agentId: "a1",
        deploymentHash: "default",
        now,
        deliveryLeaseMs: 60_000,
      });
    const first = await claim(1_000);
    assert.equal(first?.attempt, 1);
    assert.equal(await observed.release("rel-1", 1, 2_000), true);
    assert.equal((await claim(3_000))?.attempt, 1, "the same attempt again");
    const histogram = await metrics.deliveryLatency.get();
    const count = histogram.values.find((v) => v.metricName?.endsWith("_count"))?.value;
    const sum = histogram.values.find((v) => v.metricName?.endsWith("_sum"))?.value;
    assert.equal(count, 1, "one command, one first delivery");
    assert.equal(sum, 1, "enqueue to its first delivery: 1 s");
  } finally {
    await store.close();
  }
});

Deno.test("a console login with a wrong or no admin token is an auth refusal in the metrics", async () => {
  await using d = await makeDashboard();
  const form = await d.dashboard.app.request("/login");
  const cookie = form.headers.getSetCookie().map((line) => line.split(";")[0]).join("; ");
  const csrf = /name="csrf" value="([^"]*)"/.exec(await form.text())![1];
  for (const token of ["not-the-admin-token", ""]) {
    const answer = await d.dashboard.app.request("/login", {
      method: "POST",
      headers: {
        "Content-Type": "application/x-www-form-urlencoded",
        Cookie: cookie,
        Origin: "http://localhost",
      },
      body: new URLSearchParams({ csrf, token, next: "/" }).toString(),
    });
    assert.equal(answer.status, 401, token);
    await answer.body?.cancel();
  }
  const families = await scrape(d);
  assert.equal(value(families, "status_auth_refusals_total", { reason: "wrong_token" }), 1);
  assert.equal(value(families, "status_auth_refusals_total", { reason: "missing_token" }), 1);
});

Deno.test("/metrics shows every final status, refusal reason and lease outcome at 0 before the first", async () => {
  // They appeared only with their first increment, at 1: Prometheus sees no increase in a series
  // that starts at 1, so increase(status_commands_finished_total{status="failed"}[1h]) missed the
  // first failed command, and an alert on the first refusal of a kind never fired.
  await using d = await makeDashboard();
  const families = await scrape(d);
  const series = (name: string, label: string) =>
    new Map(
      families.get(name)!.metrics.map((m) => [m.labels?.[label], Number(m.value)]),
    );
  const finished = series("status_commands_finished_total", "status");
  for (const status of ["success", "failed", "timeout", "killed", "lost", "expired"]) {
    assert.equal(finished.get(status), 0, `status ${status}`);
  }
  const refusals = series("status_auth_refusals_total", "reason");
  for (const reason of ["wrong_token", "signature", "replay", "unknown_agent", "other"]) {
    assert.equal(refusals.get(reason), 0, `reason ${reason}`);
  }
  const leases = series("status_leases_expired_total", "outcome");
  assert.deepEqual([...leases.entries()].sort(), [["cancelled", 0], ["lost", 0], ["requeued", 0]]);
});

Deno.test("the connection metrics count open connections, the limit, and those evicted or refused at it", async () => {
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
    maxConnections: 3,
    rateLimitPerMinute: 1_000_000,
  });
  const scrapeServer = async () => {
    const response = await fetch(`${server.url}/metrics`, { headers: { Connection: "close" } });
    assert.equal(response.status, 200);
    const families = parsePrometheusTextFormat(await response.text()) as Family[];
    return new Map(families.map((f) => [f.name, f]));
  };
  const conns: Deno.TcpConn[] = [];
  try {
    let families = await scrapeServer();
    assert.equal(value(families, "status_connections_limit"), 3);
    assert.equal(value(families, "status_connections_evicted_total"), 0);
    assert.equal(value(families, "status_connections_refused_total"), 0);
    for (let i = 0; i < 3; i++) conns.push(await rawConnect(server));
    await until(() => server.listener.connections === 3, "three silent connections");
    // The scrape's own connection takes the place of the oldest silent one.
    families = await scrapeServer();
    assert.equal(value(families, "status_connections_open"), 3, "the scrape's own included");
    assert.equal(value(families, "status_connections_evicted_total"), 1);
    // Two held waits and one answer in progress: nothing is idle, a new one is refused.
    for (const conn of conns) closeQuietly(conn);
    conns.length = 0;
    await until(() => server.listener.connections === 0, "all closed");
    for (const agent of ["w1", "w2", "w3"]) {
      const conn = await rawConnect(server);
      conns.push(conn);
      await send(
        conn,
        `GET ${P.wait("default", 30)} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Agent-Id: ${agent}\r\n\r\n`,
      );
    }
    await until(() => server.dashboard.hub.size === 3, "three waits are held");
    const refused = await rawConnect(server);
    conns.push(refused);
    assert.ok((await readAll(refused, 5000)).closed);
    closeQuietly(conns.shift()!);
    await until(() => server.listener.connections === 2, "a wait left");
    families = await scrapeServer();
    assert.equal(value(families, "status_connections_refused_total"), 1);
    assert.equal(value(families, "status_connections_evicted_total"), 1);
  } finally {
    for (const conn of conns) closeQuietly(conn);
  }
});

Deno.test("status_waits_evicted_total counts the waits and cancel-waits an agent's cap ended, by kind", async () => {
  await using d = await makeDashboard({ maxWaitsPerAgent: 2 });
  const before = await scrape(d);
  assert.equal(value(before, "status_waits_evicted_total", { kind: "wait" }), 0);
  assert.equal(value(before, "status_waits_evicted_total", { kind: "cancel-wait" }), 0);
  const request = { agentId: "a1", deploymentHash: "default", timeoutMs: 30_000 };
  const waits = [1, 2, 3, 4].map(() => d.dashboard.hub.wait(request));
  // The third and the fourth each ended the oldest then open.
  assert.equal(await waits[0], null);
  assert.equal(await waits[1], null);
  const cancels = [1, 2, 3].map(() =>
    d.dashboard.cancelWaiters.wait({ commandId: "c1", agentId: "a1", timeoutMs: 30_000 })
  );
  assert.equal(await cancels[0], false);
  const after = await scrape(d);
  assert.equal(value(after, "status_waits_evicted_total", { kind: "wait" }), 2);
  assert.equal(value(after, "status_waits_evicted_total", { kind: "cancel-wait" }), 1);
  assert.equal(d.dashboard.hub.size, 2, "the two newest waits stay open");
});

Deno.test("a scrape at 10,000 agents and commands reads only each agent's last-seen time, and no client's value becomes a label", async () => {
  await using d = await makeDashboard({ operatorRateLimitPerMinute: 1_000_000 });
  const calls = { listAgents: 0, listAgentsSeen: 0 };
  for (const name of ["listAgents", "listAgentsSeen"] as const) {
    const original = d.store[name].bind(d.store);
    // deno-lint-ignore no-explicit-any
    (d.store as any)[name] = (...args: []) => {
      calls[name]++;
      return original(...args);
    };
  }
  const now = d.clock.now();
  for (let i = 0; i < 10_000; i++) {
    await d.store.addAgent({ id: `fleet-${i}`, token: null, scopes: ["commands:wait"], now });
    await d.store.enqueue({
      id: `cmd-${i}`,
      agentId: `fleet-${i}`,
      name: "echo hi",
      params: {},
      fingerprint: "f",
      now,
    });
  }
  for (let i = 0; i < 250; i++) await d.store.touchAgent(`fleet-${i}`, now);
  /** Requests whose paths, ids and methods a client chooses. */
  const odd = async (batch: number) => {
    for (let i = 0; i < 300; i++) {
      const n = `${batch}-${i}`;
      for (
        const [method, path] of [
          ["GET", `/no/such/${n}`],
          ["GET", `/api/v1/commands/cmd-${n}`],
          ["GET", `/api/v1/commands/cmd-${n}/events`],
          ["POST", `/api/v1/agents/agent-${n}/rotate`],
          ["DELETE", `/api/v1/runs/run-${n}`],
          ["GET", `/commands/${n}`],
          ["GET", `/static/${n}.js`],
        ]
      ) await (await d.admin(method, path)).body?.cancel();
    }
  };
  const series = async () => {
    const text = await (await d.admin("GET", "/metrics")).text();
    return text.split("\n").filter((line) => line !== "" && !line.startsWith("#")).length;
  };
  await odd(1);
  await series();
  const before = await series();
  await odd(2);
  assert.equal(await series(), before, "2,100 more made-up paths and ids add no series");

  calls.listAgents = 0;
  calls.listAgentsSeen = 0;
  const families = await scrape(d);
  assert.equal(value(families, "status_agents_online"), 250);
  assert.equal(value(families, "status_commands", { status: "queued" }), 10_000);
  // Old behaviour: every agent was read whole (heartbeat, labels, queued count): 150 ms here.
  assert.deepEqual(calls, { listAgents: 0, listAgentsSeen: 1 });
});
