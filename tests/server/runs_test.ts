/**
 * Fan-out runs against the real dashboard (`startServer`, a real socket) with real agents in
 * process (`runAgent`, the real executor): the concurrency limit, the error budget, the CLI's
 * table and exit code, cancel, and bad targets.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { memoryIo } from "../../src/cli/io.ts";
import { startRun } from "../../src/cli/run.ts";
import { OperatorClient, OperatorError } from "../../src/operator/mod.ts";
import { countTargetReads } from "../store/_target_reads.ts";
import { until } from "../_until.ts";
import { type AgentState, runAgent } from "../../src/agent/mod.ts";
import { createApp, startServer } from "../../src/server/mod.ts";
import {
  type AgentSummary,
  type CommandRecord,
  type CommandResult,
  type CommandStore,
  openSqliteStore,
  runStatus,
  StoreError,
  targetState,
} from "../../src/store/mod.ts";
import {
  firstLine,
  matchTarget,
  MIN_SNAPSHOT_PAUSE_MS,
  READ_PAUSE_FACTOR,
  RunScheduler,
  runView,
} from "../../src/server/runs.ts";
import { CommandEvents } from "../../src/server/events.ts";
import { canonicalJson } from "../../src/server/fingerprint.ts";
import { observeStore } from "../../src/server/observed_store.ts";
import type { RunView } from "../../src/protocol/runs.ts";
import { captureLogs, memoryAgentState } from "../agent/_helpers.ts";
import { run } from "../cli/_run.ts";
import { parseServerSentEvents } from "../../src/operator/mod.ts";
import {
  FakeClock,
  json,
  makeDashboard,
  P,
  reportBody,
  type TestDashboard,
  TOKEN,
  TOKEN2,
} from "./_helpers.ts";

interface Fleet extends AsyncDisposable {
  url: string;
  store: ReturnType<typeof openSqliteStore>;
}

/** A dev-mode dashboard and `count` agents `web-01`…, labelled, each with its own allowlist. */
async function startFleet(
  count: number,
  options: { labels?: (i: number) => Record<string, string>; allowed?: (i: number) => string[] } =
    {},
): Promise<Fleet> {
  const store = openSqliteStore(":memory:");
  const server = await startServer({
    availableDescriptors: "plenty",
    store,
    port: 0,
    runSweepMs: 200,
  });
  const stop = new AbortController();
  const states: AgentState[] = [];
  const agents: Promise<unknown>[] = [];
  for (let i = 1; i <= count; i++) {
    const state = memoryAgentState();
    states.push(state);
    agents.push(runAgent({
      dashboardUrl: server.url,
      agentId: `web-${String(i).padStart(2, "0")}`,
      pollingTimeoutSecs: 5,
      heartbeatOptions: { intervalSecs: 3600 },
      labels: options.labels?.(i) ?? { role: "web" },
      deploymentHash: "prod",
      liveOutput: false,
      state,
      // No cgroups beside other test threads (README, "As a library").
      exec: { allowedPrograms: options.allowed?.(i), cgroups: false },
    }, stop.signal));
  }
  // Every agent has sent its heartbeat (labels) and is waiting.
  const deadline = Date.now() + 30_000;
  while (true) {
    const body = await (await fetch(`${server.url}/api/v1/agents`)).json();
    const ready = body.agents.filter((a: { labels: Record<string, string>; state: string }) =>
      Object.keys(a.labels).length > 0 && a.state === "waiting"
    );
    if (ready.length === count) break;
    assert.ok(Date.now() < deadline, `only ${ready.length} of ${count} agents ready`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    url: server.url,
    store,
    async [Symbol.asyncDispose]() {
      stop.abort();
      await Promise.all(agents);
      for (const state of states) state[Symbol.dispose]();
      await server.shutdown();
      await store.close();
    },
  };
}

async function post(url: string, body: unknown) {
  const response = await fetch(`${url}/api/v1/runs`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

async function finalRun(url: string, id: string, ms = 60_000): Promise<RunView> {
  const deadline = Date.now() + ms;
  while (true) {
    const run = await (await fetch(`${url}/api/v1/runs/${id}`)).json() as RunView;
    if (["succeeded", "failed", "cancelled"].includes(run.status)) return run;
    assert.ok(
      Date.now() < deadline,
      `run ${id} still ${run.status}: ${JSON.stringify(run.totals)}`,
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The most commands running at once, from the agents' reported start and end times. */
function peakConcurrency(run: RunView): number {
  const edges: Array<[number, number]> = [];
  for (const agent of run.agents) {
    assert.ok(agent.run_started_at && agent.run_completed_at, JSON.stringify(agent));
    edges.push([Date.parse(agent.run_started_at), 1], [Date.parse(agent.run_completed_at), -1]);
  }
  // At equal times an end comes first: a command that ended as another began did not overlap.
  edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let peak = 0;
  for (const [, delta] of edges) peak = Math.max(peak, now += delta);
  return peak;
}

/** Runs `status run …` / `status enqueue …` in process against `url`. */
async function cli(url: string, args: string[]) {
  const result = await run([...args, "--dashboard-url", url]);
  return { code: result.code, stdout: result.stdout.join("\n"), stderr: result.stderr.join("\n") };
}

Deno.test("20 agents, max_concurrency 5: never more than 5 at once, all 20 succeed", async () => {
  using _logs = captureLogs();
  await using fleet = await startFleet(20);
  const created = await post(fleet.url, {
    id: "run-20",
    name: "sleep 0.3",
    target: { labels: { role: "web" }, deployment: "prod" },
    max_concurrency: 5,
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.agents.length, 20);
  assert.ok(created.body.totals.active <= 5, JSON.stringify(created.body.totals));
  // The run's event stream: status snapshots, then the final run, then it closes.
  const stream = await fetch(`${fleet.url}/api/v1/runs/run-20/events`);
  assert.equal(stream.headers.get("Content-Type"), "text/event-stream; charset=utf-8");
  const events: Array<{ event: string; data: RunView }> = [];
  for await (const { event, data } of parseServerSentEvents(stream.body!)) {
    events.push({ event, data: JSON.parse(data) });
  }
  assert.equal(events[0].event, "status");
  assert.equal(events.at(-1)?.event, "end");
  assert.equal(events.at(-1)?.data.status, "succeeded");
  assert.ok(events.slice(0, -1).every((e) => e.event === "status" && e.data.totals.active <= 5));
  const run = await finalRun(fleet.url, "run-20");
  assert.equal(run.status, "succeeded");
  assert.equal(run.totals.success, 20);
  assert.equal(run.totals.total, 20);
  const peak = peakConcurrency(run);
  assert.ok(peak <= 5, `${peak} commands ran at once`);
  assert.ok(peak >= 2, `the run never ran two at once (peak ${peak})`);
  // Re-posting the same run creates nothing new.
  const again = await post(fleet.url, {
    id: "run-20",
    name: "sleep 0.3",
    target: { labels: { role: "web" }, deployment: "prod" },
    max_concurrency: 5,
  });
  assert.equal(again.status, 200);
  assert.equal(again.body.duplicate, true);
  assert.equal((await fleet.store.listCommands({ limit: 100 })).length, 20);
});

Deno.test("max_errors 1: exactly 2 failures, the rest skipped, the CLI exits non-zero", async () => {
  using _logs = captureLogs();
  // web-03 and web-05 may not run uname: their commands are rejected (failures).
  await using fleet = await startFleet(8, {
    allowed: (i) => (i === 3 || i === 5 ? ["echo"] : ["uname", "echo"]),
  });
  const result = await cli(fleet.url, [
    "enqueue",
    "uname",
    "--label",
    "role=web",
    "--max-concurrency",
    "1",
    "--max-errors",
    "1",
    "--id",
    "run-errors",
    "--wait",
  ]);
  assert.equal(result.code, 1, result.stderr);
  const run = await finalRun(fleet.url, "run-errors");
  assert.equal(run.status, "failed");
  assert.equal(run.totals.failed_total, 2);
  assert.equal(run.totals.success, 3);
  assert.equal(run.totals.skipped, 3);
  assert.deepEqual(
    run.agents.map((a) => `${a.agent_id} ${a.state}`),
    [
      "web-01 success",
      "web-02 success",
      "web-03 rejected",
      "web-04 success",
      "web-05 rejected",
      "web-06 skipped",
      "web-07 skipped",
      "web-08 skipped",
    ],
  );
  // The table: one line per agent, then the totals.
  assert.match(result.stdout, /^AGENT\s+STATUS\s+EXIT\s+DURATION\s+OUTPUT$/m);
  assert.match(result.stdout, /^web-03\s+rejected\s/m);
  assert.match(
    result.stdout,
    /^web-08\s+skipped\s+not started: 2 of the run's commands failed, max_errors is 1$/m,
  );
  assert.match(result.stdout, /run run-errors failed: .*3 skipped/);
  // --json of the ended run, and its exit code.
  const shown = await cli(fleet.url, ["run", "show", "run-errors", "--json", "--follow"]);
  assert.equal(shown.code, 1);
  assert.equal(JSON.parse(shown.stdout).totals.skipped, 3);
  // Only the started commands exist.
  assert.equal((await fleet.store.listCommands({ limit: 100 })).length, 5);
});

Deno.test("a run that all succeeds exits 0 with --wait; cancel stops a run", async () => {
  using _logs = captureLogs();
  await using fleet = await startFleet(3, { labels: (i) => ({ role: i === 3 ? "db" : "web" }) });
  const ok = await cli(fleet.url, [
    "run",
    "start",
    "echo fan-out",
    "--label",
    "role=web",
    "--wait",
  ]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^web-01\s+success\s+0\s+\S+ s\s+fan-out$/m);
  assert.doesNotMatch(ok.stdout, /web-03/);
  const listed = await cli(fleet.url, ["run", "list"]);
  assert.equal(listed.code, 0);
  assert.match(listed.stdout, /^run \S+ succeeded: 2 success \(of 2\) .* echo fan-out$/m);
  const open = await cli(fleet.url, ["run", "list", "--open", "--json"]);
  assert.deepEqual(JSON.parse(open.stdout), []);

  // A long run with one at a time, cancelled: the running command is stopped, the rest skipped.
  const created = await post(fleet.url, {
    id: "run-cancel",
    name: "sleep 30",
    target: { agents: ["web-01", "web-02", "web-03"] },
    max_concurrency: 1,
  });
  assert.equal(created.status, 201);
  await until(
    async () => (await fleet.store.getCommand("run-cancel:web-01"))?.status === "running",
    "the first command runs",
    20_000,
    50,
  );
  const cancelled = await cli(fleet.url, ["run", "cancel", "run-cancel"]);
  assert.equal(cancelled.code, 0, cancelled.stderr);
  const run = await finalRun(fleet.url, "run-cancel");
  assert.equal(run.status, "cancelled");
  assert.deepEqual(run.agents.map((a) => a.state), ["cancelled", "skipped", "skipped"]);
  const again = await cli(fleet.url, ["run", "cancel", "run-cancel"]);
  assert.equal(again.code, 1);
  // As for a command: the sentence alone, not "the dashboard refused the cancel: HTTP 409: ...".
  assert.equal(
    again.stderr.trim(),
    "status: run run-cancel has already ended (cancelled); nothing to cancel",
  );
});

Deno.test("status enqueue with --agent given twice runs the command on both agents", async () => {
  using _logs = captureLogs();
  await using fleet = await startFleet(3);
  // Commander kept only the last --agent: the command ran on web-02 alone.
  const both = await cli(fleet.url, [
    "enqueue",
    "echo both",
    "--agent",
    "web-01",
    "--agent",
    "web-02",
    "--id",
    "run-two",
    "--wait",
  ]);
  assert.equal(both.code, 0, both.stderr);
  assert.match(both.stdout, /^web-01\s+success\s+0\s+\S+ s\s+both$/m);
  assert.match(both.stdout, /^web-02\s+success\s+0\s+\S+ s\s+both$/m);
  const run = await finalRun(fleet.url, "run-two");
  assert.deepEqual(run.agents.map((a) => a.agent_id), ["web-01", "web-02"]);
  // One agent, named once or twice, is one ordinary command.
  for (const agents of [["web-03"], ["web-03", "web-03"]]) {
    const one = await cli(fleet.url, [
      "enqueue",
      "echo one",
      ...agents.flatMap((agent) => ["--agent", agent]),
      "--wait",
    ]);
    assert.equal(one.code, 0, one.stderr);
    assert.equal(one.stdout, "one");
  }
  assert.equal((await fleet.store.listRuns({ limit: 10 })).length, 1);
});

Deno.test("bad targets: no match, unknown agents and bad flags are clear errors", async () => {
  using _logs = captureLogs();
  await using fleet = await startFleet(2);
  const none = await post(fleet.url, { name: "echo hi", target: { labels: { role: "db" } } });
  assert.equal(none.status, 404);
  assert.match(none.body.error, /no agent matches the target \(labels role=db\)/);
  const unknown = await post(fleet.url, {
    name: "echo hi",
    target: { agents: ["web-01", "ghost"] },
  });
  assert.equal(unknown.status, 404);
  assert.match(unknown.body.error, /agents not registered: ghost/);
  const ghosts = Array.from({ length: 500 }, (_, i) => `ghost-${i}`);
  const many = await post(fleet.url, { name: "echo hi", target: { agents: ghosts } });
  assert.equal(many.status, 404);
  assert.match(many.body.error, /^agents not registered: ghost-0, .*, ghost-9 and 490 more$/);
  assert.equal(many.body.details.unknown_agents.length, 100);
  assert.equal(many.body.details.unknown_count, 500);
  for (const name of ["echo \u0000a", "echo a\nb", "echo \u001b[31m"]) {
    const control = await post(fleet.url, { name, target: { agents: ["web-01"] } });
    assert.equal(control.status, 400, JSON.stringify(name));
    assert.match(control.body.error, /must not contain control characters/);
  }
  const empty = await post(fleet.url, { name: "echo hi", target: {} });
  assert.equal(empty.status, 400);
  assert.match(empty.body.error, /name agents, a deployment or labels/);
  const percent = await post(fleet.url, {
    name: "echo hi",
    target: { deployment: "prod" },
    max_concurrency: "150%",
  });
  assert.equal(percent.status, 400);
  assert.equal((await fleet.store.listRuns({ limit: 10 })).length, 0);

  const cliNone = await cli(fleet.url, ["enqueue", "echo hi", "--label", "role=db", "--wait"]);
  assert.equal(cliNone.code, 1);
  assert.match(cliNone.stderr, /no agent matches the target \(labels role=db\)/);
  const badLabel = await cli(fleet.url, ["enqueue", "echo hi", "--label", "role"]);
  assert.equal(badLabel.code, 2);
  const noTarget = await cli(fleet.url, ["enqueue", "echo hi"]);
  assert.equal(noTarget.code, 2);
  assert.match(noTarget.stderr, /--agent, or a group with --deployment\/--label/);
  const badConcurrency = await cli(fleet.url, [
    "run",
    "start",
    "echo hi",
    "--deployment",
    "prod",
    "--max-concurrency",
    "0",
  ]);
  assert.equal(badConcurrency.code, 2);
});

Deno.test("an offline agent is reported, its command expires by the ttl, the run ends", async () => {
  using _logs = captureLogs();
  await using fleet = await startFleet(2);
  // web-09 sent its labels an hour ago and was not seen since: offline.
  const hourAgo = Date.now() - 3_600_000;
  await fleet.store.ensureAgent("web-09", hourAgo);
  await fleet.store.recordHeartbeat("web-09", {
    version: "1",
    deploymentHash: "prod",
    instanceId: null,
    sample: null,
    labels: { role: "web" },
    now: hourAgo,
  });
  const created = await post(fleet.url, {
    id: "run-offline",
    name: "echo hi",
    params: { ttl_secs: 2 },
    target: { labels: { role: "web" } },
    max_concurrency: 3,
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.deepEqual(created.body.offline, ["web-09"]);
  assert.match(created.body.warnings[0], /1 agent\(s\) offline: web-09/);
  const offline = created.body.agents.find((a: { agent_id: string }) => a.agent_id === "web-09");
  assert.equal(offline.offline_at_creation, true);
  // The online agents finish at once; web-09's command waits in its queue until it expires.
  const deadline = Date.now() + 20_000;
  while (true) {
    const run = await (await fetch(`${fleet.url}/api/v1/runs/run-offline`)).json() as RunView;
    if (run.totals.success === 2) {
      if (run.status === "running") {
        assert.equal(run.agents.find((a) => a.agent_id === "web-09")?.state, "queued");
      }
      break;
    }
    assert.ok(Date.now() < deadline, JSON.stringify(run.totals));
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const shown = await cli(fleet.url, ["run", "show", "run-offline", "--follow"]);
  assert.equal(shown.code, 1, "an expired command is a failure");
  assert.match(shown.stdout, /^web-09\s+expired \(offline\)/m);
  const run = await finalRun(fleet.url, "run-offline");
  assert.equal(run.status, "failed");
  assert.deepEqual(run.agents.map((a) => a.state), ["success", "success", "expired"]);
  // The dashboard ended it: the run says why, as the command does.
  assert.match(String(run.agents[2].error), /^no agent took it within its queue expiry of 2 s/);
});

Deno.test("firstLine: the first line of stdout, else stderr; control characters; binary", () => {
  const command = (result: Partial<CommandResult>) =>
    ({ result: { stdout: "", stderr: "", ...result } }) as unknown as CommandRecord;
  assert.equal(firstLine(null), null);
  assert.equal(firstLine(command({ stdout: "\n  one\ntwo\n" })), "one");
  assert.equal(firstLine(command({ stderr: "boom\n" })), "boom");
  assert.equal(firstLine(command({ stdout: "a\u0000b\u001b[31m" })), "a b");
  // Colours and titles go; a lone escape is a space, as other control characters are.
  assert.equal(firstLine(command({ stdout: "\u001b[1;31mok\u001b[0m done\n" })), "ok done");
  assert.equal(firstLine(command({ stdout: "\u001b]0;title\u0007x \u001b y" })), "x   y");
  assert.equal(firstLine(command({ stdout: "AAEC", stdoutEncoding: "base64" })), "(binary output)");
  assert.equal(firstLine(command({ stdout: "x".repeat(300) }))?.length, 200);
});

Deno.test("matchTarget: 10,000 named agents in a fleet of 20,000 are matched in one pass over the fleet", () => {
  // Each agent's id read a few times, not once per named id: looked up one by one (10,000 x
  // 20,000 reads) it took a second, and the dashboard answered nothing meanwhile.
  let reads = 0;
  const fleet = Array.from({ length: 20_000 }, (_, i) => {
    const id = `a${i}`;
    return {
      get id() {
        reads++;
        return id;
      },
      labels: { role: i % 2 ? "db" : "web" },
    } as unknown as AgentSummary;
  });
  const named = Array.from({ length: 10_000 }, (_, i) => `a${i + 15_000}`);
  const { matched, unknown } = matchTarget(fleet, { agents: named, labels: { role: "web" } });
  assert.ok(reads <= 5 * fleet.length, `${reads} reads of an agent's id`);
  assert.equal(matched.length, 2500);
  assert.equal(matched[0].id, "a15000");
  assert.deepEqual([unknown.length, unknown[0]], [5000, "a20000"]);
});

Deno.test("a dashboard that died between starting a target and enqueuing it enqueues it once on restart", async () => {
  using _logs = captureLogs();
  await using store = openSqliteStore(":memory:");
  const now = Date.now();
  for (const id of ["a1", "a2", "a3"]) await store.ensureAgent(id, now);
  await store.createRun({
    id: "r",
    name: "echo hi",
    params: {},
    target: { agents: ["a1", "a2", "a3"] },
    fingerprint: "fp",
    maxConcurrency: 2,
    maxConcurrencySpec: 2,
    maxErrors: null,
    targets: ["a1", "a2", "a3"].map((agentId) => ({
      agentId,
      commandId: `r:${agentId}`,
      offlineAtCreation: false,
    })),
    now,
  });
  // The crash: the step marked two targets started, and no command was enqueued.
  const step = await store.advanceRun("r", now);
  assert.equal(step?.toEnqueue.length, 2);
  assert.equal((await store.listCommands({ limit: 10 })).length, 0);

  const restarted = createApp({ store, devMode: true, autoExpireLeases: false, runSweepMs: 0 });
  try {
    await restarted.runs.sweep();
    await restarted.runs.sweep();
    const commands = await store.listCommands({ limit: 10 });
    assert.deepEqual(commands.map((c) => c.id).sort(), ["r:a1", "r:a2"]);
    assert.ok(commands.every((c) => c.attempt === 1 && c.status === "queued"));
    const run = await store.getRun("r");
    assert.equal(run?.targets[2].startedAt, null, "the third waits for a free slot");
  } finally {
    await restarted.close();
  }
});

/** A store that counts the calls of each of its methods (by name). */
function countingStore(inner: CommandStore): { store: CommandStore; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const store = new Proxy(inner, {
    get(target, key) {
      const value = Reflect.get(target, key, target);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (typeof key === "string") calls.set(key, (calls.get(key) ?? 0) + 1);
        return value.apply(target, args);
      };
    },
  });
  return { store, calls };
}

/** A new run `id` of `agents` on `store`, none started. */
function createRunOf(store: CommandStore, id: string, agents: string[], now: number) {
  return store.createRun({
    id,
    name: "echo hi",
    params: {},
    target: { agents },
    fingerprint: `fp-${id}`,
    maxConcurrency: 1,
    maxConcurrencySpec: 1,
    maxErrors: null,
    targets: agents.map((agentId) => ({
      agentId,
      commandId: `${id}:${agentId}`,
      offlineAtCreation: false,
    })),
    now,
  });
}

Deno.test("a sweep reads the ids of the open runs, not the runs, then steps each once", async () => {
  using _logs = captureLogs();
  await using inner = openSqliteStore(":memory:");
  const { store, calls } = countingStore(inner);
  const now = Date.now();
  for (const id of ["a1", "a2"]) await inner.ensureAgent(id, now);
  for (const id of ["r1", "r2", "r3"]) await createRunOf(inner, id, ["a1", "a2"], now);
  // r3 has ended: cancelled before anything started.
  await inner.cancelRun("r3", now);
  assert.notEqual((await inner.advanceRun("r3", now))?.run.completedAt, null);
  const dashboard = createApp({ store, devMode: true, autoExpireLeases: false, runSweepMs: 0 });
  try {
    // The first sweeps start r1's and r2's first targets and enqueue their commands.
    await dashboard.runs.sweep();
    await dashboard.runs.sweep();
    assert.equal((await inner.listCommands({ limit: 10 })).length, 2);
    calls.clear();
    await dashboard.runs.sweep();
    assert.equal(calls.get("listRuns"), undefined, "the runs' targets are not listed");
    assert.equal(calls.get("listOpenRunIds"), 1);
    assert.equal(calls.get("stepRun"), 2, "each open run is stepped once");
    assert.equal(calls.get("advanceRun"), undefined, "the steps read no command output");
    assert.equal(calls.get("getRun"), undefined, "nothing to enqueue: the step's run is used");
    assert.equal(calls.get("getRunState"), undefined);
  } finally {
    await dashboard.close();
  }
});

Deno.test("a sweep reads no command output; a step asked for its run answers all of it", async () => {
  using _logs = captureLogs();
  await using inner = openSqliteStore(":memory:");
  const { store, calls } = countingStore(inner);
  const now = Date.now();
  for (const id of ["a1", "a2"]) await inner.ensureAgent(id, now);
  await createRunOf(inner, "r", ["a1", "a2"], now);
  const dashboard = createApp({ store, devMode: true, autoExpireLeases: false, runSweepMs: 0 });
  // Counts the statements that read a run's targets, and those of them that read output.
  using counted = countTargetReads();
  try {
    // The first sweep starts a1; a1 runs and prints; the next starts a2; the last changes nothing.
    await dashboard.runs.sweep();
    const claimed = await inner.claimNext({
      agentId: "a1",
      deploymentHash: "default",
      now,
      deliveryLeaseMs: 30_000,
    });
    assert.equal(claimed?.id, "r:a1");
    await inner.report({
      commandId: "r:a1",
      agentId: "a1",
      attempt: 1,
      status: "success",
      result: {
        exitCode: 0,
        signal: null,
        durationSecs: 0.01,
        stdout: `hello from a1\n${"x".repeat(8000)}`,
        stderr: "",
        stdoutTruncatedBytes: 0,
        stderrTruncatedBytes: 0,
      },
      error: null,
      startedAt: null,
      completedAt: null,
      now,
    });
    await dashboard.runs.sweep();
    await dashboard.runs.sweep();
    assert.deepEqual((await inner.listCommands({ limit: 10 })).map((c) => c.id).sort(), [
      "r:a1",
      "r:a2",
    ]);
    assert.ok(counted.reads >= 3, `${counted.reads} reads of the run's targets`);
    assert.equal(counted.output, 0, "no step of a sweep read output");
    assert.equal(calls.get("getRun"), undefined);
    // The operator's step (a run's creation, a cancel) answers the run as getRun reads it.
    const run = await dashboard.runs.advance("r");
    assert.equal(counted.output, 1);
    assert.deepEqual(run, await inner.getRun("r"));
    assert.equal(firstLine(run?.targets[0].command ?? null), "hello from a1");
  } finally {
    await dashboard.close();
  }
});

/**
 * A scheduler on `inner` as the dashboard has it (the store observed, so that its changes reach
 * the scheduler), the calls of each store method counted, a fake clock, no sweep timer.
 */
function countedScheduler(inner: CommandStore, clock: FakeClock = new FakeClock()) {
  const { store: counted, calls } = countingStore(inner);
  const events = new CommandEvents();
  const store = observeStore(counted, { events });
  const scheduler = new RunScheduler({
    store,
    clock,
    events,
    sweepMs: 0,
    async enqueue(run, target) {
      await store.enqueue({
        id: target.commandId,
        agentId: target.agentId,
        name: run.name,
        params: run.params,
        fingerprint: `fp-${target.commandId}`,
        now: clock.now(),
      });
    },
  });
  return { store, calls, events, clock, scheduler };
}

/** Lets the reads under way (each a few store calls) finish. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setTimeout(resolve, 0));
}

Deno.test("a run's command streaming output is not read; a burst of its changes is read once", async (t) => {
  using _logs = captureLogs();
  await using inner = openSqliteStore(":memory:");
  const { store, calls, events, clock, scheduler } = countedScheduler(inner);
  const now = clock.now();
  for (const id of ["a1", "a2"]) await inner.ensureAgent(id, now);
  await createRunOf(inner, "r", ["a1", "a2"], now);
  let told = 0;
  const unsubscribe = scheduler.subscribe("r", () => told++);
  try {
    await scheduler.advance("r");
    assert.equal(
      (await store.claimNext({
        agentId: "a1",
        deploymentHash: "default",
        now,
        deliveryLeaseMs: 30_000,
      }))?.id,
      "r:a1",
    );
    const acked = await store.ack({
      commandId: "r:a1",
      agentId: "a1",
      attempt: 1,
      now,
      defaultTimeoutSecs: 60,
    });
    assert.equal(acked.outcome, "acked");
    await settle();
    await t.step("the claim and the ack told the run's listeners", () => {
      assert.ok(told >= 2, `told ${told} times`);
      assert.equal(calls.get("getCommand"), undefined, "its status is read, not all of it");
    });
    calls.clear();
    told = 0;
    await t.step("50 chunks of live output: no read, nobody told", async () => {
      for (let i = 0; i < 50; i++) {
        const stored = await store.appendOutput({
          commandId: "r:a1",
          attempt: 1,
          stream: "stdout",
          offset: i * 6,
          data: new TextEncoder().encode(`line ${i}\n`.slice(0, 6)),
          now,
          keep: { headBytes: 32_768, tailBytes: 32_768 },
        });
        assert.equal(stored.outcome, "stored");
      }
      await settle();
      assert.equal(calls.get("getCommand"), undefined);
      assert.equal(calls.get("getCommandState"), undefined);
      assert.equal(told, 0);
    });
    await t.step("20 changes at once (another process's commit): one read", async () => {
      calls.clear();
      for (let i = 0; i < 20; i++) events.publish("r:a1");
      await settle();
      assert.equal(calls.get("getCommandState"), 1);
      assert.equal(calls.get("getCommand"), undefined);
      assert.equal(told, 0, "nothing changed");
    });
    await t.step("its report steps the run: a2 starts, the listeners are told", async () => {
      calls.clear();
      const reported = await store.report({
        commandId: "r:a1",
        agentId: "a1",
        attempt: 1,
        status: "success",
        result: null,
        error: null,
        startedAt: null,
        completedAt: null,
        now: now + 1,
      });
      assert.equal(reported.outcome, "accepted");
      await until(async () => (await inner.getCommand("r:a2")) !== null, "a2 starts");
      await settle();
      assert.equal(calls.get("getCommand"), undefined);
      assert.equal(calls.get("getCommandState"), 1);
      assert.equal(calls.get("getRun"), undefined, "nobody asked for the whole run");
      assert.ok(told >= 1);
    });
  } finally {
    unsubscribe();
    scheduler.close();
  }
});

Deno.test("a step that changes nothing tells no listener of the run; one that does tells them", async (t) => {
  using _logs = captureLogs();
  await using inner = openSqliteStore(":memory:");
  const { store, scheduler, clock } = countedScheduler(inner);
  const now = clock.now();
  for (const id of ["a1", "a2"]) await inner.ensureAgent(id, now);
  await createRunOf(inner, "r", ["a1", "a2"], now);
  let told = 0;
  const unsubscribe = scheduler.subscribe("r", () => told++);
  try {
    await t.step("the first step starts a1", async () => {
      await scheduler.sweep();
      assert.equal(told, 1);
      assert.notEqual(await inner.getCommand("r:a1"), null);
    });
    await t.step("sweeps with nothing new: nobody is told", async () => {
      for (let i = 0; i < 3; i++) await scheduler.sweep();
      assert.equal(told, 1);
    });
    await t.step(
      "a change nobody published (another dashboard's) is told at the sweep",
      async () => {
        // The inner store: no event says so.
        await inner.claimNext({
          agentId: "a1",
          deploymentHash: "default",
          now,
          deliveryLeaseMs: 1,
        });
        await scheduler.sweep();
        assert.equal(told, 2);
        await scheduler.sweep();
        assert.equal(told, 2);
      },
    );
    await t.step("a report keeping the status (cancelled) is a change too", async () => {
      // a1's lease ends with a cancel asked: the dashboard cancels it; then a1 reports it.
      assert.equal((await inner.cancel("r:a1", now + 1)).outcome, "requested");
      await inner.requeueExpired(now + 2, 3);
      assert.equal((await inner.getCommand("r:a1"))?.status, "cancelled");
      await scheduler.sweep();
      const after = told;
      await inner.report({
        commandId: "r:a1",
        agentId: "a1",
        attempt: 1,
        status: "cancelled",
        result: null,
        error: "stopped by the agent",
        startedAt: null,
        completedAt: null,
        now: now + 3,
      });
      assert.equal((await inner.getCommand("r:a1"))?.status, "cancelled");
      await scheduler.sweep();
      assert.equal(told, after + 1);
    });
    await t.step("a cancel tells them", async () => {
      const before = told;
      assert.equal((await scheduler.cancel("r")).outcome, "cancelled");
      assert.equal(told, before + 1);
      assert.equal((await store.getRun("r"))?.cancelRequested, true);
    });
  } finally {
    unsubscribe();
    scheduler.close();
  }
});

/**
 * `inner` with `method` replaced by `wrap(original)` (the rest bound to `inner`): a store whose one
 * operation is counted or takes time on the fake clock.
 */
function withMethod<K extends keyof CommandStore>(
  inner: CommandStore,
  method: K,
  wrap: (original: CommandStore[K]) => CommandStore[K],
): CommandStore {
  const original = (inner[method] as (...args: unknown[]) => unknown).bind(
    inner,
  ) as CommandStore[K];
  return new Proxy(inner, {
    get(target, key) {
      if (key === method) return wrap(original);
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/**
 * A dev-mode dashboard on `store` (no sweep timer), its runs swept once, and the event stream of
 * run `r` open; `close` ends the stream and the dashboard.
 */
async function followRunR(store: CommandStore, clock: FakeClock) {
  const dashboard = createApp({
    store,
    clock,
    devMode: true,
    autoExpireLeases: false,
    runSweepMs: 0,
  });
  const abort = new AbortController();
  await dashboard.runs.sweep();
  const response = await dashboard.app.request("/api/v1/runs/r/events", {
    signal: abort.signal,
  });
  const events = parseServerSentEvents(response.body!)[Symbol.asyncIterator]();
  return {
    dashboard,
    events,
    async close() {
      abort.abort();
      await dashboard.close();
    },
  };
}

Deno.test("a run's event stream opens with one read of the whole run", async () => {
  using _logs = captureLogs();
  await using inner = openSqliteStore(":memory:");
  const { store, calls } = countingStore(inner);
  const clock = new FakeClock();
  for (const id of ["a1", "a2"]) await inner.ensureAgent(id, clock.now());
  await createRunOf(inner, "r", ["a1", "a2"], clock.now());
  const { events, close } = await followRunR(store, clock);
  try {
    assert.equal((await events.next()).value?.event, "status");
    // The stream's first step; its check that the run exists read no command's result or output.
    assert.equal(calls.get("getRun"), 1);
  } finally {
    await close();
  }
});

Deno.test("a run's event stream reads the run when it changed, not at every sweep", async () => {
  using _logs = captureLogs();
  await using inner = openSqliteStore(":memory:");
  const { store, calls } = countingStore(inner);
  const clock = new FakeClock();
  const now = clock.now();
  for (const id of ["a1", "a2"]) await inner.ensureAgent(id, now);
  await createRunOf(inner, "r", ["a1", "a2"], now);
  const { dashboard, events, close } = await followRunR(store, clock);
  try {
    const first = (await events.next()).value!;
    assert.equal(first.event, "status");
    assert.deepEqual(JSON.parse(first.data).agents.map((a: { state: string }) => a.state), [
      "queued",
      "pending",
    ]);
    // Past the stream's pause between two reads: it waits to be told.
    await clock.advanceAsync(100);
    await settle();
    calls.clear();
    for (let i = 0; i < 3; i++) await dashboard.runs.sweep();
    await settle();
    await clock.advanceAsync(100);
    await settle();
    assert.equal(calls.get("getRun"), undefined, "sweeps that changed nothing");
    // Another dashboard delivers a1 (no event says so here): the sweep sees it.
    await inner.claimNext({ agentId: "a1", deploymentHash: "default", now, deliveryLeaseMs: 1 });
    await dashboard.runs.sweep();
    const next = (await events.next()).value!;
    assert.equal(next.event, "status");
    assert.deepEqual(JSON.parse(next.data).agents.map((a: { state: string }) => a.state), [
      "delivered",
      "pending",
    ]);
    assert.equal(calls.get("getRun"), 1);
  } finally {
    await close();
  }
});

Deno.test("a run's event stream pauses between two reads four times as long as a read took", async () => {
  using _logs = captureLogs();
  await using inner = openSqliteStore(":memory:");
  const clock = new FakeClock();
  const now = clock.now();
  for (const id of ["a1", "a2"]) await inner.ensureAgent(id, now);
  await createRunOf(inner, "r", ["a1", "a2"], now);
  // A run so large that reading it takes 0.5 s.
  const readMs = 500;
  let reads = 0;
  const store = withMethod(inner, "getRun", (getRun) => async (id) => {
    reads++;
    const run = await getRun(id);
    clock.advance(readMs);
    return run;
  });
  const { dashboard, events, close } = await followRunR(store, clock);
  try {
    assert.equal((await events.next()).value!.event, "status");
    await settle();
    const before = reads;
    // The run changes at once (another dashboard delivers a1; the sweep sees it).
    await inner.claimNext({ agentId: "a1", deploymentHash: "default", now, deliveryLeaseMs: 1 });
    await dashboard.runs.sweep();
    await settle();
    // Ten times the least pause, but less than four reads: not read again yet.
    await clock.advanceAsync(MIN_SNAPSHOT_PAUSE_MS * 10);
    await settle();
    assert.ok(READ_PAUSE_FACTOR * readMs > MIN_SNAPSHOT_PAUSE_MS * 10);
    assert.equal(reads, before, "no read within four times the last read's time");
    await clock.advanceAsync(READ_PAUSE_FACTOR * readMs);
    const next = (await events.next()).value!;
    assert.equal(next.event, "status");
    assert.equal(JSON.parse(next.data).agents[0].state, "delivered");
    assert.equal(reads, before + 1);
  } finally {
    await close();
  }
});

Deno.test("a run's event stream reads again after its least pause when the wall clock steps during a read", async () => {
  // The read's time was measured on the wall clock: an hour stepped forward during a read (NTP,
  // a resumed VM) made the pause four hours, and the follower was told nothing meanwhile.
  using _logs = captureLogs();
  await using inner = openSqliteStore(":memory:");
  class SteppedClock extends FakeClock {
    offsetMs = 0;
    override now(): number {
      return super.now() + this.offsetMs;
    }
  }
  const clock = new SteppedClock();
  const now = clock.now();
  for (const id of ["a1", "a2"]) await inner.ensureAgent(id, now);
  await createRunOf(inner, "r", ["a1", "a2"], now);
  let reads = 0;
  const store = withMethod(inner, "getRun", (getRun) => async (id) => {
    reads++;
    const run = await getRun(id);
    clock.offsetMs += 3_600_000;
    return run;
  });
  const { dashboard, events, close } = await followRunR(store, clock);
  try {
    assert.equal((await events.next()).value!.event, "status");
    await settle();
    const before = reads;
    await inner.claimNext({ agentId: "a1", deploymentHash: "default", now, deliveryLeaseMs: 1 });
    await dashboard.runs.sweep();
    await settle();
    await clock.advanceAsync(MIN_SNAPSHOT_PAUSE_MS);
    const next = (await events.next()).value!;
    assert.equal(next.event, "status");
    assert.equal(JSON.parse(next.data).agents[0].state, "delivered");
    assert.equal(reads, before + 1);
  } finally {
    await close();
  }
});

Deno.test("a step asked for its run while a sweep's step is queued shares that step", async () => {
  using _logs = captureLogs();
  await using inner = openSqliteStore(":memory:");
  const now = Date.now();
  for (const id of ["a1", "a2"]) await inner.ensureAgent(id, now);
  await createRunOf(inner, "r", ["a1", "a2"], now);
  // The first step waits for `release`, so that the next ones queue behind it.
  let steps = 0;
  let listed = false;
  const { promise: held, resolve: release } = Promise.withResolvers<void>();
  const store = new Proxy(inner, {
    get(target, key) {
      const value = Reflect.get(target, key, target);
      if (key === "stepRun") {
        return async (id: string, at: number) => {
          if (++steps === 1) await held;
          return await target.stepRun(id, at);
        };
      }
      if (key === "listOpenRunIds") {
        return (limit: number) =>
          target.listOpenRunIds(limit).then((ids) => {
            listed = true;
            return ids;
          });
      }
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const dashboard = createApp({ store, devMode: true, autoExpireLeases: false, runSweepMs: 0 });
  try {
    const first = dashboard.runs.advance("r");
    await until(() => steps === 1, "the first step began");
    const swept = dashboard.runs.sweep();
    await until(() => listed, "the sweep queued its step");
    const shared = dashboard.runs.advance("r");
    release();
    assert.notEqual((await first)?.targets[0].startedAt, null, "the first step started a1");
    await swept;
    assert.equal(steps, 2, "the operator's step is the sweep's");
    assert.deepEqual(await shared, await inner.getRun("r"), "and answers the run");
  } finally {
    release();
    await dashboard.close();
  }
});

Deno.test("the list of runs reads counts of their targets, and shows what runView shows", async () => {
  using _logs = captureLogs();
  await using inner = openSqliteStore(":memory:");
  const { store, calls } = countingStore(inner);
  const now = Date.now();
  const agents = ["a1", "a2", "a3", "a4"];
  for (const id of agents) await inner.ensureAgent(id, now);
  await createRunOf(inner, "r-first", agents, now);
  await createRunOf(inner, "r-cancelled", agents, now + 1);
  await inner.advanceRun("r-cancelled", now + 1);
  await inner.cancelRun("r-cancelled", now + 2);
  await createRunOf(inner, "r-going", ["a4", "a3", "a2"], now + 3);
  const dashboard = createApp({ store, devMode: true, autoExpireLeases: false, runSweepMs: 0 });
  try {
    await dashboard.runs.sweep();
    // r-going: a4 ran and failed; the sweep started a3.
    const claimed = await inner.claimNext({
      agentId: "a4",
      deploymentHash: "default",
      now: now + 4,
      deliveryLeaseMs: 30_000,
    });
    assert.equal(claimed?.id, "r-going:a4");
    await inner.report({
      commandId: "r-going:a4",
      agentId: "a4",
      attempt: 1,
      status: "failed",
      result: null,
      error: "exit 1",
      startedAt: null,
      completedAt: null,
      now: now + 5,
    });
    await dashboard.runs.sweep();
    calls.clear();
    for (const query of ["", "?open=1", "?limit=2"]) {
      const response = await dashboard.app.request(`/api/v1/runs${query}`);
      assert.equal(response.status, 200);
      const limit = query === "?limit=2" ? 2 : 50;
      const runs = await inner.listRuns({ open: query === "?open=1", limit });
      const expected = runs.map((run) => {
        const { agents: _agents, ...summary } = runView(run);
        return summary;
      });
      // As text: the same fields, totals and key order.
      assert.equal(await response.text(), JSON.stringify({ runs: expected }), query);
    }
    assert.deepEqual(
      [calls.get("listRuns"), calls.get("getRun"), calls.get("listRunSummaries")],
      [undefined, undefined, 3],
      "no target is read with its command",
    );
    // A bad query is a 400 naming the field in `details`, as the commands list's.
    for (
      const [query, field] of [["?limit=x", "limit"], ["?limit=0", "limit"], ["?open=no", "open"]]
    ) {
      const response = await dashboard.app.request(`/api/v1/runs${query}`);
      assert.equal(response.status, 400, query);
      const body = await response.json();
      assert.equal(body.details?.[0]?.field, field, query);
      assert.match(body.error, new RegExp(`^query "${field}": must be`), query);
    }
  } finally {
    await dashboard.close();
  }
});

Deno.test("a run's creation looks its commands' ids up together, not one by one", async () => {
  using _logs = captureLogs();
  await using inner = openSqliteStore(":memory:");
  const { store, calls } = countingStore(inner);
  const now = Date.now();
  const agents = Array.from({ length: 40 }, (_, i) => `a${String(i).padStart(2, "0")}`);
  for (const id of agents) await inner.ensureAgent(id, now);
  const dashboard = createApp({ store, devMode: true, autoExpireLeases: false, runSweepMs: 0 });
  try {
    await dashboard.runs.sweep();
    calls.clear();
    const response = await dashboard.app.request("/api/v1/runs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ id: "r1", name: "echo hi", target: { agents }, max_concurrency: 1 }),
    });
    assert.equal(response.status, 201, await response.clone().text());
    assert.equal((await response.json()).totals.total, 40);
    assert.equal(calls.get("existingCommandIds"), 1);
    assert.equal(calls.get("getCommand"), undefined, "no id is looked up alone");
  } finally {
    await dashboard.close();
  }
});

Deno.test("a run cancelled after a target started and before its enqueue cancels its command", async () => {
  using _logs = captureLogs();
  await using store = openSqliteStore(":memory:");
  const now = Date.now();
  for (const id of ["a1", "a2", "a3"]) await store.ensureAgent(id, now);
  await store.createRun({
    id: "r",
    name: "echo hi",
    params: {},
    target: { agents: ["a1", "a2", "a3"] },
    fingerprint: "fp",
    maxConcurrency: 2,
    maxConcurrencySpec: 2,
    maxErrors: null,
    targets: ["a1", "a2", "a3"].map((agentId) => ({
      agentId,
      commandId: `r:${agentId}`,
      offlineAtCreation: false,
    })),
    now,
  });
  // The crash: two targets started, no command enqueued; the operator cancels after the restart.
  await store.advanceRun("r", now);
  const restarted = createApp({ store, devMode: true, autoExpireLeases: false, runSweepMs: 0 });
  try {
    const cancelled = await restarted.runs.cancel("r");
    assert.equal(cancelled.outcome, "cancelled");
    assert.ok(
      cancelled.outcome === "cancelled" && cancelled.run.completedAt !== null,
      "every command was queued, so the run ended with the cancel and its answer says when",
    );
    const commands = await store.listCommands({ limit: 10 });
    assert.deepEqual(commands.map((c) => [c.id, c.status]).sort(), [
      ["r:a1", "cancelled"],
      ["r:a2", "cancelled"],
    ]);
    const run = await restarted.runs.advance("r");
    assert.deepEqual(run?.targets.map((t) => t.skippedAt !== null), [false, false, true]);
    assert.notEqual(run?.completedAt, null);
  } finally {
    await restarted.close();
  }
});

Deno.test("--wait-timeout stops waiting for a run with exit 75; the run goes on", async () => {
  using _logs = captureLogs();
  await using fleet = await startFleet(1);
  const result = await cli(fleet.url, [
    "enqueue",
    "sleep 2",
    "--label",
    "role=web",
    "--id",
    "run-slow",
    "--wait-timeout",
    "1",
  ]);
  assert.equal(result.code, 75, result.stderr);
  assert.match(result.stderr, /run run-slow has not ended after 1 s \(--wait-timeout\)/);
  assert.equal((await finalRun(fleet.url, "run-slow")).status, "succeeded");
});

Deno.test("status run show --wait-timeout follows a run (implied --follow) and stops waiting with exit 75", async () => {
  using _logs = captureLogs();
  await using fleet = await startFleet(1);
  const started = await cli(fleet.url, [
    "run",
    "start",
    "sleep 2",
    "--label",
    "role=web",
    "--id",
    "run-shown",
  ]);
  assert.equal(started.code, 0, started.stderr);
  const shown = await cli(fleet.url, ["run", "show", "run-shown", "--wait-timeout", "1"]);
  assert.equal(shown.code, 75, shown.stderr);
  assert.match(shown.stderr, /run run-shown has not ended after 1 s \(--wait-timeout\)/);
  assert.equal((await finalRun(fleet.url, "run-shown")).status, "succeeded");
  // An ended run is shown at once, its exit code as --follow gives it.
  const ended = await cli(fleet.url, ["run", "show", "run-shown", "--wait-timeout", "1"]);
  assert.equal(ended.code, 0, ended.stderr);
});

Deno.test("a run whose part's command id exists already is refused, not run as another's command", async () => {
  await using d = await makeDashboard();
  // An operator's command for a2 whose id is the form of run r7's part for a1.
  const other = await d.admin("POST", P.enqueue, {
    id: "r7:a1",
    name: "echo other",
    agent_id: "a2",
  });
  assert.equal(other.status, 202);
  await other.body?.cancel();
  const refused = await d.admin("POST", "/api/v1/runs", {
    id: "r7",
    name: "echo run",
    target: { agents: ["a1", "a2"] },
  });
  assert.equal(refused.status, 409);
  const body = await json(refused);
  assert.match(
    body.error as string,
    /^run id r7 cannot be used: command r7:a1 already exists, enqueued outside a run, .*for agent a1 .*use another run id$/,
  );
  assert.deepEqual(body.details, { existing_command_ids: ["r7:a1"] });
  const missing = await d.admin("GET", "/api/v1/runs/r7");
  assert.equal(missing.status, 404, "nothing is stored");
  await missing.body?.cancel();
  assert.equal((await json(await d.admin("GET", "/api/v1/commands/r7:a1"))).agent_id, "a2");

  // Another id works, and posting it again is its duplicate (its commands exist by then).
  const request = { id: "r8", name: "echo run", target: { agents: ["a1", "a2"] } };
  const created = await d.admin("POST", "/api/v1/runs", request);
  assert.equal(created.status, 201);
  await created.body?.cancel();
  const part = await d.admin("GET", "/api/v1/commands/r8:a1");
  assert.equal(part.status, 200);
  assert.equal((await json(part)).name, "echo run");
  const again = await d.admin("POST", "/api/v1/runs", request);
  assert.equal(again.status, 200);
  assert.equal((await json(again)).duplicate, true);
});

Deno.test("an enqueue of a run's part not started yet is refused, and the run still gives it its own command", async () => {
  await using d = await makeDashboard();
  const created = await d.admin("POST", "/api/v1/runs", {
    id: "r9",
    name: "echo run",
    target: { agents: ["a1", "a2"] },
    max_concurrency: 1,
  });
  assert.equal(created.status, 201);
  await created.body?.cancel();
  // a1's part is started (its command exists); a2's waits for it.
  for (const [agentId, body] of [["a2", "echo other"], ["a1", "echo other"]] as const) {
    const response = await d.admin("POST", P.enqueue, {
      id: `r9:${agentId}`,
      name: body,
      agent_id: agentId,
    });
    const answer = await json(response);
    if (agentId === "a2") {
      assert.equal(response.status, 409);
      assert.equal(
        answer.error,
        "command id r9:a2 is run r9's part for agent a2, not started yet: the run enqueues it " +
          "when it starts that part; use another id",
      );
    } else {
      // A started part has its command: another body is the usual conflict.
      assert.equal(response.status, 409);
      assert.match(answer.error as string, /^command r9:a1 already exists with a different body/);
    }
  }
  // a1 runs its part; the run then starts a2's, with the run's command.
  const wait = await d.agent({ path: P.wait() });
  const delivered = await json(wait);
  assert.equal(delivered.id, "r9:a1");
  const report = await d.agent({ path: P.report, body: reportBody("r9:a1", { attempt: 1 }) });
  assert.equal(report.status, 200);
  await report.body?.cancel();
  await until(async () => {
    const part = await d.admin("GET", "/api/v1/commands/r9:a2");
    const found = part.status === 200 ? await json(part) : (await part.body?.cancel(), null);
    return found?.name === "echo run" && found?.agent_id === "a2";
  });
});

Deno.test("a skipped agent says why: the run's failures over max_errors, or its cancel", async () => {
  await using d = await makeDashboard({ runSweepMs: 0 });
  const start = async (id: string, maxErrors: number | undefined) => {
    const created = await d.admin("POST", "/api/v1/runs", {
      id,
      name: "echo run",
      target: { agents: ["a1", "a2"] },
      max_concurrency: 1,
      ...(maxErrors === undefined ? {} : { max_errors: maxErrors }),
    });
    assert.equal(created.status, 201);
    await created.body?.cancel();
  };
  const errors = async (id: string) =>
    ((await json(await d.admin("GET", `/api/v1/runs/${id}`))).agents as RunView["agents"])
      .map((a) => `${a.state}: ${a.error ?? "-"}`);

  // a1 fails; with max_errors 0 the run skips a2, and says it was the failures.
  await start("r-err", 0);
  const wait = await d.agent({ path: P.wait() });
  assert.equal((await json(wait)).id, "r-err:a1");
  d.clock.advance(1000);
  const report = await d.agent({
    path: P.report,
    body: reportBody("r-err:a1", {
      status: "failed",
      result: { ...reportBody("").result, exit_code: 1 },
    }),
  });
  assert.equal(report.status, 200);
  await report.body?.cancel();
  await until(async () => (await errors("r-err"))[1].startsWith("skipped"));
  assert.deepEqual(await errors("r-err"), [
    "failed: -",
    "skipped: not started: 1 of the run's commands failed, max_errors is 0",
  ]);

  // Another dashboard instance, its clock ahead, recorded a1's failure "after" the skip: still
  // the failures, the only reason a run not cancelled skips.
  const stored = await d.store.getRun("r-err");
  assert.ok(stored);
  const [failed, skipped] = stored.targets;
  assert.ok(failed.command && skipped.skippedAt !== null);
  failed.command.completedAt = skipped.skippedAt + 5_000;
  assert.equal(
    runView(stored).agents[1].error,
    "not started: 1 of the run's commands failed, max_errors is 0",
  );

  // Cancelled while a1 is queued, with max_errors 0: a1's cancel is a failure too, at the same
  // instant, but the cancel is why a2 was skipped.
  for (const [id, maxErrors] of [["r-cancel", 0], ["r-cancel-2", undefined]] as const) {
    await start(id, maxErrors);
    const cancelled = await d.admin("POST", `/api/v1/runs/${id}/cancel`);
    assert.equal(cancelled.status, 200);
    await cancelled.body?.cancel();
    const [first, second] = await errors(id);
    assert.match(first, /^cancelled: /);
    assert.equal(second, "skipped: not started: the run was cancelled");
  }
});

Deno.test("the warning about offline agents names ten of them, not a thousand", async () => {
  const ids = Array.from({ length: 12 }, (_, i) => `n${String(i + 1).padStart(2, "0")}`);
  await using d = await makeDashboard({
    agents: Object.fromEntries(ids.map((id) => [id, { token: null }])),
  });
  const created = await d.admin("POST", "/api/v1/runs", {
    id: "r-offline",
    name: "echo hi",
    target: { agents: ids },
  });
  assert.equal(created.status, 201);
  const body = await json(created);
  assert.deepEqual(body.offline, ids, "every offline agent is listed in offline");
  assert.deepEqual(body.warnings, [
    "12 agent(s) offline: n01, n02, n03, n04, n05, n06, n07, n08, n09, n10 and 2 more (all in " +
    '"offline"); their commands wait in the queue until the agent comes back or the command\'s ' +
    "queue expiry",
  ]);
});

Deno.test("cancels of unknown or ended runs leave nothing behind in the scheduler", async () => {
  await using d = await makeDashboard({ runSweepMs: 0 });
  const runs = d.dashboard.runs;
  for (let i = 0; i < 50; i++) {
    const response = await d.admin("POST", `/api/v1/runs/nope-${i}/cancel`);
    assert.equal(response.status, 404);
    await response.body?.cancel();
  }
  assert.equal(runs.trackedRuns, 0, "unknown runs");
  const created = await d.admin("POST", "/api/v1/runs", {
    id: "r1",
    name: "echo run",
    target: { agents: ["a1"] },
  });
  assert.equal(created.status, 201);
  await created.body?.cancel();
  assert.equal(runs.trackedRuns, 1, "an open run is followed");
  const cancelled = await d.admin("POST", "/api/v1/runs/r1/cancel");
  assert.equal(cancelled.status, 200, await cancelled.clone().text());
  await cancelled.body?.cancel();
  // The cancelled command's event steps the run once more, after the answer.
  await until(() => runs.trackedRuns === 0, "a run that ended is forgotten");
  for (let i = 0; i < 20; i++) {
    const again = await d.admin("POST", "/api/v1/runs/r1/cancel");
    assert.equal(again.status, 409);
    await again.body?.cancel();
  }
  assert.equal(runs.trackedRuns, 0, "cancels of an ended run");
  assert.equal(await runs.advance("nope"), null);
  assert.equal(runs.trackedRuns, 0, "a step of an unknown run");
});

/** Starts a run of `a1` then `a2`, one at a time; its view once a1's part is queued. */
async function twoPartRun(d: TestDashboard, id: string): Promise<() => Promise<RunView>> {
  const created = await d.admin("POST", "/api/v1/runs", {
    id,
    name: "echo hi",
    target: { agents: ["a1", "a2"] },
    max_concurrency: 1,
  });
  assert.equal(created.status, 201, await created.clone().text());
  await created.body?.cancel();
  await until(async () => (await d.store.getCommand(`${id}:a1`)) !== null, "a1's part starts");
  return async () => await (await d.admin("GET", `/api/v1/runs/${id}`)).json() as RunView;
}

Deno.test("a run with a part on an agent that is removed moves on at once, without a sweep", async (t) => {
  using _logs = captureLogs();
  // A fake clock that never moves: no sweep and no lease expiry steps the run.
  await using d = await makeDashboard();
  const view = await twoPartRun(d, "run-rm");
  const waited = await d.agent({ path: P.wait() });
  assert.equal((await json(waited)).id, "run-rm:a1");
  const acked = await d.agent({ path: P.ack, body: { command_id: "run-rm:a1", attempt: 1 } });
  assert.equal(acked.status, 200);
  await acked.body?.cancel();
  assert.deepEqual((await view()).agents.map((a) => a.state), ["running", "pending"]);

  const removed = await d.admin("DELETE", "/api/v1/agents/a1");
  assert.deepEqual(await json(removed), { removed: true, id: "a1", commands_ended: 1 });

  await t.step("the removed agent's part ends and the next one starts", async () => {
    await until(async () => (await d.store.getCommand("run-rm:a2")) !== null, "a2's part starts");
    const run = await view();
    assert.equal(run.status, "running");
    assert.deepEqual(run.agents.map((a) => a.state), ["cancelled", "queued"]);
    assert.match(String(run.agents[0].error), /^agent a1 was removed while attempt 1 was running/);
  });
  await t.step("the run completes when the other part does", async () => {
    const next = await d.agent({ path: P.wait("default", 1), agentId: "a2", token: TOKEN2 });
    assert.equal((await json(next)).id, "run-rm:a2");
    const reported = await d.agent({
      path: P.report,
      body: reportBody("run-rm:a2"),
      agentId: "a2",
      token: TOKEN2,
    });
    assert.equal(reported.status, 200);
    await reported.body?.cancel();
    await until(async () => (await view()).status !== "running", "the run completes");
    const run = await view();
    assert.equal(run.status, "failed", "a cancelled part is a failure");
    assert.deepEqual(run.agents.map((a) => a.state), ["cancelled", "success"]);
  });
});

Deno.test("a run's part not started when its agent is removed ends when the run reaches it", async () => {
  using _logs = captureLogs();
  await using d = await makeDashboard();
  const view = await twoPartRun(d, "run-later");
  // a2's part is pending when a2 is removed: the removal finds no command of it.
  const removed = await d.admin("DELETE", "/api/v1/agents/a2");
  assert.deepEqual(await json(removed), { removed: true, id: "a2", commands_ended: 0 });
  assert.deepEqual((await view()).agents.map((a) => a.state), ["queued", "pending"]);

  assert.equal((await json(await d.agent({ path: P.wait() }))).id, "run-later:a1");
  const reported = await d.agent({ path: P.report, body: reportBody("run-later:a1") });
  assert.equal(reported.status, 200);
  await reported.body?.cancel();
  // The run starts a2's part, which nobody can take: it ends at once, and so does the run.
  await until(async () => (await view()).status !== "running", "the run completes");
  const run = await view();
  assert.equal(run.status, "failed");
  assert.deepEqual(run.agents.map((a) => a.state), ["success", "cancelled"]);
  assert.equal(
    run.agents[1].error,
    "agent a2 was removed while it was queued; it never ran",
  );
});

Deno.test("a step nobody waits for starts twice as long after the last step as it took; a caller's step and a cancel do not wait", async (t) => {
  using _logs = captureLogs();
  await using inner = openSqliteStore(":memory:");
  // Each step takes 100 ms of the fake clock (a run of many targets takes that long to read).
  const ref: { clock?: FakeClock } = {};
  let steps = 0;
  const slow = withMethod(inner, "stepRun", (stepRun) => async (...args) => {
    steps++;
    const outcome = await stepRun(...args);
    ref.clock?.advance(100);
    return outcome;
  });
  const { store, clock, scheduler } = countedScheduler(slow);
  ref.clock = clock;
  const now = clock.now();
  for (const id of ["a1", "a2", "a3"]) await inner.ensureAgent(id, now);
  await createRunOf(inner, "r", ["a1", "a2", "a3"], now);
  const finish = async (agentId: string) => {
    const commandId = `r:${agentId}`;
    const at = clock.now();
    const claimed = await store.claimNext({
      agentId,
      deploymentHash: "default",
      now: at,
      deliveryLeaseMs: 30_000,
    });
    assert.equal(claimed?.id, commandId);
    await store.ack({ commandId, agentId, attempt: 1, now: at, defaultTimeoutSecs: 60 });
    const reported = await store.report({
      commandId,
      agentId,
      attempt: 1,
      status: "success",
      result: null,
      error: null,
      startedAt: null,
      completedAt: null,
      now: at,
    });
    assert.equal(reported.outcome, "accepted");
  };
  try {
    await scheduler.advance("r");
    assert.notEqual(await inner.getCommand("r:a1"), null, "a1 started");
    await t.step("a1's end steps the run only 200 ms after the last step", async () => {
      const before = steps;
      await finish("a1");
      await settle();
      assert.equal(steps, before, "no step yet");
      assert.equal(await inner.getCommand("r:a2"), null);
      clock.advance(199);
      await settle();
      assert.equal(steps, before, "still none");
      clock.advance(1);
      await until(async () => (await inner.getCommand("r:a2")) !== null, "a2 starts");
      assert.equal(steps, before + 1, "one step");
    });
    await t.step("an operator asking for the run does not wait for the pause", async () => {
      await finish("a2");
      await settle();
      assert.equal(await inner.getCommand("r:a3"), null, "the step pauses");
      const run = await scheduler.advance("r");
      assert.ok(run?.targets[2].startedAt !== null, "a3 started at once");
    });
    await t.step("a cancel does not wait for the pause either", async () => {
      await finish("a3");
      await settle();
      const cancelled = await scheduler.cancel("r");
      assert.equal(cancelled.outcome, "final", "the run had ended with a3");
    });
  } finally {
    scheduler.close();
  }
});

Deno.test("a paced step starts after the pause however the wall clock was set back", async () => {
  // The pause ended at a wall time: a clock set back an hour (NTP, a resumed VM) after a step
  // held the run's next step, and every agent's part after it, for that hour.
  using _logs = captureLogs();
  await using inner = openSqliteStore(":memory:");
  class SteppedClock extends FakeClock {
    offsetMs = 0;
    override now(): number {
      return super.now() + this.offsetMs;
    }
  }
  const clock = new SteppedClock();
  let steps = 0;
  const slow = withMethod(inner, "stepRun", (stepRun) => async (...args) => {
    steps++;
    const outcome = await stepRun(...args);
    clock.advance(100);
    return outcome;
  });
  const { store, scheduler } = countedScheduler(slow, clock);
  const now = clock.now();
  for (const id of ["a1", "a2"]) await inner.ensureAgent(id, now);
  await createRunOf(inner, "r", ["a1", "a2"], now);
  try {
    await scheduler.advance("r");
    clock.offsetMs -= 3_600_000;
    const at = clock.now();
    await store.claimNext({
      agentId: "a1",
      deploymentHash: "default",
      now: at,
      deliveryLeaseMs: 1,
    });
    await store.ack({
      commandId: "r:a1",
      agentId: "a1",
      attempt: 1,
      now: at,
      defaultTimeoutSecs: 60,
    });
    await store.report({
      commandId: "r:a1",
      agentId: "a1",
      attempt: 1,
      status: "success",
      result: null,
      error: null,
      startedAt: null,
      completedAt: null,
      now: at,
    });
    const before = steps;
    clock.advance(200);
    await until(async () => (await inner.getCommand("r:a2")) !== null, "a2 starts");
    assert.equal(steps, before + 1, "one step");
  } finally {
    scheduler.close();
  }
});

Deno.test("a run's target agents count as a set: the same ids in another order or twice are its duplicate", async (t) => {
  await using d = await makeDashboard();
  const post = async (body: unknown) => {
    const response = await d.admin("POST", "/api/v1/runs", body);
    return { status: response.status, body: await json(response) };
  };
  await t.step("another order, or an id given twice, is the same run", async () => {
    const created = await post({ id: "set", name: "true", target: { agents: ["a2", "a1"] } });
    assert.equal(created.status, 201);
    for (const agents of [["a1", "a2"], ["a2", "a1"], ["a1", "a2", "a1"]]) {
      const again = await post({ id: "set", name: "true", target: { agents } });
      assert.equal(again.status, 200, `${agents}: ${JSON.stringify(again.body)}`);
      assert.equal(again.body.duplicate, true);
      assert.deepEqual(again.body.target, { agents: ["a2", "a1"] }, "the run as first posted");
    }
  });
  await t.step("other agents are another body", async () => {
    const other = await post({ id: "set", name: "true", target: { agents: ["a1"] } });
    assert.equal(other.status, 409);
    assert.match(other.body.error as string, /^run set already exists with a different body/);
  });
  await t.step(
    "a run stored with the digest of its ids as given still knows its body",
    async () => {
      const request = { name: "true", target: { agents: ["a2", "a1"] } };
      const asGiven = createHash("sha256").update(canonicalJson({
        ...request,
        params: {},
        max_concurrency: null,
        max_errors: null,
      })).digest("hex");
      await d.store.createRun({
        id: "old",
        name: request.name,
        params: {},
        target: request.target,
        fingerprint: asGiven,
        maxConcurrency: 2,
        maxConcurrencySpec: null,
        maxErrors: null,
        targets: ["a1", "a2"].map((agentId) => ({
          agentId,
          commandId: `old:${agentId}`,
          offlineAtCreation: false,
        })),
        now: d.clock.now(),
      });
      const again = await post({ id: "old", ...request });
      assert.equal(again.status, 200, JSON.stringify(again.body));
      assert.equal(again.body.duplicate, true);
      const other = await post({ id: "old", name: "false", target: request.target });
      assert.equal(other.status, 409);
    },
  );
});

Deno.test("a sweep steps every open run, not only the newest 10,000", async () => {
  using _logs = captureLogs();
  await using store = openSqliteStore(":memory:");
  const now = Date.now();
  await store.ensureAgent("a1", now);
  const count = 10_001;
  for (let i = 0; i < count; i++) await createRunOf(store, `r${i}`, ["a1"], now);
  const started: string[] = [];
  const scheduler = new RunScheduler({
    store,
    clock: new FakeClock(),
    events: new CommandEvents(),
    sweepMs: 0,
    enqueue(run) {
      started.push(run.id);
      return Promise.resolve();
    },
  });
  try {
    // As after a restart: nothing watches these runs' commands; the sweep alone steps them.
    await scheduler.sweep();
    assert.equal(started.length, count);
    assert.ok(started.includes("r0"), "the oldest open run is stepped too");
    assert.notEqual((await store.getRunState("r0"))?.targets[0].startedAt, null);
  } finally {
    scheduler.close();
  }
});

Deno.test("a first sweep that fails (a store failing at start) leaves the sweeps going", async () => {
  using _logs = captureLogs();
  await using store = openSqliteStore(":memory:");
  const now = Date.now();
  await store.ensureAgent("a1", now);
  await createRunOf(store, "r1", ["a1"], now);
  let failures = 1;
  const listOpenRunIds = store.listOpenRunIds.bind(store);
  store.listOpenRunIds = (limit) =>
    failures-- > 0
      ? Promise.reject(new StoreError("the database status.db failed: a disk I/O error"))
      : listOpenRunIds(limit);
  const clock = new FakeClock();
  const started: string[] = [];
  const errors: unknown[] = [];
  const scheduler = new RunScheduler({
    store,
    clock,
    events: new CommandEvents(),
    sweepMs: 5000,
    enqueue(run) {
      started.push(run.id);
      return Promise.resolve();
    },
    onError: (error) => errors.push(error),
  });
  try {
    await assert.rejects(scheduler.start(), /disk I\/O error/);
    assert.deepEqual(started, []);
    // Old behaviour: no timer was armed, and r1 was never stepped.
    await clock.advanceAsync(5000);
    await until(() => started.length > 0, "the next sweep steps r1");
    assert.deepEqual(started, ["r1"]);
    assert.deepEqual(errors, [], "the failure of start is its caller's to tell");
  } finally {
    scheduler.close();
  }
});

Deno.test("a run whose params name another deployment than its target is refused, nothing stored", async () => {
  await using d = await makeDashboard();
  const heartbeat = await d.agent({
    agentId: "a1",
    path: "/api/v1/agent/heartbeat",
    body: { deployment_hash: "prod" },
  });
  assert.equal(heartbeat.status, 200);
  await heartbeat.body?.cancel();
  const refused = await d.admin("POST", "/api/v1/runs", {
    id: "dep",
    name: "true",
    target: { deployment: "prod" },
    params: { deployment_hash: "staging" },
  });
  assert.equal(refused.status, 400);
  const body = await json(refused);
  assert.equal(
    body.error,
    'field "params.deployment_hash": "staging" is not the target\'s deployment "prod": the ' +
      "run's agents wait on \"prod\" and would never receive it; leave it out (the target's " +
      "deployment is used) or give the same",
  );
  const missing = await d.admin("GET", "/api/v1/runs/dep");
  assert.equal(missing.status, 404, "nothing is stored");
  await missing.body?.cancel();
  // The same hash as the target's is what the run would use anyway.
  const same = await d.admin("POST", "/api/v1/runs", {
    id: "dep",
    name: "true",
    target: { deployment: "prod" },
    params: { deployment_hash: "prod" },
  });
  assert.equal(same.status, 201);
  await same.body?.cancel();
});

Deno.test("a run whose params name a deployment its agents do not wait for warns of them", async () => {
  await using d = await makeDashboard({ realClock: true });
  // a1 waits on prod, a2 on staging, both long polls held open.
  const waits = [
    d.agent({ agentId: "a1", path: P.wait("prod", 1) }),
    d.agent({ agentId: "a2", token: TOKEN2, path: P.wait("staging", 5) }),
  ];
  await until(() => d.dashboard.hub.isWaiting("a1") && d.dashboard.hub.isWaiting("a2"));
  const created = await d.admin("POST", "/api/v1/runs", {
    id: "dep",
    name: "true",
    target: { agents: ["a1", "a2"] },
    params: { deployment_hash: "staging" },
  });
  assert.equal(created.status, 201);
  const body = await json(created);
  assert.deepEqual(body.offline, []);
  assert.deepEqual(body.warnings, [
    "1 agent(s) wait for another deployment than staging: a1; their commands wait in the queue " +
    "for a wait on staging until the command's queue expiry",
  ]);
  const answers = await Promise.all(waits);
  assert.equal(answers[1].status, 200, "a2 waiting on staging gets its part");
  await answers[1].body?.cancel();
  // a1's wait was answered empty; nothing of the run went to it.
  assert.equal(answers[0].status, 204);
  await answers[0].body?.cancel();
});

Deno.test("a run warns of an agent whose waits another dashboard instance holds, by its last heartbeat's deployment", async () => {
  await using d = await makeDashboard();
  // a1's waits and heartbeats go to another instance on the shared store: none is held here.
  for (const [agentId, deploymentHash] of [["a1", "prod"], ["a2", "staging"]]) {
    assert.ok(
      await d.store.recordHeartbeat(agentId, {
        version: "1",
        deploymentHash,
        instanceId: `i-${agentId}`,
        sample: null,
        now: d.clock.now(),
      }),
    );
  }
  const created = await d.admin("POST", "/api/v1/runs", {
    id: "beat",
    name: "true",
    target: { agents: ["a1", "a2"] },
    params: { deployment_hash: "staging" },
  });
  assert.equal(created.status, 201);
  const body = await json(created);
  assert.deepEqual(body.offline, []);
  assert.deepEqual(body.warnings, [
    "1 agent(s) wait for another deployment than staging: a1; their commands wait in the queue " +
    "for a wait on staging until the command's queue expiry",
  ]);
});

Deno.test("a run's creation that timed out says the run may exist, by its id, and how to send it again", async (t) => {
  const posted: Array<{ id?: string }> = [];
  // The dashboard took the run and its answer never came.
  const fakeFetch: typeof fetch = (_url, init) => {
    posted.push(JSON.parse(String(init?.body)));
    return new Promise((_, reject) =>
      init?.signal?.addEventListener("abort", () => reject(init.signal?.reason))
    );
  };
  const client = new OperatorClient({
    dashboardUrl: "http://127.0.0.1:9",
    fetch: fakeFetch,
    requestTimeoutMs: 1,
  });
  const request = { name: "true", target: { agents: ["a1", "a2"] } };
  await t.step("without --id: the id it sent is named, with --id to send it again", async () => {
    const error = await failure(() => startRun(memoryIo(), client, request, {}));
    const id = posted[0].id;
    assert.ok(id !== undefined, "the CLI sent an id of its own");
    assert.equal(error.kind, "timeout");
    assert.match(
      error.message,
      new RegExp(
        `^the dashboard at .* did not answer within .*; the run may have been created as ${id}: ` +
          `see it with status run show ${id}, or send the same command with --id ${id} \\(the ` +
          `same id and body start nothing twice\\)$`,
      ),
    );
  });
  await t.step("with --id: the same command again", async () => {
    const error = await failure(() => startRun(memoryIo(), client, { ...request, id: "r9" }, {}));
    assert.equal(posted[1].id, "r9");
    assert.match(
      error.message,
      /as r9: see it with status run show r9, or send the same command \(/,
    );
  });
});

/** The OperatorError `fn` rejects with (fails when it resolves or rejects with another error). */
async function failure(fn: () => Promise<unknown>): Promise<OperatorError> {
  try {
    await fn();
  } catch (error) {
    assert.ok(error instanceof OperatorError, String(error));
    return error;
  }
  assert.fail("it did not fail");
}

Deno.test("a run naming 10,000 agents of 128-character ids is taken, beyond the 1 MiB of other bodies", async () => {
  using _logs = captureLogs();
  await using d = await makeDashboard({ devMode: true });
  const ids = Array.from({ length: 10_000 }, (_, i) => `agent-${i}`.padEnd(128, "x"));
  for (const id of ids) await d.store.ensureAgent(id, d.clock.now());
  const body = { id: "big", name: "true", target: { agents: ids }, max_concurrency: 1 };
  assert.ok(JSON.stringify(body).length > 1024 * 1024, "the body is over 1 MiB");
  const created = await d.admin("POST", "/api/v1/runs", body);
  const answer = await json(created);
  assert.equal(created.status, 201, JSON.stringify(answer).slice(0, 300));
  assert.equal((answer.totals as Record<string, number>).total, 10_000);
  // Other bodies keep their limit.
  const enqueue = await d.admin("POST", P.enqueue, {
    name: "true",
    agent_id: ids[0],
    params: { metadata: { pad: "x".repeat(1024 * 1024) } },
  });
  assert.equal(enqueue.status, 413);
  await enqueue.body?.cancel();
});

Deno.test("the warning about offline agents says how long they may hold a run that starts a few at a time", async (t) => {
  const ids = ["n1", "n2", "n3", "n4", "n5"];
  await using d = await makeDashboard({
    agents: Object.fromEntries(ids.map((id) => [id, { token: null }])),
    queueTtlSecs: 3600,
  });
  const warnings = async (id: string, extra: Record<string, unknown>) => {
    const created = await d.admin("POST", "/api/v1/runs", {
      id,
      name: "true",
      target: { agents: ids },
      ...extra,
    });
    assert.equal(created.status, 201);
    return (await json(created)).warnings;
  };
  const start = "5 agent(s) offline: n1, n2, n3, n4, n5; their commands wait in the queue until " +
    "the agent comes back or the command's queue expiry";
  await t.step("two at a time: three rounds of the queue expiry", async () => {
    assert.deepEqual(await warnings("two", { max_concurrency: 2 }), [
      `${start}; meanwhile each holds one of the run's 2 place(s) (max_concurrency), so they ` +
      "alone may keep the run going 3 × the 3600 s queue expiry (3 h); a shorter --ttl " +
      "(params.ttl_secs) or max_errors ends it sooner",
    ]);
  });
  await t.step("the params' ttl counts", async () => {
    assert.deepEqual(await warnings("one", { max_concurrency: 1, params: { ttl_secs: 60 } }), [
      `${start}; meanwhile each holds one of the run's 1 place(s) (max_concurrency), so they ` +
      "alone may keep the run going 5 × the 60 s queue expiry (5 min); a shorter --ttl " +
      "(params.ttl_secs) or max_errors ends it sooner",
    ]);
  });
  await t.step("all at once: nothing more to say", async () => {
    assert.deepEqual(await warnings("all", {}), [start]);
  });
});

Deno.test("an enqueue naming a run's part reads that part alone, its command without result or output", async () => {
  await using d = await makeDashboard({
    agents: { a1: { token: TOKEN }, a2: { token: TOKEN2 }, a3: { token: `${TOKEN}-3` } },
  });
  const created = await d.admin("POST", "/api/v1/runs", {
    id: "r9",
    name: "echo run",
    target: { agents: ["a1", "a2", "a3"] },
    max_concurrency: 1,
  });
  assert.equal(created.status, 201);
  await created.body?.cancel();
  // a1's part ran and printed; then a2's started; a3's is not started.
  assert.equal((await json(await d.agent({ path: P.wait() }))).id, "r9:a1");
  const result = { ...reportBody("r9:a1").result, stdout: "x".repeat(4000) };
  const reported = await d.agent({ path: P.report, body: reportBody("r9:a1", { result }) });
  assert.equal(reported.status, 200);
  await reported.body?.cancel();
  await until(async () => (await d.store.getCommand("r9:a2")) !== null, "a2's part starts");
  using counted = countTargetReads();
  const refused = await d.agent({
    path: P.enqueue,
    body: { id: "r9:a3", name: "echo other" },
    agentId: "a3",
    token: `${TOKEN}-3`,
  });
  assert.equal(refused.status, 409);
  assert.match(
    String((await json(refused)).error),
    /^command id r9:a3 is run r9's part for agent a3, not started yet/,
  );
  // Old behaviour: the run's every target was read for the one named: [1, 0, 3].
  assert.deepEqual([counted.reads, counted.output, counted.targets], [1, 0, 1]);
});

Deno.test("a part started but not enqueued when its run is cancelled is never delivered", async () => {
  using _logs = captureLogs();
  await using d = await makeDashboard();
  const now = d.clock.now();
  await createRunOf(d.store, "r-gone", ["a1"], now);
  // The dashboard marked a1's part started, then died before the enqueue (or the enqueue failed).
  const stepped = await d.store.stepRun("r-gone", now);
  assert.deepEqual(stepped?.toEnqueue.map((t) => t.commandId), ["r-gone:a1"]);
  // a1 waits for a command; the operator cancels the run.
  // (The wait's timeout is real time: long enough for the cancel, short for the test.)
  const wait = d.agent({ path: P.wait("default", 3) });
  await until(() => d.dashboard.hub.size === 1, "a1's wait is open");
  const cancelled = await d.admin("POST", "/api/v1/runs/r-gone/cancel");
  assert.equal(cancelled.status, 200);
  const run = (await json(cancelled)).run as RunView;
  // Old behaviour: the cancel's step enqueued the part and answered a1's wait with it, and the
  // run stayed `cancelling` until a1 ran it and stopped.
  assert.equal(run.status, "cancelled");
  assert.deepEqual(run.agents.map((a) => a.state), ["cancelled"]);
  const answer = await wait;
  assert.equal(answer.status, 204, "the wait ends with no command");
  await answer.body?.cancel();
});

Deno.test("a cancel during a step's enqueues stops them: the rest are enqueued as cancelled", async () => {
  using _logs = captureLogs();
  await using store = openSqliteStore(":memory:");
  const now = Date.now();
  const agents = ["a1", "a2", "a3", "a4", "a5"];
  for (const id of agents) await store.ensureAgent(id, now);
  await store.createRun({
    id: "r",
    name: "echo hi",
    params: {},
    target: { agents },
    fingerprint: "fp-r",
    maxConcurrency: agents.length,
    maxConcurrencySpec: null,
    maxErrors: null,
    targets: agents.map((agentId) => ({
      agentId,
      commandId: `r:${agentId}`,
      offlineAtCreation: false,
    })),
    now,
  });
  // Whether the run was cancelled when each part was enqueued (a part enqueued after the cancel
  // must not be handed to its agent).
  const enqueued: [string, boolean][] = [];
  let release!: () => void;
  const held = new Promise<void>((resolve) => release = resolve);
  let second!: () => void;
  const atSecond = new Promise<void>((resolve) => second = resolve);
  const clock = new FakeClock();
  const scheduler = new RunScheduler({
    store,
    clock,
    events: new CommandEvents(),
    sweepMs: 0,
    async enqueue(run, target) {
      enqueued.push([target.agentId, run.cancelRequested]);
      if (enqueued.length === 2) {
        second();
        await held;
      }
      await store.enqueue({
        id: target.commandId,
        agentId: target.agentId,
        name: run.name,
        params: run.params,
        fingerprint: `fp-${target.commandId}`,
        now: clock.now(),
      });
    },
  });
  try {
    // The first step starts all five parts and enqueues them one by one; the cancel comes
    // while the second is being enqueued.
    const stepped = scheduler.advance("r");
    await atSecond;
    const cancelled = scheduler.cancel("r");
    release();
    await stepped;
    const outcome = await cancelled;
    assert.equal(outcome.outcome, "cancelled");
    // Old behaviour: a3–a5 were enqueued (and handed to their agents' waits) by the step the
    // cancel waited for, as if it had not come.
    assert.deepEqual(enqueued, [
      ["a1", false],
      ["a2", false],
      ["a3", true],
      ["a4", true],
      ["a5", true],
    ]);
    const run = await store.getRun("r");
    assert.deepEqual(
      run?.targets.map((t) => t.command?.status),
      ["cancelled", "cancelled", "cancelled", "cancelled", "cancelled"],
    );
    assert.notEqual(run?.completedAt, null);
  } finally {
    scheduler.close();
  }
});

Deno.test("every wrong max_concurrency is told what is right, also 0, negative and too large ones", async () => {
  await using d = await makeDashboard();
  for (const bad of [0, -3, 100_001, 1e300, 1.5, "0%", "150%", true, null]) {
    const answer = await d.admin("POST", "/api/v1/runs", {
      name: "echo hi",
      target: { agents: ["a1"] },
      max_concurrency: bad,
    });
    assert.equal(answer.status, 400, JSON.stringify(bad));
    // Old behaviour for 0, -3 and 100001: "must be at least 1", "must be at most 100000", with no
    // word of percentages.
    assert.equal(
      (await json(answer)).error,
      'field "max_concurrency": a whole number from 1 to 100000, or a percentage from 1% to 100%',
      JSON.stringify(bad),
    );
  }
  assert.equal((await d.store.listRuns({ limit: 10 })).length, 0);
});

Deno.test("a step queued behind a cancel starts nothing: the parts not started are skipped", async () => {
  using _logs = captureLogs();
  await using inner = openSqliteStore(":memory:");
  const events = new CommandEvents();
  const store = observeStore(inner, { events });
  const now = Date.now();
  const agents = ["a1", "a2", "a3", "a4"];
  for (const id of agents) await inner.ensureAgent(id, now);
  await inner.createRun({
    id: "r",
    name: "echo hi",
    params: {},
    target: { agents },
    fingerprint: "fp-r",
    maxConcurrency: 2,
    maxConcurrencySpec: 2,
    maxErrors: null,
    targets: agents.map((agentId) => ({
      agentId,
      commandId: `r:${agentId}`,
      offlineAtCreation: false,
    })),
    now,
  });
  let release!: () => void;
  const held = new Promise<void>((resolve) => release = resolve);
  let second!: () => void;
  const atSecond = new Promise<void>((resolve) => second = resolve);
  let calls = 0;
  const clock = new FakeClock();
  const scheduler = new RunScheduler({
    store,
    clock,
    events,
    sweepMs: 0,
    async enqueue(run, target) {
      if (++calls === 2) {
        second();
        await held;
      }
      await store.enqueue({
        id: target.commandId,
        agentId: target.agentId,
        name: run.name,
        params: run.params,
        fingerprint: `fp-${target.commandId}`,
        now: clock.now(),
      });
    },
  });
  try {
    // The first step starts a1 and a2; while a2's part is being enqueued, a1's command ends and
    // the sweep queues a step, then the operator cancels.
    const stepped = scheduler.advance("r");
    await atSecond;
    assert.equal((await store.cancel("r:a1", clock.now())).outcome, "cancelled");
    const swept = scheduler.sweep();
    await settle();
    const cancelled = scheduler.cancel("r");
    release();
    await stepped;
    await swept;
    assert.equal((await cancelled).outcome, "cancelled");
    await settle();
    const run = await store.getRun("r");
    // Old behaviour: the queued step started a3 before the cancel was recorded, and a3 got a
    // command only to be cancelled: it showed `cancelled`, a failure, not `skipped`.
    assert.deepEqual(run?.targets.map((t) => targetState(t)), [
      "cancelled",
      "cancelled",
      "skipped",
      "skipped",
    ]);
    assert.equal(await store.getCommand("r:a3"), null);
    assert.notEqual(run?.completedAt, null);
  } finally {
    scheduler.close();
  }
});

Deno.test("a cancel that finds every part ended ends the run, and its followers hear of it", async () => {
  using _logs = captureLogs();
  await using inner = openSqliteStore(":memory:");
  const { scheduler, clock } = countedScheduler(inner);
  const now = clock.now();
  for (const id of ["a1", "a2"]) await inner.ensureAgent(id, now);
  await createRunOf(inner, "r", ["a1"], now);
  await scheduler.advance("r");
  let told = 0;
  const unsubscribe = scheduler.subscribe("r", () => told++);
  try {
    // a1's part succeeds where the scheduler does not hear of it (another dashboard instance).
    assert.equal(
      (await inner.claimNext({
        agentId: "a1",
        deploymentHash: "default",
        now,
        deliveryLeaseMs: 30_000,
      }))?.id,
      "r:a1",
    );
    const reported = await inner.report({
      commandId: "r:a1",
      agentId: "a1",
      attempt: 1,
      status: "success",
      result: {
        exitCode: 0,
        signal: null,
        durationSecs: 0.1,
        stdout: "hi\n",
        stderr: "",
        stdoutTruncatedBytes: 0,
        stderrTruncatedBytes: 0,
      },
      error: null,
      startedAt: null,
      completedAt: null,
      now,
    });
    assert.equal(reported.outcome, "accepted");
    // Old behaviour: the run was recorded cancelled, though its every part had succeeded.
    const outcome = await scheduler.cancel("r");
    assert.equal(outcome.outcome, "final");
    const run = await inner.getRun("r");
    assert.equal(runStatus(run!), "succeeded");
    assert.ok(told >= 1, "the run's followers are told it ended");
    assert.equal(scheduler.trackedRuns, 0);
  } finally {
    unsubscribe();
    scheduler.close();
  }
});

Deno.test("a cancelled run's part whose delivery was undone after the cancel is cancelled, and the run ends", async () => {
  using _logs = captureLogs();
  await using d = await makeDashboard();
  const now = d.clock.now();
  await createRunOf(d.store, "r", ["a1"], now);
  await d.dashboard.runs.advance("r");
  // Claimed for a wait of a1 whose answer is not sent yet when the operator cancels the run.
  const claimed = await d.store.claimNext({
    agentId: "a1",
    deploymentHash: "default",
    now,
    deliveryLeaseMs: 60_000,
  });
  assert.equal(claimed?.id, "r:a1");
  const cancelled = await d.dashboard.runs.cancel("r");
  assert.equal(cancelled.outcome, "cancelled");
  assert.equal((await d.store.getCommand("r:a1"))?.cancelRequested, true);
  // The wait's client went away: the claim is undone, the part queued again, its cancel flag kept.
  assert.equal(await d.store.release("r:a1", 1, now + 1), true);
  const run = await d.dashboard.runs.advance("r");
  // Old behaviour: the step passed over a part whose cancel was requested, and no wait may take a
  // cancelled run's part: it stayed queued, the run `cancelling`, until its queue expiry.
  assert.equal((await d.store.getCommand("r:a1"))?.status, "cancelled");
  assert.notEqual(run?.completedAt, null);
  assert.equal(runStatus(run!), "cancelled");
});
