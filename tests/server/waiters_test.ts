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

function hubOf(queue: SlowQueue, maxWaitsPerAgent?: number): WaiterHub {
  return new WaiterHub({
    claim: (agentId, hash) => queue.claim(agentId, hash),
    release: (item) => queue.release(item),
    maxWaitsPerAgent,
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
  // Ten waits of one agent: more than the default cap of 8 per agent.
  const hub = hubOf(queue, 10);
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

Deno.test("deadlines follow the monotonic clock when the wall clock steps", async (t) => {
  // They were measured on the wall clock: one set back an hour (NTP, a resumed VM) held every
  // open wait an hour past its timeout (agents gave up on them as unanswered), and one set
  // forward ended every wait at the next second.
  class SteppedClock extends FakeClock {
    offsetMs = 0;
    override now(): number {
      return super.now() + this.offsetMs;
    }
  }
  for (const stepMs of [-3_600_000, 3_600_000]) {
    await t.step(`a wall clock stepped by ${stepMs / 1000} s`, () => {
      const clock = new SteppedClock(100_000);
      const ended: string[] = [];
      const deadlines = new Deadlines<string>({ clock, onExpire: (item) => ended.push(item) });
      try {
        deadlines.add("a", 1_000);
        deadlines.add("b", 30_000);
        clock.offsetMs += stepMs;
        clock.advance(1_000);
        assert.deepEqual(ended, ["a"]);
        clock.advance(28_999);
        assert.deepEqual(ended, ["a"]);
        clock.advance(1);
        assert.deepEqual(ended, ["a", "b"]);
        assert.equal(deadlines.armedAt, null);
      } finally {
        deadlines.clear();
      }
    });
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

Deno.test("dismissedSince tells a wait begun before its agent's dismissal, within a bound", () => {
  const hub = new WaiterHub({
    claim: () => Promise.resolve(null),
    release: () => Promise.resolve(),
  });
  try {
    const before = hub.mark;
    hub.dismiss("a1");
    assert.equal(hub.dismissedSince("a1", before), true, "begun before a1's dismissal");
    assert.equal(hub.dismissedSince("a2", before), false, "another agent's is not");
    const after = hub.mark;
    assert.equal(hub.dismissedSince("a1", after), false, "begun after it");
    for (let i = 0; i < 10_000; i++) hub.dismiss(`agent-${i}`);
    assert.equal(hub.dismissedSince("a2", after), true, "forgotten at the bound: every one is");
    const now = hub.mark;
    assert.equal(hub.dismissedSince("a2", now), false);
    assert.equal(hub.dismissedSince("agent-9999", now), false);
    hub.forgetDismissals();
    assert.equal(hub.dismissedSince("a2", now), true, "forgotten: every earlier mark is dismissed");
    assert.equal(hub.dismissedSince("a2", hub.mark), false);
  } finally {
    hub.close();
  }
});

/** A hub whose claims take from `items` at once, and whose releases put back. */
function instantHub(options: { clock?: FakeClock; maxWaitsPerAgent?: number } = {}) {
  const items: CommandRecord[] = [];
  const released: string[] = [];
  const ended: Array<[string, string | null, unknown]> = [];
  const hub = new WaiterHub({
    claim: (_agentId, hash) => {
      const index = items.findIndex((c) => c.deploymentHash === null || c.deploymentHash === hash);
      return Promise.resolve(index < 0 ? null : items.splice(index, 1)[0]);
    },
    release: (item) => {
      released.push(item.id);
      items.unshift(item);
      return Promise.resolve();
    },
    clock: options.clock ?? new FakeClock(),
    maxWaitsPerAgent: options.maxWaitsPerAgent,
  });
  const done = (name: string, command: CommandRecord | null, error?: unknown) => {
    ended.push([name, command?.id ?? null, error]);
  };
  const hold = (name: string, agentId = "a", deploymentHash = "d", timeoutMs = 120_000) =>
    hub.hold({ agentId, deploymentHash, timeoutMs }, done, name);
  return { hub, items, released, ended, hold };
}

/** Lets the pumps' claims on an empty queue run out (each is a resolved promise). */
async function settled(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

Deno.test("waiter hub holds 8 waits per agent: the 9th ends the 1st as its timeout would", async () => {
  const clock = new FakeClock();
  const { hub, items, released, ended, hold } = instantHub({ clock });
  try {
    // What a timeout answers: the wait ends with no command and no error.
    hold("timed-out", "t", "d", 1_000);
    await settled();
    clock.advance(2_000);
    assert.deepEqual(ended.splice(0), [["timed-out", null, undefined]]);

    const held = Array.from({ length: 8 }, (_, i) => hold(`w${i + 1}`));
    hold("other-agent", "b");
    await settled();
    assert.equal(hub.size, 9);
    assert.deepEqual(ended, [], "eight waits of one agent are within the cap");

    const ninth = hold("w9");
    assert.deepEqual(ended.splice(0), [["w1", null, undefined]], "answered as at its timeout");
    assert.equal(held[0].open, false);
    assert.ok(held.slice(1).every((w) => w.open) && ninth.open, "the new wait is kept");
    assert.equal(hub.size, 9, "eight of a, one of b");

    // A command enqueued after the eviction goes to the oldest wait still open, once.
    await settled();
    items.push(command("c1"));
    hub.notify("a");
    await until(() => ended.length === 1, "a wait got the command");
    assert.deepEqual(ended.splice(0), [["w2", "c1", undefined]]);
    assert.deepEqual(items, []);
    assert.deepEqual(released, []);
    assert.equal(hub.size, 8);
  } finally {
    hub.close();
  }
});

Deno.test("waiter hub's cap takes no command with the wait it ends", async (t) => {
  await t.step("a claim in flight for it goes to another open wait of the agent", async () => {
    const claim = Promise.withResolvers<CommandRecord | null>();
    let claims = 0;
    const ended: Array<[string, string | null]> = [];
    const hub = new WaiterHub({
      // The first claim (for w1) is answered when the test says; the others find nothing.
      claim: () => claims++ === 0 ? claim.promise : Promise.resolve(null),
      release: () => Promise.reject(new Error("nothing may be released")),
      clock: new FakeClock(),
    });
    const done = (name: string, c: CommandRecord | null) => ended.push([name, c?.id ?? null]);
    try {
      for (let i = 1; i <= 9; i++) {
        hub.hold({ agentId: "a", deploymentHash: "d", timeoutMs: 60_000 }, done, `w${i}`);
      }
      assert.deepEqual(ended.splice(0), [["w1", null]], "w1 ended while its claim was in flight");
      claim.resolve(command("c1"));
      await until(() => ended.length === 1, "the claimed command was handed on");
      assert.deepEqual(ended, [["w2", "c1"]], "to the oldest open wait, once");
      assert.equal(hub.size, 7);
    } finally {
      hub.close();
    }
  });

  await t.step("or back to the queue when no open wait matches it", async () => {
    const claim = Promise.withResolvers<CommandRecord | null>();
    let claims = 0;
    const released: string[] = [];
    const ended: Array<[string, string | null]> = [];
    const hub = new WaiterHub({
      claim: () => claims++ === 0 ? claim.promise : Promise.resolve(null),
      release: (c) => Promise.resolve(released.push(c.id)),
      clock: new FakeClock(),
      maxWaitsPerAgent: 1,
    });
    const done = (name: string, c: CommandRecord | null) => ended.push([name, c?.id ?? null]);
    try {
      hub.hold({ agentId: "a", deploymentHash: "d", timeoutMs: 60_000 }, done, "on-d");
      hub.hold({ agentId: "a", deploymentHash: "e", timeoutMs: 60_000 }, done, "on-e");
      assert.deepEqual(ended.splice(0), [["on-d", null]]);
      claim.resolve(command("for-d", "d"));
      await until(() => released.length === 1, "the command was given back");
      assert.deepEqual(released, ["for-d"]);
      assert.deepEqual(ended, [], "the wait on another hash does not take it");
    } finally {
      hub.close();
    }
  });

  await t.step("a claim in an enqueue's transaction for it goes to another open wait", async () => {
    const { hub, items, released, ended, hold } = instantHub();
    try {
      for (let i = 1; i <= 8; i++) hold(`w${i}`);
      await settled();
      const stored = Promise.withResolvers<void>();
      let claimedFor: string | null = "(not called)";
      const enqueued = hub.enqueue("a", null, async (claimFor) => {
        claimedFor = claimFor;
        await stored.promise; // the store's transaction, while a 9th wait arrives
        return { result: "queued", claimed: command("c1") };
      });
      assert.equal(claimedFor, "d", "the enqueue claims for the oldest wait, w1");
      hold("w9");
      assert.deepEqual(ended.splice(0), [["w1", null, undefined]]);
      stored.resolve();
      assert.equal(await enqueued, "queued");
      assert.deepEqual(ended, [["w2", "c1", undefined]], "handed once, to an open wait");
      assert.deepEqual(items, []);
      assert.deepEqual(released, []);
      assert.equal(hub.size, 7);
    } finally {
      hub.close();
    }
  });
});

Deno.test("waiter hub warns of its cap once a minute per agent, not per eviction", () => {
  const lines: string[] = [];
  setupLogging({ format: "json", level: "info", write: (line) => lines.push(line) });
  const clock = new FakeClock();
  const { hub, hold } = instantHub({ clock });
  const warnings = () =>
    lines.map((line) => JSON.parse(line)).filter((record) => record.level === "warning");
  try {
    for (let i = 0; i < 8; i++) hold(`a${i}`, "a");
    assert.deepEqual(warnings(), [], "no eviction, no warning");
    for (let i = 0; i < 5; i++) hold(`more-a${i}`, "a");
    assert.equal(warnings().length, 1, "five evictions, one line");
    const [line] = warnings();
    assert.equal(line.category, "status.audit");
    assert.equal(line.agentId, "a");
    assert.equal(line.cap, 8);
    assert.match(
      line.message,
      /^agent a opened more than 8 waits at once; the oldest was answered 204/,
    );
    assert.match(line.message, /status agents rotate/);

    for (let i = 0; i < 9; i++) hold(`b${i}`, "b");
    assert.deepEqual(warnings().map((w) => w.agentId), ["a", "b"], "each agent has its own");

    clock.advance(59_999); // the waits (of 120 s) stay open
    hold("late-a", "a");
    assert.equal(warnings().length, 2, "still within the minute");
    clock.advance(1);
    hold("next-a", "a");
    hold("next-a-again", "a");
    assert.deepEqual(warnings().map((w) => w.agentId), ["a", "b", "a"], "a minute later, again");
  } finally {
    hub.close();
    closeLogging();
  }
});

Deno.test("waiter hub refuses a cap that is not a whole number from 1 to 1000", () => {
  for (const maxWaitsPerAgent of [0, -1, 1.5, NaN, 1001]) {
    assert.throws(
      () =>
        new WaiterHub({
          claim: () => Promise.resolve(null),
          release: () => Promise.resolve(),
          maxWaitsPerAgent,
        }),
      new RangeError(
        `maxWaitsPerAgent must be a whole number from 1 to 1000, got ${maxWaitsPerAgent}`,
      ),
    );
  }
});
