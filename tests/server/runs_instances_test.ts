/**
 * Fan-out runs on two dashboard instances sharing one PostgreSQL database: a step under way on one
 * instance and a cancel accepted on the other.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { until } from "../_until.ts";
import { createApp, type DashboardApp } from "../../src/server/mod.ts";
import { openPostgresStore } from "../../src/store/postgres.ts";
import { AGENT_SCOPES, type CommandStore } from "../../src/store/mod.ts";
import { migratedTestDatabase, pgIgnore } from "../_pg.ts";
import { captureLogs } from "../agent/_helpers.ts";
import { ADMIN_TOKEN, agentHeaders, FakeClock, P } from "./_helpers.ts";

const ignore = pgIgnore();

/** Opening a store migrates its database. */
async function migrate(url: string): Promise<void> {
  await (await openPostgresStore(url)).close();
}

const tokenOf = (agentId: string) => `agent-token-${agentId}-`.padEnd(43, "x");

/** A held door: `reached` once something waits at it, `open` lets it through. */
function door() {
  let open!: () => void;
  let reach!: () => void;
  const opened = new Promise<void>((resolve) => open = resolve);
  const reached = new Promise<void>((resolve) => reach = resolve);
  return { open, reached, pass: () => (reach(), opened) };
}

/** The store, its enqueue of `commandId` held at `gate` until the gate opens. */
function holdingEnqueue(store: CommandStore, commandId: string, gate: ReturnType<typeof door>) {
  return new Proxy(store, {
    get(target, key) {
      const value = Reflect.get(target, key, target);
      if (typeof value !== "function") return value;
      if (key !== "enqueue") return value.bind(target);
      return async (...args: Parameters<CommandStore["enqueue"]>) => {
        if (args[0].id === commandId) await gate.pass();
        return await target.enqueue(...args);
      };
    },
  });
}

/** Two instances on one fresh database, with `agents` registered. */
async function twoInstances(
  agents: string[],
  hold: { a: [string, ReturnType<typeof door>]; b: [string, ReturnType<typeof door>] },
) {
  const db = await migratedTestDatabase(migrate);
  const stores = [await openPostgresStore(db.url), await openPostgresStore(db.url)];
  for (const id of agents) {
    await stores[0].addAgent({ id, token: tokenOf(id), scopes: AGENT_SCOPES, now: Date.now() });
  }
  const clock = new FakeClock(Date.now(), true);
  const make = (store: CommandStore) =>
    createApp({ store, clock, adminToken: ADMIN_TOKEN, autoExpireLeases: false, runSweepMs: 0 });
  const a = make(holdingEnqueue(stores[0], ...hold.a));
  const b = make(holdingEnqueue(stores[1], ...hold.b));
  return {
    a,
    b,
    store: stores[0],
    async [Symbol.asyncDispose]() {
      await a.close();
      await b.close();
      await Promise.all(stores.map((store) => store.close()));
      await db.drop();
    },
  };
}

function admin(dashboard: DashboardApp, path: string, body?: unknown) {
  return dashboard.app.request(path, {
    method: "POST",
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

function wait(dashboard: DashboardApp, agentId: string) {
  const path = P.wait("default", 30);
  return dashboard.app.request(path, {
    headers: agentHeaders({
      path,
      agentId,
      token: tokenOf(agentId),
      bodyText: "",
      now: Date.now(),
    }),
  });
}

Deno.test({
  name: "a run cancelled on one instance while another's step enqueues its parts hands out no " +
    "part after the cancel",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    using _logs = captureLogs();
    const agents = ["a1", "a2", "a3", "a4"];
    // A's step stops before its enqueue of a2's part; B's cancel, once recorded, stops before its
    // own step enqueues that part (as a step of 10,000 parts is long on both).
    const heldA = door();
    const heldB = door();
    await using instances = await twoInstances(agents, {
      a: ["r:a2", heldA],
      b: ["r:a2", heldB],
    });
    const { a, b, store } = instances;
    // Every agent waits on A, once A listens and has re-checked its waits (a wait whose steps
    // span that first resync is answered 204: a revoked event may have been missed before).
    await until(() => a.hub.mark > 0, "A listens");
    const waits = agents.map((agentId) => wait(a, agentId));
    await until(() => a.hub.size === agents.length, "the agents' waits are open on A");
    const created = admin(a, "/api/v1/runs", { id: "r", name: "uname", target: { agents } });
    await heldA.reached;
    const cancelled = admin(b, "/api/v1/runs/r/cancel");
    await heldB.reached;
    assert.equal((await store.getRun("r"))?.cancelRequested, true, "the cancel is committed");
    // A's step goes on with the parts it started before the cancel.
    heldA.open();
    assert.equal((await created).status, 201);
    heldB.open();
    const answer = await cancelled;
    assert.equal(answer.status, 200);
    await answer.body?.cancel();
    const run = await store.getRun("r");
    // Old behaviour: A handed a2–a4's parts to their waits after the cancel had committed (and
    // B's step then asked them to stop): they ran, or began to.
    assert.deepEqual(
      run?.targets.map((t) => [t.agentId, t.command?.status, t.command?.deliveredAt !== null]),
      [["a1", "delivered", true], ["a2", "cancelled", false], ["a3", "cancelled", false], [
        "a4",
        "cancelled",
        false,
      ]],
    );
    // Each instance counts what it ended: A the three parts it stored cancelled.
    const finished = async (dashboard: DashboardApp) => {
      const text = await (await dashboard.app.request("/metrics", {
        headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
      })).text();
      const line = text.split("\n").find((l) =>
        l.startsWith('status_commands_finished_total{status="cancelled"}')
      );
      return Number(line?.split(" ").at(-1) ?? 0);
    };
    assert.deepEqual([await finished(a), await finished(b)], [3, 0]);
    const first = await waits[0];
    assert.equal(first.status, 200, "a1's part was handed out before the cancel");
    assert.equal((await first.json()).id, "r:a1");
    assert.equal(a.hub.size, 3, "the other waits are still open, with no command");
    await a.close();
    for (const pending of waits.slice(1)) {
      const ended = await pending;
      assert.equal(ended.status, 204);
      await ended.body?.cancel();
    }
  },
});

Deno.test({
  name: "a run's part enqueued while another instance removes its agent ends with the agent's " +
    "other commands",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    using _logs = captureLogs();
    const db = await migratedTestDatabase(migrate);
    const store = await openPostgresStore(db.url);
    const sql = postgres(db.url, { max: 2, onnotice: () => {} });
    const dashboard = createApp({
      store,
      clock: new FakeClock(Date.now(), true),
      adminToken: ADMIN_TOKEN,
      autoExpireLeases: false,
      runSweepMs: 0,
    });
    try {
      await store.addAgent({ id: "a1", token: tokenOf("a1"), scopes: AGENT_SCOPES, now: 0 });
      const now = Date.now();
      await store.createRun({
        id: "r",
        name: "uname",
        params: {},
        target: { agents: ["a1"] },
        fingerprint: "fp",
        maxConcurrency: 1,
        maxConcurrencySpec: 1,
        maxErrors: null,
        targets: [{ agentId: "a1", commandId: "r:a1", offlineAtCreation: false }],
        now,
      });
      let stepped: Promise<unknown> | undefined;
      let settled = false;
      // Another instance removes a1: its agent row is gone and its commands not final are ended
      // (none yet), not committed, when this instance's step enqueues a1's part.
      await sql.begin(async (tx) => {
        await tx`DELETE FROM agents WHERE id = 'a1'`;
        await tx`UPDATE commands SET status = 'cancelled', end_cause = 'agent_removed'
          WHERE agent_id = 'a1' AND status IN ('queued', 'delivered', 'running')`;
        stepped = dashboard.runs.advance("r").finally(() => settled = true);
        await until(
          async () =>
            settled ||
            (await sql`SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
              AND wait_event_type = 'Lock'`).length > 0,
          "the step's enqueue is done or waits",
        );
      });
      await stepped;
      // Old behaviour: the part was stored queued, the step found the agent still there, and the
      // removal had ended none of its commands: the part waited for a removed agent until its
      // queue expiry, and the run with it.
      const command = await store.getCommand("r:a1");
      assert.deepEqual([command?.status, command?.endCause], ["cancelled", "agent_removed"]);
    } finally {
      await dashboard.close();
      await sql.end();
      await store.close();
      await db.drop();
    }
  },
});
