import assert from "node:assert/strict";
import {
  type AgentOptions,
  type AgentRunSummary,
  type AgentState,
  openAgentState,
  PollBackoff,
  runAgent,
} from "../../src/agent/mod.ts";
import { STOPPING_REPORT_MS } from "../../src/agent/result_reporter.ts";
import { signV2 } from "../../src/protocol/mod.ts";
import { command, StubDashboard } from "../_stub_dashboard.ts";
import { FakeClock } from "../../src/clock.ts";
import {
  advanceUntil,
  cancellable,
  captureLogs,
  eventually,
  FakeExecutor,
  memoryAgentState,
  RecordingClock,
  success,
} from "./_helpers.ts";

interface Running {
  stop: AbortController;
  stopNow: AbortController;
  done: Promise<AgentRunSummary>;
  state: AgentState;
  executor: FakeExecutor;
}

function start(stub: { url: string }, extra: Partial<AgentOptions> = {}): Running {
  const stop = new AbortController();
  const stopNow = new AbortController();
  const executor = extra.executor instanceof FakeExecutor ? extra.executor : new FakeExecutor();
  const state = extra.state ?? memoryAgentState();
  const done = runAgent({
    dashboardUrl: stub.url,
    agentId: "agent-1",
    pollingTimeoutSecs: 1,
    pollingBackoffSecs: 1,
    pollingBackoffMaxSecs: 2,
    heartbeat: false,
    executor,
    stopNow: stopNow.signal,
    ...extra,
    state,
  }, stop.signal);
  return { stop, stopNow, done, state, executor };
}

async function finish(running: Running): Promise<AgentRunSummary> {
  running.stop.abort();
  const summary = await running.done;
  running.state[Symbol.dispose]();
  return summary;
}

Deno.test("agent journals, acks, runs and reports a command, with the seed's log lines", async () => {
  using logs = captureLogs();
  await using stub = new StubDashboard();
  const token = "s3cret-token-of-forty-three-characters-long";
  const agent = start(stub, {
    agentToken: token,
    executor: undefined,
    exec: { allowedPrograms: ["echo"], cgroups: false }, // beside other test threads (README)
    heartbeat: true,
    heartbeatOptions: { sources: { sources: {}, missing: [] } },
    metricsIntervalSecs: 3600,
  });
  stub.enqueue(command("cmd-1", "echo hello"));
  await stub.until(() => stub.reports.length === 1, 10_000, "the report");
  await stub.until(() => stub.seen.filter((s) => s.kind === "wait").length >= 2);
  await finish(agent);

  const report = stub.reports[0];
  assert.equal(report.command_id, "cmd-1");
  assert.equal(report.status, "success");
  assert.equal(report.attempt, 1);
  assert.equal((report.result as { stdout: string }).stdout, "hello\n");
  assert.deepEqual(stub.acks, [{ command_id: "cmd-1", attempt: 1 }]);
  // Heartbeats and live output (answered 404 by the stub) are "other"; a cancel-wait opens only
  // when the command still runs after a second (on a loaded machine even `echo` may).
  const kinds = stub.seen.map((s) => s.kind).filter((kind) =>
    kind !== "other" && kind !== "cancel-wait"
  );
  assert.deepEqual(kinds.slice(0, 4), ["wait", "ack", "report", "wait"]);
  assert.ok(agent.state.journal.get("cmd-1")?.state === "accepted");
  assert.equal(agent.state.outbox.size, 0);

  for (const seen of stub.seen) {
    const h = seen.headers;
    assert.equal(h.get("X-Agent-Id"), "agent-1");
    assert.equal(h.get("Authorization"), `Bearer ${token}`);
    assert.equal(h.get("X-Signature-Version"), "2");
    const expected = signV2(token, {
      method: seen.method,
      pathAndQuery: seen.path,
      timestamp: h.get("X-Timestamp")!,
      requestId: h.get("X-Request-Id")!,
      body: seen.body === undefined ? "" : JSON.stringify(seen.body),
    });
    assert.equal(h.get("X-Agent-Signature"), expected, `signature of ${seen.kind}`);
  }
  assert.equal(stub.seen[0].path, "/api/v1/agent/commands/wait/default?timeout=1");
  const ids = new Set(stub.seen.map((s) => s.headers.get("X-Request-Id")));
  assert.equal(ids.size, stub.seen.length, "a fresh request id every time");

  const messages = logs.messages();
  const order = [
    "Agent daemon starting",
    "metrics heartbeat started",
    "long-polling configuration initialized",
    "long-poll: polling loop started",
    "command received from dashboard",
    "Executing command: echo hello (id: cmd-1)",
    "command execution and reporting completed",
  ];
  // One start-up line says how commands are confined.
  assert.ok(
    messages.some((m) => /^sandbox: commands run as .*, stopped (with|by) /.test(m)),
    messages.join("\n"),
  );
  let at = -1;
  for (const message of order) {
    const next = messages.indexOf(message, at + 1);
    assert.ok(next > at, `"${message}" logged after the previous line`);
    at = next;
  }
  const received = logs.records.find((r) => r.message === "command received from dashboard")!;
  assert.equal(received.commandId, "cmd-1");
  assert.equal(received.commandName, "echo hello");
});

Deno.test("without a token the agent sends unsigned dev-mode requests", async () => {
  using _logs = captureLogs();
  await using stub = new StubDashboard();
  const agent = start(stub);
  await stub.until(() => stub.seen.length >= 1);
  await finish(agent);
  const h = stub.seen[0].headers;
  assert.equal(h.get("X-Agent-Id"), "agent-1");
  assert.ok(h.get("X-Timestamp"));
  assert.ok(h.get("X-Request-Id"));
  assert.equal(h.get("Authorization"), null);
  assert.equal(h.get("X-Agent-Signature"), null);
});

Deno.test("a command delivered twice is run once and its known result is sent again", async () => {
  using logs = captureLogs();
  await using stub = new StubDashboard();
  const agent = start(stub);
  stub.enqueue(command("cmd-1", "echo hi"));
  await stub.until(() => stub.reports.length === 1);
  stub.enqueue({ ...command("cmd-1", "echo hi"), attempt: 2 });
  await stub.until(() => stub.reports.length === 2);
  await finish(agent);
  assert.equal(agent.executor.runs.length, 1);
  assert.equal(stub.acks.length, 1);
  assert.equal(stub.reports[1].status, "success");
  assert.equal(stub.reports[1].attempt, 2);
  assert.ok(logs.has(/not run twice/));
});

Deno.test("a command delivered with timeout_secs 0 is answered rejected once, not run", async () => {
  // The answer was unusable as a whole: never acked nor reported, the command was delivered again
  // after every lease until the dashboard marked it lost.
  using logs = captureLogs();
  await using stub = new StubDashboard();
  const agent = start(stub);
  stub.enqueue({ ...command("cmd-0", "echo hi", { timeout_secs: 0 }), attempt: 1 });
  await stub.until(() => stub.reports.length === 1, 10_000, "the report");
  assert.equal(stub.reports[0].command_id, "cmd-0");
  assert.equal(stub.reports[0].status, "rejected");
  assert.equal(stub.reports[0].attempt, 1);
  assert.equal(stub.reports[0].result, null);
  assert.match(
    String(stub.reports[0].error),
    /cannot run this command as delivered.*field "params\.timeout_secs": must be more than 0/,
  );
  // Delivered again (its report lost on the way): answered from the journal, still not run.
  stub.enqueue({ ...command("cmd-0", "echo hi", { timeout_secs: -5 }), attempt: 2 });
  await stub.until(() => stub.reports.length === 2, 10_000, "the second report");
  assert.equal(stub.reports[1].status, "rejected");
  assert.equal(stub.reports[1].attempt, 2);
  // The next command runs as usual.
  stub.enqueue(command("cmd-1", "echo hi"));
  await stub.until(() => stub.reports.length === 3, 10_000, "the next command's report");
  await finish(agent);
  assert.deepEqual(agent.executor.runs.map((r) => r.name), ["echo hi"]);
  assert.deepEqual(stub.acks.map((a) => a.command_id), ["cmd-1"]);
  assert.equal(agent.state.journal.get("cmd-0")?.state, "accepted");
  assert.ok(logs.has(/cannot be run as delivered/));
  assert.ok(!logs.has(/something unexpected/));
});

Deno.test("a dashboard that keeps delivering a command whose result it accepted is backed off", async () => {
  using logs = captureLogs();
  await using stub = new StubDashboard();
  // It accepts every report and forgets it: the same command comes with every wait.
  stub.override = (seen) =>
    seen.kind === "wait" ? Response.json(command("cmd-1", "echo hi")) : undefined;
  const clock = new FakeClock();
  const agent = start(stub, { pollingBackoffSecs: 1, pollingBackoffMaxSecs: 2, clock });
  const waits = () => stub.seen.filter((s) => s.kind === "wait").length;
  await eventually(() => stub.reports.length === 2 && clock.pending > 0, 10_000, "a back-off");
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(waits(), 2, "no wait before the clock moves: no tight loop");
  await clock.advanceAsync(1000);
  await stub.until(() => stub.reports.length === 3, 10_000, "the next redelivery");
  await finish(agent);
  assert.equal(agent.executor.runs.length, 1, "run once");
  assert.ok(logs.has(/delivered again a command whose result it had accepted/));
});

Deno.test("a command line of megabytes is neither logged nor journaled whole", async () => {
  using logs = captureLogs();
  await using stub = new StubDashboard();
  const name = `echo ${"y".repeat(1_000_000)}`;
  stub.enqueue(command("cmd-1", name));
  const agent = start(stub);
  await stub.until(() => stub.reports.length === 1);
  const journaled = agent.state.journal.get("cmd-1")?.name ?? "";
  await finish(agent);
  assert.ok(journaled.length < 4200, `journaled ${journaled.length} characters`);
  assert.ok(journaled.startsWith("echo yyy") && journaled.endsWith("(1000005 characters)"));
  for (const record of logs.records) {
    const size = JSON.stringify(record).length;
    assert.ok(size < 2000, `a log record of ${size} characters: ${String(record.message)}`);
  }
  assert.ok(logs.has("command received from dashboard"));
});

Deno.test("a command whose id cannot name a path gets no cancel-wait nor live output, only its report", async () => {
  using logs = captureLogs();
  await using stub = new StubDashboard();
  const ids = [".", "..", "lone-\ud800", "wait"];
  for (const id of ids) stub.enqueue(command(id, "echo hi"));
  const executor = new FakeExecutor();
  // Prints, and runs past the cancel-wait's delay of a second.
  executor.behaviour = async (request) => {
    request.onOutput?.("stdout", new TextEncoder().encode("hi\n"));
    await new Promise((resolve) => setTimeout(resolve, 1300));
    return success();
  };
  const agent = start(stub, { executor });
  await stub.until(() => stub.reports.length === ids.length, 20_000, "the reports");
  await finish(agent);
  assert.deepEqual(stub.reports.map((r) => r.command_id), ids);
  // `…/commands/../output` would have gone to `…/agent/output`, `…/commands/./cancel-wait` to
  // `…/commands/cancel-wait`.
  const kinds = new Set(stub.seen.map((s) => s.kind));
  assert.deepEqual([...kinds].sort(), ["ack", "report", "wait"]);
  assert.equal(
    logs.records.filter((r) => /cannot name a path of the dashboard/.test(String(r.message)))
      .length,
    ids.length,
  );
  assert.ok(!logs.has(/live output stopped/));
});

Deno.test("a delivered timeout_secs above the agent's maximum is capped there, and one with a fraction kept", async () => {
  // Any dashboard's: this one takes whole seconds up to a day at enqueue, but a deadline the
  // agent caps anyway (README) made the whole command an unusable answer, never run.
  using _logs = captureLogs();
  await using stub = new StubDashboard();
  const agent = start(stub, {
    executor: undefined,
    exec: { allowedPrograms: ["sleep"], cgroups: false, maxTimeoutSecs: 1 }, // beside other tests
  });
  stub.enqueue(command("huge", "sleep 30", { timeout_secs: 1e9 }));
  stub.enqueue(command("fraction", "sleep 30", { timeout_secs: 0.5 }));
  await stub.until(() => stub.reports.length === 2, 15_000, "two reports");
  await finish(agent);
  const [huge, fraction] = stub.reports;
  assert.equal(huge.command_id, "huge");
  assert.equal(huge.status, "timeout");
  assert.match(
    String(huge.error),
    /^deadline of 1 s \(it asked for 1000000000 s; COMMAND_TIMEOUT_MAX_SECS caps it\): SIGTERM /,
  );
  assert.equal(fraction.command_id, "fraction");
  assert.equal(fraction.status, "timeout");
  assert.match(String(fraction.error), /^deadline of 0\.5 s: SIGTERM was sent at /);
});

Deno.test("a command redelivered after a crash mid-run is reported interrupted, not run", async () => {
  using _logs = captureLogs();
  const dir = Deno.makeTempDirSync();
  try {
    {
      // The previous run journaled the command and died while it ran.
      using state = openAgentState({ dir });
      state.journal.start({ id: "cmd-1", name: "sleep 100", attempt: 1 });
    }
    await using stub = new StubDashboard();
    stub.enqueue({ ...command("cmd-1", "sleep 100"), attempt: 2 });
    const agent = start(stub, { state: openAgentState({ dir }) });
    await stub.until(() => stub.reports.length === 2);
    await finish(agent);
    assert.equal(agent.executor.runs.length, 0);
    assert.equal(stub.acks.length, 0);
    assert.equal(stub.seen[0].kind, "report", "the interrupted result goes first, at start");
    assert.equal(stub.reports[0].status, "interrupted");
    assert.equal(stub.reports[0].attempt, 1);
    assert.match(String(stub.reports[0].error), /not run again/);
    assert.equal(stub.reports[1].status, "interrupted");
    assert.equal(stub.reports[1].attempt, 2);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("results left in the outbox are sent before the first wait after a restart", async () => {
  using _logs = captureLogs();
  const dir = Deno.makeTempDirSync();
  try {
    {
      using state = openAgentState({ dir });
      state.journal.start({ id: "old-1", name: "echo old", attempt: 1 });
      const outcome = success("old\n");
      const report = { command_id: "old-1", attempt: 1, ...outcome };
      state.outbox.put(report);
      state.journal.complete("old-1", report);
    }
    await using stub = new StubDashboard();
    const agent = start(stub, { state: openAgentState({ dir }) });
    await stub.until(() => stub.seen.some((s) => s.kind === "wait"));
    await finish(agent);
    assert.deepEqual(stub.seen.slice(0, 2).map((s) => s.kind), ["report", "wait"]);
    assert.equal((stub.reports[0].result as { stdout: string }).stdout, "old\n");
    using state = openAgentState({ dir });
    assert.equal(state.outbox.size, 0);
    assert.equal(state.journal.get("old-1")?.state, "accepted");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a report the dashboard fails is kept and retried until accepted", async () => {
  using _logs = captureLogs();
  await using stub = new StubDashboard();
  let failures = 0;
  stub.override = (seen) => {
    if (seen.kind === "report" && failures < 2) {
      failures++;
      return Response.json({ error: "database is locked" }, { status: 500 });
    }
  };
  const agent = start(stub, { pollingBackoffSecs: 1, pollingBackoffMaxSecs: 1 });
  stub.enqueue(command("cmd-1", "echo hi"));
  await stub.until(() => stub.reports.length === 1, 15_000, "the accepted report");
  await eventually(() => agent.state.outbox.size === 0, 5000, "the outbox to empty");
  await finish(agent);
  assert.equal(stub.seen.filter((s) => s.kind === "report").length, 3);
  assert.equal(agent.executor.runs.length, 1);
});

Deno.test("a report the dashboard always fails does not keep the agent from new commands", async () => {
  // The outbox was drained oldest first before every wait, stopping at a failure: one report
  // the dashboard could not take (a 500 each time) kept the agent from ever waiting again.
  using logs = captureLogs();
  await using stub = new StubDashboard();
  stub.override = (seen) => {
    const report = seen.body as { command_id?: string } | undefined;
    if (seen.kind === "report" && report?.command_id === "cmd-1") {
      return Response.json({ error: "cannot store this result" }, { status: 500 });
    }
  };
  const agent = start(stub, { pollingBackoffSecs: 1, pollingBackoffMaxSecs: 1 });
  stub.enqueue(command("cmd-1", "echo one"));
  await stub.until(() => stub.seen.some((s) => s.kind === "report"), 15_000, "cmd-1's report");
  stub.enqueue(command("cmd-2", "echo two"));
  stub.enqueue(command("cmd-3", "echo three"));
  await stub.until(() => stub.reports.length === 2, 15_000, "the reports of cmd-2 and cmd-3");
  assert.deepEqual(stub.reports.map((r) => r.command_id).sort(), ["cmd-2", "cmd-3"]);
  assert.deepEqual(agent.executor.runs.map((r) => r.name), ["echo one", "echo two", "echo three"]);
  await eventually(
    () => agent.state.outbox.pending().map((r) => r.command_id).join() === "cmd-1",
    5000,
    "only cmd-1 left in the outbox",
  );
  await finish(agent);
  const told = logs.records.filter((r) =>
    String(r.message).includes("dashboard failed the report")
  );
  assert.ok(told.length >= 1);
  assert.equal(told.filter((r) => r.level === "warning").length, 1, "one warning for cmd-1");
});

Deno.test("a report answered 408 (it did not arrive whole in time) is kept and sent again", async () => {
  // A 408 was a refusal for good: the result was dropped.
  using logs = captureLogs();
  await using stub = new StubDashboard();
  let timeouts = 0;
  stub.override = (seen) => {
    if (seen.kind === "report" && timeouts < 1) {
      timeouts++;
      return Response.json({ error: "the request did not arrive completely" }, { status: 408 });
    }
  };
  const agent = start(stub, { pollingBackoffSecs: 1, pollingBackoffMaxSecs: 1 });
  stub.enqueue(command("cmd-1", "echo hi"));
  await stub.until(() => stub.reports.length === 1, 15_000, "the accepted report");
  await eventually(() => agent.state.outbox.size === 0, 5000, "the outbox to empty");
  await finish(agent);
  assert.equal(stub.seen.filter((s) => s.kind === "report").length, 2);
  assert.ok(!logs.has(/refused the report for good/));
});

Deno.test("a report answered 407, 421 or 425 (about the way, not the report) is kept and sent again", async (t) => {
  // Each was a refusal for good: behind a proxy that asked for credentials, every result in the
  // outbox was dropped one after the other.
  for (const status of [407, 421, 425]) {
    await t.step(`${status}`, async () => {
      using logs = captureLogs();
      await using stub = new StubDashboard();
      let refused = 0;
      stub.override = (seen) => {
        if (seen.kind === "report" && refused < 1) {
          refused++;
          return Response.json({ error: "not through here" }, { status });
        }
      };
      const agent = start(stub, { pollingBackoffSecs: 1, pollingBackoffMaxSecs: 1 });
      stub.enqueue(command("cmd-1", "echo hi"));
      await stub.until(() => stub.reports.length === 1, 15_000, "the accepted report");
      await eventually(() => agent.state.outbox.size === 0, 5000, "the outbox to empty");
      await finish(agent);
      assert.equal(stub.seen.filter((s) => s.kind === "report").length, 2);
      assert.ok(!logs.has(/refused the report for good/));
    });
  }
});

Deno.test("a report refused for good (404) is dropped with an error, not sent again (protocol.md §6)", async () => {
  using logs = captureLogs();
  await using stub = new StubDashboard();
  stub.override = (seen) => {
    if (seen.kind === "report") {
      return Response.json({ error: "command cmd-1 does not exist" }, { status: 404 });
    }
  };
  const agent = start(stub, { pollingBackoffSecs: 1, pollingBackoffMaxSecs: 1 });
  stub.enqueue(command("cmd-1", "echo hi"));
  await eventually(() => logs.has(/refused the report for good/), 15_000, "the error");
  await eventually(() => agent.state.outbox.size === 0, 5000, "the outbox to empty");
  await finish(agent);
  assert.equal(stub.seen.filter((s) => s.kind === "report").length, 1);
  assert.equal(agent.executor.runs.length, 1);
});

Deno.test("a report answered 404 by something other than the dashboard is kept and sent again", async (t) => {
  // Any 404 dropped the result: a proxy's page for the few seconds a dashboard was redeployed too.
  for (
    const [what, answer] of [
      ["a proxy's page", () => new Response("<h1>404 Not Found</h1>", { status: 404 })],
      [
        "the dashboard's no route",
        () =>
          Response.json({ error: "no route for POST /api/v1/agent/commands/report" }, {
            status: 404,
          }),
      ],
    ] as const
  ) {
    await t.step(what, async () => {
      using logs = captureLogs();
      await using stub = new StubDashboard();
      let answered = 0;
      stub.override = (seen) => {
        if (seen.kind === "report" && answered < 2) {
          answered++;
          return answer();
        }
      };
      const agent = start(stub, { pollingBackoffSecs: 1, pollingBackoffMaxSecs: 1 });
      stub.enqueue(command("cmd-1", "echo hi"));
      await stub.until(() => stub.reports.length === 1, 15_000, "the accepted report");
      await eventually(() => agent.state.outbox.size === 0, 5000, "the outbox to empty");
      await finish(agent);
      assert.equal(stub.seen.filter((s) => s.kind === "report").length, 3);
      assert.ok(!logs.has(/refused the report for good/));
      assert.ok(logs.has(/result not accepted yet/));
    });
  }
});

Deno.test("a report answered 200 by a page in the dashboard's place is kept, told once, and sent again", async () => {
  // Any 2xx was taken as accepted: a captive portal's or proxy's page answered 200 made the agent
  // drop the result from its outbox, and the dashboard never got it.
  using logs = captureLogs();
  await using stub = new StubDashboard();
  let pages = 0;
  stub.override = (seen) => {
    if (seen.kind === "report" && pages < 3) {
      pages++;
      return new Response("<html><body>Please sign in to continue</body></html>", {
        headers: { "Content-Type": "text/html" },
      });
    }
  };
  const clock = new FakeClock();
  const agent = start(stub, { clock, retryDelayMs: 100 });
  stub.enqueue(command("cmd-1", "echo hi"));
  await advanceUntil(clock, () => stub.reports.length === 1, 500, "the accepted report");
  await advanceUntil(clock, () => agent.state.outbox.size === 0, 500, "the outbox to empty");
  await finish(agent);
  assert.equal(stub.seen.filter((s) => s.kind === "report").length, 4);
  assert.equal(stub.reports[0].command_id, "cmd-1");
  assert.equal(agent.executor.runs.length, 1);
  assert.ok(!logs.has(/refused the report for good/));
  const told = logs.records.filter((r) =>
    r.level === "warning" && /not the dashboard's, an HTML page/.test(String(r.error ?? r.reason))
  );
  assert.ok(told.length >= 1, "told with what came back");
  assert.match(String(told[0].error ?? told[0].reason), /Please sign in to continue/);
  assert.ok(told.length <= 2, `told ${told.length} times`);
});

Deno.test("a report answered 405 by a static site in the dashboard's place is kept and sent again", async () => {
  // A 4xx without the dashboard's JSON error body (nginx serving files at a wrong DASHBOARD_URL
  // answers a POST "405 Not Allowed") dropped the result for good.
  using logs = captureLogs();
  await using stub = new StubDashboard();
  let answered = 0;
  stub.override = (seen) => {
    if (seen.kind === "report" && answered < 2) {
      answered++;
      return new Response("<html><head><title>405 Not Allowed</title></head></html>", {
        status: 405,
        headers: { "Content-Type": "text/html" },
      });
    }
  };
  const clock = new FakeClock();
  const agent = start(stub, { clock, retryDelayMs: 100 });
  stub.enqueue(command("cmd-1", "echo hi"));
  await advanceUntil(clock, () => stub.reports.length === 1, 500, "the accepted report");
  await advanceUntil(clock, () => agent.state.outbox.size === 0, 500, "the outbox to empty");
  await finish(agent);
  assert.equal(stub.seen.filter((s) => s.kind === "report").length, 3);
  assert.equal(agent.executor.runs.length, 1);
  assert.ok(!logs.has(/refused the report for good/));
  assert.ok(logs.has(/result not accepted yet/));
});

Deno.test("a report refused as too large (413: a proxy's body limit) is sent again without its output", async () => {
  using logs = captureLogs();
  await using stub = new StubDashboard();
  // A proxy in front of the dashboard that takes at most 2000 bytes of a body.
  stub.override = (seen) => {
    if (seen.kind === "report" && JSON.stringify(seen.body).length > 2000) {
      return new Response("<html>413 Request Entity Too Large</html>", { status: 413 });
    }
  };
  const executor = new FakeExecutor();
  executor.behaviour = () => Promise.resolve(success("x".repeat(5000)));
  const agent = start(stub, { executor });
  stub.enqueue(command("cmd-1", "echo hi"));
  await stub.until(() => stub.reports.length === 1, 15_000, "the report");
  await eventually(() => agent.state.outbox.size === 0, 5000, "the outbox to empty");
  await finish(agent);
  assert.equal(stub.seen.filter((s) => s.kind === "report").length, 2);
  const report = stub.reports[0];
  assert.equal(report.status, "success");
  const result = report.result as Record<string, unknown>;
  assert.equal(result.exit_code, 0);
  assert.equal(result.stdout, "");
  assert.equal(result.stdout_truncated_bytes, 5000, "the output it could not carry is counted");
  assert.equal(agent.state.journal.get("cmd-1")?.state, "accepted");
  assert.equal(executor.runs.length, 1);
  const told = logs.records.find((r) => /too large/.test(String(r.message)));
  assert.equal(told?.level, "warning");
  assert.equal(told?.commandId, "cmd-1");
  assert.ok(!logs.has(/refused the report for good/), "not dropped");
});

Deno.test("a redirected report is not followed, and is kept and sent again", async (t) => {
  // Followed, a 301 turned the report into a GET (whose 404 dropped the result for good), and a
  // 307 sent the output to another host.
  for (const status of [301, 307]) {
    await t.step(`${status}`, async () => {
      using logs = captureLogs();
      await using stub = new StubDashboard();
      await using elsewhere = new StubDashboard();
      let redirects = 0;
      stub.override = (seen) => {
        if (seen.kind === "report" && redirects < 1) {
          redirects++;
          return new Response(null, {
            status,
            headers: { Location: `${elsewhere.url}${seen.path}` },
          });
        }
      };
      const agent = start(stub, { pollingBackoffSecs: 1, pollingBackoffMaxSecs: 1 });
      stub.enqueue(command("cmd-1", "echo hi"));
      await stub.until(() => stub.reports.length === 1, 15_000, "the accepted report");
      await eventually(() => agent.state.outbox.size === 0, 5000, "the outbox to empty");
      await finish(agent);
      assert.equal(stub.seen.filter((s) => s.kind === "report").length, 2);
      assert.equal(elsewhere.seen.length, 0);
      const kept = logs.records.find((r) => r.commandId === "cmd-1" && r.level === "warning");
      assert.match(
        String(kept?.reason),
        /to "http:.*\/report"; the agent does not follow redirects/,
      );
    });
  }
});

Deno.test("Stacker envelopes: no ack endpoint, run anyway; an empty item sleeps next_poll_secs", async () => {
  using logs = captureLogs();
  await using stub = new StubDashboard();
  stub.ackStatus = 404;
  stub.enqueue({
    item: { command_id: "st-1", type: "echo stacker", parameters: {} },
    meta: { next_poll_secs: 0 },
  });
  stub.enqueue({ item: null, meta: { next_poll_secs: 1 } });
  const agent = start(stub);
  await stub.until(() => stub.seen.filter((s) => s.kind === "wait").length >= 3, 10_000);
  await finish(agent);
  assert.equal(agent.executor.runs[0].name, "echo stacker");
  assert.equal(stub.reports[0].command_id, "st-1");
  assert.ok(logs.has(/no acks here/));
  const waits = stub.seen.filter((s) => s.kind === "wait");
  assert.ok(waits[2].at - waits[1].at >= 950, `slept ${waits[2].at - waits[1].at} ms`);
});

Deno.test("a Stacker next_poll_secs longer than an hour is waited an hour, as Retry-After", async () => {
  // A day was slept whole: the agent took no command for a day (or years, for milliseconds sent).
  using _logs = captureLogs();
  const clock = new RecordingClock();
  const stop = new AbortController();
  let calls = 0;
  const fakeFetch: typeof fetch = () => {
    if (++calls === 2) stop.abort();
    return Promise.resolve(Response.json({ item: null, meta: { next_poll_secs: 86_400 } }));
  };
  await runAgent({
    dashboardUrl: "http://127.0.0.1:9",
    agentId: "agent-1",
    heartbeat: false,
    executor: new FakeExecutor(),
    state: memoryAgentState(),
    fetch: fakeFetch,
    clock,
  }, stop.signal);
  assert.equal(clock.sleeps[0], 3_600_000);
});

/** A recording clock whose wall time can be set back, as NTP steps a clock that ran ahead. */
class SteppedClock extends RecordingClock {
  offsetMs = 0;
  override now(): number {
    return super.now() + this.offsetMs;
  }
}

Deno.test("a wall clock set back during an empty wait or cancel-wait pauses a second, not the step", async (t) => {
  // The pause after an early empty answer was 1 s minus the elapsed wall time: an hour set back
  // during the wait made it an hour, with no command taken (or no cancel heard) meanwhile.
  await t.step("the wait", async () => {
    using _logs = captureLogs();
    const clock = new SteppedClock();
    const stop = new AbortController();
    let calls = 0;
    const fakeFetch: typeof fetch = () => {
      if (++calls === 2) stop.abort();
      clock.offsetMs -= 3_600_000;
      return Promise.resolve(new Response(null, { status: 204 }));
    };
    await runAgent({
      dashboardUrl: "http://127.0.0.1:9",
      agentId: "agent-1",
      heartbeat: false,
      executor: new FakeExecutor(),
      state: memoryAgentState(),
      fetch: fakeFetch,
      clock,
    }, stop.signal);
    assert.deepEqual(clock.sleeps, [1000]);
  });

  await t.step("the cancel-wait", async () => {
    using _logs = captureLogs();
    const clock = new SteppedClock();
    const stop = new AbortController();
    const executor = new FakeExecutor();
    executor.behaviour = cancellable(new Promise(() => {}));
    let waits = 0;
    let cancelWaits = 0;
    const fakeFetch: typeof fetch = (input) => {
      const path = new URL(input instanceof Request ? input.url : String(input)).pathname;
      if (path.endsWith("/cancel-wait")) {
        if (++cancelWaits === 1) {
          clock.offsetMs -= 3_600_000;
          return Promise.resolve(new Response(null, { status: 204 }));
        }
        return Promise.resolve(Response.json({ cancel_requested: true }));
      }
      if (path.includes("/commands/wait/")) {
        if (++waits === 1) return Promise.resolve(Response.json(command("cmd-1", "sleep 100")));
        stop.abort();
        return Promise.resolve(new Response(null, { status: 204 }));
      }
      if (path.endsWith("/ack")) {
        return Promise.resolve(Response.json({ acked: true, lease_expires_at: null }));
      }
      return Promise.resolve(Response.json({ accepted: true }));
    };
    await runAgent({
      dashboardUrl: "http://127.0.0.1:9",
      agentId: "agent-1",
      heartbeat: false,
      liveOutput: false,
      executor,
      state: memoryAgentState(),
      fetch: fakeFetch,
      clock,
    }, stop.signal);
    assert.equal(cancelWaits, 2);
    assert.ok(clock.sleeps.every((ms) => ms <= 1000), `slept ${clock.sleeps.join(", ")} ms`);
  });
});

Deno.test("runAgent refuses up front what the dashboard would refuse on every request", async (t) => {
  // They ran, and were refused (401, 400) and backed off forever: the CLI's settings check them,
  // a library caller got no error at all.
  const cases: [string, Partial<AgentOptions>, RegExp][] = [
    ["an agent id with a space", { agentId: "web 1" }, /^agentId must be 1–128 .*, got "web 1"$/],
    ["an empty agent id", { agentId: "" }, /^agentId must be .*, got ""$/],
    [
      "a deployment hash with a slash",
      { deploymentHash: "a/b" },
      /^deploymentHash must be .*"a\/b"$/,
    ],
    [
      "a dashboard URL with a password",
      { dashboardUrl: "http://u:secret@127.0.0.1:9", agentToken: "token-0123456789abcdef" },
      /^dashboardUrl must not hold a user name or password/,
    ],
    ["a label key with a space", { labels: { "a b": "x" } }, /^labels are invalid: label keys/],
    [
      "an empty dashboard URL",
      { dashboardUrl: "" },
      /^dashboardUrl must be an http:\/\/ or https:\/\/ URL, got ""$/,
    ],
    [
      "a metrics webhook that is not a URL",
      { metricsWebhook: "hooks.example/x" },
      /^metricsWebhook must be an http:\/\/ or https:\/\/ URL, got "hooks.example\/x"$/,
    ],
  ];
  for (const [what, extra, message] of cases) {
    await t.step(what, async () => {
      let calls = 0;
      const error = await runAgent({
        dashboardUrl: "http://127.0.0.1:9",
        agentId: "agent-1",
        heartbeat: false,
        executor: new FakeExecutor(),
        state: memoryAgentState(),
        fetch: () => {
          calls++;
          return Promise.resolve(new Response(null, { status: 204 }));
        },
        ...extra,
      }, AbortSignal.timeout(2000)).then(() => undefined, (e) => e);
      assert.ok(error instanceof TypeError, `${what}: ${error}`);
      assert.match(error.message, message);
      assert.doesNotMatch(error.message, /secret/);
      assert.equal(calls, 0, "no request sent");
    });
  }
});

Deno.test("runAgent names the back-off option that is out of range", async (t) => {
  // The back-off's own names (initialSecs, maxSecs) were in the message, not the caller's.
  const cases: [Partial<AgentOptions>, string][] = [
    [{ pollingBackoffSecs: 0 }, "pollingBackoffSecs must be a number of at least 0.001, got 0"],
    [
      { pollingBackoffSecs: 10, pollingBackoffMaxSecs: 5 },
      "pollingBackoffMaxSecs must be a number of at least 10, got 5",
    ],
  ];
  for (const [extra, message] of cases) {
    await t.step(message, async () => {
      const error = await runAgent({
        dashboardUrl: "http://127.0.0.1:9",
        agentId: "agent-1",
        heartbeat: false,
        executor: new FakeExecutor(),
        state: memoryAgentState(),
        ...extra,
      }, AbortSignal.timeout(2000)).then(() => undefined, (e) => e);
      assert.ok(error instanceof RangeError, String(error));
      assert.equal(error.message, message);
    });
  }
});

Deno.test("back-off: unreachable dashboard gives growing, jittered, capped delays", async (t) => {
  await t.step("in the loop (fake fetch and clock)", async () => {
    using _logs = captureLogs();
    const clock = new RecordingClock();
    let calls = 0;
    const stop = new AbortController();
    const fakeFetch: typeof fetch = () => {
      calls++;
      if (calls <= 12) return Promise.reject(new TypeError("error sending request: refused"));
      stop.abort();
      return Promise.resolve(new Response(null, { status: 204 }));
    };
    await runAgent({
      dashboardUrl: "http://127.0.0.1:9",
      agentId: "agent-1",
      pollingBackoffSecs: 1,
      pollingBackoffMaxSecs: 8,
      heartbeat: false,
      executor: new FakeExecutor(),
      state: memoryAgentState(),
      fetch: fakeFetch,
      clock,
    }, stop.signal);
    const delays = clock.sleeps.slice(0, 12);
    assert.equal(delays.length, 12);
    delays.forEach((d, k) => {
      assert.ok(d >= 0 && d < Math.min(8000, 1000 * 2 ** k), `delay ${k}: ${d}`);
    });
    assert.ok(new Set(delays).size > 6, "jittered");
  });

  await t.step("statistically (cockatiel full jitter)", () => {
    const mean = (k: number) => {
      let sum = 0;
      for (let i = 0; i < 400; i++) {
        const backoff = new PollBackoff({ initialSecs: 1, maxSecs: 8 });
        let d = 0;
        for (let j = 0; j <= k; j++) d = backoff.next();
        sum += d;
      }
      return sum / 400;
    };
    const means = [0, 1, 2, 3, 6].map(mean);
    assert.ok(means[0] > 350 && means[0] < 650, `attempt 0 mean ${means[0]}`);
    assert.ok(means[1] > means[0] * 1.5 && means[2] > means[1] * 1.5 && means[3] > means[2] * 1.5);
    assert.ok(means[4] > 3200 && means[4] < 4800, `capped mean ${means[4]}`);
  });

  await t.step("over a real socket: connects as soon as the dashboard appears", async () => {
    using logs = captureLogs();
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    const clock = new FakeClock();
    const agent = start({ url: `http://127.0.0.1:${port}` }, {
      pollingBackoffSecs: 1,
      pollingBackoffMaxSecs: 2,
      clock,
    });
    // Three refused connections, each followed by a back-off on the fake clock.
    for (let i = 0; i < 3; i++) {
      await eventually(() => clock.pending > 0, 10_000, "a back-off");
      assert.ok(clock.nextAt! - clock.now() <= 2000, "capped at pollingBackoffMaxSecs");
      await clock.advanceAsync(clock.nextAt! - clock.now());
    }
    await eventually(() => clock.pending > 0, 10_000, "a back-off");
    // The reason, not Deno's bare "fetch failed".
    assert.ok(logs.records.some((r) => r.error === "connection refused"), "the cause is logged");
    await using stub = new StubDashboard({ port });
    await clock.advanceAsync(2000);
    await stub.until(() => stub.seen.length > 0, 10_000, "the first request");
    await finish(agent);
  });
});

Deno.test("after failed requests, the agent says once that the dashboard answers again", async () => {
  using logs = captureLogs();
  const clock = new RecordingClock();
  let calls = 0;
  const stop = new AbortController();
  const fakeFetch: typeof fetch = () => {
    calls++;
    if (calls <= 3) return Promise.reject(new TypeError("error sending request: refused"));
    if (calls <= 4) return Promise.resolve(new Response("down", { status: 503 }));
    if (calls >= 7) stop.abort();
    return Promise.resolve(new Response(null, { status: 204 }));
  };
  await runAgent({
    dashboardUrl: "http://127.0.0.1:9",
    agentId: "agent-1",
    pollingBackoffSecs: 1,
    heartbeat: false,
    executor: new FakeExecutor(),
    state: memoryAgentState(),
    fetch: fakeFetch,
    clock,
  }, stop.signal);
  const again = logs.records.filter((r) => /answers again/.test(String(r.message)));
  assert.equal(again.length, 1, "said once, not at every answer after it");
  assert.equal(again[0].level, "info");
  assert.equal(again[0].times, 4);
  assert.match(
    String(again[0].message),
    /^the dashboard answers again, after 4 failed requests in \d+ s$/,
  );
});

Deno.test("429 with Retry-After: 2 delays the next request by at least 2 s", async () => {
  using logs = captureLogs();
  await using stub = new StubDashboard();
  let throttled = false;
  stub.override = (seen) => {
    if (seen.kind === "wait" && !throttled) {
      throttled = true;
      return Response.json({ error: "rate limit exceeded" }, {
        status: 429,
        headers: { "Retry-After": "2" },
      });
    }
  };
  const clock = new FakeClock();
  const agent = start(stub, { pollingBackoffSecs: 1, pollingBackoffMaxSecs: 1, clock });
  await eventually(() => stub.seen.length >= 1 && clock.pending > 0, 10_000, "the 429");
  assert.equal(clock.nextAt! - clock.now(), 2000, "the next request waits Retry-After");
  await clock.advanceAsync(1999);
  assert.equal(stub.seen.length, 1, "not before");
  await clock.advanceAsync(1);
  await stub.until(() => stub.seen.length >= 2, 10_000);
  await finish(agent);
  assert.ok(logs.has(/asked the agent to wait/));
});

Deno.test("a dashboard that keeps answering 429 with Retry-After is told of once, not once a request", async () => {
  using logs = captureLogs();
  const clock = new RecordingClock();
  let calls = 0;
  const stop = new AbortController();
  const fakeFetch: typeof fetch = () => {
    calls++;
    if (calls === 22) stop.abort();
    if (calls > 20) return Promise.resolve(new Response(null, { status: 204 }));
    // 429 then 503 each say when to come back; a change of status is told again, once.
    return Promise.resolve(
      Response.json({ error: "busy" }, {
        status: calls <= 15 ? 429 : 503,
        headers: { "Retry-After": "1" },
      }),
    );
  };
  await runAgent({
    dashboardUrl: "http://127.0.0.1:9",
    agentId: "agent-1",
    heartbeat: false,
    executor: new FakeExecutor(),
    state: memoryAgentState(),
    fetch: fakeFetch,
    clock,
  }, stop.signal);
  const told = logs.records.filter((r) => /asked the agent to wait/.test(String(r.message)));
  assert.equal(told.length, 20, "every one is in the log");
  assert.deepEqual(
    told.filter((r) => r.level !== "debug").map((r) => [r.level, r.status]),
    [["warning", 429], ["warning", 503]],
    "a warning when it starts and when its status changes; debug while it goes on",
  );
  assert.deepEqual(clock.sleeps.slice(0, 20), Array(20).fill(1000), "each Retry-After waited");
  const again = logs.records.filter((r) => /answers again/.test(String(r.message)));
  assert.equal(again.length, 1);
  assert.equal(again[0].times, 20);
});

Deno.test("a trouble that goes on is one line, not one a request, until the dashboard answers", async (t) => {
  // Each such answer waits out a back-off of up to POLLING_BACKOFF_MAX_SECS: a wrong token,
  // DASHBOARD_URL or certificate left for a day wrote thousands of the same line.
  const answers: Array<[string, () => Response, RegExp]> = [
    [
      "401",
      () => Response.json({ error: "invalid signature" }, { status: 401 }),
      /refused the agent's credentials/,
    ],
    ["403", () => Response.json({ error: "no scope" }, { status: 403 }), /forbids this agent/],
    ["404", () => new Response("not found", { status: 404 }), /refused the wait request \(404\)/],
    [
      "302",
      () => new Response(null, { status: 302, headers: { Location: "https://elsewhere/" } }),
      /redirected the wait request/,
    ],
    ["unusable 200", () => Response.json({ id: 5 }), /with something unexpected/],
    ["502", () => new Response("bad gateway", { status: 502 }), /failed the wait request \(502\)/],
    [
      "a certificate refused",
      () => {
        throw new TypeError("error sending request", {
          cause: new Error("invalid peer certificate: UnknownIssuer"),
        });
      },
      /dashboard unreachable/,
    ],
  ];
  for (const [what, answer, message] of answers) {
    await t.step(what, async () => {
      using logs = captureLogs();
      const clock = new RecordingClock();
      let calls = 0;
      const stop = new AbortController();
      await runAgent({
        dashboardUrl: "http://127.0.0.1:9",
        agentId: "agent-1",
        pollingBackoffSecs: 1,
        heartbeat: false,
        executor: new FakeExecutor(),
        state: memoryAgentState(),
        clock,
        fetch: () => {
          calls++;
          if (calls === 7) stop.abort();
          try {
            return Promise.resolve(calls <= 5 ? answer() : new Response(null, { status: 204 }));
          } catch (error) {
            return Promise.reject(error);
          }
        },
      }, stop.signal);
      const told = logs.records.filter((r) => message.test(String(r.message)));
      assert.equal(told.length, 5, "every one is in the log");
      const level = told[0].level === "warning" ? "warning" : "error";
      assert.deepEqual(told.map((r) => r.level), [level, "debug", "debug", "debug", "debug"]);
      assert.equal(clock.sleeps.length >= 5, true, "each backed off");
      const again = logs.records.filter((r) => /answers again/.test(String(r.message)));
      assert.equal(again.length, 1);
      assert.equal(again[0].times, 5);
    });
  }
});

Deno.test("a 408, 407, 421 or 425 whose text changes each time is told of once, not once a request", async (t) => {
  // The dashboard's (or a proxy's) text was part of what made one kind of trouble: a text that
  // changed with each answer was a warning each time, and a new kind kept until one answered.
  for (const status of [408, 407, 421, 425]) {
    await t.step(String(status), async () => {
      using logs = captureLogs();
      const clock = new RecordingClock();
      let calls = 0;
      const stop = new AbortController();
      await runAgent({
        dashboardUrl: "http://127.0.0.1:9",
        agentId: "agent-1",
        pollingBackoffSecs: 1,
        heartbeat: false,
        executor: new FakeExecutor(),
        state: memoryAgentState(),
        clock,
        fetch: () => {
          calls++;
          if (calls === 7) stop.abort();
          return Promise.resolve(
            calls <= 5
              ? Response.json({ error: `slow link, attempt ${crypto.randomUUID()}` }, { status })
              : new Response(null, { status: 204 }),
          );
        },
      }, stop.signal);
      const told = logs.records.filter((r) => /dashboard unreachable/.test(String(r.message)));
      assert.equal(told.length, 5, "every one is in the log");
      assert.deepEqual(told.map((r) => r.level), ["warning", "debug", "debug", "debug", "debug"]);
      assert.match(String(told[0].error), new RegExp(`^${status} .*slow link`));
    });
  }
});

Deno.test("a Retry-After of 0, in the past or malformed never makes the agent poll without a pause", async (t) => {
  for (const retryAfter of ["0", "Thu, 01 Jan 1970 00:00:05 GMT", "-5"]) {
    await t.step(`Retry-After: ${retryAfter}`, async () => {
      using _logs = captureLogs();
      await using stub = new StubDashboard();
      let throttled = 0;
      stub.override = (seen) => {
        if (seen.kind !== "wait" || throttled >= 3) return undefined;
        throttled++;
        return Response.json({ error: "busy" }, {
          status: 429,
          headers: { "Retry-After": retryAfter },
        });
      };
      const clock = new FakeClock();
      const agent = start(stub, { pollingBackoffSecs: 1, pollingBackoffMaxSecs: 1, clock });
      await eventually(() => throttled === 1 && clock.pending > 0, 10_000, "the 429");
      // Without a pause, a dashboard (or a proxy) that says 0 is asked again in a tight loop.
      assert.equal(stub.seen.length, 1, "no second request before the clock moves");
      await clock.advanceAsync(999);
      assert.equal(stub.seen.length, 1, "not within the first second");
      await finish(agent);
    });
  }
});

Deno.test("a Retry-After that is neither seconds nor an HTTP date is backed off, growing, as if absent", async (t) => {
  // `Date.parse` read `-5` as May 2001, a date long past: every answer of a dashboard (or a
  // proxy) in trouble was asked again after one second, for as long as it lasted.
  for (const status of [429, 503]) {
    for (const retryAfter of ["-5", "+5", "5, 10"]) {
      await t.step(`${status} with Retry-After: ${retryAfter}`, async () => {
        using logs = captureLogs();
        const clock = new RecordingClock();
        let calls = 0;
        const stop = new AbortController();
        const fakeFetch: typeof fetch = () => {
          if (++calls > 6) {
            stop.abort();
            return Promise.resolve(new Response(null, { status: 204 }));
          }
          return Promise.resolve(
            Response.json({ error: "busy" }, { status, headers: { "Retry-After": retryAfter } }),
          );
        };
        await runAgent({
          dashboardUrl: "http://127.0.0.1:9",
          agentId: "agent-1",
          pollingBackoffSecs: 1,
          pollingBackoffMaxSecs: 8,
          heartbeat: false,
          executor: new FakeExecutor(),
          state: memoryAgentState(),
          fetch: fakeFetch,
          clock,
        }, stop.signal);
        assert.ok(!logs.has(/asked the agent to wait/));
        const attempts = logs.records
          .filter((r) =>
            String(r.message).startsWith(`dashboard failed the wait request (${status})`)
          )
          .map((r) => r.attempt);
        assert.deepEqual(attempts, [1, 2, 3, 4, 5, 6]);
        clock.sleeps.slice(0, 6).forEach((d, k) => {
          assert.ok(d < Math.min(8000, 1000 * 2 ** k) || d === 1000, `delay ${k}: ${d}`);
          // A 429 said to wait: never asked again at once.
          if (status === 429) assert.ok(d >= 1000, `delay ${k}: ${d}`);
        });
      });
    }
  }
});

Deno.test("an ack answered 429 with Retry-After waits that long and runs the command once acked", async () => {
  using logs = captureLogs();
  await using stub = new StubDashboard();
  let throttledAcks = 0;
  stub.override = (seen) => {
    if (seen.kind === "ack" && throttledAcks < 2) {
      throttledAcks++;
      return Response.json({ error: "rate limit exceeded" }, {
        status: 429,
        headers: { "Retry-After": "7" },
      });
    }
  };
  const clock = new FakeClock();
  const agent = start(stub, { clock, retryDelayMs: 100 });
  stub.enqueue(command("cmd-1", "echo hello"));
  for (let i = 1; i <= 2; i++) {
    await eventually(() => throttledAcks === i && clock.pending > 0, 10_000, `the 429 #${i}`);
    assert.equal(clock.nextAt! - clock.now(), 7000, "the next ack waits Retry-After");
    assert.equal(agent.executor.runs.length, 0, "not run before it is acknowledged");
    await clock.advanceAsync(7000);
  }
  await stub.until(() => stub.reports.length === 1, 10_000, "the report");
  assert.equal(stub.acks.length, 1, "acknowledged once the dashboard let it");
  assert.equal(agent.executor.runs.length, 1);
  assert.ok(logs.has(/asks the agent to wait before the ack/));
  assert.ok(!logs.has(/running the command anyway/));
  await finish(agent);
});

Deno.test("an ack answered 429 without Retry-After is asked again after the agent's back-off", async () => {
  // It was retried twice within half a second, as if the dashboard had not answered at all.
  using logs = captureLogs();
  await using stub = new StubDashboard();
  let throttledAcks = 0;
  stub.override = (seen) => {
    if (seen.kind === "ack" && throttledAcks < 2) {
      throttledAcks++;
      return Response.json({ error: "rate limit exceeded" }, { status: 429 });
    }
  };
  const clock = new FakeClock();
  const agent = start(stub, {
    clock,
    retryDelayMs: 100,
    pollingBackoffSecs: 5,
    pollingBackoffMaxSecs: 60,
  });
  stub.enqueue(command("cmd-1", "echo hello"));
  for (const [i, capMs] of [[1, 5000], [2, 10_000]]) {
    await eventually(() => throttledAcks === i && clock.pending > 0, 10_000, `the 429 #${i}`);
    const delayMs = clock.nextAt! - clock.now();
    assert.ok(delayMs >= 1000 && delayMs < capMs, `ack ${i} waits the back-off: ${delayMs} ms`);
    assert.equal(agent.executor.runs.length, 0, "not run before it is acknowledged");
    await clock.advanceAsync(delayMs);
  }
  await stub.until(() => stub.reports.length === 1, 10_000, "the report");
  assert.equal(stub.seen.filter((seen) => seen.kind === "ack").length, 3);
  assert.equal(agent.executor.runs.length, 1);
  assert.ok(logs.has(/asks the agent to wait before the ack/));
  await finish(agent);
});

Deno.test("the waits of a throttled ack together stay within their 5 minute budget", async () => {
  using logs = captureLogs();
  await using stub = new StubDashboard();
  stub.override = (seen) => {
    if (seen.kind === "ack") {
      return Response.json({ error: "rate limit exceeded" }, {
        status: 429,
        headers: { "Retry-After": "200" },
      });
    }
  };
  const clock = new FakeClock();
  const agent = start(stub, { clock, retryDelayMs: 100 });
  stub.enqueue(command("cmd-1", "echo hello"));
  const acks = () => stub.seen.filter((seen) => seen.kind === "ack").length;
  await eventually(() => acks() === 1 && clock.pending > 0, 10_000, "the first 429");
  assert.equal(clock.nextAt! - clock.now(), 200_000, "Retry-After");
  await clock.advanceAsync(200_000);
  await eventually(() => acks() === 2 && clock.pending > 0, 10_000, "the second 429");
  assert.equal(clock.nextAt! - clock.now(), 100_000, "what is left of the 300 s budget");
  await clock.advanceAsync(100_000);
  await stub.until(() => stub.reports.length === 1, 10_000, "the report");
  assert.equal(acks(), 3, "asked once more after the budget, then it runs");
  assert.ok(logs.has(/running the command anyway/));
  await finish(agent);
});

Deno.test("an ack answered 404 by a proxy's page is asked again, and the command runs once acked", async () => {
  // Any 404 read as "no ack endpoint": the ack was not asked again and the log said the dashboard
  // has no acks, when a proxy answered for it while it restarted.
  using logs = captureLogs();
  await using stub = new StubDashboard();
  let proxied = 0;
  stub.override = (seen) => {
    if (seen.kind === "ack" && proxied < 2) {
      proxied++;
      return new Response("<html><h1>404 Not Found</h1>nginx</html>", { status: 404 });
    }
  };
  const clock = new FakeClock();
  const agent = start(stub, { clock, retryDelayMs: 100 });
  stub.enqueue(command("cmd-1", "echo hello"));
  await advanceUntil(clock, () => stub.reports.length === 1, 100, "the report");
  await finish(agent);
  assert.equal(stub.seen.filter((seen) => seen.kind === "ack").length, 3);
  assert.deepEqual(stub.acks, [{ command_id: "cmd-1", attempt: 1 }]);
  assert.equal(agent.executor.runs.length, 1);
  assert.ok(!logs.has(/no acks here/));
  assert.ok(!logs.has(/running the command anyway/));
});

Deno.test("acks answered 404 without the dashboard's word: said once, commands run, no retries after", async () => {
  using logs = captureLogs();
  await using stub = new StubDashboard();
  stub.override = (seen) => {
    if (seen.kind === "ack") return new Response("Not Found", { status: 404 });
  };
  const clock = new FakeClock();
  const agent = start(stub, { clock, retryDelayMs: 100 });
  stub.enqueue(command("cmd-1", "echo one"));
  stub.enqueue(command("cmd-2", "echo two"));
  await advanceUntil(clock, () => stub.reports.length === 2, 100, "the reports");
  await finish(agent);
  assert.equal(agent.executor.runs.length, 2);
  // Three tries for the first; the second is not tried again on the same answer.
  assert.equal(stub.seen.filter((seen) => seen.kind === "ack").length, 4);
  const told = logs.records.filter((r) => /acks are answered 404 without/.test(String(r.message)));
  assert.equal(told.length, 1);
  assert.match(String(told[0].error), /not its JSON error body.*Not Found/);
});

Deno.test("live output answered 404 by a proxy's page is sent again, not stopped for the command", async () => {
  // Any 404 stopped live output for the command's whole run: a proxy's page while the dashboard
  // was redeployed too.
  using logs = captureLogs();
  await using stub = new StubDashboard();
  let proxied = 0;
  const stored: string[] = [];
  stub.override = (seen) => {
    if (!seen.path.endsWith("/output")) return;
    if (proxied < 2) {
      proxied++;
      return new Response("<h1>404 Not Found</h1>", { status: 404 });
    }
    stored.push(String((seen.body as { data: string }).data));
    return Response.json({ stored: true, gap_bytes: 0 });
  };
  const clock = new FakeClock();
  const executor = new FakeExecutor();
  const { promise: released, resolve: release } = Promise.withResolvers<void>();
  executor.behaviour = async (request) => {
    request.onOutput?.("stdout", new TextEncoder().encode("hello\n"));
    await released;
    return success("hello\n");
  };
  const agent = start(stub, { clock, executor, liveOutput: true, retryDelayMs: 100 });
  stub.enqueue(command("cmd-1", "echo hello"));
  await advanceUntil(clock, () => stored.length === 1, 500, "the output sent again");
  assert.equal(proxied, 2);
  assert.equal(atob(stored[0]), "hello\n");
  release();
  await advanceUntil(clock, () => stub.reports.length === 1, 500, "the report");
  await finish(agent);
  assert.ok(!logs.has(/does not take live output/));
});

Deno.test("a finished command's result is kept before its last live output is sent", async () => {
  using _logs = captureLogs();
  await using stub = new StubDashboard();
  // The dashboard takes no output now (503, no Retry-After): the streamer retries on the clock.
  stub.override = (seen) => {
    if (seen.path.endsWith("/output")) {
      return Response.json({ error: "try later" }, { status: 503 });
    }
  };
  const clock = new FakeClock();
  const executor = new FakeExecutor();
  executor.behaviour = (request) => {
    request.onOutput?.("stdout", new TextEncoder().encode("last words\n"));
    return Promise.resolve(success("last words\n"));
  };
  const agent = start(stub, { clock, executor, liveOutput: true, retryDelayMs: 100 });
  stub.enqueue(command("cmd-1", "echo last words"));
  await eventually(
    () => stub.seen.some((s) => s.path.endsWith("/output")) && clock.pending > 0,
    10_000,
    "the output retry",
  );
  // The process has ended and its output is still being retried: the result is kept already.
  assert.equal(agent.state.outbox.get("cmd-1")?.status, "success");
  assert.equal(agent.state.journal.get("cmd-1")?.state, "done");
  assert.equal(stub.reports.length, 0, "reported only after the output was given up");
  await advanceUntil(clock, () => stub.reports.length === 1, 500, "the report");
  await finish(agent);
});

Deno.test("401 and 403 are logged with their reason and backed off", async (t) => {
  const run = async (response: () => Response, state = memoryAgentState()) => {
    const clock = new RecordingClock();
    const stop = new AbortController();
    let calls = 0;
    await runAgent({
      dashboardUrl: "http://dashboard.test",
      agentId: "agent-1",
      agentToken: "0123456789abcdef0123456789abcdef",
      heartbeat: false,
      executor: new FakeExecutor(),
      state,
      clock,
      fetch: () => {
        if (++calls >= 3) stop.abort();
        return Promise.resolve(response());
      },
    }, stop.signal);
    return clock;
  };

  await t.step("clock skew: the offset from the Date header", async () => {
    using logs = captureLogs();
    const clock = await run(() =>
      Response.json({ error: "X-Timestamp is 3600 s away from the dashboard's clock" }, {
        status: 401,
        headers: { Date: new Date(clock0() + 3600_000).toUTCString() },
      })
    );
    const record = logs.records.find((r) => /request time/.test(String(r.message)));
    assert.ok(record, "skew logged");
    // Whose clock is wrong the agent cannot tell: a dashboard's hours off is as likely.
    assert.match(String(record.message), /clock and the agent's differ by 36\d\d s /);
    assert.match(String(record.message), /fix the one that is wrong \(NTP\)/);
    assert.doesNotMatch(String(record.message), /the agent's clock is off/);
    assert.ok(Math.abs(Number(record.clockOffsetSecs) - 3600) <= 2, String(record.message));
    assert.ok(clock.sleeps.length >= 2, "backed off");
  });

  await t.step("bad token: says what a rotated or removed agent needs", async () => {
    using logs = captureLogs();
    await run(() => Response.json({ error: "bearer token is wrong" }, { status: 401 }));
    const record = logs.records.find((r) => /credentials/.test(String(r.message)));
    assert.ok(record, "401 logged");
    assert.equal(record.error, "bearer token is wrong");
    const message = String(record.message);
    assert.match(message, /check AGENT_ID and AGENT_TOKEN/);
    // A rotated token is read only at start: an operator who edits the settings must restart.
    assert.match(message, /"status agents rotate agent-1" is used once it is this agent's /);
    assert.match(message, /AGENT_TOKEN and the agent is restarted/);
    assert.match(message, /"status agents add agent-1", then given that token the same way/);
    // The dashboard's answer does not tell an unknown id from a wrong token: who can tell.
    assert.match(message, /its audit log, or "status health" run with STATUS_ADMIN_TOKEN, /);
  });

  await t.step(
    "409 on a wait, without a durable state directory: maybe its own restart",
    async () => {
      using logs = captureLogs();
      await run(() =>
        Response.json({ error: "agent id agent-1 is already connected from another process" }, {
          status: 409,
        })
      );
      const record = logs.records.find((r) => /another process is polling/.test(String(r.message)));
      assert.ok(record, "409 logged");
      assert.match(
        String(record.message),
        /or the other process is this agent's previous one, stopped less than 30 s \(POLLING_TIMEOUT_SECS\) ago/,
      );
    },
  );

  await t.step("409 on a wait, with a durable state directory: another machine", async () => {
    using logs = captureLogs();
    await run(
      () =>
        Response.json({ error: "agent id agent-1 is already connected from another process" }, {
          status: 409,
        }),
      { ...memoryAgentState(), durable: true },
    );
    const record = logs.records.find((r) => /another process is polling/.test(String(r.message)));
    assert.ok(record, "409 logged");
    // Its instance id is kept across restarts: the other process is not its own.
    assert.doesNotMatch(String(record.message), /previous one/);
  });

  await t.step("forbidden", async () => {
    using logs = captureLogs();
    await run(() => Response.json({ error: "scope not granted" }, { status: 403 }));
    const record = logs.records.find((r) => /forbids/.test(String(r.message)));
    assert.equal(record?.error, "scope not granted");
  });
});

/** The RecordingClock's start time (its sleeps move it; the first request is at the start). */
function clock0(): number {
  return new RecordingClock().now();
}

Deno.test("shutdown with a running command", async (t) => {
  await t.step("the command finishes within the grace and is reported", async () => {
    using logs = captureLogs();
    await using stub = new StubDashboard();
    const executor = new FakeExecutor();
    let release!: () => void;
    executor.behaviour = cancellable(new Promise((resolve) => release = resolve));
    const clock = new FakeClock();
    const agent = start(stub, { executor, shutdownGraceSecs: 10, clock });
    stub.enqueue(command("cmd-1", "sleep 1"));
    await eventually(() => executor.runs.length === 1);
    agent.stop.abort();
    await eventually(() => logs.has(/may finish within the shutdown grace/));
    await clock.advanceAsync(9_999);
    release();
    const summary = await agent.done;
    agent.state[Symbol.dispose]();
    assert.equal(stub.reports.length, 1);
    assert.equal(stub.reports[0].status, "success");
    assert.equal(summary.reportsPending, 0);
    assert.ok(logs.has("command execution and reporting completed"));
    assert.ok(executor.runs[0].signal.aborted === false);
  });

  await t.step("the command is cancelled at the end of the grace and reported", async () => {
    using logs = captureLogs();
    await using stub = new StubDashboard();
    const executor = new FakeExecutor();
    executor.behaviour = cancellable(new Promise(() => {}));
    const clock = new FakeClock();
    const agent = start(stub, { executor, shutdownGraceSecs: 0.5, clock });
    stub.enqueue(command("cmd-1", "sleep 100"));
    await eventually(() => executor.runs.length === 1);
    agent.stop.abort();
    await eventually(() => logs.has(/may finish within the shutdown grace/));
    await clock.advanceAsync(499);
    assert.equal(executor.runs[0].signal.aborted, false, "not cancelled within the grace");
    await clock.advanceAsync(1);
    await agent.done;
    agent.state[Symbol.dispose]();
    assert.equal(executor.runs[0].signal.aborted, true);
    // Nobody cancelled it: the agent's stop cut it short.
    assert.equal(stub.reports[0].status, "interrupted");
    assert.match(
      String(stub.reports[0].error),
      /^the agent was stopping and its shutdown grace of 0\.5 s was over: /,
    );
  });

  await t.step("an exit the stop caused is journaled interrupted, as it is reported", async () => {
    using _logs = captureLogs();
    await using stub = new StubDashboard();
    const executor = new FakeExecutor();
    executor.behaviour = (request) =>
      new Promise((resolve) => {
        request.signal.addEventListener("abort", () => {
          const ended = { ...success(""), status: "cancelled" as const, error: "cancelled: x" };
          request.onExit?.({ ...ended, exit_code: null, signal: "SIGTERM", duration_secs: 1 });
          resolve(ended);
        }, { once: true });
      });
    const state = memoryAgentState();
    const journaled: string[] = [];
    const exited = state.journal.exited.bind(state.journal);
    state.journal.exited = (id, exit) => {
      journaled.push(`${exit.status}: ${exit.error}`);
      exited(id, exit);
    };
    const agent = start(stub, { executor, shutdownGraceSecs: 30, state });
    stub.enqueue(command("cmd-1", "sleep 100"));
    await eventually(() => executor.runs.length === 1);
    agent.stop.abort();
    agent.stopNow.abort();
    await agent.done;
    // Were the agent killed before its report, recovery would report this journaled exit.
    assert.deepEqual(journaled, ["interrupted: the agent was stopping at once: x"]);
    assert.equal(state.outbox.get("cmd-1")?.status, "interrupted");
    state[Symbol.dispose]();
  });

  await t.step(
    "a dashboard that never answers the report holds the stop 10 s, not minutes",
    async () => {
      using logs = captureLogs();
      const executor = new FakeExecutor();
      executor.behaviour = cancellable(new Promise(() => {}));
      const state = memoryAgentState();
      const clock = new FakeClock();
      let waits = 0;
      const reports: AbortSignal[] = [];
      // Takes the connection and never answers a report: only the request's signal ends it.
      const fakeFetch: typeof fetch = (input, init) => {
        const path = new URL(String(input)).pathname;
        const signal = init!.signal!;
        if (path.endsWith("/ack")) return Promise.resolve(Response.json({ ok: true }));
        if (path.includes("/wait/") && waits++ === 0) {
          return Promise.resolve(Response.json(command("cmd-1", "sleep 100")));
        }
        if (path.endsWith("/report")) reports.push(signal);
        return new Promise((_resolve, reject) => {
          signal.addEventListener("abort", () => reject(signal.reason), { once: true });
        });
      };
      const stop = new AbortController();
      const done = runAgent({
        dashboardUrl: "http://dashboard.test",
        agentId: "agent-1",
        heartbeat: false,
        liveOutput: false,
        shutdownGraceSecs: 0.5,
        executor,
        state,
        clock,
        fetch: fakeFetch,
      }, stop.signal);
      await eventually(() => executor.runs.length === 1);
      stop.abort();
      await advanceUntil(clock, () => reports.length === 1, 100, "the report");
      let finished = false;
      done.finally(() => finished = true);
      await clock.advanceAsync(STOPPING_REPORT_MS - 1);
      assert.equal(finished, false, "the report has its 10 s");
      await clock.advanceAsync(1);
      const summary = await done;
      assert.ok(reports.every((signal) => signal.aborted), "no report left open");
      assert.equal(summary.reportsPending, 1);
      assert.equal(state.outbox.get("cmd-1")?.status, "interrupted");
      const kept = logs.records.find((r) =>
        r.message === "result not accepted yet; it stays in the outbox and is sent again"
      );
      assert.match(String(kept?.reason), /did not accept it within 10 s/);
      state[Symbol.dispose]();
    },
  );

  await t.step(
    "a report asked to wait within the stop's 10 s is sent again, whatever the wall clock did",
    async () => {
      // What was left of the 10 s was measured on the wall clock: one stepped forward an hour
      // (NTP) made a Retry-After of 2 s "past the budget", and the result stayed in the outbox.
      using _logs = captureLogs();
      const executor = new FakeExecutor();
      executor.behaviour = cancellable(new Promise(() => {}));
      const state = memoryAgentState();
      const clock = new SteppedClock();
      let waits = 0;
      let reports = 0;
      const fakeFetch: typeof fetch = (input, init) => {
        const path = new URL(String(input)).pathname;
        const signal = init!.signal!;
        if (path.endsWith("/ack")) return Promise.resolve(Response.json({ ok: true }));
        if (path.includes("/wait/") && waits++ === 0) {
          return Promise.resolve(Response.json(command("cmd-1", "sleep 100")));
        }
        if (path.endsWith("/report")) {
          if (reports++ > 0) return Promise.resolve(Response.json({ ok: true }));
          clock.offsetMs += 3_600_000;
          return Promise.resolve(
            Response.json({ error: "slow down" }, { status: 429, headers: { "Retry-After": "2" } }),
          );
        }
        return new Promise((_resolve, reject) => {
          signal.addEventListener("abort", () => reject(signal.reason), { once: true });
        });
      };
      const stop = new AbortController();
      const done = runAgent({
        dashboardUrl: "http://dashboard.test",
        agentId: "agent-1",
        heartbeat: false,
        liveOutput: false,
        shutdownGraceSecs: 0.5,
        executor,
        state,
        clock,
        fetch: fakeFetch,
      }, stop.signal);
      await eventually(() => executor.runs.length === 1);
      stop.abort();
      await advanceUntil(clock, () => reports >= 2, 100, "the report sent again");
      const summary = await done;
      assert.equal(summary.reportsPending, 0);
      assert.equal(state.outbox.get("cmd-1"), undefined);
      state[Symbol.dispose]();
    },
  );

  await t.step("a second stop cancels at once and leaves the result in the outbox", async () => {
    using _logs = captureLogs();
    await using stub = new StubDashboard();
    const executor = new FakeExecutor();
    executor.behaviour = cancellable(new Promise(() => {}));
    const state = memoryAgentState();
    const agent = start(stub, { executor, shutdownGraceSecs: 30, state });
    stub.enqueue(command("cmd-1", "sleep 100"));
    await eventually(() => executor.runs.length === 1);
    agent.stop.abort();
    agent.stopNow.abort();
    const summary = await agent.done;
    assert.equal(stub.reports.length, 0);
    assert.equal(summary.reportsPending, 1);
    assert.equal(state.outbox.get("cmd-1")?.status, "interrupted");
    assert.match(String(state.outbox.get("cmd-1")?.error), /^the agent was stopping at once: /);
    state[Symbol.dispose]();
  });
});

Deno.test("a report retried while stopping waits at least what Retry-After says", async (t) => {
  // The retries while stopping came after half a second or so, whatever the dashboard asked.
  const stoppingWith = async (retryAfter: string) => {
    const logs = captureLogs();
    const stub = new StubDashboard();
    let throttled = 0;
    stub.override = (seen) => {
      if (seen.kind === "report" && throttled < 1) {
        throttled++;
        return Response.json({ error: "rate limit exceeded" }, {
          status: 429,
          headers: { "Retry-After": retryAfter },
        });
      }
    };
    const executor = new FakeExecutor();
    executor.behaviour = cancellable(new Promise(() => {}));
    const clock = new FakeClock();
    const agent = start(stub, { executor, shutdownGraceSecs: 0.5, clock, retryDelayMs: 100 });
    stub.enqueue(command("cmd-1", "sleep 100"));
    await eventually(() => executor.runs.length === 1);
    agent.stop.abort();
    await advanceUntil(clock, () => throttled === 1, 100, "the 429");
    const reports = () => stub.seen.filter((seen) => seen.kind === "report").length;
    return {
      logs,
      stub,
      clock,
      agent,
      reports,
      async [Symbol.asyncDispose]() {
        agent.state[Symbol.dispose]();
        await stub[Symbol.asyncDispose]();
        logs[Symbol.dispose]();
      },
    };
  };

  await t.step("within the stop's budget: the retry comes after Retry-After", async () => {
    await using run = await stoppingWith("3");
    // Other timers (the stop's budget) may be set first: the retry's is the one due soonest.
    await eventually(
      () => run.clock.nextAt !== null && run.clock.nextAt - run.clock.now() <= 3000,
      5000,
      "the wait before the retry",
    );
    assert.equal(run.clock.nextAt! - run.clock.now(), 3000, "Retry-After: 3");
    await run.clock.advanceAsync(2999);
    assert.equal(run.reports(), 1, "not asked again before Retry-After");
    await run.clock.advanceAsync(1);
    const summary = await run.agent.done;
    assert.equal(run.reports(), 2);
    assert.equal(summary.reportsPending, 0);
    assert.equal(run.stub.reports[0].status, "interrupted");
  });

  await t.step("beyond it: not retried, kept in the outbox, and said why", async () => {
    await using run = await stoppingWith("30");
    const summary = await run.agent.done;
    assert.equal(run.reports(), 1);
    assert.equal(summary.reportsPending, 1);
    const kept = run.logs.records.find((r) =>
      r.message === "result not accepted yet; it stays in the outbox and is sent again"
    );
    assert.match(String(kept?.reason), /asks to wait 30 s \(Retry-After\)/);
  });
});

Deno.test("a stale ack (409) means the command is not run now and not journaled", async () => {
  using _logs = captureLogs();
  await using stub = new StubDashboard();
  stub.ackStatus = 409;
  const agent = start(stub);
  stub.enqueue(command("cmd-1", "echo hi"));
  await stub.until(() => stub.acks.length === 1);
  await stub.until(() => stub.seen.filter((s) => s.kind === "wait").length >= 2);
  await finish(agent);
  assert.equal(agent.executor.runs.length, 0);
  assert.equal(agent.state.journal.get("cmd-1"), undefined);
});

Deno.test("a dashboard that keeps delivering a command and calling its ack stale is backed off", async () => {
  // Every wait answered at once with the same command and every ack with 409 was a tight loop
  // of waits and acks, as fast as the dashboard answered.
  using logs = captureLogs();
  const clock = new RecordingClock();
  const stop = new AbortController();
  let waits = 0;
  let acks = 0;
  const fakeFetch: typeof fetch = (input) => {
    const path = new URL(String(input)).pathname;
    if (path.endsWith("/ack")) {
      acks++;
      return Promise.resolve(
        Response.json({ error: "attempt 1 of command cmd-1 is no longer current" }, {
          status: 409,
        }),
      );
    }
    if (++waits > 6) {
      stop.abort();
      return Promise.resolve(new Response(null, { status: 204 }));
    }
    return Promise.resolve(Response.json(command("cmd-1", "echo hi")));
  };
  const executor = new FakeExecutor();
  await runAgent({
    dashboardUrl: "http://dashboard.test",
    agentId: "agent-1",
    pollingBackoffSecs: 1,
    pollingBackoffMaxSecs: 8,
    heartbeat: false,
    executor,
    state: memoryAgentState(),
    fetch: fakeFetch,
    clock,
  }, stop.signal);
  assert.equal(acks, 6);
  assert.equal(executor.runs.length, 0);
  const attempts = logs.records
    .filter((r) => r.message === "the next wait after a stale delivery comes after back-off")
    .map((r) => r.attempt);
  assert.deepEqual(attempts, [1, 2, 3, 4, 5, 6]);
  assert.equal(clock.sleeps.length, 6, "a pause after each stale delivery");
  clock.sleeps.forEach((d, k) => assert.ok(d < Math.min(8000, 1000 * 2 ** k), `delay ${k}: ${d}`));
});

Deno.test("an operator's cancel stops a running command", async (t) => {
  await t.step("a cancel during `sleep 30` kills it and reports cancelled at once", async () => {
    using logs = captureLogs();
    await using stub = new StubDashboard();
    const token = "s3cret-token-of-forty-three-characters-long";
    const agent = start(stub, {
      agentToken: token,
      executor: undefined,
      exec: { allowedPrograms: ["sleep"], cgroups: false }, // beside other test threads
    });
    stub.enqueue(command("cmd-1", "sleep 30"));
    const cancelWaits = () => stub.seen.filter((s) => s.kind === "cancel-wait");
    // pollingTimeoutSecs is 1: a second cancel-wait means the first ended with 204 and reopened.
    await stub.until(() => cancelWaits().length >= 2, 10_000, "two cancel-waits");
    const cancelledAt = Date.now();
    stub.cancel("cmd-1");
    await stub.until(() => stub.reports.length === 1, 5_000, "the report");
    const tookMs = Date.now() - cancelledAt;
    await finish(agent);

    const report = stub.reports[0];
    assert.equal(report.status, "cancelled");
    assert.equal((report.result as { signal: string }).signal, "SIGTERM");
    assert.ok(tookMs < 2_000, `reported ${tookMs} ms after the cancel`);
    const first = cancelWaits()[0];
    assert.equal(first.method, "GET");
    assert.equal(first.path, "/api/v1/agent/commands/cmd-1/cancel-wait?timeout=1");
    assert.equal(
      first.headers.get("X-Agent-Signature"),
      signV2(token, {
        method: "GET",
        pathAndQuery: first.path,
        timestamp: first.headers.get("X-Timestamp")!,
        requestId: first.headers.get("X-Request-Id")!,
        body: "",
      }),
    );
    const record = logs.records.find((r) => r.message === "command cancelled by the dashboard");
    assert.equal(record?.commandId, "cmd-1");
    assert.equal(agent.state.journal.get("cmd-1")?.state, "accepted");
  });

  await t.step("a command that ends first closes its cancel-wait", async () => {
    using _logs = captureLogs();
    await using stub = new StubDashboard();
    const executor = new FakeExecutor();
    let release!: () => void;
    executor.behaviour = cancellable(new Promise((resolve) => release = resolve));
    const agent = start(stub, { executor, pollingTimeoutSecs: 30 });
    stub.enqueue(command("cmd-1", "sleep 100"));
    await eventually(() => stub.seen.some((s) => s.kind === "cancel-wait"));
    release();
    await stub.until(() => stub.reports.length === 1, 5_000, "the report");
    await finish(agent);
    assert.equal(stub.reports[0].status, "success");
    assert.equal(stub.seen.filter((s) => s.kind === "cancel-wait").length, 1);
  });

  await t.step("a failing cancel-wait is retried quietly after a back-off", async () => {
    using logs = captureLogs();
    await using stub = new StubDashboard();
    let failures = 0;
    stub.override = (seen) => {
      if (seen.kind !== "cancel-wait" || failures >= 2) return undefined;
      failures++;
      return Response.json({ error: "down for maintenance" }, { status: 503 });
    };
    const executor = new FakeExecutor();
    executor.behaviour = cancellable(new Promise(() => {}));
    const clock = new FakeClock();
    const agent = start(stub, { executor, clock });
    stub.enqueue(command("cmd-1", "sleep 100"));
    // The back-offs run on the fake clock: move it until the third cancel-wait.
    await advanceUntil(
      clock,
      () => stub.seen.filter((s) => s.kind === "cancel-wait").length >= 3,
      500,
      "three cancel-waits",
    );
    stub.cancel("cmd-1");
    await stub.until(() => stub.reports.length === 1, 5_000, "the report");
    await finish(agent);
    assert.equal(stub.reports[0].status, "cancelled");
    const loud = logs.records.filter((r) =>
      (r.level === "warning" || r.level === "error") && /cancel/.test(String(r.message))
    );
    assert.deepEqual(loud, []);
  });

  await t.step(
    "a cancel-wait answered 404 by something other than the dashboard is asked again",
    async () => {
      // Any 404 ended the cancel-wait for the command's whole run: a proxy's page while the
      // dashboard was redeployed, and an operator's cancel never reached an hour-long command.
      using logs = captureLogs();
      await using stub = new StubDashboard();
      let proxied = 0;
      stub.override = (seen) => {
        if (seen.kind === "cancel-wait" && proxied < 2) {
          proxied++;
          return new Response("<h1>502 Bad Gateway</h1>", { status: 404 });
        }
      };
      const executor = new FakeExecutor();
      executor.behaviour = cancellable(new Promise(() => {}));
      const clock = new FakeClock();
      const agent = start(stub, { executor, clock });
      stub.enqueue(command("cmd-1", "sleep 100"));
      await advanceUntil(clock, () => proxied === 2, 500, "two proxied 404s");
      await advanceUntil(
        clock,
        () => stub.seen.filter((s) => s.kind === "cancel-wait").length === 3,
        500,
        "the cancel-wait asked again",
      );
      stub.cancel("cmd-1");
      await advanceUntil(clock, () => stub.reports.length === 1, 500, "the report");
      await finish(agent);
      assert.equal(stub.reports[0].status, "cancelled");
      assert.ok(!logs.has(/no cancel-wait endpoint/));
    },
  );

  await t.step(
    "a dashboard without cancel-wait (404): asked once per command, told once",
    async () => {
      using logs = captureLogs();
      await using stub = new StubDashboard();
      stub.override = (seen) =>
        seen.kind === "cancel-wait"
          ? Response.json({ error: "not found" }, { status: 404 })
          : undefined;
      const executor = new FakeExecutor();
      const releases: Array<() => void> = [];
      executor.behaviour = (request) =>
        cancellable(new Promise((resolve) => releases.push(resolve)))(request);
      const clock = new FakeClock();
      const agent = start(stub, { executor, clock });
      for (const id of ["cmd-1", "cmd-2"]) {
        stub.enqueue(command(id, "sleep 100"));
        await advanceUntil(
          clock,
          () => stub.seen.some((s) => s.kind === "cancel-wait" && s.path.includes(`/${id}/`)),
          500,
          `the cancel-wait of ${id}`,
        );
        // A minute of back-offs: long enough for a second cancel-wait, were one sent.
        await clock.advanceAsync(60_000);
        releases.at(-1)!();
        await stub.until(() => stub.reports.some((r) => r.command_id === id), 5_000);
      }
      await finish(agent);
      assert.deepEqual(stub.reports.map((r) => r.status), ["success", "success"]);
      assert.equal(stub.seen.filter((s) => s.kind === "cancel-wait").length, 2);
      const told = logs.records.filter((r) => /no cancel-wait endpoint/.test(String(r.message)));
      assert.equal(told.length, 1);
    },
  );
});

Deno.test("what the executor warns of at start is logged as a warning", async () => {
  using logs = captureLogs();
  const stop = new AbortController();
  stop.abort();
  const executor = new FakeExecutor();
  const warned = Object.assign(executor, { warnings: () => ["commands run as root (test)"] });
  await runAgent({
    dashboardUrl: "http://127.0.0.1:9",
    agentId: "agent-1",
    heartbeat: false,
    executor: warned,
    state: memoryAgentState(),
    clock: new RecordingClock(),
  }, stop.signal);
  const record = logs.records.find((r) => r.message === "sandbox: commands run as root (test)");
  assert.equal(record?.level, "warning", JSON.stringify(logs.records));
});
