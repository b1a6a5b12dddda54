/**
 * The contract every {@link CommandStore} implementation must pass: agents, idempotent enqueue,
 * claims in priority then FIFO order with deployment-hash matching, leases, acks, reports (the
 * first result wins), cancel, and queries. Call {@link runStoreContract} from a test file.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { CommandParams } from "../../src/protocol/mod.ts";
import {
  AGENT_SCOPES,
  type CommandRecord,
  type CommandStore,
  type NewRun,
  type ReportInput,
  type RunRecord,
  runStatus,
  runTotals,
} from "../../src/store/mod.ts";
import { IDS_PER_STATEMENT } from "../../src/store/_rows.ts";

const T0 = Date.UTC(2026, 0, 12, 10, 0, 0);
const LEASE = 30_000;
const TOKEN = "t".repeat(43);

async function enqueue(
  store: CommandStore,
  id: string,
  options: {
    agentId?: string;
    name?: string;
    params?: CommandParams;
    now?: number;
    expiresAt?: number | null;
  } = {},
) {
  return await store.enqueue({
    id,
    agentId: options.agentId ?? "a1",
    name: options.name ?? `echo ${id}`,
    params: options.params ?? {},
    fingerprint: `fp-${options.agentId ?? "a1"}-${options.name ?? id}`,
    now: options.now ?? T0,
    ...(options.expiresAt === undefined ? {} : { expiresAt: options.expiresAt }),
  });
}

function claim(store: CommandStore, agentId = "a1", hash = "default", now = T0) {
  return store.claimNext({ agentId, deploymentHash: hash, now, deliveryLeaseMs: LEASE });
}

function report(
  command: Pick<CommandRecord, "id" | "agentId">,
  overrides: Partial<ReportInput> = {},
): ReportInput {
  return {
    commandId: command.id,
    agentId: command.agentId,
    attempt: 1,
    status: "success",
    result: {
      exitCode: 0,
      signal: null,
      durationSecs: 0.004,
      stdout: "hi\n",
      stderr: "",
      stdoutTruncatedBytes: 0,
      stderrTruncatedBytes: 0,
    },
    error: null,
    startedAt: "2026-01-12T10:00:05.120Z",
    completedAt: "2026-01-12T10:00:05.124Z",
    now: T0 + 1000,
    ...overrides,
  };
}

async function drain(store: CommandStore, agentId = "a1", hash = "default"): Promise<string[]> {
  const ids: string[] = [];
  for (let c = await claim(store, agentId, hash); c; c = await claim(store, agentId, hash)) {
    ids.push(c.id);
  }
  return ids;
}

/**
 * Registers the contract tests for one store implementation.
 *
 * @param name Shown in every test name, e.g. `"sqlite (memory)"`.
 * @param makeStore Makes a fresh, empty store; each test closes the one it gets.
 */
export function runStoreContract(
  name: string,
  makeStore: () => CommandStore | Promise<CommandStore>,
): void {
  const test = (title: string, fn: (store: CommandStore, t: Deno.TestContext) => Promise<void>) =>
    Deno.test(`${name} store: ${title}`, async (t) => {
      await using store = await makeStore();
      await fn(store, t);
    });

  test("adds, finds, lists, re-tokens and removes agents without exposing tokens", async (store) => {
    assert.equal(await store.hasAgentWithToken(), false);
    assert.equal(
      await store.addAgent({ id: "b", token: TOKEN, scopes: AGENT_SCOPES, now: T0 }),
      true,
    );
    assert.equal(
      await store.addAgent({ id: "a", token: null, scopes: ["commands:wait"], now: T0 }),
      true,
    );
    assert.equal(
      await store.addAgent({ id: "a", token: TOKEN, scopes: AGENT_SCOPES, now: T0 }),
      false,
      "a second add of one id changes nothing",
    );
    assert.equal(await store.hasAgentWithToken(), true);
    const b = await store.getAgent("b");
    assert.deepEqual(b, {
      id: "b",
      token: TOKEN,
      scopes: [...AGENT_SCOPES],
      createdAt: T0,
      lastSeenAt: null,
    });
    assert.equal((await store.getAgent("a"))?.token, null);
    assert.equal(await store.getAgent("nope"), null);

    const list = await store.listAgents();
    assert.deepEqual(list.map((a) => a.id), ["a", "b"]);
    assert.deepEqual(list.map((a) => a.hasToken), [false, true]);
    assert.ok(list.every((a) => !("token" in a)), "listing never carries tokens");

    assert.equal(await store.setAgentToken("a", "u".repeat(43)), true);
    assert.equal((await store.getAgent("a"))?.token, "u".repeat(43));
    assert.equal(await store.setAgentToken("nope", TOKEN), false);

    await store.touchAgent("b", T0 + 5000);
    await store.touchAgent("b", T0 + 1000);
    assert.equal((await store.getAgent("b"))?.lastSeenAt, T0 + 5000, "last seen never goes back");
    const seen = await store.listAgentsSeen();
    assert.deepEqual(seen.sort((x, y) => x.id < y.id ? -1 : 1), [
      { id: "a", lastSeenAt: null },
      { id: "b", lastSeenAt: T0 + 5000 },
    ]);

    assert.deepEqual(await store.removeAgent("b", T0 + 6000), { ended: [] });
    assert.equal(await store.removeAgent("b", T0 + 6000), null);
    assert.equal(await store.getAgent("b"), null);
  });

  test(
    "lists a page of agents by id in byte order, after a cursor and up to a limit",
    async (store, t) => {
      // Byte order: capitals before small letters, '-' before '.' before digits before ':'.
      const ids = ["B", "a", "a-1", "a.1", "a1", "a:1", "b", "web-10", "web-9"];
      for (const id of ids.toReversed()) {
        await store.addAgent({ id, token: null, scopes: AGENT_SCOPES, now: T0 });
      }
      await enqueue(store, "c1", { agentId: "a1" });
      const listed = async (page?: Parameters<CommandStore["listAgents"]>[0]) =>
        (await store.listAgents(page)).map((agent) => agent.id);
      await t.step("without a page, or an empty one: every agent", async () => {
        assert.deepEqual(await listed(), ids);
        assert.deepEqual(await listed({}), ids);
      });
      await t.step("limit alone: the first ones", async () => {
        assert.deepEqual(await listed({ limit: 3 }), ["B", "a", "a-1"]);
        assert.deepEqual(await listed({ limit: 100 }), ids);
      });
      await t.step("after alone: those after it, itself excluded, listed or not", async () => {
        assert.deepEqual(await listed({ after: "a1" }), ["a:1", "b", "web-10", "web-9"]);
        assert.deepEqual(await listed({ after: "a0" }), ["a1", "a:1", "b", "web-10", "web-9"]);
        assert.deepEqual(await listed({ after: "web-9" }), []);
      });
      await t.step("pages of 2 read each agent once, in order, with its fields", async () => {
        const seen: string[] = [];
        let after: string | undefined;
        for (let page = 0; page < 10; page++) {
          const got = await store.listAgents({
            limit: 2,
            ...(after === undefined ? {} : { after }),
          });
          if (got.length === 0) break;
          seen.push(...got.map((agent) => agent.id));
          after = got.at(-1)!.id;
        }
        assert.deepEqual(seen, ids);
        assert.deepEqual(
          (await store.listAgents({ after: "a.1", limit: 1 })).map((a) => [a.id, a.queued]),
          [["a1", 1]],
        );
      });
      await t.step("a limit that is not a whole number from 1 is refused", async () => {
        for (const limit of [0, -1, 1.5, Number.NaN]) {
          await assert.rejects(() => store.listAgents({ limit }), RangeError, String(limit));
        }
      });
      await t.step("counted: every agent, or those up to an id, in the same order", async () => {
        assert.equal(await store.countAgents(), ids.length);
        // Where the page after each id starts: as many agents as sort at or before it.
        for (const through of [...ids, "A", "a0", "a:0", "web-9x", "zzz", ""]) {
          const before = ids.length - (await listed({ after: through })).length;
          assert.equal(await store.countAgents(through), before, through);
        }
        await store.removeAgent("a1", T0);
        assert.equal(await store.countAgents(), ids.length - 1);
        assert.equal(await store.countAgents("a1"), ids.indexOf("a1"));
      });
    },
  );

  test("removing an agent cancels its commands not final, in one step", async (store, t) => {
    await store.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now: T0 });
    // requeued: delivered once and its lease ended (on a deployment no later wait asks for);
    // delivered: not acked; running: acked; done: reported; queued: never delivered.
    await enqueue(store, "requeued", { params: { deployment_hash: "old" } });
    assert.equal((await claim(store, "a1", "old"))?.id, "requeued");
    assert.deepEqual((await store.requeueExpired(T0 + LEASE, 3)).requeued.map((c) => c.id), [
      "requeued",
    ]);
    for (const id of ["delivered", "running", "done"]) {
      await enqueue(store, id, { now: T0 + LEASE });
      assert.equal((await claim(store, "a1", "default", T0 + LEASE))?.id, id);
    }
    await enqueue(store, "queued", { now: T0 + LEASE, expiresAt: T0 + 10 * LEASE });
    const ack = { agentId: "a1", now: T0 + LEASE, defaultTimeoutSecs: 300 };
    assert.equal((await store.ack({ ...ack, commandId: "running", attempt: 1 })).outcome, "acked");
    assert.equal(
      (await store.report(report({ id: "done", agentId: "a1" }, { now: T0 + LEASE }))).outcome,
      "accepted",
    );
    await enqueue(store, "other", { agentId: "a2", now: T0 + LEASE });
    const other = await store.getCommand("other");
    const at = T0 + LEASE + 5;

    const removed = await store.removeAgent("a1", at);
    assert.ok(removed);
    await t.step("every command not final is cancelled, in enqueue order", async () => {
      assert.deepEqual(removed.ended.map((c) => c.id), [
        "requeued",
        "delivered",
        "running",
        "queued",
      ]);
      for (const command of removed.ended) {
        assert.equal(command.status, "cancelled", command.id);
        assert.equal(command.endCause, "agent_removed", command.id);
        assert.equal(command.completedAt, at, command.id);
        assert.equal(command.updatedAt, at, command.id);
        assert.equal(command.leaseExpiresAt, null, command.id);
        assert.equal(command.result, null, command.id);
        assert.equal(command.cancelRequested, false, command.id);
        assert.deepEqual(await store.getCommand(command.id), command, "as stored");
      }
    });
    await t.step("what tells the stage it was in is kept", () => {
      const ended = new Map(removed.ended.map((c) => [c.id, c] as const));
      const stage = (id: string) => {
        const c = ended.get(id)!;
        return [c.attempt, c.deliveredAttempt, c.ackedAt !== null];
      };
      assert.deepEqual(stage("requeued"), [2, 1, false]);
      assert.deepEqual(stage("delivered"), [1, 1, false]);
      assert.deepEqual(stage("running"), [1, 1, true]);
      assert.deepEqual(stage("queued"), [1, 0, false]);
    });
    await t.step("a final command and another agent's are left as they were", async () => {
      const done = await store.getCommand("done");
      assert.equal(done?.status, "success");
      assert.equal(done?.endCause, null);
      assert.deepEqual(await store.getCommand("other"), other);
    });
    await t.step("nothing of the agent is left to claim, expire or requeue", async () => {
      assert.equal(await store.getAgent("a1"), null);
      assert.equal(await claim(store, "a1", "default", at), null);
      assert.equal(await store.nextLeaseExpiry(), null);
      assert.deepEqual(await store.requeueExpired(at + 100 * LEASE, 3), {
        requeued: [],
        lost: [],
        cancelled: [],
        expired: [],
      });
      assert.deepEqual(await store.countCommandsByStatus(), {
        cancelled: 4,
        success: 1,
        queued: 1,
      });
    });
    await t.step("a late report of a delivered attempt replaces the dashboard's end", async () => {
      const late = await store.report(report({ id: "running", agentId: "a1" }, { now: at + 1 }));
      assert.ok(late.outcome === "accepted");
      assert.equal(late.command.status, "success");
      assert.equal(late.command.endCause, null);
      assert.deepEqual(await store.getCommand("running"), late.command);
    });
    await t.step("a second removal finds no agent and changes nothing", async () => {
      assert.equal(await store.removeAgent("a1", at + 2), null);
      assert.equal((await store.getCommand("queued"))?.completedAt, at);
    });
  });

  test("the commands of an agent id not registered end as its removal would end them", async (store) => {
    await store.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now: T0 });
    await enqueue(store, "kept");
    assert.deepEqual(await store.endCommandsOfRemovedAgent("a1", T0 + 1), [], "a1 is registered");
    assert.equal((await store.getCommand("kept"))?.status, "queued");
    // Enqueued for an agent removed meanwhile (a run's part, an enqueue that raced the removal).
    await enqueue(store, "late", { agentId: "gone" });
    await enqueue(store, "taken", { agentId: "gone" });
    await enqueue(store, "done", { agentId: "gone" });
    for (const id of ["late", "taken", "done"]) {
      assert.equal((await claim(store, "gone", "default", T0))?.id, id);
    }
    await store.report(report({ id: "done", agentId: "gone" }));
    await store.release("late", 1, T0);
    const ended = await store.endCommandsOfRemovedAgent("gone", T0 + 5);
    assert.deepEqual(ended.map((c) => [c.id, c.status, c.endCause, c.completedAt]), [
      ["late", "cancelled", "agent_removed", T0 + 5],
      ["taken", "cancelled", "agent_removed", T0 + 5],
    ]);
    for (const command of ended) assert.deepEqual(await store.getCommand(command.id), command);
    assert.equal((await store.getCommand("done"))?.status, "success");
    assert.deepEqual(await store.endCommandsOfRemovedAgent("gone", T0 + 6), [], "once");
    assert.equal(await claim(store, "gone", "default", T0 + 6), null);
  });

  test("a removed agent registered again is removed with its new work only", async (store) => {
    await store.ensureAgent("a1", T0);
    await enqueue(store, "c1");
    assert.deepEqual((await store.removeAgent("a1", T0 + 1))?.ended.map((c) => c.id), ["c1"]);
    await store.ensureAgent("a1", T0 + 2);
    await enqueue(store, "c2", { now: T0 + 2 });
    assert.deepEqual((await store.removeAgent("a1", T0 + 3))?.ended.map((c) => c.id), ["c2"]);
    assert.equal((await store.getCommand("c1"))?.completedAt, T0 + 1, "ended once");
  });

  test("registers an agent on first sight without a token, once", async (store) => {
    const first = await store.ensureAgent("dev", T0);
    assert.equal(first.token, null);
    assert.equal(first.lastSeenAt, null, "registered, not yet seen");
    assert.deepEqual(first.scopes, [...AGENT_SCOPES]);
    const again = await store.ensureAgent("dev", T0 + 1);
    assert.equal(again.createdAt, T0);
    assert.equal(await store.hasAgentWithToken(), false);
  });

  test("enqueue is idempotent on the id", async (store, t) => {
    const created = await enqueue(store, "c1", { params: { priority: "high", timeout_secs: 5 } });
    assert.equal(created.outcome, "created");
    assert.equal(created.command.status, "queued");
    assert.equal(created.command.attempt, 1);
    assert.equal(created.command.priority, "high");
    assert.deepEqual(created.command.params, { priority: "high", timeout_secs: 5 });
    await t.step("same fingerprint: duplicate, nothing changes", async () => {
      const again = await enqueue(store, "c1", { params: { priority: "high", timeout_secs: 5 } });
      assert.equal(again.outcome, "duplicate");
      assert.equal(again.command.seq, created.command.seq);
    });
    await t.step("different fingerprint: conflict, nothing changes", async () => {
      const other = await enqueue(store, "c1", { name: "echo other" });
      assert.equal(other.outcome, "conflict");
      assert.equal((await store.getCommand("c1"))?.name, "echo c1");
    });
    await t.step("same fingerprint for another agent: conflict", async () => {
      const other = await store.enqueue({
        id: "c1",
        agentId: "a2",
        name: "echo c1",
        params: {},
        fingerprint: created.command.fingerprint,
        now: T0,
      });
      assert.equal(other.outcome, "conflict");
    });
  });

  test("claims by priority, then first in first out", async (store) => {
    await enqueue(store, "n1");
    await enqueue(store, "l1", { params: { priority: "low" } });
    await enqueue(store, "h1", { params: { priority: "high" } });
    await enqueue(store, "n2", { params: { priority: "normal" } });
    await enqueue(store, "c1", { params: { priority: "critical" } });
    await enqueue(store, "h2", { params: { priority: "high" } });
    assert.deepEqual(await drain(store), ["c1", "h1", "h2", "n1", "n2", "l1"]);
  });

  test("claims only the agent's own commands", async (store) => {
    await enqueue(store, "x", { agentId: "a2" });
    assert.equal(await claim(store, "a1"), null);
    assert.equal((await claim(store, "a2"))?.id, "x");
  });

  test("matches deployment hashes: a hashed command goes only to a wait on its hash", async (store) => {
    await enqueue(store, "any");
    await enqueue(store, "dep1", { params: { deployment_hash: "dep-1" } });
    await enqueue(store, "dep2", { params: { deployment_hash: "dep-2" } });
    assert.deepEqual(await drain(store, "a1", "dep-3"), ["any"]);
    assert.deepEqual(await drain(store, "a1", "dep-1"), ["dep1"]);
    assert.equal((await store.getCommand("dep2"))?.status, "queued");
    assert.equal((await store.getCommand("dep2"))?.deploymentHash, "dep-2");
  });

  test("a claim delivers under the delivery lease, and never twice", async (store) => {
    await enqueue(store, "c1");
    const [first, second] = await Promise.all([claim(store), claim(store)]);
    assert.ok((first === null) !== (second === null), "exactly one of two claims gets it");
    const command = first ?? second!;
    assert.equal(command.status, "delivered");
    assert.equal(command.attempt, 1);
    assert.equal(command.deliveredAttempt, 1);
    assert.equal(command.deliveredAt, T0);
    assert.equal(command.leaseExpiresAt, T0 + LEASE);
    assert.equal(await store.nextLeaseExpiry(), T0 + LEASE);
  });

  test("release puts an unanswered claim back with the same attempt", async (store) => {
    await enqueue(store, "c1");
    const command = (await claim(store))!;
    assert.equal(await store.release("c1", 2, T0), false, "another attempt is not released");
    assert.equal(await store.release("c1", command.attempt, T0), true);
    const back = (await store.getCommand("c1"))!;
    assert.equal(back.status, "queued");
    assert.equal(back.attempt, 1);
    assert.equal(back.deliveredAttempt, 0);
    assert.equal(back.leaseExpiresAt, null);
    assert.equal(await store.release("c1", 1, T0), false, "a queued command is not released");
    assert.equal((await claim(store))?.id, "c1");
  });

  test("an ack turns the delivery lease into the execution lease", async (store, t) => {
    await enqueue(store, "c1", { params: { timeout_secs: 10 } });
    await enqueue(store, "c2");
    await claim(store);
    await claim(store);
    await t.step("own timeout plus 60 s", async () => {
      const acked = await store.ack({
        commandId: "c1",
        agentId: "a1",
        attempt: 1,
        now: T0 + 1000,
        defaultTimeoutSecs: 300,
      });
      assert.equal(acked.outcome, "acked");
      assert.ok(acked.outcome === "acked");
      assert.equal(acked.command.status, "running");
      assert.equal(acked.command.ackedAt, T0 + 1000);
      assert.equal(acked.command.leaseExpiresAt, T0 + 1000 + 70_000);
    });
    await t.step("the default timeout when params set none", async () => {
      const acked = await store.ack({
        commandId: "c2",
        agentId: "a1",
        attempt: 1,
        now: T0,
        defaultTimeoutSecs: 300,
      });
      assert.ok(acked.outcome === "acked");
      assert.equal(acked.command.leaseExpiresAt, T0 + 360_000);
    });
    await t.step("a repeated ack is accepted and changes nothing", async () => {
      const again = await store.ack({
        commandId: "c1",
        agentId: "a1",
        attempt: 1,
        now: T0 + 5000,
        defaultTimeoutSecs: 300,
      });
      assert.ok(again.outcome === "acked");
      assert.equal(again.command.leaseExpiresAt, T0 + 71_000);
    });
    await t.step("stale attempt, other agent, unknown id", async () => {
      const base = { now: T0, defaultTimeoutSecs: 300 };
      assert.equal(
        (await store.ack({ ...base, commandId: "c1", agentId: "a1", attempt: 2 })).outcome,
        "stale",
      );
      assert.equal(
        (await store.ack({ ...base, commandId: "c1", agentId: "a2", attempt: 1 })).outcome,
        "forbidden",
      );
      assert.equal(
        (await store.ack({ ...base, commandId: "zz", agentId: "a1", attempt: 1 })).outcome,
        "not_found",
      );
    });
  });

  test("an expired lease requeues with attempt + 1, then the command is lost", async (store) => {
    await enqueue(store, "c1");
    let now = T0;
    for (let attempt = 1; attempt <= 3; attempt++) {
      const command = (await claim(store, "a1", "default", now))!;
      assert.equal(command.attempt, attempt);
      const early = await store.requeueExpired(now + LEASE - 1, 3);
      assert.equal(early.requeued.length + early.lost.length, 0, "not before the lease ends");
      now += LEASE;
      const expired = await store.requeueExpired(now, 3);
      if (attempt < 3) {
        assert.deepEqual(expired.requeued.map((c) => [c.id, c.status, c.attempt]), [
          ["c1", "queued", attempt + 1],
        ]);
      } else {
        assert.deepEqual(expired.lost.map((c) => [c.id, c.status]), [["c1", "lost"]]);
      }
    }
    const lost = (await store.getCommand("c1"))!;
    assert.equal(lost.status, "lost");
    assert.equal(lost.completedAt, now);
    assert.equal(lost.leaseExpiresAt, null);
    assert.equal(await store.nextLeaseExpiry(), null);
    assert.equal(await claim(store, "a1", "default", now), null);
  });

  test("an expired execution lease requeues a running command too", async (store) => {
    await enqueue(store, "c1", { params: { timeout_secs: 1 } });
    await claim(store);
    await store.ack({
      commandId: "c1",
      agentId: "a1",
      attempt: 1,
      now: T0,
      defaultTimeoutSecs: 300,
    });
    assert.equal((await store.requeueExpired(T0 + LEASE, 3)).requeued.length, 0, "acked: kept");
    const expired = await store.requeueExpired(T0 + 61_000, 3);
    assert.deepEqual(expired.requeued.map((c) => c.attempt), [2]);
  });

  test("reports: the first result wins", async (store, t) => {
    await enqueue(store, "c1");
    await claim(store);
    const first = await store.report(report({ id: "c1", agentId: "a1" }));
    assert.equal(first.outcome, "accepted");
    assert.ok(first.outcome === "accepted");
    assert.equal(first.command.status, "success");
    assert.equal(first.command.leaseExpiresAt, null);
    assert.deepEqual(first.command.result, {
      status: "success",
      attempt: 1,
      hasOutput: true,
      exitCode: 0,
      signal: null,
      durationSecs: 0.004,
      stdout: "hi\n",
      stderr: "",
      stdoutEncoding: null,
      stderrEncoding: null,
      stdoutTruncatedBytes: 0,
      stderrTruncatedBytes: 0,
      error: null,
      startedAt: "2026-01-12T10:00:05.120Z",
      completedAt: "2026-01-12T10:00:05.124Z",
      reportedAt: T0 + 1000,
    });
    await t.step("a second report is a duplicate and changes nothing", async () => {
      const again = await store.report(
        report({ id: "c1", agentId: "a1" }, { status: "failed", now: T0 + 2000 }),
      );
      assert.equal(again.outcome, "duplicate");
      const stored = (await store.getCommand("c1"))!;
      assert.equal(stored.status, "success");
      assert.equal(stored.result?.reportedAt, T0 + 1000);
    });
    await t.step("unknown id, other agent", async () => {
      assert.equal((await store.report(report({ id: "zz", agentId: "a1" }))).outcome, "not_found");
      assert.equal((await store.report(report({ id: "c1", agentId: "a2" }))).outcome, "forbidden");
    });
  });

  test("reports without a result or an attempt are recorded", async (store) => {
    await enqueue(store, "c1");
    await claim(store);
    const outcome = await store.report(
      report({ id: "c1", agentId: "a1" }, {
        attempt: null,
        status: "rejected",
        result: null,
        error: "program rm is not allowed",
      }),
    );
    assert.ok(outcome.outcome === "accepted");
    assert.equal(outcome.command.status, "rejected");
    assert.equal(outcome.command.result?.hasOutput, false);
    assert.equal(outcome.command.result?.error, "program rm is not allowed");
  });

  test("a report for an attempt never delivered is a conflict", async (store) => {
    await enqueue(store, "c1");
    const never = await store.report(report({ id: "c1", agentId: "a1" }));
    assert.ok(never.outcome === "conflict");
    assert.equal(never.reason, "command c1 was never delivered");
    await claim(store);
    const future = await store.report(report({ id: "c1", agentId: "a1" }, { attempt: 2 }));
    assert.ok(future.outcome === "conflict");
    assert.equal(future.reason, "attempt 2 of command c1 was never delivered (last delivered: 1)");
    assert.equal((await store.getCommand("c1"))?.status, "delivered");
  });

  test("a late report of an earlier attempt is accepted after requeue and redelivery", async (store) => {
    await enqueue(store, "c1");
    await claim(store);
    await store.requeueExpired(T0 + LEASE, 3);
    const queued = await store.report(report({ id: "c1", agentId: "a1" }, { attempt: 1 }));
    assert.equal(queued.outcome, "accepted", "queued again, but attempt 1 was delivered");
    assert.equal((await store.getCommand("c1"))?.status, "success");
    assert.equal(await claim(store, "a1", "default", T0 + LEASE), null, "not delivered again");

    await enqueue(store, "c2");
    await claim(store);
    await store.requeueExpired(T0 + LEASE, 3);
    await claim(store, "a1", "default", T0 + LEASE);
    const late = await store.report(report({ id: "c2", agentId: "a1" }, { attempt: 1 }));
    assert.equal(late.outcome, "accepted", "attempt 2 is out, attempt 1 reports first");
    assert.equal(
      (await store.report(report({ id: "c2", agentId: "a1" }, { attempt: 2 }))).outcome,
      "duplicate",
    );
  });

  test("a report for a lost command is recorded: a real result beats a guess", async (store) => {
    await enqueue(store, "c1");
    await claim(store);
    await store.requeueExpired(T0 + LEASE, 1);
    assert.equal((await store.getCommand("c1"))?.status, "lost");
    const outcome = await store.report(report({ id: "c1", agentId: "a1" }));
    assert.equal(outcome.outcome, "accepted");
    assert.equal((await store.getCommand("c1"))?.status, "success");
  });

  test("cancel: queued is cancelled, delivered is flagged, final stays", async (store, t) => {
    await enqueue(store, "q");
    await enqueue(store, "d");
    await t.step("queued → cancelled", async () => {
      const outcome = await store.cancel("q", T0 + 1);
      assert.ok(outcome.outcome === "cancelled");
      assert.equal(outcome.command.status, "cancelled");
      assert.equal(outcome.command.completedAt, T0 + 1);
      assert.equal((await claim(store))?.id, "d", "the cancelled command is skipped");
    });
    await t.step("delivered → cancel requested", async () => {
      const d = (await store.getCommand("d"))!;
      assert.equal(d.status, "delivered");
      const outcome = await store.cancel("d", T0 + 2);
      assert.ok(outcome.outcome === "requested");
      assert.equal(outcome.command.status, "delivered");
      assert.equal(outcome.command.cancelRequested, true);
      assert.equal((await store.cancel("d", T0 + 3)).outcome, "requested", "idempotent");
    });
    await t.step(
      "a cancel-requested command whose lease ends is cancelled, not redelivered",
      async () => {
        const expired = await store.requeueExpired(T0 + LEASE, 3);
        assert.deepEqual(expired.cancelled.map((c) => c.id), ["d"]);
        assert.equal((await store.getCommand("d"))?.status, "cancelled");
      },
    );
    await t.step("final → final; unknown → not_found", async () => {
      assert.equal((await store.cancel("q", T0)).outcome, "final");
      assert.equal((await store.cancel("zz", T0)).outcome, "not_found");
    });
  });

  test("lists commands newest first, by agent and status, up to a limit", async (store) => {
    await enqueue(store, "c1", { agentId: "a1" });
    await enqueue(store, "c2", { agentId: "a2" });
    await enqueue(store, "c3", { agentId: "a1" });
    await claim(store, "a1");
    const ids = async (query: Parameters<CommandStore["listCommands"]>[0]) =>
      (await store.listCommands(query)).map((c) => c.id);
    assert.deepEqual(await ids({ limit: 10 }), ["c3", "c2", "c1"]);
    assert.deepEqual(await ids({ limit: 2 }), ["c3", "c2"]);
    assert.deepEqual(await ids({ agentId: "a1", limit: 10 }), ["c3", "c1"]);
    assert.deepEqual(await ids({ status: "delivered", limit: 10 }), ["c1"]);
    assert.deepEqual(await ids({ agentId: "a2", status: "queued", limit: 10 }), ["c2"]);
    const agents = await store.listAgents();
    assert.deepEqual(agents, [], "commands do not create agents");
  });

  test("pages through commands with a cursor, each once in order", async (store, t) => {
    const ids = (commands: CommandRecord[]) => commands.map((c) => c.id);
    /** Every page of `query` read 25 (or `limit`) at a time, calling `between` after each. */
    const pages = async (
      query: Omit<Parameters<CommandStore["listCommands"]>[0], "limit" | "before">,
      limit: number,
      between: (page: number) => Promise<void> = async () => {},
    ) => {
      const read: string[][] = [];
      let before: number | undefined;
      for (let page = 0; page < 1000; page++) {
        const listed = await store.listCommands({ ...query, limit, before });
        if (listed.length === 0) break;
        read.push(ids(listed));
        before = listed.at(-1)!.seq;
        await between(page);
      }
      return read;
    };
    const all: string[] = [];
    for (let i = 0; i < 100; i++) {
      const id = `c${String(i).padStart(3, "0")}`;
      await enqueue(store, id, { agentId: i % 2 === 0 ? "a1" : "a2", now: T0 + i });
      all.unshift(id);
    }
    await t.step(
      "100 commands 25 a page: four pages, each command once, newest first",
      async () => {
        const read = await pages({}, 25);
        assert.deepEqual(read.map((page) => page.length), [25, 25, 25, 25]);
        assert.deepEqual(read.flat(), all);
      },
    );
    await t.step("commands enqueued between page reads change no later page", async () => {
      let added = 0;
      const read = await pages({}, 25, async () => {
        for (let k = 0; k < 3; k++) {
          await enqueue(store, `new${added++}`, { agentId: "a2", now: T0 + 1000 + added });
        }
      });
      assert.deepEqual(read.flat(), all, "none of the new ones, none of the old twice");
      assert.equal(added, 12);
      const first = ids(await store.listCommands({ limit: 25 }));
      assert.equal(first[0], "new11", "without a cursor: the newest, as before");
    });
    await t.step("the cursor combines with the agent and status filters", async () => {
      const cancelled = new Set<string>();
      for (let i = 0; i < 100; i += 3) {
        const id = `c${String(i).padStart(3, "0")}`;
        assert.equal((await store.cancel(id, T0 + 2000)).outcome, "cancelled");
        cancelled.add(id);
      }
      const a2 = all.filter((id) => Number(id.slice(1)) % 2 === 1);
      assert.deepEqual((await pages({ agentId: "a2" }, 7)).flat(), [
        "new11",
        "new10",
        "new9",
        "new8",
        "new7",
        "new6",
        "new5",
        "new4",
        "new3",
        "new2",
        "new1",
        "new0",
        ...a2,
      ]);
      const read = await pages({ agentId: "a2", status: "cancelled" }, 5);
      assert.deepEqual(read.flat(), a2.filter((id) => cancelled.has(id)));
      assert.deepEqual(read.map((page) => page.length), [5, 5, 5, 2]);
      const queued = await pages({ agentId: "a1", status: "queued" }, 25);
      assert.deepEqual(
        queued.flat(),
        all.filter((id) => Number(id.slice(1)) % 2 === 0 && !cancelled.has(id)),
      );
    });
    await t.step("a cursor before the first command: nothing", async () => {
      const oldest = (await store.listCommands({ limit: 1000 })).at(-1)!;
      assert.equal(oldest.id, "c000");
      assert.deepEqual(await store.listCommands({ limit: 25, before: oldest.seq }), []);
    });
  });

  test("lists commands without their output when asked, the rest as with it", async (store) => {
    await enqueue(store, "done");
    await enqueue(store, "queued");
    const claimed = await claim(store);
    const outcome = await store.report(report(claimed!, {
      status: "failed",
      result: {
        exitCode: 3,
        signal: null,
        durationSecs: 1.5,
        stdout: "out ".repeat(1000),
        stderr: "err\n",
        stdoutTruncatedBytes: 7,
        stderrTruncatedBytes: 0,
      },
    }));
    assert.equal(outcome.outcome, "accepted");
    const full = await store.listCommands({ limit: 10 });
    const light = await store.listCommands({ limit: 10, withoutOutput: true });
    assert.equal(full[1].result?.stdout, "out ".repeat(1000));
    assert.equal(light[1].result?.stdout, null);
    assert.equal(light[1].result?.stderr, null);
    assert.equal(light[1].result?.exitCode, 3);
    assert.deepEqual(light, [
      full[0],
      { ...full[1], result: { ...full[1].result!, stdout: null, stderr: null } },
    ]);
  });

  test("counts queued commands per agent", async (store) => {
    await store.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now: T0 });
    await enqueue(store, "c1");
    await enqueue(store, "c2");
    await claim(store);
    assert.deepEqual((await store.listAgents()).map((a) => [a.id, a.queued]), [["a1", 1]]);
  });

  test("the earliest lease end is known", async (store) => {
    assert.equal(await store.nextLeaseExpiry(), null);
    await enqueue(store, "c1");
    await enqueue(store, "c2");
    await claim(store, "a1", "default", T0 + 5);
    await claim(store, "a1", "default", T0);
    assert.equal(await store.nextLeaseExpiry(), T0 + LEASE);
  });

  test("writes many last-seen times in one call, never moving one back", async (store) => {
    for (const id of ["a", "b", "c"]) {
      await store.addAgent({ id, token: TOKEN, scopes: AGENT_SCOPES, now: T0 });
    }
    assert.equal((await store.getAgent("a"))?.lastSeenAt, null, "read before, so maybe cached");
    await store.touchAgents(new Map([["a", T0 + 1000], ["b", T0 + 2000], ["ghost", T0]]));
    await store.touchAgents([["a", T0 + 500], ["c", T0 + 3000]]);
    await store.touchAgents([]);
    assert.deepEqual(
      (await store.listAgents()).map((a) => [a.id, a.lastSeenAt]),
      [["a", T0 + 1000], ["b", T0 + 2000], ["c", T0 + 3000]],
    );
    assert.equal((await store.getAgent("a"))?.lastSeenAt, T0 + 1000);
    assert.equal(await store.getAgent("ghost"), null, "an unknown id is not created");
  });

  test("an enqueue can claim for a waiting agent in the same step", async (store, t) => {
    const claimFor = (deploymentHash: string) => ({ deploymentHash, deliveryLeaseMs: LEASE });
    await t.step("the new command, delivered under a delivery lease", async () => {
      const outcome = await store.enqueue({
        id: "c1",
        agentId: "a1",
        name: "echo c1",
        params: {},
        fingerprint: "fp-c1",
        now: T0,
      }, claimFor("default"));
      assert.equal(outcome.outcome, "created");
      assert.equal(outcome.outcome === "created" && outcome.claimed?.id, "c1");
      const stored = await store.getCommand("c1");
      assert.equal(stored?.status, "delivered");
      assert.equal(stored?.leaseExpiresAt, T0 + LEASE);
      assert.equal(stored?.deliveredAttempt, 1);
      assert.equal(await claim(store), null, "claimed once only");
    });
    await t.step("nothing for a wait on another hash; the command stays queued", async () => {
      const outcome = await store.enqueue({
        id: "c2",
        agentId: "a1",
        name: "echo c2",
        params: { deployment_hash: "two" },
        fingerprint: "fp-c2",
        now: T0,
      }, claimFor("one"));
      assert.equal(outcome.outcome === "created" && outcome.claimed, null);
      assert.equal((await store.getCommand("c2"))?.status, "queued");
    });
    await t.step("an older matching command goes first", async () => {
      const outcome = await store.enqueue({
        id: "c3",
        agentId: "a1",
        name: "echo c3",
        params: {},
        fingerprint: "fp-c3",
        now: T0,
      }, claimFor("two"));
      assert.equal(outcome.outcome === "created" && outcome.claimed?.id, "c2");
      assert.equal((await store.getCommand("c3"))?.status, "queued");
    });
    await t.step(
      "a newer command of a higher priority goes first; its record is stored",
      async () => {
        const outcome = await store.enqueue({
          id: "c4",
          agentId: "a1",
          name: "echo c4",
          params: { priority: "critical" },
          fingerprint: "fp-c4",
          now: T0 + 1,
        }, claimFor("two"));
        assert.ok(outcome.outcome === "created" && outcome.claimed?.id === "c4");
        assert.deepEqual(outcome.claimed, await store.getCommand("c4"));
        assert.equal((await store.getCommand("c3"))?.status, "queued", "the older one waits");
      },
    );
    await t.step("an enqueue already expired is stored, not claimed", async () => {
      const outcome = await store.enqueue({
        id: "c5",
        agentId: "a2",
        name: "echo c5",
        params: {},
        fingerprint: "fp-c5",
        now: T0,
        expiresAt: T0,
      }, claimFor("default"));
      assert.equal(outcome.outcome === "created" && outcome.claimed, null);
      assert.equal((await store.getCommand("c5"))?.status, "queued");
    });
    await t.step("a duplicate enqueue claims nothing", async () => {
      const outcome = await store.enqueue({
        id: "c3",
        agentId: "a1",
        name: "echo c3",
        params: {},
        fingerprint: "fp-c3",
        now: T0,
      }, claimFor("default"));
      assert.equal(outcome.outcome, "duplicate");
      assert.equal((await store.getCommand("c3"))?.status, "queued");
    });
  });

  test("the records enqueue, claim, ack and report return are the stored ones", async (store) => {
    // Each call answers with the command as it left the call; a read afterwards gives the same.
    const same = async (returned: CommandRecord | null | undefined, what: string) => {
      assert.ok(returned, what);
      assert.deepEqual(returned, await store.getCommand(returned.id), what);
    };
    const params = {
      priority: "high" as const,
      timeout_secs: 5,
      deployment_hash: "d1",
      env: { A: "1" },
    };
    const created = await store.enqueue({
      id: "r1",
      agentId: "a1",
      name: "echo r1",
      params,
      fingerprint: "fp-r1",
      now: T0,
      expiresAt: T0 + 60_000,
    });
    assert.equal(created.outcome, "created");
    await same(created.command, "enqueue");
    const claimedNow = await store.enqueue({
      id: "r2",
      agentId: "a1",
      name: "echo r2",
      params: {},
      fingerprint: "fp-r2",
      now: T0 + 1,
    }, { deploymentHash: "d0", deliveryLeaseMs: LEASE });
    assert.ok(claimedNow.outcome === "created" && claimedNow.claimed?.id === "r2");
    await same(claimedNow.claimed, "enqueue with a claim");
    const older = await store.enqueue({
      id: "r3",
      agentId: "a1",
      name: "echo r3",
      params: {},
      fingerprint: "fp-r3",
      now: T0 + 2,
    }, { deploymentHash: "d1", deliveryLeaseMs: LEASE });
    assert.ok(older.outcome === "created" && older.claimed?.id === "r1", "the older one first");
    await same(older.claimed, "enqueue claiming an older command");
    const next = await claim(store, "a1", "d1", T0 + 3);
    assert.equal(next?.id, "r3");
    await same(next, "claimNext");
    const acked = await store.ack({
      commandId: "r1",
      agentId: "a1",
      attempt: 1,
      now: T0 + 4,
      defaultTimeoutSecs: 30,
    });
    assert.equal(acked.outcome, "acked");
    await same(acked.outcome === "acked" ? acked.command : null, "ack");
    const full = await store.report(report({ id: "r1", agentId: "a1" }, {
      status: "failed",
      result: {
        exitCode: 3,
        signal: null,
        durationSecs: 1.25,
        stdout: "out\u0000put",
        stderr: "\u00ff",
        stdoutTruncatedBytes: 7,
        stderrTruncatedBytes: 0,
        stdoutEncoding: "utf-8",
        stderrEncoding: "base64",
      },
      error: "exit code 3",
      startedAt: "2026-01-12T10:00:00Z",
      completedAt: "2026-01-12T10:00:01Z",
    }));
    assert.equal(full.outcome, "accepted");
    await same(full.outcome === "accepted" ? full.command : null, "report with a result");
    const bare = await store.report({
      commandId: "r2",
      agentId: "a1",
      attempt: null,
      status: "rejected",
      result: null,
      error: "not allowed",
      startedAt: null,
      completedAt: null,
      now: T0 + 5,
    });
    assert.equal(bare.outcome, "accepted");
    await same(bare.outcome === "accepted" ? bare.command : null, "report without a result");
  });

  test("stores live output once, keeps head and tail, and shows gaps", async (store, t) => {
    await enqueue(store, "c1");
    const keep = { headBytes: 4, tailBytes: 6 };
    const bytes = (text: string) => new TextEncoder().encode(text);
    const append = (
      offset: number,
      text: string,
      extra: Partial<{ attempt: number; stream: "stdout" | "stderr" }> = {},
    ) =>
      store.appendOutput({
        commandId: "c1",
        attempt: extra.attempt ?? 1,
        stream: extra.stream ?? "stdout",
        offset,
        data: bytes(text),
        now: T0,
        keep,
      });
    const text = async (query: { attempt?: number; afterSeq?: number } = {}) => {
      const chunks = await store.listOutput("c1", { attempt: 1, ...query });
      return chunks.filter((c) => c.stream === "stdout").map((c) =>
        `${c.offset}:${new TextDecoder().decode(c.data)}`
      );
    };

    await t.step("a chunk is stored at its offset", async () => {
      const first = await append(0, "ab");
      assert.equal(first.outcome, "stored");
      assert.deepEqual(first.outcome === "stored" && { ...first, seq: 0 }, {
        outcome: "stored",
        seq: 0,
        offset: 0,
        bytes: 2,
        gapBytes: 0,
      });
      assert.deepEqual(await text(), ["0:ab"]);
    });
    await t.step("the same chunk again is a duplicate and changes nothing", async () => {
      assert.deepEqual(await append(0, "ab"), { outcome: "duplicate" });
      assert.deepEqual(await text(), ["0:ab"]);
    });
    await t.step("a chunk overlapping what arrived stores only the new bytes", async () => {
      const outcome = await append(1, "bc");
      assert.equal(outcome.outcome === "stored" && outcome.offset, 2);
      assert.deepEqual(await text(), ["0:ab", "2:c"]);
    });
    await t.step("a chunk past what arrived leaves a gap", async () => {
      const outcome = await append(5, "f");
      assert.equal(outcome.outcome === "stored" && outcome.gapBytes, 2);
      assert.deepEqual(await text(), ["0:ab", "2:c", "5:f"]);
    });
    await t.step("only the head and the last tail bytes are kept", async () => {
      const outcome = await append(6, "ghijklmn"); // stream is now 14 bytes long
      assert.equal(outcome.outcome, "stored");
      // head: offsets 0-3 ("ab", "c"; 3 never came); tail: offsets 8-13 "ijklmn"
      assert.deepEqual(await text(), ["0:ab", "2:c", "8:ijklmn"]);
      await append(14, "op");
      assert.deepEqual(await text(), ["0:ab", "2:c", "10:klmn", "14:op"]);
    });
    await t.step("a late chunk of dropped bytes is a duplicate", async () => {
      assert.deepEqual(await append(6, "gh"), { outcome: "duplicate" });
    });
    await t.step("streams and attempts are kept apart; afterSeq pages", async () => {
      await append(0, "E", { stream: "stderr" });
      await append(0, "second", { attempt: 2 });
      const all = await store.listOutput("c1");
      assert.deepEqual(
        [...all].sort((a, b) => a.seq - b.seq).map((c) => c.seq),
        all.map((c) => c.seq),
        "chunks come in seq order",
      );
      const stderr = all.filter((c) => c.stream === "stderr");
      assert.deepEqual(stderr.map((c) => [c.attempt, c.offset, c.data.length]), [[1, 0, 1]]);
      const second = await store.listOutput("c1", { attempt: 2 });
      assert.equal(second.map((c) => new TextDecoder().decode(c.data)).join(""), "second");
      const last = all[all.length - 1].seq;
      assert.deepEqual(await store.listOutput("c1", { afterSeq: last }), []);
      assert.equal((await store.listOutput("c1", { afterSeq: all[0].seq })).length, all.length - 1);
      assert.equal((await store.listOutput("c1", { limit: 2 })).length, 2);
      assert.deepEqual(await store.listOutput("other"), []);
    });
    await t.step("bad bounds are refused", async () => {
      await assert.rejects(
        () =>
          store.appendOutput({
            commandId: "c1",
            attempt: 1,
            stream: "stdout",
            offset: 100,
            data: bytes("x"),
            now: T0,
            keep: { headBytes: 4, tailBytes: 0 },
          }),
        RangeError,
      );
    });
    await t.step("a chunk ending beyond 2^53 - 1 is refused and stores nothing", async () => {
      const before = await store.listOutput("c1");
      await assert.rejects(() => append(Number.MAX_SAFE_INTEGER, "hi\n"), RangeError);
      await assert.rejects(() => append(Number.MAX_SAFE_INTEGER - 2, "hi\n"), RangeError);
      assert.deepEqual(await store.listOutput("c1"), before);
      // Ending exactly at 2^53 - 1 is stored, and the stream goes on being read and appended to.
      const last = await append(Number.MAX_SAFE_INTEGER - 3, "hi\n");
      assert.equal(last.outcome === "stored" && last.offset, Number.MAX_SAFE_INTEGER - 3);
      assert.deepEqual(await append(16, "late"), { outcome: "duplicate" });
      assert.deepEqual(
        (await text()).at(-1),
        `${Number.MAX_SAFE_INTEGER - 3}:hi\n`,
      );
    });
  });

  test("prunes the live output of commands final before a time", async (store) => {
    const keep = { headBytes: 100, tailBytes: 100 };
    const put = (commandId: string) =>
      store.appendOutput({
        commandId,
        attempt: 1,
        stream: "stdout",
        offset: 0,
        data: new Uint8Array([1, 2, 3]),
        now: T0,
        keep,
      });
    await enqueue(store, "old");
    await enqueue(store, "new");
    await enqueue(store, "open");
    for (const id of ["old", "new", "open"]) await put(id);
    await store.cancel("old", T0 + 1000);
    await store.cancel("new", T0 + 5000);
    assert.deepEqual(await store.pruneOutput(T0 + 2000, 100), { chunks: 1, more: false });
    assert.deepEqual(await store.listOutput("old"), []);
    assert.equal((await store.listOutput("new")).length, 1, "final after the time: kept");
    assert.equal((await store.listOutput("open")).length, 1, "not final: kept");
    assert.deepEqual(await store.pruneOutput(T0 + 2000, 100), { chunks: 0, more: false });
  });

  test(
    "prunes a backlog of live output larger than a batch over several calls",
    async (store, t) => {
      const keep = { headBytes: 1000, tailBytes: 1000 };
      const put = (commandId: string, offset: number) =>
        store.appendOutput({
          commandId,
          attempt: 1,
          stream: "stdout",
          offset,
          data: new Uint8Array([1, 2, 3]),
          now: T0,
          keep,
        });
      // Chunks of final and open commands in between one another, as they arrive.
      for (const id of ["f1", "open", "f2", "f3"]) await enqueue(store, id);
      for (let i = 0; i < 4; i++) {
        for (const id of ["f1", "open", "f2", "f3"]) await put(id, 3 * i);
      }
      for (const id of ["f1", "f2", "f3"]) await store.cancel(id, T0 + 1000);
      await t.step("a limit that is not a whole number from 1 is refused", async () => {
        for (const limit of [0, -1, 1.5, Number.NaN]) {
          await assert.rejects(() => store.pruneOutput(T0 + 2000, limit), RangeError);
        }
        assert.equal((await store.listOutput("f1")).length, 4, "nothing deleted");
      });
      await t.step("at most the limit a call, until all of it went", async () => {
        const calls = [];
        for (let more = true; more;) {
          const outcome = await store.pruneOutput(T0 + 2000, 5);
          calls.push(outcome);
          more = outcome.more;
        }
        assert.deepEqual(calls, [
          { chunks: 5, more: true },
          { chunks: 5, more: true },
          { chunks: 2, more: false },
        ]);
        for (const id of ["f1", "f2", "f3"]) assert.deepEqual(await store.listOutput(id), [], id);
        assert.equal((await store.listOutput("open")).length, 4, "not final: kept");
      });
    },
  );

  test("binary output is stored byte for byte", async (store) => {
    const data = new Uint8Array([0, 0xff, 0xfe, 10, 0xc3]);
    await store.appendOutput({
      commandId: "b1",
      attempt: 1,
      stream: "stdout",
      offset: 0,
      data,
      now: T0,
      keep: { headBytes: 1024, tailBytes: 1024 },
    });
    const [chunk] = await store.listOutput("b1");
    assert.deepEqual([...chunk.data], [...data]);
    assert.equal(chunk.createdAt, T0);
    assert.equal(chunk.commandId, "b1");
  });

  test("records heartbeats for the fleet view", async (store) => {
    await store.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now: T0 });
    const before = (await store.listAgents())[0];
    assert.deepEqual(
      [
        before.version,
        before.deploymentHash,
        before.instanceId,
        before.heartbeat,
        before.heartbeatAt,
      ],
      [null, null, null, null, null],
    );
    const sample = { cpu_percent: 12.5, load_avg: [0.1, 0.2, 0.3] };
    assert.equal(
      await store.recordHeartbeat("a1", {
        version: "0.1.0",
        deploymentHash: "dep-1",
        instanceId: "i-1",
        sample,
        now: T0 + 5000,
      }),
      true,
    );
    const after = (await store.listAgents())[0];
    assert.equal(after.version, "0.1.0");
    assert.equal(after.deploymentHash, "dep-1");
    assert.equal(after.instanceId, "i-1");
    assert.deepEqual(after.heartbeat, sample);
    assert.equal(after.heartbeatAt, T0 + 5000);
    assert.equal(after.lastSeenAt, T0 + 5000, "a heartbeat counts as seen");
    await store.recordHeartbeat("a1", {
      version: "0.1.1",
      deploymentHash: null,
      instanceId: "i-2",
      sample: null,
      now: T0 + 1000,
    });
    const again = (await store.listAgents())[0];
    assert.equal(again.lastSeenAt, T0 + 5000, "last seen never goes back");
    assert.equal(again.heartbeat, null);
    assert.equal(again.version, "0.1.1");
    assert.equal(
      await store.recordHeartbeat("nope", {
        version: null,
        deploymentHash: null,
        instanceId: null,
        sample: null,
        now: T0,
      }),
      false,
    );
  });

  test("counts commands by status", async (store) => {
    assert.deepEqual(await store.countCommandsByStatus(), {});
    await enqueue(store, "c1");
    await enqueue(store, "c2");
    await enqueue(store, "c3");
    await claim(store);
    await store.cancel("c3", T0);
    assert.deepEqual(await store.countCommandsByStatus(), {
      delivered: 1,
      queued: 1,
      cancelled: 1,
    });
  });

  test("counts an agent's commands not final, up to a limit", async (store) => {
    assert.equal(await store.countOpenCommands("a1", 10), 0);
    for (const id of ["c1", "c2", "c3", "c4", "c5"]) await enqueue(store, id);
    await enqueue(store, "other-1", { agentId: "a2" });
    const delivered = await claim(store);
    const running = await claim(store);
    await store.ack({
      commandId: running!.id,
      agentId: "a1",
      attempt: 1,
      now: T0,
      defaultTimeoutSecs: 60,
    });
    await store.cancel("c5", T0);
    await store.report(report(delivered!));
    // c2 running, c3 and c4 queued; c1 reported and c5 cancelled are final; a2's is not a1's.
    assert.equal(await store.countOpenCommands("a1", 10), 3);
    assert.equal(await store.countOpenCommands("a1", 2), 2, "the count stops at the limit");
    assert.equal(await store.countOpenCommands("a1", 1), 1);
    assert.equal(await store.countOpenCommands("a2", 10), 1);
    assert.equal(await store.countOpenCommands("nobody", 10), 0);
    await assert.rejects(() => store.countOpenCommands("a1", 0), RangeError);
    await assert.rejects(() => store.countOpenCommands("a1", 1.5), RangeError);
  });

  test("reads the command each of some agents has in hand, by the agent", async (store, t) => {
    const ack = (commandId: string, agentId: string) =>
      store.ack({ commandId, agentId, attempt: 1, now: T0, defaultTimeoutSecs: 60 });
    const inHand = async (ids: readonly string[]) =>
      (await store.commandsInHand(ids)).map((c) => [c.agentId, c.id, c.status]);
    await t.step("no ids, or none in hand: none", async () => {
      assert.deepEqual(await store.commandsInHand([]), []);
      await enqueue(store, "q1");
      assert.deepEqual(await store.commandsInHand(["a1", "nobody"]), [], "queued is not in hand");
    });
    // a1: q1..q4 delivered in order, q3 then q2 acked (running); a2: one delivered, then
    // reported (final); a3: two delivered; a4: one delivered, with an odd id.
    for (const id of ["q2", "q3", "q4"]) await enqueue(store, id);
    for (let i = 0; i < 4; i++) await claim(store);
    await ack("q3", "a1");
    await ack("q2", "a1");
    await enqueue(store, "done", { agentId: "a2" });
    await store.report(report((await claim(store, "a2"))!));
    await enqueue(store, "b1", { agentId: "a3" });
    await enqueue(store, "b2", { agentId: "a3" });
    await claim(store, "a3");
    await claim(store, "a3");
    await enqueue(store, `odd"'\\1`, { agentId: "a4" });
    await claim(store, "a4");
    await t.step("the oldest running one, else the newest delivered one", async () => {
      assert.deepEqual(await inHand(["a1", "a2", "a3", "a4"]), [
        ["a1", "q2", "running"],
        ["a3", "b2", "delivered"],
        ["a4", `odd"'\\1`, "delivered"],
      ]);
      const [command] = await store.commandsInHand(["a1"]);
      assert.deepEqual(command, await store.getCommand("q2"), "the whole command");
    });
    await t.step(
      "in the order of the ids, each once; others' and unknown ids left out",
      async () => {
        assert.deepEqual(await inHand(["a3", "nobody", "a1", "a3", "A1", "a1%"]), [
          ["a3", "b2", "delivered"],
          ["a1", "q2", "running"],
        ]);
      },
    );
    await t.step("more ids than one statement takes", async () => {
      const ids = Array.from({ length: 2 * IDS_PER_STATEMENT + 1 }, (_, i) => `x${i}`);
      ids[IDS_PER_STATEMENT + 3] = "a3";
      ids.push("a1");
      assert.deepEqual(await inHand(ids), [
        ["a3", "b2", "delivered"],
        ["a1", "q2", "running"],
      ]);
    });
    await t.step("a command that ends leaves the agent's hand", async () => {
      await store.report(report({ id: "q2", agentId: "a1" }));
      await store.report(report({ id: "q3", agentId: "a1" }));
      assert.deepEqual(await inHand(["a1"]), [["a1", "q4", "delivered"]]);
    });
  });

  // -- fan-out runs and agent labels

  test("keeps the labels of an agent's latest heartbeat", async (store) => {
    await store.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now: T0 });
    assert.deepEqual((await store.listAgents())[0].labels, {}, "no heartbeat yet: no labels");
    const beat = { version: "1", deploymentHash: "prod", instanceId: "i", sample: null };
    await store.recordHeartbeat("a1", { ...beat, labels: { role: "web", zone: "eu" }, now: T0 });
    assert.deepEqual((await store.listAgents())[0].labels, { role: "web", zone: "eu" });
    await store.recordHeartbeat("a1", { ...beat, now: T0 + 1 });
    assert.deepEqual(
      (await store.listAgents())[0].labels,
      { role: "web", zone: "eu" },
      "a heartbeat without labels leaves them",
    );
    await store.recordHeartbeat("a1", { ...beat, labels: {}, now: T0 + 2 });
    assert.deepEqual((await store.listAgents())[0].labels, {}, "an empty set clears them");
  });

  test("tells which of many ids are commands' ids, in the order given", async (store, t) => {
    await t.step("no ids, or no commands: none", async () => {
      assert.deepEqual(await store.existingCommandIds([]), []);
      assert.deepEqual(await store.existingCommandIds(["c1", "c2"]), []);
    });
    const made = ["c1", "c2", `odd"'\\id`, "c500", "c1000"];
    for (const id of made) await enqueue(store, id);
    await t.step("ids not found are left out; the rest keep their order", async () => {
      assert.deepEqual(
        await store.existingCommandIds(["nope", "c2", "c1", "C1", `odd"'\\id`, "c1%"]),
        ["c2", "c1", `odd"'\\id`],
      );
    });
    await t.step("more ids than one statement takes", async () => {
      const ids = Array.from({ length: 2 * IDS_PER_STATEMENT + 1 }, (_, i) => `c${i}`);
      assert.deepEqual(await store.existingCommandIds(ids), ["c1", "c2", "c500", "c1000"]);
      assert.deepEqual(await store.existingCommandIds(ids.toReversed()), [
        "c1000",
        "c500",
        "c2",
        "c1",
      ]);
    });
  });

  test("reads a command's status, cancel flag and last change alone", async (store) => {
    /** What getCommandState answers, from the whole command. */
    const stateOf = (command: CommandRecord | null) =>
      command &&
      {
        status: command.status,
        cancelRequested: command.cancelRequested,
        updatedAt: command.updatedAt,
      };
    const same = async (expected: unknown) => {
      const state = await store.getCommandState("c1");
      assert.deepEqual(state, stateOf(await store.getCommand("c1")));
      assert.deepEqual(state, expected);
    };
    assert.equal(await store.getCommandState("c1"), null);
    await enqueue(store, "c1");
    await same({ status: "queued", cancelRequested: false, updatedAt: T0 });
    await claim(store, "a1", "default", T0 + 1);
    assert.equal((await store.cancel("c1", T0 + 2)).outcome, "requested");
    await same({ status: "delivered", cancelRequested: true, updatedAt: T0 + 2 });
    // Live output changes none of it.
    const stored = await store.appendOutput({
      commandId: "c1",
      attempt: 1,
      stream: "stdout",
      offset: 0,
      data: new TextEncoder().encode("hi\n"),
      now: T0 + 3,
      keep: { headBytes: 1024, tailBytes: 1024 },
    });
    assert.equal(stored.outcome, "stored");
    await same({ status: "delivered", cancelRequested: true, updatedAt: T0 + 2 });
    await store.report(report({ id: "c1", agentId: "a1" }, { status: "failed", now: T0 + 4 }));
    await same({ status: "failed", cancelRequested: true, updatedAt: T0 + 4 });
    assert.equal(await store.getCommandState("C1"), null);
  });

  const newRun = (id: string, agents: string[], overrides: Partial<NewRun> = {}): NewRun => ({
    id,
    name: "uname -a",
    params: { timeout_secs: 30 },
    target: { agents },
    fingerprint: `fp-${id}`,
    maxConcurrency: agents.length,
    maxConcurrencySpec: null,
    maxErrors: null,
    targets: agents.map((agentId, i) => ({
      agentId,
      commandId: `${id}:${agentId}`,
      offlineAtCreation: i === agents.length - 1,
    })),
    now: T0,
    ...overrides,
  });

  /** Enqueues, delivers and reports a started target's command with `status`. */
  const finish = async (
    store: CommandStore,
    commandId: string,
    agentId: string,
    status: "success" | "failed",
  ) => {
    await enqueue(store, commandId, { agentId });
    const claimed = await claim(store, agentId);
    assert.equal(claimed?.id, commandId);
    await store.report(report(claimed!, { status }));
  };

  test("creates runs idempotently and reads and lists them", async (store) => {
    const created = await store.createRun(
      newRun("r1", ["a1", "a2"], { maxConcurrencySpec: "50%" }),
    );
    assert.equal(created.outcome, "created");
    const run = created.run;
    assert.equal(run.id, "r1");
    assert.deepEqual(run.target, { agents: ["a1", "a2"] });
    assert.deepEqual(run.params, { timeout_secs: 30 });
    assert.equal(run.maxConcurrencySpec, "50%");
    assert.equal(run.maxErrors, null);
    assert.equal(run.cancelRequested, false);
    assert.equal(run.completedAt, null);
    assert.deepEqual(
      run.targets.map((t) => [t.position, t.agentId, t.commandId, t.offlineAtCreation, t.command]),
      [[0, "a1", "r1:a1", false, null], [1, "a2", "r1:a2", true, null]],
    );
    assert.ok(run.targets.every((t) => t.startedAt === null && t.skippedAt === null));
    assert.equal((await store.createRun(newRun("r1", ["a1", "a2"]))).outcome, "duplicate");
    const conflict = await store.createRun(newRun("r1", ["a1"], { fingerprint: "other" }));
    assert.equal(conflict.outcome, "conflict");
    assert.equal(conflict.run.targets.length, 2, "nothing changed");
    assert.equal((await store.listCommands({ limit: 10 })).length, 0, "a run creates no command");
    await store.createRun(newRun("r2", ["a1"], { maxErrors: 3, now: T0 + 1 }));
    assert.deepEqual((await store.listRuns({ limit: 10 })).map((r) => r.id), ["r2", "r1"]);
    assert.deepEqual((await store.listRuns({ limit: 1 })).map((r) => r.id), ["r2"]);
    assert.equal((await store.getRun("r2"))?.maxErrors, 3);
    assert.equal(await store.getRun("nope"), null);
    assert.equal(await store.advanceRun("nope", T0), null);
    assert.deepEqual(await store.cancelRun("nope", T0), { outcome: "not_found" });
  });

  test("lists the ids of open runs only, newest first, without their targets", async (store, t) => {
    await t.step("no runs: none", async () => {
      assert.deepEqual(await store.listOpenRunIds(10), []);
    });
    await t.step("many runs: the open ones, as listRuns lists them", async () => {
      for (let i = 0; i < 30; i++) {
        const id = `r${String(i).padStart(2, "0")}`;
        await store.createRun(newRun(id, ["a1", "a2"], { now: T0 + i }));
        if (i % 3 === 0) {
          // Ended: cancelled before anything started, every target skipped.
          await store.cancelRun(id, T0 + 100);
          assert.notEqual((await store.advanceRun(id, T0 + 100))?.run.completedAt, null);
        }
      }
      const open = await store.listOpenRunIds(100);
      assert.equal(open.length, 20);
      assert.deepEqual(open.slice(0, 3), ["r29", "r28", "r26"]);
      assert.deepEqual(open, (await store.listRuns({ open: true, limit: 100 })).map((r) => r.id));
    });
    await t.step("at most the limit, newest first", async () => {
      assert.deepEqual(await store.listOpenRunIds(2), ["r29", "r28"]);
      assert.deepEqual(await store.listOpenRunIds(0), []);
    });
  });

  test(
    "lists runs with their targets counted by group, as listRuns reads them",
    async (store, t) => {
      await t.step("no runs: none", async () => {
        assert.deepEqual(await store.listRunSummaries({ limit: 10 }), []);
        assert.deepEqual(await store.listRunSummaries({ open: true, limit: 10 }), []);
      });
      // "mixed": m1 queued, m2 failed, m3 delivered, m4 started (not enqueued), m5 and m6 skipped
      // by a cancel: its states come in another order than any sort of them would give.
      await store.createRun(newRun("mixed", ["m1", "m2", "m3", "m4", "m5", "m6"], {
        maxConcurrency: 4,
      }));
      await store.advanceRun("mixed", T0);
      await enqueue(store, "mixed:m1", { agentId: "m1" });
      await finish(store, "mixed:m2", "m2", "failed");
      await enqueue(store, "mixed:m3", { agentId: "m3" });
      assert.equal((await claim(store, "m3"))?.id, "mixed:m3");
      await store.cancelRun("mixed", T0 + 1);
      // "pending": nothing started; "done": every command succeeded; "empty": no targets at all.
      await store.createRun(newRun("pending", ["p1", "p2", "p3"], { now: T0 + 1 }));
      await store.createRun(newRun("done", ["s1", "s2"], { now: T0 + 2 }));
      await store.advanceRun("done", T0 + 2);
      await finish(store, "done:s1", "s1", "success");
      await finish(store, "done:s2", "s2", "success");
      assert.notEqual((await store.advanceRun("done", T0 + 3))?.run.completedAt, null);
      await store.createRun(newRun("empty", [], { now: T0 + 3 }));

      await t.step("each run's groups, in the order of their first target", async () => {
        const [mixed] = (await store.listRunSummaries({ limit: 10 })).filter((r) =>
          r.id === "mixed"
        );
        assert.deepEqual(mixed.groups, [
          { skipped: false, started: true, status: "queued", count: 1, first: 0 },
          { skipped: false, started: true, status: "failed", count: 1, first: 1 },
          { skipped: false, started: true, status: "delivered", count: 1, first: 2 },
          { skipped: false, started: true, status: null, count: 1, first: 3 },
          { skipped: true, started: false, status: null, count: 2, first: 4 },
        ]);
        assert.equal(
          JSON.stringify(runTotals(mixed)),
          JSON.stringify({
            total: 6,
            queued: 1,
            failed: 1,
            delivered: 1,
            starting: 1,
            skipped: 2,
            failed_total: 1,
            active: 3,
          }),
        );
        assert.equal(runStatus(mixed), "cancelling");
      });
      await t.step("the same runs, fields, status and totals as listRuns", async () => {
        for (const query of [{ limit: 10 }, { open: true, limit: 10 }, { limit: 2 }]) {
          const summaries = await store.listRunSummaries(query);
          const runs = await store.listRuns(query);
          assert.deepEqual(summaries.map((r) => r.id), runs.map((r) => r.id));
          summaries.forEach((summary, i) => {
            const { groups, ...fields } = summary;
            const { targets, ...runFields } = runs[i];
            assert.deepEqual(fields, runFields);
            assert.equal(groups.reduce((n, g) => n + g.count, 0), targets.length);
            // Compared as text: the totals' keys come in the same order too.
            assert.equal(JSON.stringify(runTotals(summary)), JSON.stringify(runTotals(runs[i])));
            assert.equal(runStatus(summary), runStatus(runs[i]));
          });
        }
        assert.deepEqual(
          (await store.listRunSummaries({ limit: 10 })).map((r) => [r.id, runStatus(r)]),
          [["empty", "succeeded"], ["done", "succeeded"], ["pending", "running"], [
            "mixed",
            "cancelling",
          ]],
        );
        assert.deepEqual(
          (await store.listRunSummaries({ open: true, limit: 10 })).map((r) => r.id),
          ["empty", "pending", "mixed"],
        );
      });
      await t.step("many runs: at most the limit, newest first", async () => {
        for (let i = 0; i < 25; i++) {
          await store.createRun(newRun(`many-${i}`, ["x1", "x2"], { now: T0 + 10 + i }));
        }
        const summaries = await store.listRunSummaries({ limit: 20 });
        assert.equal(summaries.length, 20);
        assert.equal(summaries[0].id, "many-24");
        assert.ok(summaries.every((r) =>
          JSON.stringify(r.groups) === JSON.stringify([
            { skipped: false, started: false, status: null, count: 2, first: 0 },
          ])
        ));
        assert.equal((await store.listRunSummaries({ limit: 100 })).length, 29);
      });
    },
  );

  test("a run starts at most max_concurrency commands and completes", async (store) => {
    await store.createRun(newRun("r", ["a1", "a2", "a3"], { maxConcurrency: 2 }));
    const first = await store.advanceRun("r", T0 + 1);
    assert.deepEqual(first?.toEnqueue.map((t) => t.commandId), ["r:a1", "r:a2"]);
    assert.deepEqual(first?.run.targets.map((t) => t.startedAt), [T0 + 1, T0 + 1, null]);
    // Not enqueued yet (a crash): still to enqueue, and nothing more starts.
    const again = await store.advanceRun("r", T0 + 2);
    assert.deepEqual(again?.toEnqueue.map((t) => t.commandId), ["r:a1", "r:a2"]);
    assert.equal(again?.run.targets[2].startedAt, null);
    await enqueue(store, "r:a1", { agentId: "a1" });
    await enqueue(store, "r:a2", { agentId: "a2" });
    const busy = await store.advanceRun("r", T0 + 3);
    assert.deepEqual(busy?.toEnqueue, []);
    assert.equal(busy?.run.targets[0].command?.status, "queued");
    assert.equal(busy?.run.targets[2].startedAt, null, "two are active: the third waits");
    const claimed = await claim(store, "a1");
    await store.report(report(claimed!, { status: "success" }));
    const next = await store.advanceRun("r", T0 + 4);
    assert.deepEqual(next?.toEnqueue.map((t) => t.commandId), ["r:a3"]);
    await store.report(report((await claim(store, "a2"))!));
    await finish(store, "r:a3", "a3", "success");
    const done = await store.advanceRun("r", T0 + 5);
    assert.equal(done?.run.completedAt, T0 + 5);
    assert.equal(runStatus(done!.run), "succeeded");
    assert.deepEqual((await store.listRuns({ open: true, limit: 10 })).map((r) => r.id), []);
    assert.deepEqual(await store.cancelRun("r", T0 + 6), { outcome: "final", run: done!.run });
  });

  test("a cancel of a run whose every part has ended ends the run instead", async (store) => {
    await store.createRun(newRun("r", ["a1", "a2"]));
    const first = await store.advanceRun("r", T0 + 1);
    assert.deepEqual(first?.toEnqueue.map((t) => t.commandId), ["r:a1", "r:a2"]);
    await finish(store, "r:a1", "a1", "success");
    await finish(store, "r:a2", "a2", "success");
    // The step that ends the run has not come yet (it pauses, or another instance takes it) when
    // the operator cancels. Old behaviour: the run was recorded cancelled, its status
    // `cancelled` though every part had succeeded before the cancel.
    const outcome = await store.cancelRun("r", T0 + 5);
    assert.equal(outcome.outcome, "final");
    const run = await store.getRun("r");
    assert.deepEqual(outcome.outcome === "final" ? outcome.run : null, run);
    assert.equal(run?.cancelRequested, false);
    assert.equal(run?.completedAt, T0 + 5);
    assert.equal(runStatus(run!), "succeeded");
  });

  test("a step that changes nothing answers the run as stored", async (store) => {
    await store.createRun(newRun("r", ["a1", "a2"], { maxConcurrency: 1 }));
    const first = await store.advanceRun("r", T0);
    assert.deepEqual(first?.toEnqueue.map((t) => t.commandId), ["r:a1"]);
    // Started, not enqueued yet: the next step changes nothing and still says to enqueue it.
    const unchanged = await store.advanceRun("r", T0 + 1);
    assert.deepEqual(unchanged, { run: await store.getRun("r"), toEnqueue: first!.toEnqueue });
    assert.equal(unchanged?.run.updatedAt, T0, "not touched");
    await enqueue(store, "r:a1", { agentId: "a1" });
    const busy = await store.advanceRun("r", T0 + 2);
    assert.deepEqual(busy, { run: await store.getRun("r"), toEnqueue: [] });
    assert.equal(busy?.run.targets[0].command?.status, "queued");
    await store.cancelRun("r", T0 + 3);
    await store.cancel("r:a1", T0 + 3);
    const done = await store.advanceRun("r", T0 + 4);
    assert.equal(done?.run.completedAt, T0 + 4);
    const ended = await store.advanceRun("r", T0 + 5);
    assert.deepEqual(ended, { run: await store.getRun("r"), toEnqueue: [] });
    assert.deepEqual(ended?.run, done?.run);
  });

  test(
    "a step read without output decides as advanceRun does and answers each command's status",
    async (store) => {
      /**
       * The run as stepRun and getRunState read it: each command as its status, flag and last
       * change.
       */
      const stateOf = (run: RunRecord | null) =>
        run && {
          ...run,
          targets: run.targets.map(({ command, ...target }) => ({
            ...target,
            command: command && {
              status: command.status,
              cancelRequested: command.cancelRequested,
              updatedAt: command.updatedAt,
            },
          })),
        };
      /** A step by stepRun, checked against the whole run read after it. */
      const step = async (now: number) => {
        const outcome = await store.stepRun("r", now);
        assert.ok(outcome);
        const run = await store.getRun("r");
        assert.deepEqual(outcome.run, stateOf(run));
        assert.deepEqual(await store.getRunState("r"), stateOf(run));
        assert.deepEqual(
          outcome.toEnqueue,
          outcome.run.targets.filter((t) => t.startedAt !== null && t.command === null),
        );
        assert.equal(JSON.stringify(runTotals(outcome.run)), JSON.stringify(runTotals(run!)));
        return outcome;
      };
      assert.equal(await store.stepRun("nope", T0), null);
      assert.equal(await store.getRunState("nope"), null);
      await store.createRun(newRun("r", ["a1", "a2", "a3", "a4"], {
        maxConcurrency: 2,
        maxErrors: 0,
      }));
      const first = await step(T0 + 1);
      assert.deepEqual(first.toEnqueue.map((t) => t.commandId), ["r:a1", "r:a2"]);
      assert.deepEqual(first.run.targets.map((t) => t.startedAt), [T0 + 1, T0 + 1, null, null]);
      // Not enqueued yet (a crash): nothing changes, and they are still to enqueue.
      const again = await step(T0 + 2);
      assert.equal(again.run.updatedAt, T0 + 1, "not touched");
      assert.deepEqual(again.toEnqueue.map((t) => t.commandId), ["r:a1", "r:a2"]);
      await finish(store, "r:a1", "a1", "success");
      await enqueue(store, "r:a2", { agentId: "a2" });
      const next = await step(T0 + 3);
      assert.deepEqual(next.toEnqueue.map((t) => t.commandId), ["r:a3"]);
      assert.deepEqual(next.run.targets.map((t) => t.command), [
        { status: "success", cancelRequested: false, updatedAt: T0 + 1000 },
        { status: "queued", cancelRequested: false, updatedAt: T0 },
        null,
        null,
      ]);
      // a3 fails: more than max_errors (0), so a4 is skipped; a2 goes on.
      await finish(store, "r:a3", "a3", "failed");
      const skipped = await step(T0 + 4);
      assert.deepEqual(skipped.run.targets.map((t) => t.skippedAt), [null, null, null, T0 + 4]);
      assert.equal(skipped.run.completedAt, null, "r:a2 is queued");
      assert.equal((await claim(store, "a2"))?.id, "r:a2");
      assert.equal((await store.cancel("r:a2", T0 + 5)).outcome, "requested");
      const asked = await step(T0 + 5);
      assert.deepEqual(asked.run.targets[1].command, {
        status: "delivered",
        cancelRequested: true,
        updatedAt: T0 + 5,
      });
      await store.report(report({ id: "r:a2", agentId: "a2" }));
      const done = await step(T0 + 6);
      assert.equal(done.run.completedAt, T0 + 6);
      assert.equal(runStatus(done.run), "failed");
      const ended = await step(T0 + 7);
      assert.deepEqual(ended.run, done.run, "an ended run is not touched");
    },
  );

  test("a run's target is found by its command id, as a step reads it", async (store) => {
    assert.equal(await store.getRunTarget("r:a1"), null);
    await store.createRun(newRun("r", ["a1", "a2", "a:3"], { maxConcurrency: 1, maxErrors: 0 }));
    await store.createRun(newRun("r:a", ["b1"], { now: T0 + 1 }));
    /** The target as getRunState reads it, with its run's id. */
    const stateOf = async (runId: string, commandId: string) => {
      const target = (await store.getRunState(runId))!.targets.find((t) =>
        t.commandId === commandId
      );
      return target && { runId, ...target };
    };
    const expect = async (runId: string, commandId: string) =>
      assert.deepEqual(await store.getRunTarget(commandId), await stateOf(runId, commandId));
    await expect("r", "r:a1");
    assert.deepEqual(await store.getRunTarget("r:a1"), {
      runId: "r",
      position: 0,
      agentId: "a1",
      commandId: "r:a1",
      offlineAtCreation: false,
      startedAt: null,
      skippedAt: null,
      command: null,
    });
    // An agent id with a colon; a run id that ends like another run's target.
    await expect("r", "r:a:3");
    await expect("r:a", "r:a:b1");
    assert.equal((await store.getRunTarget("r:a:b1"))?.agentId, "b1");
    // Started, with its command (status and cancel flag, no result); skipped after a failure.
    await store.stepRun("r", T0 + 2);
    await finish(store, "r:a1", "a1", "failed");
    await store.stepRun("r", T0 + 3);
    await expect("r", "r:a1");
    assert.deepEqual((await store.getRunTarget("r:a1"))?.command, {
      status: "failed",
      cancelRequested: false,
      updatedAt: T0 + 1000,
    });
    assert.equal((await store.getRunTarget("r:a2"))?.skippedAt, T0 + 3);
    // Not a target's: a command of that form enqueued on its own, an unknown id, another run's.
    await enqueue(store, "x:a1");
    for (const id of ["x:a1", "r:a4", "r", "", "R:A1"]) {
      assert.equal(await store.getRunTarget(id), null, id);
    }
  });

  test("after more than max_errors failures the rest is skipped", async (store) => {
    await store.createRun(newRun("r", ["a1", "a2", "a3", "a4"], {
      maxConcurrency: 1,
      maxErrors: 1,
    }));
    for (
      const [agent, status] of [["a1", "failed"], ["a2", "success"], ["a3", "failed"]] as const
    ) {
      const step = await store.advanceRun("r", T0);
      assert.deepEqual(step?.toEnqueue.map((t) => t.agentId), [agent]);
      await finish(store, `r:${agent}`, agent, status);
    }
    const end = await store.advanceRun("r", T0 + 10);
    assert.deepEqual(end?.toEnqueue, []);
    assert.deepEqual(end?.run.targets.map((t) => t.skippedAt), [null, null, null, T0 + 10]);
    assert.equal(end?.run.completedAt, T0 + 10);
    assert.equal(runStatus(end!.run), "failed");
    assert.equal(runTotals(end!.run).failed_total, 2);
    assert.equal(await store.getCommand("r:a4"), null, "a skipped target has no command");
  });

  test("a run's targets are read with the start of their output only", async (store) => {
    await store.createRun(newRun("r", ["a1", "a2"]));
    await store.advanceRun("r", T0);
    // Stored as JSON string literals: the 2,048 characters read end inside an escape, \u0001 in
    // stdout and \\ in stderr, which is left out.
    const stdout = `\n \t\nfirst line\n${"a".repeat(2025)}\u0001${"b".repeat(100_000)}`;
    const stderr = `${"e".repeat(2046)}\\${"f".repeat(100_000)}`;
    await enqueue(store, "r:a1", { agentId: "a1" });
    const claimed = await claim(store, "a1");
    const full = report(claimed!);
    await store.report({ ...full, result: { ...full.result!, stdout, stderr } });
    const command = (await store.getRun("r"))?.targets[0].command;
    assert.equal(command?.result?.stdout, stdout.slice(0, 2040));
    assert.equal(command?.result?.stderr, stderr.slice(0, 2046));
    assert.equal(
      (await store.listRuns({ limit: 1 }))[0].targets[0].command?.result?.stdout?.length,
      2040,
    );
    assert.equal((await store.getCommand("r:a1"))?.result?.stdout, stdout, "the command has all");
  });

  test("a cancelled run skips what has not started and completes", async (store) => {
    await store.createRun(newRun("r", ["a1", "a2", "a3"], { maxConcurrency: 1 }));
    await store.advanceRun("r", T0);
    await enqueue(store, "r:a1", { agentId: "a1" });
    const cancelled = await store.cancelRun("r", T0 + 1);
    assert.equal(cancelled.outcome, "cancelled");
    if (cancelled.outcome !== "cancelled") return;
    assert.equal(cancelled.run.cancelRequested, true);
    assert.deepEqual(cancelled.run.targets.map((t) => t.skippedAt), [null, T0 + 1, T0 + 1]);
    assert.equal((await store.advanceRun("r", T0 + 2))?.run.completedAt, null, "r:a1 is queued");
    await store.cancel("r:a1", T0 + 3);
    const end = await store.advanceRun("r", T0 + 4);
    assert.equal(end?.run.completedAt, T0 + 4);
    assert.equal(runStatus(end!.run), "cancelled");
    assert.equal((await store.cancelRun("r", T0 + 5)).outcome, "final");
  });

  test(
    "a run's part enqueued after its run's cancel is stored cancelled, never claimed",
    async (store) => {
      await store.createRun(newRun("r", ["a1", "a2"]));
      // A step (another instance's) started both parts before the cancel and enqueues them after.
      assert.deepEqual(
        (await store.advanceRun("r", T0))?.toEnqueue.map((t) => t.commandId),
        ["r:a1", "r:a2"],
      );
      assert.equal((await store.cancelRun("r", T0 + 1)).outcome, "cancelled");
      const waited = await store.enqueue(
        { id: "r:a1", agentId: "a1", name: "uname -a", params: {}, fingerprint: "f", now: T0 + 2 },
        { deploymentHash: "default", deliveryLeaseMs: LEASE },
      );
      assert.equal(waited.outcome, "created");
      if (waited.outcome !== "created") return;
      assert.equal(waited.command.status, "cancelled");
      assert.equal(waited.command.completedAt, T0 + 2);
      assert.equal(waited.claimed, null, "not handed to the wait it was enqueued for");
      const queued = await enqueue(store, "r:a2", { agentId: "a2", now: T0 + 2 });
      assert.equal(queued.command.status, "cancelled");
      assert.equal(await claim(store, "a2", "default", T0 + 3), null, "nor to a later wait");
      assert.deepEqual(await store.getCommand("r:a1"), waited.command);
      // A command outside a run, for the same agent, is queued as ever.
      assert.equal((await enqueue(store, "other", { now: T0 + 2 })).command.status, "queued");
      const end = await store.advanceRun("r", T0 + 4);
      assert.equal(end?.run.completedAt, T0 + 4);
      assert.equal(runStatus(end!.run), "cancelled");
    },
  );

  test(
    "a run's queued part is not claimed once its run's cancel is recorded",
    async (store) => {
      await store.createRun(newRun("r", ["a1", "a2"]));
      await store.advanceRun("r", T0);
      await enqueue(store, "r:a1", { agentId: "a1" });
      await enqueue(store, "r:a2", { agentId: "a2" });
      await enqueue(store, "later", { agentId: "a2", now: T0 + 1 });
      assert.equal((await store.cancelRun("r", T0 + 2)).outcome, "cancelled");
      // The cancel's step has not cancelled the parts yet (it goes through them one by one) when
      // the agents' waits come. Old behaviour: each wait was handed its part, after the cancel.
      assert.equal(await claim(store, "a1", "default", T0 + 3), null);
      assert.equal((await claim(store, "a2", "default", T0 + 3))?.id, "later");
      const waited = await store.enqueue(
        { id: "new", agentId: "a1", name: "echo", params: {}, fingerprint: "f", now: T0 + 4 },
        { deploymentHash: "default", deliveryLeaseMs: LEASE },
      );
      assert.equal(waited.outcome === "created" ? waited.claimed?.id : null, "new");
      assert.equal((await store.getCommand("r:a1"))?.status, "queued", "left for the cancel");
      assert.equal((await store.cancel("r:a1", T0 + 5)).outcome, "cancelled");
    },
  );

  test(
    "prunes commands final before a time with their results and output, in batches",
    async (store, t) => {
      const keep = { headBytes: 100, tailBytes: 100 };
      const put = (commandId: string) =>
        store.appendOutput({
          commandId,
          attempt: 1,
          stream: "stdout",
          offset: 0,
          data: new Uint8Array([1, 2, 3]),
          now: T0,
          keep,
        });
      for (const id of ["old1", "old2", "old3", "recent", "queued"]) await enqueue(store, id);
      await enqueue(store, "running", { agentId: "a2" });
      const old1 = await claim(store);
      assert.equal(old1?.id, "old1");
      await put("old1");
      await store.report(report(old1!, { now: T0 + 1000 }));
      await store.cancel("old2", T0 + 1000);
      await store.cancel("old3", T0 + 1500);
      await store.cancel("recent", T0 + 2000);
      assert.equal((await claim(store, "a2"))?.id, "running");
      await put("running");

      await t.step("a limit below 1 is refused", async () => {
        await assert.rejects(() => store.pruneCommands(T0 + 2000, 0), RangeError);
        await assert.rejects(() => store.pruneCommands(T0 + 2000, 1.5), RangeError);
      });
      await t.step("oldest first, at most the limit a call", async () => {
        assert.deepEqual(await store.pruneCommands(T0 + 2000, 2), {
          commands: 2,
          runs: 0,
          more: true,
        });
        assert.equal(await store.getCommand("old1"), null);
        assert.deepEqual(await store.listOutput("old1"), [], "its live output went with it");
        assert.equal(await store.getCommand("old2"), null);
        assert.equal((await store.getCommand("old3"))?.status, "cancelled", "the next call's");
        assert.deepEqual(await store.pruneCommands(T0 + 2000, 2), {
          commands: 1,
          runs: 0,
          more: false,
        });
        assert.equal(await store.getCommand("old3"), null);
        assert.deepEqual(await store.pruneCommands(T0 + 2000, 2), {
          commands: 0,
          runs: 0,
          more: false,
        });
      });
      await t.step("final at or after the time, or not final: kept", async () => {
        assert.equal((await store.getCommand("recent"))?.status, "cancelled");
        assert.equal((await store.getCommand("queued"))?.status, "queued");
        assert.equal((await store.getCommand("running"))?.status, "delivered");
        assert.equal((await store.listOutput("running")).length, 1);
        assert.deepEqual(
          (await store.listCommands({ limit: 10 })).map((c) => c.id).sort(),
          ["queued", "recent", "running"],
        );
        assert.deepEqual(await store.countCommandsByStatus(), {
          cancelled: 1,
          delivered: 1,
          queued: 1,
        });
      });
      await t.step("an id pruned can be enqueued again", async () => {
        assert.equal((await enqueue(store, "old1", { now: T0 + 3000 })).outcome, "created");
      });
    },
  );

  test(
    "prunes a finished run with its targets and commands, never an open run's",
    async (store, t) => {
      // "done": completed at T0 + 1000 (a1 reported then, a2 skipped after a cancel).
      await store.createRun(newRun("done", ["a1", "a2"], { maxConcurrency: 1 }));
      await store.advanceRun("done", T0);
      await enqueue(store, "done:a1", { agentId: "a1" });
      const claimed = await claim(store, "a1");
      await store.report(report(claimed!, { now: T0 + 1000 }));
      await store.cancelRun("done", T0 + 1000);
      assert.equal((await store.advanceRun("done", T0 + 1000))?.run.completedAt, T0 + 1000);
      // "open": one command final long ago, one still queued.
      await store.createRun(newRun("open", ["a1", "a2"]));
      await store.advanceRun("open", T0);
      await enqueue(store, "open:a1", { agentId: "a1" });
      await enqueue(store, "open:a2", { agentId: "a2" });
      await store.cancel("open:a1", T0 + 1000);
      assert.equal((await store.advanceRun("open", T0 + 1000))?.run.completedAt, null);
      // "done2": completed at T0 + 1500.
      await store.createRun(newRun("done2", ["a3"]));
      await store.advanceRun("done2", T0);
      await enqueue(store, "done2:a3", { agentId: "a3" });
      await store.cancel("done2:a3", T0 + 1500);
      assert.equal((await store.advanceRun("done2", T0 + 1500))?.run.completedAt, T0 + 1500);

      await t.step("a run completed after the time is kept", async () => {
        assert.deepEqual(await store.pruneCommands(T0 + 1000, 100), {
          commands: 0,
          runs: 0,
          more: false,
        });
        assert.equal((await store.getRun("done"))?.targets.length, 2);
      });
      await t.step("a finished run goes with its targets and commands", async () => {
        // The limit counts every row: done:a1, the skipped target done:a2, the run, then done2's.
        assert.deepEqual(await store.pruneCommands(T0 + 2000, 2), {
          commands: 1,
          runs: 0,
          more: true,
        });
        assert.equal(await store.getCommand("done:a1"), null);
        assert.deepEqual(await store.pruneCommands(T0 + 2000, 100), {
          commands: 1,
          runs: 2,
          more: false,
        });
        assert.equal(await store.getRun("done"), null);
        assert.equal(await store.getRun("done2"), null);
        assert.equal(await store.getCommand("done2:a3"), null);
      });
      await t.step("an open run keeps every command, final ones too", async () => {
        const open = await store.getRun("open");
        assert.deepEqual(open?.targets.map((t) => t.command?.status), ["cancelled", "queued"]);
        assert.equal((await store.getCommand("open:a1"))?.status, "cancelled");
        assert.deepEqual((await store.listRuns({ limit: 10 })).map((r) => r.id), ["open"]);
      });
    },
  );

  test("a closed store refuses work", async (store) => {
    await store.close();
    await store.close();
    await assert.rejects(() => store.getCommand("c1"));
  });

  test(
    "a queued command expires at its queue expiry and is never claimed after it",
    async (store, t) => {
      const TTL = 60_000;
      await t.step("the expiry is kept and is the next thing to do", async () => {
        const created = await enqueue(store, "e1", { expiresAt: T0 + TTL });
        assert.equal(created.command.expiresAt, T0 + TTL);
        assert.equal((await enqueue(store, "e0")).command.expiresAt, null, "absent: never");
        assert.equal(await store.nextLeaseExpiry(), T0 + TTL);
      });
      await t.step("before the expiry it is claimed as usual", async () => {
        await enqueue(store, "e2", { agentId: "a2", expiresAt: T0 + TTL });
        assert.equal((await claim(store, "a2", "default", T0 + TTL - 1))?.id, "e2");
      });
      await t.step("at the expiry it is not claimed", async () => {
        assert.equal(
          (await claim(store, "a1", "default", T0 + TTL))?.id,
          "e0",
          "only the command without an expiry",
        );
        assert.equal(await claim(store, "a1", "default", T0 + TTL), null);
        assert.equal((await store.getCommand("e1"))?.status, "queued");
      });
      await t.step("requeueExpired makes it expired, final, with a completion time", async () => {
        const outcome = await store.requeueExpired(T0 + TTL, 3);
        assert.deepEqual(outcome.expired.map((c) => c.id), ["e1"]);
        const e1 = await store.getCommand("e1");
        assert.equal(e1?.status, "expired");
        assert.equal(e1?.completedAt, T0 + TTL);
        assert.equal(e1?.result, null);
        assert.deepEqual(
          (await store.listCommands({ status: "expired", limit: 10 })).map((c) => c.id),
          [
            "e1",
          ],
        );
        assert.equal((await store.cancel("e1", T0 + TTL)).outcome, "final");
        const late = await store.report(report({ id: "e1", agentId: "a1" }));
        assert.equal(late.outcome, "conflict", "never delivered: no report can belong to it");
        assert.equal((await store.requeueExpired(T0 + TTL + 1, 3)).expired.length, 0, "once");
      });
      await t.step(
        "a command queued again after its lease expires when past its expiry",
        async () => {
          await enqueue(store, "e3", { agentId: "a3", expiresAt: T0 + 2 * LEASE - 1 });
          await claim(store, "a3", "default", T0);
          const outcome = await store.requeueExpired(T0 + 2 * LEASE, 3);
          assert.deepEqual(outcome.expired.map((c) => c.id), ["e3"]);
          assert.deepEqual(outcome.requeued.map((c) => c.id), [], "reported once, as expired");
          assert.equal((await store.getCommand("e3"))?.status, "expired");
          const late = await store.report(report({ id: "e3", agentId: "a3" }));
          assert.equal(
            late.outcome,
            "accepted",
            "it was delivered: the agent's result replaces it",
          );
          assert.equal((await store.getCommand("e3"))?.status, "success");
        },
      );
    },
  );

  test("records a report whose error and signal hold NUL and control characters", async (store) => {
    // An agent's free text: each NUL is kept as U+FFFD (PostgreSQL's text refuses NUL, and
    // SQLite's ends at it), the rest as sent.
    const error = "spawn /opt/x\u0000y failed:\n\tpermission denied \u001b[31m\u00e9\u{1F600}";
    const signal = "SIG\u0000KILL";
    await enqueue(store, "n1");
    await claim(store);
    const outcome = await store.report(report({ id: "n1", agentId: "a1" }, {
      status: "killed",
      result: {
        exitCode: null,
        signal,
        durationSecs: 0.1,
        stdout: "",
        stderr: "",
        stdoutTruncatedBytes: 0,
        stderrTruncatedBytes: 0,
      },
      error,
    }));
    assert.equal(outcome.outcome, "accepted");
    const kept = error.replaceAll("\u0000", "\ufffd");
    assert.equal(outcome.outcome === "accepted" && outcome.command.result?.error, kept);
    const stored = await store.getCommand("n1");
    assert.equal(stored?.result?.error, kept);
    assert.equal(stored?.result?.signal, "SIG\ufffdKILL");
  });

  test("keeps output byte for byte: NUL bytes, control characters and base64", async (store) => {
    const text = "etc/shadow\u0000\u0000\u0000ustar\u000000root\u0001\u001b[0m \u00e9\u{1F600}\n";
    const base64 = btoa(String.fromCharCode(0, 0xff, 0xfe, 0x41, 0));
    for (
      const [id, stdout, stderr, encoding] of [
        ["b1", text, "\u0000", undefined],
        ["b2", base64, "warn\n", "base64"],
      ] as const
    ) {
      await enqueue(store, id);
      await claim(store);
      const outcome = await store.report(report({ id, agentId: "a1" }, {
        result: {
          exitCode: 0,
          signal: null,
          durationSecs: 0.1,
          stdout,
          stderr,
          stdoutTruncatedBytes: 7,
          stderrTruncatedBytes: 0,
          ...(encoding ? { stdoutEncoding: encoding } : {}),
        },
      }));
      assert.equal(outcome.outcome, "accepted");
      const stored = (await store.getCommand(id))?.result;
      assert.equal(stored?.stdout, stdout);
      assert.equal(stored?.stderr, stderr);
      assert.equal(stored?.stdoutTruncatedBytes, 7);
      assert.equal(stored?.stdoutEncoding ?? "utf-8", encoding ?? "utf-8");
      assert.equal(stored?.stderrEncoding ?? "utf-8", "utf-8");
      const listed = (await store.listCommands({ limit: 1 }))[0];
      assert.equal(listed.result?.stdout, stdout, "the list reads the same bytes");
    }
  });
}
