/**
 * The dashboard on a shared store (what PostgreSQL adds), in process: events of other instances
 * wake waits and cancel-waits, a resync repairs missed events, request ids go to the store, and a
 * store that goes down gives `503` with `Retry-After` and `/health` 503 until it is back.
 */
import assert from "node:assert/strict";
import { until } from "../_until.ts";
import { createApp } from "../../src/server/mod.ts";
import { resyncWaits, StoreAvailability } from "../../src/server/notify.ts";
import { InstanceLink } from "../../src/server/instance_link.ts";
import type { WaiterHub } from "../../src/server/waiters.ts";
import type { CancelWaiters } from "../../src/server/cancel_waiters.ts";
import { FakeClock } from "../../src/clock.ts";
import {
  AGENT_SCOPES,
  type CommandStore,
  openSqliteStore,
  type SharedStore,
  type StoreEventListener,
  StoreUnavailableError,
} from "../../src/store/mod.ts";
import { ADMIN_TOKEN, agentHeaders, P, T0, TOKEN } from "./_helpers.ts";
import { captureLogs } from "../agent/_helpers.ts";
import { parseServerSentEvents } from "../../src/operator/mod.ts";

/** A SQLite store dressed as a shared one: events are injected, and it can be made unreachable. */
function fakeShared(inner: CommandStore) {
  const state = {
    down: false,
    clockAheadMs: null as number | null,
    listener: undefined as StoreEventListener | undefined,
    requestIds: new Map<string, number>(),
  };
  const shared: SharedStore = {
    subscribe(listener) {
      if (state.down) return Promise.reject(new StoreUnavailableError("down"));
      state.listener = listener;
      return Promise.resolve({ close: () => Promise.resolve() });
    },
    rememberRequestId(key, now, windowMs) {
      if (state.down) return Promise.reject(new StoreUnavailableError("down"));
      const until = state.requestIds.get(key);
      if (until !== undefined && until > now) return Promise.resolve(false);
      state.requestIds.set(key, now + windowMs);
      return Promise.resolve(true);
    },
    ping() {
      return state.down
        ? Promise.reject(new StoreUnavailableError("down"))
        : Promise.resolve({ clockAheadMs: state.clockAheadMs });
    },
  };
  const store = new Proxy(inner, {
    get(target, key, receiver) {
      if (key in shared) return shared[key as keyof SharedStore];
      // A shared store is a server's, not a file another process may write (SQLite's).
      if (key === "otherCommits") return undefined;
      const value = Reflect.get(target, key, receiver);
      if (typeof value !== "function" || key === "close" || key === Symbol.asyncDispose) {
        return typeof value === "function" ? value.bind(target) : value;
      }
      return (...args: unknown[]) =>
        state.down
          ? Promise.reject(new StoreUnavailableError("database is unavailable (test)"))
          : value.apply(target, args);
    },
  }) as CommandStore & SharedStore;
  return { store, state };
}

async function setup() {
  const inner = openSqliteStore(":memory:");
  await inner.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now: Date.now() });
  const { store, state } = fakeShared(inner);
  const dashboard = createApp({
    store,
    adminToken: ADMIN_TOKEN,
    autoExpireLeases: false,
    eventKeepAliveMs: 60_000, // a stream re-reads its command on its own only this late
  });
  const agent = (path: string, body?: unknown, requestId?: string) => {
    const bodyText = body === undefined ? "" : JSON.stringify(body);
    return dashboard.app.request(path, {
      method: body === undefined ? "GET" : "POST",
      headers: agentHeaders({
        path,
        method: body === undefined ? "GET" : "POST",
        bodyText,
        now: Date.now(),
        requestId,
      }),
      body: body === undefined ? undefined : bodyText,
    });
  };
  // The subscription is made in the background at start.
  await until(() => state.listener !== undefined, "the subscription", 10_000, 1);
  return {
    inner,
    state,
    dashboard,
    agent,
    async [Symbol.asyncDispose]() {
      await dashboard.close();
      await inner.close();
    },
  };
}

const enqueueDirect = (store: CommandStore, id: string) =>
  store.enqueue({ id, agentId: "a1", name: "echo", params: {}, fingerprint: id, now: Date.now() });

Deno.test("another instance's enqueue event wakes a wait here", async () => {
  await using d = await setup();
  const waiting = d.agent(P.wait("default", 10));
  await until(() => d.dashboard.hub.size === 1, "wait open");
  await enqueueDirect(d.inner, "c1"); // as another instance would: no local notify
  d.state.listener!.event({ type: "queued", agentId: "a1" });
  const response = await waiting;
  assert.equal(response.status, 200);
  assert.equal((await response.json()).id, "c1");
});

Deno.test("a resync after missed events serves open waits and cancel-waits", async () => {
  await using d = await setup();
  await enqueueDirect(d.inner, "run");
  const delivered = await d.agent(P.wait("default", 1));
  assert.equal(delivered.status, 200);
  await delivered.body?.cancel();
  const cancelWait = d.agent("/api/v1/agent/commands/run/cancel-wait?timeout=10");
  const waiting = d.agent(P.wait("default", 10));
  await until(
    () => d.dashboard.hub.size === 1 && d.dashboard.cancelWaiters.size === 1,
    "both open",
  );
  // Changes made elsewhere whose events were lost.
  await enqueueDirect(d.inner, "c2");
  assert.equal((await d.inner.cancel("run", Date.now())).outcome, "requested");
  d.state.listener!.resync();
  assert.equal((await (await waiting).json()).id, "c2");
  const cancelled = await cancelWait;
  assert.equal(cancelled.status, 200);
  assert.deepEqual(await cancelled.json(), { cancel_requested: true });
});

Deno.test("a resync makes every event stream read its command again (a missed change)", async () => {
  await using d = await setup();
  await enqueueDirect(d.inner, "c1");
  const controller = new AbortController();
  const response = await d.dashboard.app.request("/api/v1/commands/c1/events", {
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
    signal: controller.signal,
  });
  assert.equal(response.status, 200);
  const statuses: string[] = [];
  const reading = (async () => {
    for await (const event of parseServerSentEvents(response.body!)) {
      // A final status comes as the stream's `end`.
      if (event.event === "status" || event.event === "end") {
        statuses.push(JSON.parse(event.data).status);
      }
      if (statuses.includes("cancelled")) return;
    }
  })();
  try {
    await until(() => statuses.includes("queued"), "the stream's first status");
    // Cancelled through another instance while this one's notifications were down: no event.
    await d.inner.cancel("c1", Date.now());
    d.state.listener!.resync();
    // Before, the stream said so only at its next keep-alive (a minute here; 15 s by default).
    await until(() => statuses.includes("cancelled"), "the stream says the cancel");
  } finally {
    controller.abort();
    await reading.catch(() => {});
  }
});

Deno.test("a resync ends a wait opened with a token replaced meanwhile (a missed revoked event)", async () => {
  await using d = await setup();
  const waiting = d.agent(P.wait("default", 10));
  await until(() => d.dashboard.hub.size === 1, "wait open");
  // Another instance rotated the token and enqueued; both events were lost.
  assert.equal(await d.inner.setAgentToken("a1", "rotated-elsewhere-0123456789abcdefghijkl"), true);
  await enqueueDirect(d.inner, "c3");
  d.state.listener!.resync();
  assert.equal((await waiting).status, 204, "ended with no command");
  assert.equal((await d.inner.getCommand("c3"))?.status, "queued", "the command stays queued");
  assert.equal(d.dashboard.hub.size, 0);
});

Deno.test("a cancel-wait opened with a token revoked elsewhere ends: by the event, or by a resync", async (t) => {
  for (const how of ["event", "resync"] as const) {
    await t.step(how, async () => {
      await using d = await setup();
      await enqueueDirect(d.inner, "run");
      await (await d.agent(P.wait("default", 1))).body?.cancel();
      const cancelWait = d.agent("/api/v1/agent/commands/run/cancel-wait?timeout=10");
      await until(() => d.dashboard.cancelWaiters.size === 1, "cancel-wait open");
      // Another instance rotated the token.
      assert.equal(
        await d.inner.setAgentToken("a1", "rotated-elsewhere-0123456789abcdefghijkl"),
        true,
      );
      if (how === "event") d.state.listener!.event({ type: "revoked", agentId: "a1" });
      else d.state.listener!.resync();
      await until(() => d.dashboard.cancelWaiters.size === 0, "cancel-wait ended");
      // A cancel recorded later is not passed to the old token.
      await d.inner.cancel("run", Date.now());
      d.state.listener!.event({ type: "cancel", commandId: "run" });
      const answer = await cancelWait;
      assert.equal(answer.status, 204, "ended with no cancel");
      await answer.body?.cancel();
      assert.equal(d.dashboard.cancelWaiters.size, 0);
    });
  }
});

Deno.test("another instance's cancel event wakes a cancel-wait here", async () => {
  await using d = await setup();
  await enqueueDirect(d.inner, "run");
  await (await d.agent(P.wait("default", 1))).body?.cancel();
  const cancelWait = d.agent("/api/v1/agent/commands/run/cancel-wait?timeout=10");
  await until(() => d.dashboard.cancelWaiters.size === 1, "cancel-wait open");
  await d.inner.cancel("run", Date.now());
  d.state.listener!.event({ type: "cancel", commandId: "run" });
  assert.equal((await cancelWait).status, 200);
});

Deno.test("request ids are checked by the shared store", async () => {
  await using d = await setup();
  await enqueueDirect(d.inner, "c1");
  await (await d.agent(P.wait("default", 1))).body?.cancel();
  const ack = { command_id: "c1", attempt: 1 };
  assert.equal((await d.agent(P.ack, ack, "req-1")).status, 200);
  assert.ok([...d.state.requestIds.keys()].some((k) => k.endsWith("\nreq-1")));
  // Another instance saw this id first: refused here although this instance never saw it.
  d.state.requestIds.set("a1\nreq-2", Date.now() + 60_000);
  const replay = await d.agent(P.ack, ack, "req-2");
  assert.equal(replay.status, 409);
});

Deno.test("a store that goes down: 503 with Retry-After, /health 503, then recovery", async () => {
  await using d = await setup();
  d.state.down = true;
  const enqueue = await d.dashboard.app.request("/api/v1/agent/commands/enqueue", {
    method: "POST",
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify({ id: "c1", agent_id: "a1", name: "echo hi" }),
  });
  assert.equal(enqueue.status, 503);
  assert.ok(Number(enqueue.headers.get("Retry-After")) >= 1);
  assert.match((await enqueue.json()).error, /unavailable/);
  const wait = await d.agent(P.wait("default", 1));
  assert.equal(wait.status, 503);
  assert.ok(wait.headers.get("Retry-After"));
  await wait.body?.cancel();
  // What failed is told to the admin token only (health_store_error_test.ts).
  const health = await d.dashboard.app.request("/health", {
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  assert.equal(health.status, 503);
  const body = await health.json();
  assert.equal(body.status, "unavailable");
  assert.equal(body.store.status, "down");
  assert.match(body.store.error, /unavailable/);
  assert.equal(d.dashboard.availability.down, true);

  // Back: the probe notices by itself, and a command queued meanwhile reaches an open wait.
  d.state.down = false;
  // The wait outlasts the probe's delay even on a loaded machine (a 204 would fail below).
  const waiting = d.agent(P.wait("default", 30));
  await until(() => d.dashboard.hub.size === 1, "wait open");
  await enqueueDirect(d.inner, "c2");
  await until(() => !d.dashboard.availability.down, "store up again", 30_000);
  const woken = await waiting;
  assert.equal(woken.status, 200, "the open wait is served once the store is back");
  assert.equal((await woken.json()).id, "c2");
  assert.equal((await d.dashboard.app.request("/health")).status, 200);
});

Deno.test("an instance that stops hearing the other instances says so in /health until it listens again", async () => {
  await using d = await setup();
  const health = async (token?: string) => {
    const answer = await d.dashboard.app.request("/health", {
      headers: token ? { Authorization: `Bearer ${token}` } : {},
    });
    return { status: answer.status, body: await answer.json() };
  };
  assert.equal((await health()).body.notifications, undefined, "heard: nothing said");
  // The store's listening connection is lost and cannot listen again (the store says so once).
  d.state.listener!.lost!(new Error("connection refused"));
  const down = await health(ADMIN_TOKEN);
  assert.equal(down.status, 200, "the instance still serves; its waits wake at the next poll");
  assert.equal(down.body.status, "ok");
  assert.equal(down.body.notifications.status, "down");
  assert.equal(down.body.notifications.error, "connection refused");
  assert.ok(!Number.isNaN(Date.parse(down.body.notifications.since)));
  // Without the admin token: that it is down and since when, not the error (it may name the host).
  const told = await health();
  assert.equal(told.body.notifications.status, "down");
  assert.equal(told.body.notifications.since, down.body.notifications.since);
  assert.equal("error" in told.body.notifications, false);
  // Listening again: the open waits are re-checked, and /health says nothing more.
  d.state.listener!.resync();
  assert.equal((await health()).body.notifications, undefined);
});

Deno.test("an instance whose clock the store finds off says so in /health", async () => {
  await using d = await setup();
  const health = async () => (await (await d.dashboard.app.request("/health")).json()).clock;
  assert.equal(await health(), undefined, "a clock within the store's tolerance: nothing said");
  d.state.clockAheadMs = -300_040;
  assert.deepEqual(await health(), {
    status: "off",
    ahead_secs: -300,
    error: "this instance's clock is 300 s behind the database server's: leases and queued " +
      "commands' time to live are ended by each instance's own clock; set its clock right (NTP)",
  });
  d.state.clockAheadMs = null;
  assert.equal(await health(), undefined, "set right: nothing said");
});

Deno.test("a subscription that fails other than by an outage is tried again by itself, /health saying so meanwhile", async () => {
  const clock = new FakeClock();
  const availability = new StoreAvailability({ clock, ping: () => Promise.resolve() });
  let attempts = 0;
  let closes = 0;
  const store = {
    subscribe() {
      attempts++;
      return attempts < 3
        ? Promise.reject(new Error("permission denied for the test"))
        : Promise.resolve({ close: () => Promise.resolve(void closes++) });
    },
  } as unknown as CommandStore & SharedStore;
  const link = new InstanceLink({
    store,
    hub: {} as WaiterHub,
    cancelWaiters: {} as CancelWaiters,
    resync: () => Promise.resolve(),
    availability,
    clock,
  });
  const said = () => availability.sharedHealth().notifications;
  try {
    link.connect();
    await until(() => said() !== undefined, "the failure is in /health");
    assert.equal(said()?.error, "permission denied for the test");
    assert.equal(availability.down, false, "the store itself answers");
    // Before, the link gave up for good: the instance heard no other instance until a restart.
    await clock.advanceAsync(999);
    assert.equal(attempts, 1);
    await clock.advanceAsync(1);
    await until(() => attempts === 2, "tried again after 1 s");
    await clock.advanceAsync(1999);
    assert.equal(attempts, 2);
    await clock.advanceAsync(1);
    await until(() => said() === undefined, "subscribed after 2 s more; /health says nothing more");
    assert.equal(attempts, 3);
  } finally {
    await link.close();
    availability.close();
  }
  assert.equal(closes, 1);
});

Deno.test("once a subscription that failed is made, the waits opened meanwhile are checked against the store", async () => {
  const clock = new FakeClock();
  const availability = new StoreAvailability({ clock, ping: () => Promise.resolve() });
  let attempts = 0;
  let resyncs = 0;
  let rereads = 0;
  const store = {
    subscribe() {
      attempts++;
      return attempts < 2
        ? Promise.reject(new Error("permission denied for the test"))
        : Promise.resolve({ close: () => Promise.resolve() });
    },
  } as unknown as CommandStore & SharedStore;
  const link = new InstanceLink({
    store,
    hub: {} as WaiterHub,
    cancelWaiters: {} as CancelWaiters,
    resync: () => Promise.resolve(void resyncs++),
    changedAll: () => void rereads++,
    availability,
    clock,
  });
  try {
    link.connect();
    await until(() => availability.sharedHealth().notifications !== undefined, "the failure");
    assert.equal(resyncs, 0);
    // Meanwhile a wait opened here, and another instance's enqueue for it was not heard.
    await clock.advanceAsync(1000);
    await until(() => availability.sharedHealth().notifications === undefined, "listening");
    await until(() => resyncs === 1, "the open waits are checked once it listens");
    assert.equal(rereads, 1, "and every event stream reads its command again");
  } finally {
    await link.close();
    availability.close();
  }
});

Deno.test("a resync looks up the commands of many cancel-waits several at a time", async () => {
  const ids = Array.from({ length: 100 }, (_, i) => `c${i}`);
  let inFlight = 0;
  let most = 0;
  const store = {
    async getCommand(id: string) {
      inFlight++;
      most = Math.max(most, inFlight);
      await new Promise((resolve) => setTimeout(resolve, 0));
      inFlight--;
      return { id, cancelRequested: Number(id.slice(1)) % 2 === 0, status: "running" };
    },
  } as unknown as CommandStore;
  const notified: string[] = [];
  const hub = { waitingAgents: () => [], notifyAll() {} } as unknown as WaiterHub;
  const cancelWaiters = {
    waitingAgents: () => [],
    commandIds: () => ids,
    notify: (id: string) => void notified.push(id),
  } as unknown as CancelWaiters;
  await resyncWaits(store, hub, cancelWaiters, (command) => command.cancelRequested);
  assert.deepEqual(notified, ids.filter((_, i) => i % 2 === 0), "each cancel asked is answered");
  // One at a time, the last of thousands of cancel-waits waited for thousands of round trips.
  assert.equal(most, 32);
});

Deno.test("a store down for minutes: its outage is said once, not again at each sweep of the runs", async () => {
  const inner = openSqliteStore(":memory:");
  const { store, state } = fakeShared(inner);
  const clock = new FakeClock();
  using logs = captureLogs();
  const dashboard = createApp({
    store,
    clock,
    adminToken: ADMIN_TOKEN,
    autoExpireLeases: false,
    runSweepMs: 5000,
  });
  try {
    await until(() => state.listener !== undefined, "the subscription", 10_000, 1);
    state.down = true;
    assert.equal((await dashboard.app.request("/health")).status, 503);
    await clock.advanceAsync(10 * 60_000);
    const said = logs.records.filter((r) => r.level === "warning" || r.level === "error")
      .map((r) => String(r.message));
    assert.equal(said.filter((m) => m.startsWith("store unavailable: ")).length, 1);
    // Each sweep (every 5 s) said it again, 120 lines in these ten minutes.
    assert.deepEqual(said.filter((m) => m.startsWith("could not step the open runs")), []);
    assert.ok(
      logs.messages().some((m) => m.startsWith("could not step the open runs")),
      "still there at debug level",
    );
  } finally {
    await dashboard.close();
    await inner.close();
  }
});

Deno.test("a store down again right after each recovery is probed with growing delays", async () => {
  // The probe answers, but what the instance needs at once fails again (as when the server has a
  // connection for the pool but none to listen on): each recovery is followed by a relapse.
  const clock = new FakeClock();
  const probes: number[] = [];
  const availability = new StoreAvailability({
    clock,
    ping: () => {
      probes.push(clock.now());
      return Promise.resolve();
    },
    onRecovered: () => availability.observe(new StoreUnavailableError("no connection to listen")),
  });
  try {
    const start = clock.now();
    availability.observe(new StoreUnavailableError("no connection to listen"));
    await clock.advanceAsync(60_000);
    const gaps = probes.map((at, i) => at - (i === 0 ? start : probes[i - 1]));
    assert.deepEqual(gaps.slice(0, 7), [250, 500, 1000, 2000, 4000, 5000, 5000]);
    assert.ok(probes.length <= 20, `${probes.length} probes in a minute`);
  } finally {
    availability.close();
  }
});

Deno.test("a store that stayed up a while starts probing at the first delay again", async () => {
  const clock = new FakeClock();
  const probes: number[] = [];
  const availability = new StoreAvailability({
    clock,
    ping: () => {
      probes.push(clock.now());
      return Promise.resolve();
    },
  });
  try {
    for (let outage = 0; outage < 3; outage++) {
      const start = clock.now();
      availability.observe(new StoreUnavailableError("restarting"));
      await clock.advanceAsync(250);
      assert.equal(availability.down, false);
      assert.equal(probes.at(-1)! - start, 250);
      await clock.advanceAsync(5000);
    }
  } finally {
    availability.close();
  }
});

Deno.test("a store down a while after its recovery is probed at the first delay, whatever the wall clock did", async () => {
  // A relapse was "now minus the recovery is under the longest delay" on the wall clock: one set
  // back an hour (NTP, a resumed VM) made every outage in that hour a relapse, probed ever slower.
  class SteppedClock extends FakeClock {
    offsetMs = 0;
    override now(): number {
      return super.now() + this.offsetMs;
    }
  }
  const clock = new SteppedClock();
  const probes: number[] = [];
  const availability = new StoreAvailability({
    clock,
    ping: () => {
      probes.push(clock.monotonic());
      return Promise.resolve();
    },
  });
  try {
    availability.observe(new StoreUnavailableError("restarting"));
    await clock.advanceAsync(250);
    assert.equal(availability.down, false);
    clock.offsetMs -= 3_600_000;
    await clock.advanceAsync(5000);
    const start = clock.monotonic();
    availability.observe(new StoreUnavailableError("restarting"));
    await clock.advanceAsync(250);
    assert.equal(availability.down, false);
    assert.equal(probes.at(-1)! - start, 250);
  } finally {
    availability.close();
  }
});

Deno.test("an agent waiting on another instance shows as online here, from its first wait on", async () => {
  const inner = openSqliteStore(":memory:");
  await inner.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now: T0 });
  const clock = new FakeClock(T0);
  const shared = [fakeShared(inner), fakeShared(inner)];
  const [a, b] = shared.map(({ store }) =>
    createApp({ store, clock, adminToken: ADMIN_TOKEN, autoExpireLeases: false })
  );
  // Once A listens and has re-checked its waits: a wait whose steps span that resync is answered
  // 204 (a revoked event may have been missed before A listened).
  await until(() => shared[0].state.listener !== undefined && a.hub.mark > 0, "A listens");
  const state = async () => {
    const response = await b.app.request("/api/v1/agents", {
      headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    const body = await response.json();
    return body.agents.find((agent: { id: string }) => agent.id === "a1").state;
  };
  try {
    const path = P.wait("default", 120);
    const waiting = a.app.request(path, {
      headers: agentHeaders({ path, method: "GET", bodyText: "", now: clock.now() }),
    });
    await until(() => a.hub.isWaiting("a1"), "the wait is open on A");
    await clock.advanceAsync(1000);
    assert.equal(await state(), "online", "a second after its first wait");
    await clock.advanceAsync(100_000);
    assert.equal(await state(), "online", "still waiting on A, 101 s after it was opened");
    await a.close(); // its waits end
    assert.equal((await waiting).status, 204);
    await clock.advanceAsync(91_000);
    assert.equal(await state(), "offline", "it stopped polling");
  } finally {
    await a.close();
    await b.close();
    await inner.close();
  }
});

Deno.test("a token rotated by another instance while this one did not hear it refuses a request whose body arrived after", async (t) => {
  /** An enqueue of a1's whose body arrives once `meanwhile` has run (its head is checked then). */
  const heldBack = async (
    d: Awaited<ReturnType<typeof setup>>,
    id: string,
    meanwhile: () => Promise<void>,
  ) => {
    const bodyText = JSON.stringify({ id, name: "echo" });
    const headers = agentHeaders({ path: P.enqueue, method: "POST", bodyText, now: Date.now() });
    const reading = Promise.withResolvers<void>();
    const sent = Promise.withResolvers<void>();
    let done = false;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (done) return controller.close();
        reading.resolve();
        await sent.promise;
        controller.enqueue(new TextEncoder().encode(bodyText));
        done = true;
      },
    });
    const answer = d.dashboard.app.request(P.enqueue, {
      method: "POST",
      headers,
      body,
      duplex: "half",
    } as RequestInit);
    await reading.promise;
    await meanwhile();
    sent.resolve();
    return await answer;
  };
  const rotateElsewhere = async (d: Awaited<ReturnType<typeof setup>>) => {
    assert.equal(
      await d.inner.setAgentToken("a1", "rotated-elsewhere-0123456789abcdefghijkl"),
      true,
    );
  };

  await t.step("its notifications lost: the revoked event never comes", async () => {
    await using d = await setup();
    d.state.listener!.lost!(new Error("connection refused"));
    const answer = await heldBack(d, "slow-deaf", () => rotateElsewhere(d));
    assert.equal(answer.status, 401);
    assert.match((await answer.json()).error, /^agent id or bearer token is wrong/);
    assert.equal(await d.inner.getCommand("slow-deaf"), null, "nothing queued with the old token");
  });

  await t.step("heard again (a resync) while the body arrived: the event was missed", async () => {
    await using d = await setup();
    const answer = await heldBack(d, "slow-resync", async () => {
      await rotateElsewhere(d);
      d.state.listener!.resync();
    });
    assert.equal(answer.status, 401);
    await answer.body?.cancel();
    assert.equal(
      await d.inner.getCommand("slow-resync"),
      null,
      "nothing queued with the old token",
    );
  });

  await t.step("heard all along, nothing rotated: taken", async () => {
    await using d = await setup();
    const answer = await heldBack(d, "slow-ok", () => Promise.resolve());
    assert.equal(answer.status, 202);
    await answer.body?.cancel();
  });
});
