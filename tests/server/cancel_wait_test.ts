/**
 * `GET /api/v1/agent/commands/{id}/cancel-wait`: how a running command's agent learns of an
 * operator's cancel, in process.
 */
import { until } from "../_until.ts";
import assert from "node:assert/strict";
import { CancelWaiters, createApp } from "../../src/server/mod.ts";
import { AGENT_SCOPES, type CommandStore, openSqliteStore } from "../../src/store/mod.ts";
import { closeLogging, setupLogging } from "../../src/log/mod.ts";
import {
  agentHeaders,
  FakeClock,
  json,
  makeDashboard,
  P,
  reportBody,
  TOKEN,
  TOKEN2,
} from "./_helpers.ts";

type TestDashboard = Awaited<ReturnType<typeof makeDashboard>>;

const cancelWait = (id: string, timeout = 10) =>
  `/api/v1/agent/commands/${id}/cancel-wait?timeout=${timeout}`;

/** Enqueues, delivers and acks a command of `a1`: it is `running`. */
async function running(d: TestDashboard, id: string): Promise<void> {
  const enqueued = await d.agent({ path: P.enqueue, body: { id, name: "sleep 30" } });
  assert.equal(enqueued.status, 202);
  const delivered = await d.agent({ path: P.wait() });
  assert.equal((await json(delivered)).id, id);
  const acked = await d.agent({ path: P.ack, body: { command_id: id, attempt: 1 } });
  assert.equal(acked.status, 200);
  await acked.body?.cancel();
}

Deno.test("cancel-wait answers as the cancel route and the command's state say", async (t) => {
  await using d = await makeDashboard();
  const waiters = d.dashboard.cancelWaiters;
  await running(d, "c1");

  await t.step("a cancel requested later wakes it, long before its timeout", async () => {
    const waiting = d.agent({ path: cancelWait("c1") });
    await until(() => waiters.size === 1, "the cancel-wait is open", 5000);
    const started = performance.now();
    const cancel = await d.admin("POST", "/api/v1/commands/c1/cancel");
    assert.equal(cancel.status, 202);
    await cancel.body?.cancel();
    const response = await waiting;
    const tookMs = performance.now() - started;
    assert.equal(response.status, 200);
    assert.deepEqual(await json(response), { cancel_requested: true });
    // Woken by the cancel, not by its 10 s timeout (no bound on speed: the machine may be busy).
    assert.ok(tookMs < 5000, `woken ${tookMs.toFixed(1)} ms after the cancel`);
    assert.equal(waiters.size, 0);
  });

  await t.step("a cancel already requested is answered at once", async () => {
    const response = await d.agent({ path: cancelWait("c1", 120) });
    assert.equal(response.status, 200);
    assert.deepEqual(await json(response), { cancel_requested: true });
    assert.equal(waiters.size, 0);
  });

  await running(d, "c2");

  await t.step("no cancel within the timeout: 204 with an empty body", async () => {
    const started = performance.now();
    const response = await d.agent({ path: cancelWait("c2", 1) });
    assert.equal(response.status, 204);
    assert.equal(await response.text(), "");
    assert.ok(performance.now() - started >= 950);
    assert.equal(waiters.size, 0);
  });

  await t.step("a client that goes away is dropped", async () => {
    const controller = new AbortController();
    const bodyText = "";
    const headers = agentHeaders({ path: cancelWait("c2"), bodyText, now: d.clock.now() });
    const waiting = d.dashboard.app.request(cancelWait("c2"), {
      headers,
      signal: controller.signal,
    });
    await until(() => waiters.size === 1, "the cancel-wait is open", 5000);
    controller.abort();
    await Promise.resolve(waiting).then((r) => r.body?.cancel(), () => {});
    await until(() => waiters.size === 0, "the cancel-wait is dropped", 5000);
  });

  await t.step("a command already final: 409", async () => {
    const report = await d.agent({ path: P.report, body: reportBody("c2") });
    assert.equal(report.status, 200);
    await report.body?.cancel();
    const response = await d.agent({ path: cancelWait("c2") });
    assert.equal(response.status, 409);
    assert.match((await json(response)).error as string, /already success/);
  });

  await t.step("a command of another agent: the same 404 as an unknown one", async () => {
    const response = await d.agent({ path: cancelWait("c1"), agentId: "a2", token: TOKEN2 });
    assert.equal(response.status, 404);
    assert.deepEqual(await json(response), { error: "command c1 does not exist" });
  });

  await t.step("an unknown command: 404", async () => {
    const response = await d.agent({ path: cancelWait("nope") });
    assert.equal(response.status, 404);
    assert.match((await json(response)).error as string, /command nope does not exist/);
  });

  await t.step("signed like the ack: a wrong signature is 401", async () => {
    const response = await d.agent({
      path: cancelWait("c1"),
      headers: { "X-Agent-Signature": "AAAA" },
    });
    assert.equal(response.status, 401);
    await response.body?.cancel();
  });

  await t.step("a wait on the deployment hash `cancel-wait` is still a wait", async () => {
    const response = await d.agent({ path: "/api/v1/agent/commands/wait/cancel-wait?timeout=1" });
    assert.equal(response.status, 204);
    await response.body?.cancel();
  });
  assert.equal(waiters.size, 0);
});

Deno.test("cancel-wait: a command cancelled while queued again is answered 200", async () => {
  await using d = await makeDashboard({ ackTimeoutSecs: 30 });
  await d.agent({ path: P.enqueue, body: { id: "c1", name: "sleep 30" } }).then((r) =>
    r.body?.cancel()
  );
  await d.agent({ path: P.wait() }).then((r) => r.body?.cancel());
  d.clock.advance(30_000);
  assert.equal((await d.dashboard.expireLeases()).requeued.length, 1);
  const cancel = await d.admin("POST", "/api/v1/commands/c1/cancel");
  assert.equal(cancel.status, 200, "queued again, so cancelled at once");
  await cancel.body?.cancel();
  // The agent may still run attempt 1: it is told to stop.
  const response = await d.agent({ path: cancelWait("c1") });
  assert.equal(response.status, 200);
  assert.deepEqual(await json(response), { cancel_requested: true });
});

Deno.test("shutdown answers open cancel-waits with 204", async () => {
  await using d = await makeDashboard();
  await running(d, "c1");
  const waiting = d.agent({ path: cancelWait("c1", 120) });
  await until(() => d.dashboard.cancelWaiters.size === 1, "the cancel-wait is open", 5000);
  await d.dashboard.close();
  assert.equal((await waiting).status, 204);
  assert.equal(d.dashboard.cancelWaiters.size, 0);
});

/** A store whose `getCommand` holds its answer, once read, until the test releases it. */
function gatedStore(inner: CommandStore) {
  const read = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  let gated = false;
  const store = new Proxy(inner, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (property !== "getCommand") {
        return typeof value === "function" ? value.bind(target) : value;
      }
      return async (id: string) => {
        const command = await target.getCommand(id);
        if (gated) {
          read.resolve();
          await release.promise;
        }
        return command;
      };
    },
  });
  return {
    store,
    /** From now on, reads wait for `release` once they have read. */
    gate: () => gated = true,
    read: read.promise,
    release: () => release.resolve(),
  };
}

Deno.test("no cancel is lost when it lands while a new cancel-wait reads the store", async () => {
  await using inner = openSqliteStore(":memory:");
  await inner.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now: Date.now() });
  const gated = gatedStore(inner);
  const admin = "admin-token-0123456789abcdef";
  const dashboard = createApp({ store: gated.store, adminToken: admin, autoExpireLeases: false });
  try {
    const agentRequest = (path: string, body?: unknown) => {
      const bodyText = body === undefined ? "" : JSON.stringify(body);
      const headers = agentHeaders({ path, body, bodyText, now: Date.now() });
      return Promise.resolve(dashboard.app.request(path, {
        method: body === undefined ? "GET" : "POST",
        headers,
        body: body === undefined ? undefined : bodyText,
      }));
    };
    await agentRequest(P.enqueue, { id: "c1", name: "sleep 30" }).then((r) => r.body?.cancel());
    await agentRequest(P.wait()).then((r) => r.body?.cancel());
    gated.gate();
    const waiting = agentRequest(cancelWait("c1", 2));
    // The cancel-wait has read "not requested"; the cancel is written and notified before the
    // read's answer reaches the route.
    await gated.read;
    const cancel = await dashboard.app.request("/api/v1/commands/c1/cancel", {
      method: "POST",
      headers: { Authorization: `Bearer ${admin}` },
    });
    assert.equal(cancel.status, 202);
    await cancel.body?.cancel();
    gated.release();
    const answer = await waiting;
    assert.equal(answer.status, 200, "the cancel reached the waiting agent");
    assert.deepEqual(await json(answer), { cancel_requested: true });
    assert.equal(dashboard.cancelWaiters.size, 0);
  } finally {
    await dashboard.close();
  }
});

Deno.test("cancel waiters: notify wakes only its command; timeout, abort and close end waits", async () => {
  const waiters = new CancelWaiters();
  const other = waiters.wait({ commandId: "b", timeoutMs: 60_000 });
  const both = [
    waiters.wait({ commandId: "a", timeoutMs: 60_000 }),
    waiters.wait({ commandId: "a", timeoutMs: 60_000 }),
  ];
  waiters.notify("a");
  assert.deepEqual(await Promise.all(both), [true, true]);
  assert.equal(waiters.size, 1);
  assert.equal(await waiters.wait({ commandId: "a", timeoutMs: 20 }), false);
  const controller = new AbortController();
  const aborted = waiters.wait({ commandId: "a", timeoutMs: 60_000, signal: controller.signal });
  controller.abort();
  assert.equal(await aborted, false);
  assert.equal(
    await waiters.wait({ commandId: "a", timeoutMs: 60_000, signal: controller.signal }),
    false,
  );
  waiters.close();
  assert.equal(await other, false);
  assert.equal(await waiters.wait({ commandId: "b", timeoutMs: 60_000 }), false);
  assert.equal(waiters.size, 0);
});

Deno.test("cancel waiters: dismissStale ends the agent's waits opened with another token", async () => {
  const waiters = new CancelWaiters();
  const old = waiters.wait({ commandId: "a", timeoutMs: 60_000, agentId: "a1", token: "t1" });
  const current = waiters.wait({ commandId: "b", timeoutMs: 60_000, agentId: "a1", token: "t2" });
  const tokenless = waiters.wait({ commandId: "c", timeoutMs: 60_000, agentId: "a2" });
  assert.deepEqual(waiters.waitingAgents().sort(), ["a1", "a2"]);
  assert.equal(waiters.dismissStale("a1", "t2"), 1, "only the wait with the old token");
  assert.equal(await old, false);
  assert.equal(waiters.dismissStale("a2", null), 0, "a token-less wait stays while none is set");
  assert.equal(waiters.dismiss("a1"), 1, "a removed agent keeps none");
  assert.equal(await current, false);
  waiters.notify("c");
  assert.equal(await tokenless, true);
  assert.equal(waiters.size, 0);
  assert.deepEqual(waiters.waitingAgents(), []);
  waiters.close();
});

Deno.test("cancel waiters hold 8 per agent: the 9th ends the 1st as its timeout would", async () => {
  const clock = new FakeClock();
  const waiters = new CancelWaiters({ clock });
  try {
    // What a timeout answers.
    const timedOut = waiters.wait({ commandId: "t", timeoutMs: 1_000, agentId: "t1" });
    clock.advance(2_000);
    assert.equal(await timedOut, false);

    const ended: string[] = [];
    const open = (name: string, agentId: string | null = "a1") => {
      const waiting = waiters.wait({
        commandId: name,
        timeoutMs: 60_000,
        agentId: agentId ?? undefined,
      });
      waiting.then((requested) => ended.push(`${name}:${requested}`));
      return waiting;
    };
    const first = open("w1");
    for (let i = 2; i <= 8; i++) open(`w${i}`);
    open("other-agent", "a2");
    for (let i = 0; i < 10; i++) open(`no-agent-${i}`, null);
    await Promise.resolve();
    assert.equal(waiters.size, 19);
    assert.deepEqual(ended, [], "eight of a1 are within the cap; waits without an agent uncounted");

    open("w9");
    assert.equal(await first, false, "answered as at its timeout");
    assert.deepEqual(ended, ["w1:false"]);
    assert.equal(waiters.size, 19, "the new one is kept");

    // A cancel after the eviction reaches the open waits of its command.
    waiters.notify("w2");
    waiters.notify("w9");
    await Promise.resolve();
    assert.deepEqual(ended, ["w1:false", "w2:true", "w9:true"]);
    assert.equal(waiters.size, 17);
  } finally {
    waiters.close();
  }
});

Deno.test("cancel waiters warn of their cap once a minute per agent, not per eviction", () => {
  const lines: string[] = [];
  setupLogging({ format: "json", level: "info", write: (line) => lines.push(line) });
  const clock = new FakeClock();
  const waiters = new CancelWaiters({ clock, maxWaitsPerAgent: 2 });
  const warnings = () =>
    lines.map((line) => JSON.parse(line)).filter((record) => record.level === "warning");
  const open = (agentId: string) => {
    void waiters.wait({ commandId: "c", timeoutMs: 120_000, agentId });
  };
  try {
    open("a1");
    open("a1");
    assert.deepEqual(warnings(), []);
    for (let i = 0; i < 4; i++) open("a1");
    assert.equal(warnings().length, 1, "four evictions, one line");
    const [line] = warnings();
    assert.equal(line.category, "status.audit");
    assert.deepEqual([line.agentId, line.cap, line.kind], ["a1", 2, "cancel-wait"]);
    assert.match(
      line.message,
      /^agent a1 opened more than 2 cancel-waits at once; the oldest was answered 204/,
    );
    for (let i = 0; i < 3; i++) open("a2");
    assert.deepEqual(warnings().map((w) => w.agentId), ["a1", "a2"]);
    clock.advance(59_999);
    open("a1");
    assert.equal(warnings().length, 2, "still within the minute");
    clock.advance(1);
    open("a1");
    open("a1");
    assert.deepEqual(warnings().map((w) => w.agentId), ["a1", "a2", "a1"]);
  } finally {
    waiters.close();
    closeLogging();
  }
});

Deno.test("nine cancel-waits of one agent: the first is answered 204, the others held", async () => {
  await using d = await makeDashboard();
  await running(d, "c1");
  const waits = [];
  for (let i = 0; i < 8; i++) {
    waits.push(d.agent({ path: cancelWait("c1", 60) }));
    await until(() => d.dashboard.cancelWaiters.size === i + 1, `cancel-wait ${i + 1} is open`);
  }
  waits.push(d.agent({ path: cancelWait("c1", 60) }));
  const first = await waits[0];
  assert.equal(first.status, 204);
  assert.equal(await first.text(), "");
  assert.equal(d.dashboard.cancelWaiters.size, 8);
  const cancel = await d.admin("POST", "/api/v1/commands/c1/cancel");
  assert.equal(cancel.status, 202);
  await cancel.body?.cancel();
  for (const waiting of waits.slice(1)) {
    const answer = await waiting;
    assert.equal(answer.status, 200, "still open, so told of the cancel");
    assert.deepEqual(await json(answer), { cancel_requested: true });
  }
});

Deno.test("createApp refuses a cap of open waits per agent out of range", async () => {
  await using store = openSqliteStore(":memory:");
  for (const maxWaitsPerAgent of [0, 2.5, 1001]) {
    assert.throws(
      () => createApp({ store, devMode: true, autoExpireLeases: false, maxWaitsPerAgent }),
      new RangeError(
        `maxWaitsPerAgent must be a whole number from 1 to 1000, got ${maxWaitsPerAgent}`,
      ),
    );
  }
});
