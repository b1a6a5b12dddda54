import assert from "node:assert/strict";
import { until } from "../_until.ts";
import { Deadlines, LeaseTimer, WaiterHub } from "../../src/server/mod.ts";
import type { CommandRecord } from "../../src/store/mod.ts";
import { FakeClock, json, makeDashboard, P } from "./_helpers.ts";
import { closeLogging, setupLogging } from "../../src/log/mod.ts";

function command(id: string, deploymentHash: string | null = null): CommandRecord {
  return { id, deploymentHash, attempt: 1 } as CommandRecord;
}

/** A queue whose claims take a random few milliseconds, like a networked store. */
class SlowQueue {
  readonly items: CommandRecord[] = [];
  readonly released: string[] = [];
  claims = 0;
  inFlight = 0;
  constructor(readonly maxDelayMs = 3) {}
  async claim(_agentId: string, hash: string): Promise<CommandRecord | null> {
    this.claims++;
    this.inFlight++;
    // Read at a random point of the delay, then take atomically (like a transaction).
    await new Promise((resolve) => setTimeout(resolve, Math.random() * this.maxDelayMs));
    this.inFlight--;
    const index = this.items.findIndex((c) =>
      c.deploymentHash === null || c.deploymentHash === hash
    );
    if (index < 0) return null;
    return this.items.splice(index, 1)[0];
  }
  release(item: CommandRecord): Promise<void> {
    this.released.push(item.id);
    this.items.unshift(item);
    return Promise.resolve();
  }
}

function hubOf(queue: SlowQueue): WaiterHub {
  return new WaiterHub({
    claim: (agentId, hash) => queue.claim(agentId, hash),
    release: (item) => queue.release(item),
  });
}

Deno.test("waiter hub loses no wake-up even when claims are slow", async () => {
  const queue = new SlowQueue();
  const hub = hubOf(queue);
  try {
    for (let i = 0; i < 100; i++) {
      const waiting = hub.wait({ agentId: "a", deploymentHash: "d", timeoutMs: 2000 });
      // Enqueue at a random moment while the wait's first claim may be in flight.
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 4));
      queue.items.push(command(`c${i}`));
      hub.notify("a");
      assert.equal((await waiting)?.id, `c${i}`, `iteration ${i}`);
    }
    assert.equal(hub.size, 0);
  } finally {
    hub.close();
  }
});

Deno.test("waiter hub serves waits oldest first and never gives one command twice", async () => {
  const queue = new SlowQueue();
  const hub = hubOf(queue);
  try {
    const waits = Array.from(
      { length: 10 },
      () => hub.wait({ agentId: "a", deploymentHash: "d", timeoutMs: 2000 }),
    );
    for (let i = 0; i < 10; i++) {
      queue.items.push(command(`c${i}`));
      hub.notify("a");
    }
    const ids = (await Promise.all(waits)).map((c) => c?.id);
    assert.deepEqual(ids, Array.from({ length: 10 }, (_, i) => `c${i}`));
  } finally {
    hub.close();
  }
});

Deno.test("waiter hub matches deployment hashes per waiter", async () => {
  const queue = new SlowQueue(0);
  const hub = hubOf(queue);
  try {
    const one = hub.wait({ agentId: "a", deploymentHash: "one", timeoutMs: 2000 });
    const two = hub.wait({ agentId: "a", deploymentHash: "two", timeoutMs: 2000 });
    queue.items.push(command("for-two", "two"));
    hub.notify("a");
    assert.equal((await two)?.id, "for-two");
    assert.equal(hub.size, 1);
    queue.items.push(command("for-one", "one"));
    hub.notify("a");
    assert.equal((await one)?.id, "for-one");
  } finally {
    hub.close();
  }
});

Deno.test("waiter hub gives a claim whose wait went away to another wait, or back", async (t) => {
  await t.step("to another open wait of the agent", async () => {
    const queue = new SlowQueue(5);
    const hub = hubOf(queue);
    try {
      const gone = new AbortController();
      const first = hub.wait({
        agentId: "a",
        deploymentHash: "d",
        timeoutMs: 2000,
        signal: gone.signal,
      });
      const second = hub.wait({ agentId: "a", deploymentHash: "d", timeoutMs: 2000 });
      queue.items.push(command("c1"));
      hub.notify("a");
      gone.abort(); // while the claim for the first wait is in flight
      assert.equal(await first, null);
      assert.equal((await second)?.id, "c1");
      assert.deepEqual(queue.released, []);
    } finally {
      hub.close();
    }
  });
  await t.step("back to the queue when no wait is left", async () => {
    const queue = new SlowQueue(5);
    const hub = hubOf(queue);
    try {
      const gone = new AbortController();
      const only = hub.wait({
        agentId: "a",
        deploymentHash: "d",
        timeoutMs: 2000,
        signal: gone.signal,
      });
      queue.items.push(command("c1"));
      hub.notify("a");
      gone.abort();
      assert.equal(await only, null);
      await until(() => queue.released.length > 0, "the claim is released");
      assert.deepEqual(queue.released, ["c1"]);
      assert.deepEqual(queue.items.map((c) => c.id), ["c1"]);
    } finally {
      hub.close();
    }
  });
});

Deno.test("waiter hub ends waits at their timeout, on abort and on close, leaving no timer", async (t) => {
  const queue = new SlowQueue(0);
  const hub = hubOf(queue);
  await t.step("timeout", async () => {
    const started = performance.now();
    assert.equal(await hub.wait({ agentId: "a", deploymentHash: "d", timeoutMs: 30 }), null);
    assert.ok(performance.now() - started >= 25);
    assert.equal(hub.size, 0);
    assert.equal(hub.isWaiting("a"), false);
  });
  await t.step("abort, also before the wait starts", async () => {
    const controller = new AbortController();
    const waiting = hub.wait({
      agentId: "a",
      deploymentHash: "d",
      timeoutMs: 60_000,
      signal: controller.signal,
    });
    assert.equal(hub.isWaiting("a"), true);
    controller.abort();
    assert.equal(await waiting, null);
    assert.equal(
      await hub.wait({
        agentId: "a",
        deploymentHash: "d",
        timeoutMs: 60_000,
        signal: controller.signal,
      }),
      null,
    );
  });
  await t.step("close answers every wait, and later ones at once", async () => {
    const waits = [
      hub.wait({ agentId: "a", deploymentHash: "d", timeoutMs: 60_000 }),
      hub.wait({ agentId: "b", deploymentHash: "d", timeoutMs: 60_000 }),
    ];
    hub.close();
    assert.deepEqual(await Promise.all(waits), [null, null]);
    assert.equal(await hub.wait({ agentId: "a", deploymentHash: "d", timeoutMs: 60_000 }), null);
    assert.equal(hub.size, 0);
  });
});

Deno.test("waiter hub rejects a wait whose claim fails", async () => {
  const hub = new WaiterHub({
    claim: () => Promise.reject(new Error("disk on fire")),
    release: () => Promise.resolve(),
  });
  try {
    await assert.rejects(
      () => hub.wait({ agentId: "a", deploymentHash: "d", timeoutMs: 1000 }),
      /disk on fire/,
    );
    assert.equal(hub.size, 0);
  } finally {
    hub.close();
  }
});

Deno.test("lease timer keeps one timer armed at the earliest lease end", async () => {
  const clock = new FakeClock(1_000_000);
  const now = () => clock.now();
  const leases: number[] = [];
  let runs = 0;
  const timer = new LeaseTimer({
    clock,
    nextExpiry: () => Promise.resolve(leases.length ? Math.min(...leases) : null),
    expire: () => {
      runs++;
      for (let i = leases.length - 1; i >= 0; i--) if (leases[i] <= now()) leases.splice(i, 1);
      return Promise.resolve();
    },
  });
  try {
    await timer.start();
    assert.equal(timer.armedAt, null, "nothing to wait for");
    leases.push(now() + 60_000);
    timer.schedule(now() + 60_000);
    assert.equal(timer.armedAt, now() + 60_000);
    leases.push(now() + 20);
    timer.schedule(now() + 20);
    assert.equal(timer.armedAt, now() + 20, "an earlier lease re-arms");
    timer.schedule(now() + 30_000);
    assert.equal(timer.armedAt, now() + 20, "a later one does not");
    await clock.advanceAsync(20);
    assert.equal(runs, 1);
    assert.equal(timer.armedAt, now() + 59_980, "re-armed at the next lease end");
  } finally {
    timer.close();
  }
  assert.equal(timer.armedAt, null);
});

Deno.test("in production an expired delivery lease requeues and wakes the agent without polling", async () => {
  await using d = await makeDashboard({
    ackTimeoutSecs: 1,
    autoExpireLeases: true,
    realClock: true,
  });
  const enqueued = await d.agent({ path: P.enqueue, body: { id: "c1", name: "echo" } });
  assert.equal(enqueued.status, 202);
  await enqueued.body?.cancel();
  const first = await d.agent({ path: P.wait("default", 5) });
  assert.equal((await json(first)).attempt, 1);
  const started = performance.now();
  const second = await d.agent({ path: P.wait("default", 5) });
  const elapsed = performance.now() - started;
  assert.equal(second.status, 200);
  assert.equal((await json(second)).attempt, 2, "redelivered after the 1 s delivery lease");
  assert.ok(elapsed > 700 && elapsed < 3000, `after ${elapsed.toFixed(0)} ms`);
});

Deno.test("thousands of open waits are held without polling, and an enqueue wakes only its agent", async () => {
  await using d = await makeDashboard({ devMode: true, rateLimitPerMinute: 1_000_000 });
  const count = 2000;
  const waits = Array.from(
    { length: count },
    (_, i) =>
      d.dashboard.app.request(P.wait("default", 60), { headers: { "X-Agent-Id": `agent-${i}` } }),
  );
  const deadline = Date.now() + 20_000;
  while (d.dashboard.hub.size < count) {
    assert.ok(Date.now() < deadline, `only ${d.dashboard.hub.size} waits open`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  // Claims on their own, and claims made in the enqueue's transaction for a waiting agent.
  let claims = 0;
  const claimNext = d.store.claimNext.bind(d.store);
  d.store.claimNext = (request) => {
    claims++;
    return claimNext(request);
  };
  const enqueue = d.store.enqueue.bind(d.store);
  d.store.enqueue = (command, claim) => {
    if (claim) claims++;
    return enqueue(command, claim);
  };
  await d.clock.advanceAsync(30_000);
  assert.equal(claims, 0, "nothing asks the store while nothing changes");
  const enqueued = await d.dashboard.app.request(P.enqueue, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Agent-Id": "agent-1234" },
    body: JSON.stringify({ id: "only-1234", name: "echo" }),
  });
  assert.equal(enqueued.status, 202);
  await enqueued.body?.cancel();
  const woken = await waits[1234];
  assert.equal((await json(woken)).id, "only-1234");
  assert.equal(d.dashboard.hub.size, count - 1, "every other agent still waits");
  assert.equal(claims, 1, "one claim, for the woken agent");
  await d.dashboard.close();
  const rest = await Promise.all(waits.filter((_, i) => i !== 1234));
  assert.ok(rest.every((response) => response.status === 204));
});

Deno.test("deadlines are coalesced per second under one timer, stopped when none is left", async (t) => {
  const clock = new FakeClock(100_250);
  const ended: string[] = [];
  const deadlines = new Deadlines<string>({
    clock,
    onExpire: (item) => ended.push(item),
  });
  try {
    await t.step("deadlines of one second share a bucket; the timer is at the earliest", () => {
      const a = deadlines.add("a", 1_000); // 101.25 s → second 102
      deadlines.add("b", 1_700); // 101.95 s → second 102
      deadlines.add("c", 5_000); // 105.25 s → second 106
      assert.equal(deadlines.buckets, 2);
      assert.equal(deadlines.armedAt, 102_000);
      deadlines.add("d", 100); // 100.35 s → second 101: earlier, re-armed
      assert.equal(deadlines.armedAt, 101_000);
      deadlines.delete("a", a);
      assert.equal(deadlines.buckets, 3);
    });
    await t.step("an expiry ends every due bucket at once and re-arms for the next", () => {
      clock.advance(101_999 - clock.now()); // the timer fires at 101 s
      assert.deepEqual(ended, ["d"], "a wait of 100 ms ended within the next whole second");
      assert.equal(deadlines.armedAt, 102_000);
      clock.advance(103_000 - clock.now()); // the timer fires at 102 s
      deadlines.add("e", 0); // due now → second 103
      deadlines.expireDue(); // an expiry called by hand ends what is due at once
      assert.deepEqual(ended, ["d", "b", "e"]);
      assert.equal(deadlines.armedAt, 106_000);
    });
    await t.step("removing the last item stops the timer", () => {
      const key = 106;
      deadlines.delete("c", key);
      assert.equal(deadlines.buckets, 0);
      assert.equal(deadlines.armedAt, null);
    });
  } finally {
    deadlines.clear();
  }
});

Deno.test("waiter hub ends waits of N s between N and N + 1 s by its clock, with one timer", async () => {
  const clock = new FakeClock(7_400);
  const hub = new WaiterHub({
    claim: () => Promise.resolve(null),
    release: () => Promise.resolve(),
    clock,
  });
  try {
    const results: (string | null)[] = [];
    const track = (name: string, timeoutMs: number) =>
      hub.wait({ agentId: name, deploymentHash: "d", timeoutMs }).then((c) => {
        results.push(c === null ? name : "delivered");
      });
    const waits = [track("one", 1_000), track("one-too", 1_500), track("two", 2_000)];
    assert.equal(hub.timeoutArmedAt, 9_000, "8.4 s and 8.9 s both end at 9 s");
    clock.advance(8_999 - clock.now());
    await Promise.resolve();
    assert.deepEqual(results, []);
    clock.advance(1); // 9 s: the one timer fires
    await Promise.all(waits.slice(0, 2));
    assert.deepEqual(results, ["one", "one-too"]);
    assert.equal(hub.size, 1);
    assert.equal(hub.timeoutArmedAt, 10_000);
    clock.advance(1_000);
    await waits[2];
    assert.equal(hub.size, 0);
    assert.equal(hub.timeoutArmedAt, null, "no timer while no wait is open");
  } finally {
    hub.close();
  }
});

Deno.test("waiter hub enqueue claims for a waiter in one step, losing and doubling nothing", async () => {
  for (let i = 0; i < 100; i++) {
    const queue = new SlowQueue(3);
    const hub = hubOf(queue);
    try {
      const gone = new AbortController();
      // Two waits of one agent; the older may go away while the enqueue's store step runs.
      const waits = [
        hub.wait({ agentId: "a", deploymentHash: "d", timeoutMs: 2000, signal: gone.signal }),
        hub.wait({ agentId: "a", deploymentHash: "d", timeoutMs: 2000 }),
      ];
      // Let the waits' own first claims (empty queue) finish: the agent's pump is idle. A pump
      // continues with its next claim in the same turn, so no claim in flight at a timer turn
      // means it is done (a fixed sleep was too short on a loaded machine).
      do {
        await new Promise((resolve) => setTimeout(resolve, 5));
      } while (queue.inFlight > 0);
      const abortAt = Math.random() < 0.5 ? Math.random() * 3 : null;
      if (abortAt !== null) setTimeout(() => gone.abort(), abortAt);
      let named: string | null = "(not called)";
      const result = await hub.enqueue("a", null, async (claimFor) => {
        named = claimFor;
        queue.items.push(command(`c${i}`));
        // One transaction: insert, then take for the named wait.
        return {
          result: `c${i}`,
          claimed: claimFor === null ? null : await queue.claim("a", claimFor),
        };
      });
      assert.equal(result, `c${i}`);
      assert.equal(named, "d", "an open wait was there to claim for");
      queue.items.push(command(`x${i}`));
      hub.notify("a");
      await new Promise((resolve) => setTimeout(resolve, 10));
      const delivered = (await Promise.race([
        Promise.all(waits),
        new Promise<null[]>((resolve) => setTimeout(() => resolve([]), 50)),
      ])).filter((c) => c !== null).map((c) => c!.id);
      hub.close();
      await Promise.all(waits);
      const everywhere = [...delivered, ...queue.items.map((c) => c.id)].sort();
      assert.deepEqual(everywhere, [`c${i}`, `x${i}`], `round ${i}: each once, none lost`);
      if (abortAt === null) assert.deepEqual(delivered, [`c${i}`, `x${i}`], "oldest first");
    } finally {
      hub.close();
    }
  }
});

Deno.test("lease timer with maxIdleMs looks again for leases taken elsewhere", async () => {
  const clock = new FakeClock(1_000_000);
  const now = clock.now();
  let lease: number | null = null;
  const timer = new LeaseTimer({
    clock,
    nextExpiry: () => Promise.resolve(lease),
    expire: () => Promise.resolve(),
    maxIdleMs: 5000,
  });
  try {
    await timer.start();
    assert.equal(timer.armedAt, now + 5000, "armed for a look-up although no lease is known");
    lease = now + 60_000; // another instance took a lease
    await timer.start();
    assert.equal(timer.armedAt, now + 5000, "the look-up comes before a later lease");
    lease = now + 1000;
    await timer.start();
    assert.equal(timer.armedAt, now + 1000, "an earlier lease first");
  } finally {
    timer.close();
  }
});

Deno.test("waiter hub holds a wait with a callback: command, drop, close, a failing claim", async (t) => {
  const queue = new SlowQueue(0);
  const errors: unknown[] = [];
  const hub = new WaiterHub({
    claim: (agentId, hash) =>
      agentId === "broken" ? Promise.reject(new Error("disk on fire")) : queue.claim(agentId, hash),
    release: (item) => queue.release(item),
    onError: (error) => errors.push(error),
  });
  const ended: Array<[string, string | null, unknown]> = [];
  const done = (context: { name: string }, command: CommandRecord | null, error?: unknown) => {
    ended.push([context.name, command?.id ?? null, error]);
  };
  try {
    await t.step("a command goes to the callback with its context", async () => {
      const held = hub.hold({ agentId: "a", deploymentHash: "d", timeoutMs: 60_000 }, done, {
        name: "first",
      });
      assert.equal(held.open, true);
      assert.equal(hub.size, 1);
      queue.items.push(command("c1"));
      hub.notify("a");
      await until(() => ended.length === 1, "the wait ended");
      assert.deepEqual(ended.shift(), ["first", "c1", undefined]);
      assert.equal(held.open, false);
      assert.equal(hub.size, 0);
    });
    await t.step("drop ends it with null, once", async () => {
      const held = hub.hold({ agentId: "a", deploymentHash: "d", timeoutMs: 60_000 }, done, {
        name: "dropped",
      });
      await until(() => queue.inFlight === 0, "the first claim ran");
      hub.drop(held);
      hub.drop(held);
      assert.deepEqual(ended.splice(0), [["dropped", null, undefined]]);
      assert.equal(hub.isWaiting("a"), false);
      queue.items.push(command("c2"));
      hub.notify("a");
      assert.equal(queue.items.length, 1, "a dropped wait claims nothing");
      queue.items.length = 0;
    });
    await t.step("a failing claim gives its error to the callback", async () => {
      hub.hold({ agentId: "broken", deploymentHash: "d", timeoutMs: 60_000 }, done, {
        name: "broken",
      });
      await until(() => ended.length === 1, "the wait ended");
      const [name, id, error] = ended.shift()!;
      assert.deepEqual([name, id], ["broken", null]);
      assert.match(String(error), /disk on fire/);
    });
    await t.step("a callback that throws is reported; the hub goes on", async () => {
      const throwing = () => {
        throw new Error("callback broke");
      };
      hub.hold({ agentId: "a", deploymentHash: "d", timeoutMs: 60_000 }, throwing, {});
      hub.hold({ agentId: "a", deploymentHash: "d", timeoutMs: 60_000 }, done, { name: "next" });
      queue.items.push(command("c3"), command("c4"));
      hub.notify("a");
      await until(() => ended.length === 1, "the second wait got its command");
      assert.deepEqual(ended.shift(), ["next", "c4", undefined]);
      assert.match(String(errors[0]), /callback broke/);
    });
    await t.step("close ends open waits, and later ones before hold returns", () => {
      hub.hold({ agentId: "a", deploymentHash: "d", timeoutMs: 60_000 }, done, { name: "open" });
      hub.close();
      assert.deepEqual(ended.splice(0), [["open", null, undefined]]);
      const late = hub.hold({ agentId: "a", deploymentHash: "d", timeoutMs: 60_000 }, done, {
        name: "late",
      });
      assert.deepEqual(ended.splice(0), [["late", null, undefined]]);
      assert.equal(late.open, false);
      assert.equal(hub.size, 0);
    });
  } finally {
    hub.close();
  }
});

Deno.test("a wake-up logs the enqueue, then the delivery, each once", async () => {
  const lines: string[] = [];
  setupLogging({ format: "json", level: "info", write: (line) => lines.push(line) });
  try {
    await using d = await makeDashboard();
    for (const id of ["c1", "c2"]) {
      const waiting = d.agent({ path: P.wait("default", 30) });
      await until(() => d.dashboard.hub.size === 1, "the wait is open");
      const enqueued = await d.admin("POST", P.enqueue, { id, agent_id: "a1", name: "true" });
      assert.equal(enqueued.status, 202);
      await enqueued.body?.cancel();
      assert.equal((await json(await waiting)).id, id);
      // Both lines are written a turn after the answers.
      await until(() => lines.some((line) => line.includes(`command delivered ${id}`)), "logged");
    }
    // Queued with nobody waiting: logged at once, as before.
    const queued = await d.admin("POST", P.enqueue, { id: "c3", agent_id: "a1", name: "true" });
    await queued.body?.cancel();
  } finally {
    closeLogging();
  }
  const messages = lines.map((line) => JSON.parse(line).message as string)
    .filter((message) => /^command (enqueued|delivered)/.test(message));
  assert.deepEqual(messages, [
    "command enqueued c1 for a1",
    "command delivered c1 to a1",
    "command enqueued c2 for a1",
    "command delivered c2 to a1",
    "command enqueued c3 for a1",
  ]);
});

Deno.test("dismissStale ends the waits opened with another token, and all when none may stay", async () => {
  const hub = new WaiterHub({
    claim: () => Promise.resolve(null),
    release: () => Promise.resolve(),
  });
  try {
    const old = hub.wait({
      agentId: "a1",
      deploymentHash: "default",
      timeoutMs: 60_000,
      token: "t1",
    });
    const fresh = hub.wait({
      agentId: "a1",
      deploymentHash: "default",
      timeoutMs: 60_000,
      token: "t2",
    });
    const devMode = hub.wait({ agentId: "a2", deploymentHash: "default", timeoutMs: 60_000 });
    assert.deepEqual(hub.waitingAgents().sort(), ["a1", "a2"]);

    assert.equal(hub.dismissStale("a1", "t2"), 1, "only the wait with the old token");
    assert.equal(await old, null);
    assert.equal(hub.dismissStale("a2", null), 0, "a token-less wait stays while none is set");
    assert.equal(hub.dismissStale("nobody", undefined), 0);
    assert.equal(hub.size, 2);

    assert.equal(hub.dismissStale("a2", "now-set"), 1, "a token given since ends token-less waits");
    assert.equal(await devMode, null);
    assert.equal(hub.dismissStale("a1", undefined), 1, "a removed agent keeps none");
    assert.equal(await fresh, null);
    assert.equal(hub.size, 0);
    assert.deepEqual(hub.waitingAgents(), []);
  } finally {
    hub.close();
  }
});
