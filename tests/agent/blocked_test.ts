/**
 * The loop while its journal cannot be written (a full state directory, injected): a delivered
 * command is neither acknowledged nor run, no further command is taken, and the loop takes
 * commands again by itself once the state can be written. (`full_disk_test.ts` does this on a
 * real full file system where one can be mounted.)
 */
import assert from "node:assert/strict";
import { type AgentState, Journal, Outbox, runAgent } from "../../src/agent/mod.ts";
import { StateWriteError } from "../../src/agent/fs.ts";
import { command, StubDashboard } from "../_stub_dashboard.ts";
import { captureLogs, eventually, FakeExecutor } from "./_helpers.ts";

Deno.test("a journal that cannot be written: no ack, no run, no new command, then it heals", async () => {
  using logs = captureLogs();
  await using stub = new StubDashboard();
  let full = true;
  const journal = Journal.open({});
  const start = journal.start.bind(journal);
  journal.start = (cmd) => {
    if (full) throw new StateWriteError("cannot write the journal: No space left on device");
    return start(cmd);
  };
  const state: AgentState = {
    journal,
    outbox: Outbox.open({}),
    durable: true,
    retry: () => !full,
    [Symbol.dispose]: () => journal.close(),
  };
  const executor = new FakeExecutor();
  const stop = new AbortController();
  const done = runAgent({
    dashboardUrl: stub.url,
    agentId: "agent-1",
    pollingTimeoutSecs: 1,
    pollingBackoffSecs: 1,
    heartbeat: false,
    executor,
    state,
  }, stop.signal);
  try {
    stub.enqueue(command("cmd-1", "echo hi"));
    await eventually(() => logs.has(/cannot journal the command/), 10_000, "the refusal");
    const waits = stub.seen.filter((s) => s.kind === "wait").length;
    await eventually(
      () =>
        logs.records.filter((r) => /still cannot be written/.test(String(r.message))).length >= 2,
      10_000,
      "two retries",
    );
    assert.equal(stub.acks.length, 0, "not acknowledged");
    assert.equal(executor.runs.length, 0, "not run");
    assert.equal(stub.seen.filter((s) => s.kind === "wait").length, waits, "no new command taken");

    full = false;
    await eventually(() => logs.has(/can be written again/), 10_000, "the recovery");
    stub.enqueue({ ...command("cmd-1", "echo hi"), attempt: 2 });
    await stub.until(() => stub.reports.length === 1, 10_000, "the report");
    assert.equal(stub.reports[0].status, "success");
    assert.equal(executor.runs.length, 1);
  } finally {
    stop.abort();
    await done;
    state[Symbol.dispose]();
  }
});
