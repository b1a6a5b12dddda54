import assert from "node:assert/strict";
import postgres from "postgres";
import {
  BOUNDED_SQL,
  isDriverFault,
  openPostgresStore,
  REQUEST_ID_SWEEP_BATCH,
} from "../../src/store/postgres.ts";
import { pathToFileURL } from "node:url";
import { until } from "../_until.ts";
import {
  AGENT_SCOPES,
  StoreError,
  type StoreEvent,
  StoreFullError,
  StoreUnavailableError,
} from "../../src/store/mod.ts";
import { migratedTestDatabase, pgIgnore, testDatabase, testSocket } from "../_pg.ts";
import { runStoreContract } from "./contract.ts";
import { PG_MIGRATION_LOCK, PG_MIGRATIONS } from "../../src/store/_pg_migrations.ts";
import { captureLogs } from "../agent/_helpers.ts";
import { createApp } from "../../src/server/mod.ts";

const ignore = pgIgnore();

/** Opening a store migrates its database. */
async function migrate(url: string): Promise<void> {
  await (await openPostgresStore(url)).close();
}

if (!ignore) {
  runStoreContract("postgres", async () => {
    const db = await migratedTestDatabase(migrate);
    const store = await openPostgresStore(db.url);
    const close = store.close.bind(store);
    store.close = async () => {
      await close();
      await db.drop();
    };
    return store;
  });
}

const T0 = Date.UTC(2026, 0, 12, 10, 0, 0);

/** A temporary directory, removed with what it holds when disposed. */
async function tempDirectory(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "status-socket-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

/** `n` stores (as `n` dashboard instances would open) on one fresh database. */
async function instances(n: number) {
  const db = await migratedTestDatabase(migrate);
  const stores = await Promise.all(Array.from({ length: n }, () => openPostgresStore(db.url)));
  return {
    url: db.url,
    stores,
    async [Symbol.asyncDispose]() {
      await Promise.all(stores.map((s) => s.close()));
      await db.drop();
    },
  };
}

function newCommand(id: string, agentId = "a1", now = T0) {
  return { id, agentId, name: `echo ${id}`, params: {}, fingerprint: `fp-${id}`, now };
}

Deno.test({
  name: "postgres store: a page of agents is in byte order, by an index, on a database whose " +
    "collation sorts otherwise",
  ignore,
  async fn() {
    // ICU's English: 'a' before 'B', '-' and '.' ignored (web-10 before web-9 either way).
    await using db = await testDatabase(
      undefined,
      "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en' LOCALE 'C'",
    );
    const store = await openPostgresStore(db.url);
    try {
      const ids = ["B", "a", "a-1", "a.1", "a1", "a:1", "b", "web-10", "web-9"];
      for (const id of ids.toReversed()) {
        await store.addAgent({ id, token: null, scopes: AGENT_SCOPES, now: T0 });
      }
      const listed = async (page: Parameters<typeof store.listAgents>[0]) =>
        (await store.listAgents(page)).map((agent) => agent.id);
      assert.deepEqual(await listed(undefined), ids);
      assert.deepEqual(await listed({ after: "B", limit: 3 }), ["a", "a-1", "a.1"]);
      assert.deepEqual(await listed({ after: "a.1", limit: 3 }), ["a1", "a:1", "b"]);
      assert.deepEqual(await listed({ after: "a:1" }), ["b", "web-10", "web-9"]);
    } finally {
      await store.close();
    }
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      await sql.unsafe("SET enable_seqscan = off");
      const plan = (await sql.unsafe(
        `EXPLAIN SELECT id FROM agents a WHERE a.id COLLATE "C" > 'a' ORDER BY a.id COLLATE "C" LIMIT 3`,
      )).map((row) => String(row["QUERY PLAN"])).join("\n");
      assert.match(plan, /Index (Only )?Scan using agents_id_c/);
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name: "postgres store: an agent's open commands, a page's commands in hand and a batch of " +
    "output are read by their indexes, not through the fleet's commands or every chunk",
  ignore,
  async fn(t) {
    await using db = await migratedTestDatabase(migrate);
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      // 200,000 commands of 2,000 agents, a few thousand of them queued, delivered or running,
      // and 50,000 chunks of live output of the newest.
      await sql.unsafe(
        `INSERT INTO commands (id, agent_id, name, params, priority, fingerprint, status, attempt,
           created_at, updated_at, completed_at)
         SELECT 'c' || i, 'a' || (i % 2000), 'echo', '{}', 0, 'f', s, 1, i, i,
           CASE WHEN s = 'success' THEN i END
         FROM generate_series(1, 200000) i, LATERAL (SELECT CASE WHEN i % 50 = 0 THEN 'running'
           WHEN i % 51 = 0 THEN 'delivered' WHEN i % 53 = 0 THEN 'queued' ELSE 'success' END) st(s)`,
      );
      await sql.unsafe(
        `INSERT INTO output_chunks (command_id, attempt, stream, byte_offset, data, created_at)
         SELECT 'c' || (190000 + i % 10000), 1, 'stdout', i, '\\x00', 0
         FROM generate_series(1, 50000) i`,
      );
      await sql.unsafe("ANALYZE");
      const plan = async (statement: string, args: unknown[]) =>
        (await sql.unsafe(`EXPLAIN ${statement}`, args as never[]))
          .map((row) => String(row["QUERY PLAN"])).join("\n");
      const fleetWide = /commands_status|commands_agent\b|Seq Scan on commands/;
      // An agent's commands in the statuses asked for: by the queue's index, the index of commands
      // in hand, or the index of an agent's commands by status.
      const byAgent =
        /(using|Index Scan on) (commands_queue|commands_in_hand|commands_agent_status)\b/g;
      await t.step("an agent's open commands", async () => {
        const found = await plan(BOUNDED_SQL.openCommands, ["a1", 1000]);
        assert.equal(found.match(byAgent)?.length, 2, found);
        assert.doesNotMatch(found, fleetWide, found);
      });
      await t.step("the commands in hand of a page of agents", async () => {
        const found = await plan(BOUNDED_SQL.commandsInHand, [["a1", "a2", "a3"]]);
        assert.equal(found.match(byAgent)?.length, 2, found);
        assert.doesNotMatch(found, fleetWide, found);
      });
      await t.step("where a stream's stored output ends", async () => {
        const found = await plan(BOUNDED_SQL.streamEnd, ["c190001", 1, "stdout"]);
        assert.match(found, /Index Scan Backward using output_chunks_stream/);
        assert.doesNotMatch(found, /Aggregate|Seq Scan on output_chunks/, found);
      });
      await t.step("a batch of live output to prune", async () => {
        const found = await plan(BOUNDED_SQL.pruneOutput, [195000, 1000]);
        assert.match(found, /Index Cond: \(seq = ANY/);
        assert.doesNotMatch(
          found,
          /Seq Scan on (commands|output_chunks)|commands_completed/,
          found,
        );
      });
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name: "postgres store: an agent's commands in one status are read by an index of both, not " +
    "through the agent's history or the fleet's commands in that status",
  ignore,
  async fn(t) {
    await using db = await migratedTestDatabase(migrate);
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      // 200,000 commands of 200 agents, one in 50 failed; agent a1 has 40,000 of its own, 4 of
      // them failed.
      await sql.unsafe(
        `INSERT INTO commands (id, agent_id, name, params, priority, fingerprint, status, attempt,
           created_at, updated_at)
         SELECT 'c' || i, CASE WHEN i % 5 = 0 THEN 'a1' ELSE 'a' || (i % 200) END, 'echo', '{}',
           0, 'f', CASE WHEN i % 5 = 0 AND i % 10000 <> 0 THEN 'success'
             WHEN i % 50 = 1 OR i % 10000 = 0 THEN 'failed' ELSE 'success' END, 1, i, i
         FROM generate_series(1, 200000) i`,
      );
      await sql.unsafe("ANALYZE");
      // As listCommands asks for a page (one more than shown), without and with its cursor.
      for (
        const [step, statement, args] of [
          [
            "the first page",
            `SELECT c.seq FROM commands c WHERE c.agent_id = $1 AND c.status = $2
             ORDER BY c.seq DESC LIMIT $3`,
            ["a1", "failed", 26],
          ],
          [
            "an older page",
            `SELECT c.seq FROM commands c WHERE c.agent_id = $1 AND c.status = $2 AND c.seq < $3
             ORDER BY c.seq DESC LIMIT $4`,
            ["a1", "failed", 150000, 26],
          ],
        ] as const
      ) {
        await t.step(step, async () => {
          const plan = (await sql.unsafe(`EXPLAIN ${statement}`, [...args]))
            .map((row) => String(row["QUERY PLAN"])).join("\n");
          assert.match(plan, /Index (Only )?Scan Backward using commands_agent_status/, plan);
          assert.doesNotMatch(plan, /commands_status|commands_agent |Seq Scan|Sort/, plan);
        });
      }
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name: "postgres store: instances claiming at once never hand out one command twice",
  ignore,
  async fn() {
    await using cluster = await instances(4);
    const [first] = cluster.stores;
    for (let i = 0; i < 40; i++) await first.enqueue(newCommand(`c${i}`));
    const claimed: string[] = [];
    await Promise.all(cluster.stores.map(async (store) => {
      for (;;) {
        const command = await store.claimNext({
          agentId: "a1",
          deploymentHash: "default",
          now: T0,
          deliveryLeaseMs: 30_000,
        });
        if (!command) return;
        claimed.push(command.id);
      }
    }));
    assert.equal(claimed.length, 40);
    assert.equal(new Set(claimed).size, 40);
  },
});

Deno.test({
  name: "postgres store: an expired lease is requeued once across instances, then lost",
  ignore,
  async fn() {
    await using cluster = await instances(4);
    const [first] = cluster.stores;
    await first.enqueue(newCommand("c1"));
    let now = T0;
    for (let attempt = 1; attempt <= 3; attempt++) {
      const command = await first.claimNext({
        agentId: "a1",
        deploymentHash: "default",
        now,
        deliveryLeaseMs: 1000,
      });
      assert.equal(command?.attempt, attempt);
      now += 1000;
      const outcomes = await Promise.all(cluster.stores.map((s) => s.requeueExpired(now, 3)));
      const requeued = outcomes.flatMap((o) => o.requeued);
      const lost = outcomes.flatMap((o) => o.lost);
      if (attempt < 3) {
        assert.deepEqual(requeued.map((c) => [c.id, c.attempt]), [["c1", attempt + 1]]);
        assert.equal(lost.length, 0);
      } else {
        assert.equal(requeued.length, 0);
        assert.deepEqual(lost.map((c) => [c.id, c.status, c.attempt]), [["c1", "lost", 3]]);
      }
    }
    assert.equal((await first.getCommand("c1"))?.status, "lost");
  },
});

Deno.test({
  name: "postgres store: concurrent enqueues of one id make one command; the first report wins",
  ignore,
  async fn() {
    await using cluster = await instances(4);
    const outcomes = await Promise.all(cluster.stores.map((s) => s.enqueue(newCommand("c1"))));
    assert.deepEqual(outcomes.map((o) => o.outcome).sort(), [
      "created",
      "duplicate",
      "duplicate",
      "duplicate",
    ]);
    const [first] = cluster.stores;
    await first.claimNext({ agentId: "a1", deploymentHash: "d", now: T0, deliveryLeaseMs: 1000 });
    const reports = await Promise.all(cluster.stores.map((s, i) =>
      s.report({
        commandId: "c1",
        agentId: "a1",
        attempt: 1,
        status: i % 2 ? "failed" : "success",
        result: null,
        error: `report ${i}`,
        startedAt: null,
        completedAt: null,
        now: T0 + i,
      })
    ));
    const accepted = reports.filter((r) => r.outcome === "accepted");
    assert.equal(accepted.length, 1);
    assert.equal(reports.filter((r) => r.outcome === "duplicate").length, 3);
    const stored = await first.getCommand("c1");
    assert.ok(accepted[0].outcome === "accepted");
    assert.equal(stored?.result?.error, accepted[0].command.result?.error);
  },
});

Deno.test({
  name: "postgres store: a request id is accepted once by all instances within the window",
  ignore,
  async fn() {
    await using cluster = await instances(3);
    const [a, b, c] = cluster.stores;
    const results = await Promise.all([a, b, c].map((s) => s.rememberRequestId("a1\nr1", T0, 600)));
    assert.deepEqual(results.sort(), [false, false, true]);
    assert.equal(await b.rememberRequestId("a1\nr1", T0 + 599, 600), false);
    assert.equal(await c.rememberRequestId("a1\nr1", T0 + 600, 600), true, "after the window");
    assert.equal(await a.rememberRequestId("a2\nr1", T0, 600), true, "scoped by the key");
  },
});

Deno.test({
  name: "postgres store: an instance whose clock is minutes ahead does not forget the others' " +
    "request ids while they may still accept them",
  ignore,
  async fn() {
    await using cluster = await instances(2);
    const [a, ahead] = cluster.stores;
    const window = 660_000;
    assert.equal(await a.rememberRequestId("a1\nr1", T0, window), true);
    // Four minutes later by the true clock; the other instance's clock is 7 minutes ahead, so its
    // now is past the id's end by the first instance's clock. Its sweep must leave the id.
    assert.equal(await ahead.rememberRequestId("a1\nr2", T0 + 11 * 60_000, window), true);
    assert.equal(await a.rememberRequestId("a1\nr1", T0 + 4 * 60_000, window), false);
  },
});

Deno.test({
  name: "postgres store: ended request ids are swept a batch a request, until none is left",
  ignore,
  async fn() {
    await using db = await migratedTestDatabase(migrate);
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    const store = await openPostgresStore(db.url);
    try {
      const window = 660_000;
      // Two batches and one more of ids that ended longer than a window ago (a big fleet's).
      const ended = 2 * REQUEST_ID_SWEEP_BATCH + 1;
      await sql.unsafe(
        `INSERT INTO request_ids (key, expires_at)
         SELECT 'old\n' || i, $1::bigint FROM generate_series(1, $2::int) i`,
        [T0 - 2 * window, ended],
      );
      const left = async () =>
        Number(
          (await sql.unsafe("SELECT count(*) AS n FROM request_ids WHERE key LIKE 'old%'"))[0].n,
        );
      assert.equal(await store.rememberRequestId("a1\nr1", T0, window), true);
      assert.equal(await left(), ended - REQUEST_ID_SWEEP_BATCH, "a batch, not all of them");
      assert.equal(await store.rememberRequestId("a1\nr2", T0 + 1, window), true);
      assert.equal(await left(), 1, "a full batch: the next request sweeps again");
      assert.equal(await store.rememberRequestId("a1\nr3", T0 + 2, window), true);
      assert.equal(await left(), 0);
      assert.equal(await store.rememberRequestId("a1\nr1", T0 + 3, window), false, "kept");
    } finally {
      await store.close();
      await sql.end();
    }
  },
});

Deno.test({
  name: "postgres store: other instances hear of an agent's removal and of each command it ended",
  ignore,
  async fn() {
    await using cluster = await instances(2);
    const [a, b] = cluster.stores;
    const events: StoreEvent[] = [];
    const heard = Promise.withResolvers<void>();
    const subscription = await a.subscribe({
      event(event) {
        // From the removal's first event on (the enqueues' events were committed before it).
        if (event.type === "revoked" || events.length > 0) events.push(event);
        if (events.length === 3) heard.resolve();
      },
      resync() {},
    });
    try {
      await b.addAgent({ id: "a1", token: "t".repeat(43), scopes: AGENT_SCOPES, now: T0 });
      for (const id of ["c1", "c2"]) await b.enqueue(newCommand(id));
      await b.enqueue(newCommand("c3", "a2"));
      const removed = await b.removeAgent("a1", T0 + 1);
      assert.deepEqual(removed?.ended.map((c) => c.id), ["c1", "c2"]);
      await heard.promise;
      assert.deepEqual(events.map((e) => [e.type, "agentId" in e ? e.agentId : e.commandId]), [
        ["revoked", "a1"],
        ["changed", "c1"],
        ["changed", "c2"],
      ]);
      assert.equal((await a.getCommand("c1"))?.endCause, "agent_removed");
    } finally {
      await subscription.close();
    }
  },
});

Deno.test({
  name: "postgres store: other instances hear of enqueues, requeues, releases and cancels",
  ignore,
  async fn() {
    await using cluster = await instances(2);
    const [a, b] = cluster.stores;
    const events: StoreEvent[] = [];
    const heard = Promise.withResolvers<void>();
    const subscription = await a.subscribe({
      event(event) {
        if (event.type === "changed") return; // every change of a command: for event streams
        events.push(event);
        if (events.length === 5) heard.resolve();
      },
      resync() {},
    });
    try {
      await a.enqueue(newCommand("own")); // its own: not heard
      await b.enqueue(newCommand("c1"));
      const claim = { agentId: "a1", deploymentHash: "d", now: T0, deliveryLeaseMs: 1000 };
      const own = await b.claimNext(claim);
      const c1 = await b.claimNext(claim);
      assert.equal(await b.release(c1!.id, 1, T0), true);
      await b.cancel("own", T0);
      await b.claimNext(claim);
      const expired = await b.requeueExpired(T0 + 1000, 3);
      assert.deepEqual(expired.requeued.map((c) => c.id), ["c1"]);
      await b.enqueue(newCommand("c2", "a2"));
      await heard.promise;
      assert.equal(own?.id, "own");
      assert.deepEqual(events.map((e) => "agentId" in e ? e.agentId : e.commandId), [
        "a1",
        "a1",
        "own",
        "a1",
        "a2",
      ]);
    } finally {
      await subscription.close();
    }
  },
});

Deno.test({
  name:
    "postgres store: clear errors for an unreachable server, a missing database, a newer schema",
  ignore,
  async fn() {
    await using cluster = await instances(1);
    const url = new URL(cluster.url);
    const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (closed.addr as Deno.NetAddr).port;
    closed.close();
    url.port = String(port);
    url.password = "secret-pw";
    const unreachable = await storeError(openPostgresStore(url.toString()), /not reachable/);
    assert.doesNotMatch(unreachable.message, /secret-pw/);
    assert.ok(unreachable instanceof StoreUnavailableError, "it may succeed later");
    // What to do, too.
    assert.match(
      unreachable.message,
      /\(ECONNREFUSED [^)]*\); is PostgreSQL running, and listening on that host and port \(its listen_addresses and port\), with no firewall in between\?$/,
    );

    const missing = new URL(cluster.url);
    missing.pathname = "/no_such_database";
    const absent = await storeError(openPostgresStore(missing.toString()), /does not exist/);
    const stranger = new URL(cluster.url);
    stranger.username = "no_such_role";
    stranger.password = "secret-pw";
    const refused = await storeError(openPostgresStore(stranger.toString()), /credentials/);
    assert.match(
      refused.message,
      /: the server rejected the credentials \(role "no_such_role" does not exist\); check the URL's user name and password \(with @, :, \/ and % in them percent-encoded\) and the server's pg_hba\.conf for this host$/,
    );
    assert.doesNotMatch(refused.message, /secret-pw/);
    assert.ok(!(absent instanceof StoreUnavailableError), absent.name);

    const sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
    try {
      await sql.unsafe("UPDATE status_schema SET version = 999");
    } finally {
      await sql.end();
    }
    await storeError(openPostgresStore(cluster.url), /newer than this program/);
  },
});

Deno.test({
  name:
    "postgres store: an older schema upgrades keeping its rows; one that fails migrating is left as it was",
  ignore,
  async fn(t) {
    for (let version = 1; version <= PG_MIGRATIONS.length; version++) {
      await t.step(`from version ${version}`, async () => {
        await using db = await testDatabase();
        const sql = postgres(db.url, { max: 1, onnotice: () => {} });
        try {
          await sql.unsafe("CREATE TABLE status_schema (version integer NOT NULL)");
          await sql.unsafe("INSERT INTO status_schema VALUES ($1)", [version]);
          for (const migration of PG_MIGRATIONS.slice(0, version)) await sql.unsafe(migration);
          await sql.unsafe(
            "INSERT INTO agents (id, token, scopes, created_at) VALUES ('a1', NULL, '[]', 1)",
          );
          await sql.unsafe(
            `INSERT INTO commands (id, agent_id, name, params, priority, fingerprint, status,
               attempt, created_at, updated_at)
             VALUES ('c1', 'a1', 'echo hi', '{}', 1, 'f', 'queued', 0, 1, 1)`,
          );
        } finally {
          await sql.end();
        }
        const store = await openPostgresStore(db.url);
        try {
          assert.equal((await store.getCommand("c1"))?.status, "queued");
          assert.equal((await store.getAgent("a1"))?.id, "a1");
        } finally {
          await store.close();
        }
      });
    }
    await t.step("a migration failing inside", async () => {
      await using db = await testDatabase();
      const sql = postgres(db.url, { max: 1, onnotice: () => {} });
      try {
        await sql.unsafe("CREATE TABLE status_schema (version integer NOT NULL)");
        await sql.unsafe("INSERT INTO status_schema VALUES (5)");
        for (const migration of PG_MIGRATIONS.slice(0, 5)) await sql.unsafe(migration);
        // Migration 7 adds a column, creates runs, then run_targets: made by hand here.
        await sql.unsafe("CREATE TABLE run_targets (note text)");
        const error = await storeError(openPostgresStore(db.url), /cannot migrate/);
        assert.equal(
          error.message.replace(/^cannot migrate database \S+ /, "cannot migrate database URL "),
          `cannot migrate database URL from schema version 6 to 7: relation ` +
            `"run_targets" already exists; it is left at version 5, as it was (was its schema ` +
            "changed by another program or by hand?)",
        );
        assert.deepEqual([...await sql.unsafe("SELECT version FROM status_schema")], [{
          version: 5,
        }]);
        const [{ present }] = await sql.unsafe(
          "SELECT to_regclass('runs') IS NOT NULL AS present",
        );
        assert.equal(present, false, "migration 6's and 7's changes rolled back");
        const [{ columns }] = await sql.unsafe(
          `SELECT count(*)::int AS columns FROM information_schema.columns
           WHERE table_name = 'agents' AND column_name = 'version'`,
        );
        assert.equal(columns, 0);
      } finally {
        await sql.end();
      }
    });
  },
});

Deno.test({
  name: "postgres store: a database with foreign tables is refused",
  ignore,
  async fn() {
    await using db = await testDatabase();
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      await sql.unsafe("CREATE TABLE commands (x int)");
    } finally {
      await sql.end();
    }
    await storeError(openPostgresStore(db.url), /not a status database/);
  },
});

Deno.test({
  name: "postgres store: another program's table status_schema is refused, and left alone",
  ignore,
  async fn() {
    for (
      const table of [
        "CREATE TABLE status_schema (id int); INSERT INTO status_schema VALUES (1)",
        "CREATE TABLE status_schema (version text); INSERT INTO status_schema VALUES ('v2')",
        "CREATE TABLE status_schema (version integer); INSERT INTO status_schema VALUES (1), (2)",
        "CREATE TABLE status_schema (version integer)",
      ]
    ) {
      await using db = await testDatabase();
      const sql = postgres(db.url, { max: 1, onnotice: () => {} });
      try {
        await sql.unsafe(table);
        await storeError(
          openPostgresStore(db.url),
          /is not a status database \(its table status_schema does not hold one schema version\)/,
        );
        const [{ tables }] = await sql`SELECT count(*)::int AS tables FROM pg_tables
          WHERE schemaname = current_schema()`;
        assert.equal(tables, 1, `${table}: nothing was created`);
      } finally {
        await sql.end();
      }
    }
  },
});

async function storeError(opening: Promise<unknown>, pattern: RegExp): Promise<StoreError> {
  try {
    await opening;
  } catch (error) {
    assert.ok(error instanceof StoreError, String(error));
    assert.match(error.message, pattern);
    return error;
  }
  throw new assert.AssertionError({ message: "the store opened" });
}

/**
 * A TCP proxy to the database that can stop forwarding (a server that hangs, a partition, or a
 * client frozen in the middle of a transaction: `freezeAfter` freezes it right after forwarding
 * the client's message that holds that text), hold what it forwards for `delayMs` (a database
 * further away), or hold everything until released (a server that answers late).
 */
function freezableProxy(
  target: URL,
  options: { delayMs?: number; freezeAfter?: string; hostname?: string } = {},
) {
  const hostname = options.hostname ?? "127.0.0.1";
  const listener = Deno.listen({ hostname, port: 0 });
  let frozen = false;
  let armed = false;
  let held: PromiseWithResolvers<void> | undefined;
  const conns: Deno.Conn[] = [];
  const silenced = new Set<Deno.Conn>();
  const pipe = async (from: Deno.Conn, to: Deno.Conn, fromClient: boolean) => {
    const buffer = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await from.read(buffer);
        if (n === null) break;
        if (frozen || silenced.has(from)) continue; // swallowed: the other side never hears of it
        if (options.delayMs) await new Promise((resolve) => setTimeout(resolve, options.delayMs));
        if (held) await held.promise;
        await to.write(buffer.subarray(0, n));
        if (fromClient && options.freezeAfter !== undefined) {
          // The statement is parsed in one message and executed in a later one (Execute of the
          // unnamed portal: 'E', length 9, "", no row limit).
          const text = new TextDecoder().decode(buffer.subarray(0, n));
          armed ||= text.includes(options.freezeAfter);
          frozen = armed && text.includes("E\0\0\0\t\0\0\0\0\0");
        }
      }
    } catch {
      // closed
    }
  };
  const accepting = (async () => {
    for await (const client of listener) {
      const server = await Deno.connect({ hostname: target.hostname, port: Number(target.port) });
      conns.push(client, server);
      void pipe(client, server, true);
      void pipe(server, client, false);
    }
  })().catch(() => {});
  const url = new URL(target);
  url.hostname = hostname.includes(":") ? `[${hostname}]` : hostname;
  url.port = String((listener.addr as Deno.NetAddr).port);
  return {
    url: url.toString(),
    freeze() {
      frozen = true;
    },
    /** Holds what either side sends (nothing is lost) until {@link release}. */
    hold() {
      held ??= Promise.withResolvers<void>();
    },
    /** Forwards what was held, and goes on forwarding. */
    release() {
      held?.resolve();
      held = undefined;
    },
    /** Stops forwarding on the connections open now, without closing them; new ones work. */
    silenceOpen() {
      for (const conn of conns) silenced.add(conn);
    },
    async close() {
      held?.resolve();
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // already closed
        }
      }
      await accepting;
    },
  };
}

Deno.test({
  name: "postgres store: a URL naming the server by an IPv6 address connects, and listens",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using db = await testDatabase();
    const proxy = freezableProxy(new URL(db.url), { hostname: "::1" });
    assert.match(proxy.url, /@\[::1\]:\d+\//);
    const heard: string[] = [];
    const other = await openPostgresStore(db.url);
    const store = await openPostgresStore(proxy.url);
    const subscription = await store.subscribe({
      event(event) {
        if (event.type === "queued") heard.push(event.agentId);
      },
      resync() {},
    });
    try {
      await other.enqueue(newCommand("c1", "a1"));
      await until(() => heard.includes("a1"), "the enqueue is heard");
      assert.equal((await store.getCommand("c1"))?.status, "queued");
    } finally {
      await proxy.close(); // first: the closes below then wait for no answer through it
      await subscription.close();
      await store.close();
      await other.close();
    }
  },
});

Deno.test({
  name: "postgres store: an instance stops using a database a newer version migrated while it ran",
  ignore,
  async fn(t) {
    await using db = await migratedTestDatabase(migrate);
    const newer = PG_MIGRATIONS.length + 1;
    for (
      const [what, look] of [["a lease lookup", "nextLeaseExpiry"], ["a ping", "ping"]] as const
    ) {
      await t.step(what, async () => {
        const sql = postgres(db.url, { max: 1, onnotice: () => {} });
        const store = await openPostgresStore(db.url);
        using logs = captureLogs();
        try {
          await store.enqueue(newCommand(`c-${look}`));
          assert.equal(await store[look]().then(() => "answered"), "answered");
          await sql.unsafe("UPDATE status_schema SET version = $1", [newer]);
          const refusal = `${store.location} was migrated to schema version ${newer} by a newer ` +
            `version of status while this one ran (it writes version ${PG_MIGRATIONS.length}); ` +
            "this instance no longer uses it: replace it with the newer version";
          for (
            const call of [
              () => store[look](),
              () => store.getCommand(`c-${look}`),
              () => store.enqueue(newCommand(`d-${look}`)),
              () => store.ping(),
            ]
          ) {
            await assert.rejects(call, (error: Error) => {
              assert.ok(error instanceof StoreError && !(error instanceof StoreUnavailableError));
              assert.equal(error.message, refusal);
              return true;
            });
          }
          assert.deepEqual(
            logs.records.filter((r) => r.level === "error").map((r) => r.message),
            [refusal],
            "said once",
          );
          const rows = await sql.unsafe("SELECT id FROM commands ORDER BY id");
          assert.deepEqual(rows.map((row) => row.id), [`c-${look}`], "nothing written after");
        } finally {
          await sql.unsafe("UPDATE status_schema SET version = $1", [PG_MIGRATIONS.length]);
          await sql.unsafe("DELETE FROM commands");
          await sql.end();
          await store.close();
        }
      });
    }
    await t.step("the dashboard's /health says the store is failing, and why", async () => {
      const sql = postgres(db.url, { max: 1, onnotice: () => {} });
      const store = await openPostgresStore(db.url);
      const dashboard = createApp({ store, adminToken: "admin-token-0123456789abcdef" });
      using _logs = captureLogs();
      try {
        const health = () =>
          dashboard.app.request("/health", {
            headers: { Authorization: "Bearer admin-token-0123456789abcdef" },
          });
        assert.equal((await health()).status, 200);
        await sql.unsafe("UPDATE status_schema SET version = $1", [newer]);
        const answer = await health();
        assert.equal(answer.status, 503);
        const body = await answer.json();
        assert.equal(body.status, "store_failing");
        assert.match(body.store.error, /by a newer version of status while this one ran/);
      } finally {
        await sql.unsafe("UPDATE status_schema SET version = $1", [PG_MIGRATIONS.length]);
        await sql.end();
        await dashboard.close();
        await store.close();
      }
    });
  },
});

Deno.test({
  name: "postgres store: a URL naming a Unix socket's directory connects through it, and listens",
  ignore,
  async fn(t) {
    const socket = await testSocket();
    if (socket === null) return; // a server of STATUS_TEST_DATABASE_URL's: its socket is unknown
    await using db = await testDatabase();
    const name = new URL(db.url).pathname.slice(1);
    const encoded = encodeURIComponent(socket.dir);
    const other = await openPostgresStore(db.url);
    const admin = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      for (
        const url of [
          `postgres://status@/${name}?host=${socket.dir}&port=${socket.port}`,
          `postgresql:///${name}?user=status&port=${socket.port}&host=${encoded}`,
          `postgres://status@${encoded}:${socket.port}/${name}`,
          `postgres://status@${encoded}/${name}?port=${socket.port}&sslmode=disable`,
          // No TLS over a Unix socket: libpq ignores sslmode there.
          `postgres://status@/${name}?sslmode=require&host=${socket.dir}&port=${socket.port}`,
        ]
      ) {
        await t.step(url.replace(socket.dir, "DIR").replace(encoded, "DIR"), async () => {
          const heard: string[] = [];
          const store = await openPostgresStore(url);
          const subscription = await store.subscribe({
            event(event) {
              if (event.type === "queued") heard.push(event.agentId);
            },
            resync() {},
          });
          try {
            const [{ local }] = await admin`
              SELECT count(*)::int AS local FROM pg_stat_activity
              WHERE datname = ${name} AND application_name = 'status-listen'
                AND client_addr IS NULL`;
            assert.equal(local, 1, "it listens on a Unix socket (a connection with no address)");
            const id = `c-${heard.length}-${crypto.randomUUID()}`;
            await other.enqueue(newCommand(id, "a1"));
            await until(() => heard.includes("a1"), "the enqueue is heard");
            assert.equal((await store.getCommand(id))?.status, "queued");
          } finally {
            await subscription.close();
            await store.close();
          }
        });
      }
    } finally {
      await admin.end();
      await other.close();
    }
    await t.step("no server's socket there: said so", async () => {
      await using dir = await tempDirectory();
      await storeError(
        openPostgresStore(`postgres://status@/${name}?host=${dir.path}`),
        new RegExp(
          `^cannot open database postgres://status@/${name}\\?host=\\S+: no PostgreSQL server ` +
            `listens on the Unix socket ${dir.path}/\\.s\\.PGSQL\\.5432 \\(ENOENT\\): is the ` +
            "server running, with that directory among its unix_socket_directories, on that port\\?$",
        ),
      );
    });
  },
});

Deno.test({
  name: "postgres store: a server whose Unix socket is gone fails calls as unavailable",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const socket = await testSocket();
    if (socket === null) return;
    await using db = await testDatabase();
    await using dir = await tempDirectory();
    // A socket of its own that forwards to the server's: closed and removed as a stopped server's.
    const path = `${dir.path}/.s.PGSQL.5432`;
    const listener = Deno.listen({ transport: "unix", path });
    const conns: Deno.Conn[] = [];
    const accepting = (async () => {
      for await (const client of listener) {
        const server = await Deno.connect({
          transport: "unix",
          path: `${socket.dir}/.s.PGSQL.${socket.port}`,
        });
        conns.push(client, server);
        void client.readable.pipeTo(server.writable).catch(() => {});
        void server.readable.pipeTo(client.writable).catch(() => {});
      }
    })().catch(() => {});
    const name = new URL(db.url).pathname.slice(1);
    const store = await openPostgresStore(`postgres://status@/${name}?host=${dir.path}`, {
      connectTimeoutSecs: 2,
    });
    try {
      assert.equal(await store.getAgent("a1"), null);
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // already closed
        }
      }
      await accepting;
      await Deno.remove(path).catch(() => {});
      // The first call may fail on the connection that was open (EPIPE); the next connect finds
      // no socket.
      const messages: string[] = [];
      for (let call = 0; call < 3; call++) {
        const error = await store.getAgent("a1").then(() => null, (e) => e);
        assert.ok(error instanceof StoreUnavailableError, String(error));
        messages.push(error.message);
      }
      assert.ok(
        messages.some((m) => /is unavailable \(read agent\): ENOENT /.test(m)),
        messages.join("\n"),
      );
    } finally {
      await store.close();
    }
  },
});

Deno.test({
  name: "postgres store: a server that stops answering fails an operation as unavailable in time",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using db = await testDatabase();
    const proxy = freezableProxy(new URL(db.url));
    const store = await openPostgresStore(proxy.url, { queryTimeoutSecs: 1 });
    try {
      await store.enqueue(newCommand("c1"));
      proxy.freeze();
      const started = Date.now();
      let failure: unknown;
      try {
        await store.claimNext({ agentId: "a1", deploymentHash: "d", now: T0, deliveryLeaseMs: 1 });
      } catch (error) {
        failure = error;
      }
      assert.ok(failure instanceof StoreUnavailableError, String(failure));
      assert.match((failure as Error).message, /did not answer within 1 s/);
      assert.ok(Date.now() - started < 10_000, "bounded by the query timeout, not a hang");
    } finally {
      await proxy.close();
      await store.close().catch(() => {});
    }
  },
});

Deno.test({
  name: "postgres store: pool connections dropped without a word are replaced once an operation " +
    "on them timed out, not used until TCP gives up",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using db = await migratedTestDatabase(migrate);
    const proxy = freezableProxy(new URL(db.url));
    const store = await openPostgresStore(proxy.url, { queryTimeoutSecs: 1, maxConnections: 2 });
    using logs = captureLogs();
    try {
      await Promise.all([store.getCommand("x"), store.getCommand("y")]); // both connections open
      // A failover moved the address, or a firewall forgot the connections: no FIN, no RST.
      proxy.silenceOpen();
      await assert.rejects(store.getCommand("x"), (error: Error) => {
        assert.ok(error instanceof StoreUnavailableError, String(error));
        assert.match(error.message, /did not answer within 1 s \(read command\)/);
        return true;
      });
      // Before, every later operation queued behind the dead connections and failed the same
      // way, for as long as TCP took to give up on them (about 15 minutes).
      assert.equal(await store.getCommand("x"), null);
      await store.enqueue(newCommand("c1"));
      assert.equal((await store.getCommand("c1"))?.status, "queued");
      assert.ok(
        logs.has(
          /^database postgres:\/\/.* did not answer within 1 s \(read command\): its connections may be gone without a word .*; new operations use new connections$/,
        ),
        logs.messages().join("\n"),
      );
    } finally {
      await proxy.close();
      await store.close().catch(() => {});
    }
  },
});

Deno.test({
  name: "postgres store: a notification connection dropped without a word is replaced, and the " +
    "waits re-checked, within the check interval and the query timeout",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using db = await testDatabase();
    const proxy = freezableProxy(new URL(db.url));
    // A firewall or a failed-over address drops the idle LISTEN connection: no FIN, no RST.
    const a = await openPostgresStore(proxy.url, { queryTimeoutSecs: 1, listenCheckSecs: 1 });
    const b = await openPostgresStore(db.url);
    using logs = captureLogs();
    const heard: string[] = [];
    let resyncs = 0;
    const subscription = await a.subscribe({
      event(event) {
        if (event.type === "queued") heard.push(event.agentId);
      },
      resync() {
        resyncs++;
      },
    });
    try {
      await b.enqueue(newCommand("c1", "a1"));
      await until(() => heard.includes("a1"), "the first enqueue is heard");
      proxy.silenceOpen();
      await until(() => resyncs === 1, "listening again on a new connection", 15_000);
      assert.ok(
        logs.has(/notification connection .* did not answer within 1 s/),
        logs.messages().join("\n"),
      );
      await b.enqueue(newCommand("c2", "a2"));
      await until(() => heard.includes("a2"), "an enqueue after the drop is heard");
    } finally {
      await subscription.close();
      await a.close().catch(() => {});
      await b.close();
      await proxy.close();
    }
  },
});

Deno.test({
  name: "postgres store: a notification connection that cannot listen again says so once, then " +
    "when it listens again",
  ignore,
  async fn() {
    await using db = await migratedTestDatabase(migrate);
    const name = new URL(db.url).pathname.slice(1);
    await using store = await openPostgresStore(db.url);
    // From another database: a session cannot turn off connections to its own.
    const adminUrl = new URL(db.url);
    adminUrl.pathname = "/postgres";
    const admin = postgres(adminUrl.toString(), { max: 1, onnotice: () => {} });
    using logs = captureLogs();
    let resyncs = 0;
    const lost: unknown[] = [];
    const subscription = await store.subscribe({
      event() {},
      resync: () => void resyncs++,
      lost: (error) => void lost.push(error),
    });
    try {
      // No new connection to the database (the pool keeps its own), and the listening one cut.
      await admin.unsafe(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
      await admin.unsafe(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND application_name = 'status-listen'`,
        [name],
      );
      const failing =
        /^could not listen for the other instances' notifications on postgres:\/\/.* again: .*not currently accepting connections; trying again every 5 s at most; until then the waits held here are not woken by the other instances' changes$/;
      await until(() => logs.has(failing), "the failure is said", 15_000);
      // Said once: the next attempts (0.5 s, 1 s, ...) fail at debug level.
      await until(
        () => logs.messages().filter((m) => m.startsWith("LISTEN failed; retrying")).length > 0,
        "a later attempt failed too",
        15_000,
      );
      assert.equal(logs.messages().filter((m) => failing.test(m)).length, 1);
      // Each attempt's connection closes too: said once, not once per attempt for the outage.
      const closedWarnings = () =>
        logs.records.filter((r) =>
          r.level === "warning" && /notification connection .* closed/.test(String(r.message))
        ).length;
      assert.equal(closedWarnings(), 1, logs.messages().join("\n"));
      assert.equal(lost.length, 1, "the listener is told once (the instance's /health says so)");
      assert.match(String((lost[0] as Error).message), /not currently accepting connections/);
      await admin.unsafe(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
      await until(() => resyncs === 1, "listening again", 15_000);
      assert.ok(
        logs.has(
          /^listening for the other instances' notifications on .* again after \d+(\.\d)? s$/,
        ),
        logs.messages().join("\n"),
      );
    } finally {
      await admin.unsafe(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
      await admin.end();
      await subscription.close();
    }
  },
});

Deno.test({
  name: "postgres store: a short idle_session_timeout of the database does not cut the " +
    "notification connection over and over",
  ignore,
  async fn() {
    await using db = await migratedTestDatabase(migrate);
    const name = new URL(db.url).pathname.slice(1);
    const admin = postgres(db.url, { max: 1, onnotice: () => {} });
    const listeners = async () =>
      (await admin.unsafe(
        `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'status-listen'`,
        [name],
      )).map((row) => Number(row.pid));
    try {
      // A DBA's setting for every session of the database: idle ones are ended after 300 ms.
      await admin.unsafe(`ALTER DATABASE ${name} SET idle_session_timeout = 300`);
      using logs = captureLogs();
      await using a = await openPostgresStore(db.url);
      await using b = await openPostgresStore(db.url);
      // The pool's connections, idle up to 60 s, are ended too: a call sent on one at that
      // moment fails (503). Said at start, as a short statement_timeout is.
      assert.ok(
        logs.has(
          /^idle_session_timeout is 300 ms on postgres:\/\/\S+ \(set for this user or database.*\): the server ends the store's connections idle that long, and a call sent on one just then fails; set it to 0 for this user \(ALTER ROLE \.\.\. SET idle_session_timeout = 0\) or above 60 s$/,
        ),
        logs.messages().join("\n"),
      );
      const heard: string[] = [];
      let resyncs = 0;
      const subscription = await a.subscribe({
        event(event) {
          if (event.type === "queued") heard.push(event.agentId);
        },
        resync: () => void resyncs++,
      });
      try {
        const [listening] = await listeners();
        // The server's clock, not one of the test's: several times the setting, idle.
        await new Promise((resolve) => setTimeout(resolve, 1500));
        assert.deepEqual(await listeners(), [listening], "the same connection still listens");
        assert.equal(resyncs, 0);
        assert.ok(!logs.has(/notification connection .* closed/), logs.messages().join("\n"));
        await b.enqueue(newCommand("c1", "a1"));
        await until(() => heard.includes("a1"), "an enqueue of the other instance is heard");
      } finally {
        await subscription.close();
      }
    } finally {
      await admin.end();
    }
  },
});

Deno.test({
  name: "postgres store: a server that refuses new connections to the database while it runs " +
    "(connections turned off, CONNECT revoked, a password changed) makes it unavailable, not an " +
    "internal error",
  ignore,
  async fn() {
    await using db = await migratedTestDatabase(migrate);
    const name = new URL(db.url).pathname.slice(1);
    // From another database: a session cannot turn off connections to its own.
    const adminUrl = new URL(db.url);
    adminUrl.pathname = "/postgres";
    const admin = postgres(adminUrl.toString(), { max: 1, onnotice: () => {} });
    await using store = await openPostgresStore(db.url);
    const dashboard = createApp({
      store,
      adminToken: "admin-token-0123456789abcdef",
      autoExpireLeases: false,
    });
    using logs = captureLogs();
    try {
      await admin.unsafe(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
      // Its connections ended too (a maintenance): each call needs a new one.
      await admin.unsafe(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`,
        [name],
      );
      await until(async () => {
        try {
          await store.getCommand("c1");
          return false;
        } catch (error) {
          // The first calls may still meet a connection just ended.
          if (/not currently accepting connections/.test(String(error))) {
            assert.ok(error instanceof StoreUnavailableError, String(error));
            return true;
          }
          assert.ok(error instanceof StoreUnavailableError, String(error));
          return false;
        }
      }, "the refusal is met");
      const health = await dashboard.app.request("/health", {
        headers: { Authorization: "Bearer admin-token-0123456789abcdef" },
      });
      assert.equal(health.status, 503);
      const body = await health.json();
      assert.equal(body.store.status, "down");
      assert.match(body.store.error, /not currently accepting connections/);
      assert.ok(!logs.has(/^request .* failed/), logs.messages().join("\n"));
    } finally {
      await admin.unsafe(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
      await admin.end();
      await dashboard.close();
    }
  },
});

Deno.test({
  name: "postgres store: a frozen instance's notification connection that no longer reads is " +
    "ended by the others, so that it does not hold the notification queue",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using db = await testDatabase();
    // Named by the URL: its notification connection is still known by its own name.
    const proxy = freezableProxy(new URL(`${db.url}?application_name=dashboard-a`));
    const options = { queryTimeoutSecs: 1, listenCheckSecs: 1 };
    const frozen = await openPostgresStore(proxy.url, options);
    const other = await openPostgresStore(db.url, options);
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    let resyncs = 0;
    const subscription = await frozen.subscribe({
      event() {},
      resync() {
        resyncs++;
      },
    });
    using logs = captureLogs();
    const stuck = async () => {
      const [{ n }] = await sql`
        SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'status-listen'
          AND wait_event = 'ClientWrite'`;
      return n;
    };
    try {
      // Its client reads nothing more (a SIGSTOP): the server's writes to it fill the socket.
      // (Notifications alike in one transaction are sent once: these differ.)
      proxy.hold();
      for (let i = 0; i < 20 && await stuck() === 0; i++) {
        await sql.unsafe(
          `SELECT pg_notify('status_events', json_build_object('type', 'changed', 'commandId',
             i || repeat('x', 7000))::text) FROM generate_series(1, 500) AS i`,
        );
      }
      assert.equal(await stuck(), 1, "its notification connection waits to write");
      const [{ usage }] = await sql`SELECT pg_notification_queue_usage() > 0 AS usage`;
      assert.equal(usage, true, "the queue holds what it has not read");
      assert.equal(await other.nextLeaseExpiry(), null);
      await until(
        async () => {
          await other.nextLeaseExpiry();
          return await stuck() === 0;
        },
        "another instance's lease lookup ends it",
        15_000,
        200,
      );
      assert.ok(
        logs.has(/^ended the notification connection of another instance \(server process \d+/),
        logs.messages().join("\n"),
      );
      proxy.release();
      await until(() => resyncs >= 1, "the frozen instance listens again once it runs", 15_000);
    } finally {
      await subscription.close();
      await frozen.close().catch(() => {});
      await other.close();
      await sql.end();
      await proxy.close();
    }
  },
});

Deno.test({
  name: "postgres store: a subscription given up on (the server answered too late) leaves no " +
    "connection listening, and no second delivery of each event",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using db = await migratedTestDatabase(migrate);
    const proxy = freezableProxy(new URL(db.url));
    const store = await openPostgresStore(proxy.url, { queryTimeoutSecs: 1 });
    const other = await openPostgresStore(db.url);
    const admin = postgres(db.url, { max: 1, onnotice: () => {} });
    const listening = async () =>
      (await admin`SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
        AND application_name = 'status-listen' AND query ILIKE 'LISTEN%'`).length;
    const heard: string[] = [];
    const listener = {
      event(event: StoreEvent) {
        if (event.type === "queued") heard.push(event.agentId);
      },
      resync() {},
    };
    let subscription: Awaited<ReturnType<typeof store.subscribe>> | undefined;
    try {
      // The server answers the new connection only after the operation's timeout.
      proxy.hold();
      await assert.rejects(store.subscribe(listener), (error: Error) => {
        assert.ok(error instanceof StoreUnavailableError, String(error));
        assert.match(error.message, /did not answer within 1 s \(listen\)/);
        return true;
      });
      proxy.release();
      // The instance subscribes again (as it does once the store is back), and that one listens.
      subscription = await store.subscribe(listener);
      await until(async () => await listening() >= 1, "the second subscription listens");
      await other.enqueue(newCommand("c1", "a1"));
      await until(() => heard.includes("a1"), "the enqueue is heard");
      // The first one's connection, had it gone on, has long been listening by now.
      await other.enqueue(newCommand("c2", "a2"));
      await until(() => heard.includes("a2"), "the second enqueue is heard");
      assert.equal(await listening(), 1, "one connection listens");
      assert.deepEqual(heard, ["a1", "a2"], "each event heard once");
    } finally {
      await proxy.close(); // first: the closes below then wait for no answer through it
      await subscription?.close();
      await store.close().catch(() => {});
      await admin.end();
      await other.close();
    }
  },
});

Deno.test({
  name: "postgres store: an instance frozen inside a transaction holds its row locks no longer " +
    "than its query timeout",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using db = await migratedTestDatabase(migrate);
    await using other = await openPostgresStore(db.url, { queryTimeoutSecs: 30 });
    await other.enqueue(newCommand("c1"));
    await other.claimNext({ agentId: "a1", deploymentHash: "d", now: T0, deliveryLeaseMs: 60_000 });
    // This instance freezes (SIGSTOP, a paused VM) once its report has locked the command's row.
    const proxy = freezableProxy(new URL(db.url), { freezeAfter: "FOR UPDATE OF c" });
    const frozen = await openPostgresStore(proxy.url, { queryTimeoutSecs: 2, maxConnections: 1 });
    const report = (store: typeof other, error: string) =>
      store.report({
        commandId: "c1",
        agentId: "a1",
        attempt: 1,
        status: "failed",
        result: null,
        error,
        startedAt: null,
        completedAt: null,
        now: T0 + 1,
      });
    const admin = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const frozenReport = report(frozen, "from the frozen instance");
      await until(
        async () =>
          (await admin`SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
            AND state = 'idle in transaction' AND query LIKE '%FOR UPDATE OF c%'`).length > 0,
        "the frozen instance's transaction holds the row",
      );
      await assert.rejects(frozenReport, StoreUnavailableError);
      // The other instance's report waits for the lock, which the server takes back from the
      // abandoned transaction; before, it waited as long as the freeze lasted.
      const outcome = await report(other, "from the other instance");
      assert.equal(outcome.outcome, "accepted");
      assert.equal((await other.getCommand("c1"))?.result?.error, "from the other instance");
    } finally {
      await admin.end();
      await proxy.close();
      await frozen.close().catch(() => {});
    }
  },
});

Deno.test({
  name: "postgres store: an instance frozen while it migrates keeps the others waiting no longer " +
    "than its query timeout, and they say what they wait for",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using db = await testDatabase();
    const proxy = freezableProxy(new URL(db.url), { freezeAfter: "advisory_xact_lock" });
    const frozenOpen = openPostgresStore(proxy.url, { queryTimeoutSecs: 3 });
    const frozenDone = frozenOpen.then((store) => store.close(), () => {});
    const admin = postgres(db.url, { max: 1, onnotice: () => {} });
    let guard: ReturnType<typeof setTimeout> | undefined;
    try {
      await until(
        async () =>
          (await admin`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
            AND objid = ${PG_MIGRATION_LOCK}`).length > 0,
        "the frozen instance holds the schema lock",
      );
      using logs = captureLogs();
      const store = await Promise.race([
        openPostgresStore(db.url),
        new Promise<never>((_, reject) => {
          guard = setTimeout(() => reject(new Error("still waiting for the lock")), 60_000);
        }),
      ]);
      await store.close();
      assert.ok(
        logs.has(/^waiting for the schema lock of .* held by process \d+ \("status"\)/),
        logs.messages().join("\n"),
      );
    } finally {
      clearTimeout(guard);
      await admin.end();
      await proxy.close();
      await frozenDone;
    }
  },
});

Deno.test({
  name: "postgres store: a migration that takes longer than the URL's statement_timeout still " +
    "finishes",
  ignore,
  async fn() {
    await using db = await testDatabase();
    const admin = postgres(db.url, { max: 2, onnotice: () => {} });
    let release = () => {};
    const released = new Promise<void>((resolve) => release = resolve);
    let holding: Promise<unknown> = Promise.resolve();
    try {
      // The schema one version behind, its last migration building an index on commands: on a
      // large table, or while another instance's transaction holds it (here), for longer than 1 s.
      await admin.unsafe("CREATE TABLE status_schema (version integer NOT NULL)");
      await admin.unsafe("INSERT INTO status_schema VALUES ($1)", [PG_MIGRATIONS.length - 1]);
      for (const migration of PG_MIGRATIONS.slice(0, -1)) await admin.unsafe(migration);
      let locked = () => {};
      const isLocked = new Promise<void>((resolve) => locked = resolve);
      holding = admin.begin(async (tx) => {
        await tx.unsafe("LOCK TABLE commands IN ROW EXCLUSIVE MODE");
        locked();
        await released;
      });
      await isLocked;
      const url = new URL(db.url);
      url.searchParams.set("statement_timeout", "1s");
      const opening = openPostgresStore(url.toString());
      let settled = false;
      opening.then(() => settled = true, () => settled = true);
      await until(
        async () =>
          settled ||
          (await admin`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'
            AND query LIKE '%CREATE INDEX%' AND now() - query_start > interval '1500 ms'`)
              .length > 0,
        "the migration waited longer than its statement_timeout",
      );
      release();
      const store = await opening;
      await store.close();
      const [{ version }] = await admin`SELECT version FROM status_schema`;
      assert.equal(version, PG_MIGRATIONS.length);
    } finally {
      release();
      await holding;
      await admin.end();
    }
  },
});

Deno.test({
  name: "postgres store: a connection lost while the store opens fails the open, not the process",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using db = await testDatabase();
    const proxy = freezableProxy(new URL(db.url), { freezeAfter: "advisory_xact_lock" });
    const opening = openPostgresStore(proxy.url);
    const admin = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      await until(
        async () =>
          (await admin`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
            AND objid = ${PG_MIGRATION_LOCK}`).length > 0,
        "the store is migrating",
      );
    } finally {
      await admin.end();
    }
    // The driver then writes to the closed socket a turn after the failed open closed the store
    // (see isDriverFault): an uncaught error that ended the process.
    await proxy.close();
    await storeError(opening, /cannot open database/);
    await new Promise((resolve) => setTimeout(resolve, 100));
  },
});

Deno.test({
  name: "postgres store: a server out of disk space fails writes as store-full, not as a crash",
  ignore,
  async fn() {
    await using cluster = await instances(1);
    const [store] = cluster.stores;
    const sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
    try {
      // What PostgreSQL answers when it cannot extend a file: SQLSTATE 53100 (disk_full).
      await sql.unsafe(`
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'
          USING ERRCODE = 'disk_full'; END $$;
        CREATE TRIGGER refuse BEFORE INSERT ON commands FOR EACH ROW EXECUTE FUNCTION refuse();`);
      let failure: unknown;
      try {
        await store.enqueue(newCommand("c1"));
      } catch (error) {
        failure = error;
      }
      assert.ok(failure instanceof StoreFullError, String(failure));
      assert.equal(await store.getCommand("c1"), null, "nothing of the failed write was kept");
      await sql.unsafe("DROP TRIGGER refuse ON commands");
      assert.equal((await store.enqueue(newCommand("c1"))).outcome, "created", "heals by itself");
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name: "postgres store: a server that finds its data corrupted fails the call as a StoreError",
  ignore,
  async fn() {
    await using cluster = await instances(1);
    const [store] = cluster.stores;
    const sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
    try {
      // What PostgreSQL answers when it reads a damaged page: SQLSTATE XX001 (data_corrupted).
      await sql.unsafe(`
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'invalid page in block 7 of relation base/16384/16385'
          USING ERRCODE = 'data_corrupted'; END $$;
        CREATE TRIGGER refuse BEFORE INSERT ON commands FOR EACH ROW EXECUTE FUNCTION refuse();`);
      await assert.rejects(store.enqueue(newCommand("c1")), (error: Error) => {
        assert.equal(error.name, "StoreError");
        assert.match(
          error.message,
          /^database postgres:\/\/\S+ failed \(enqueue\): invalid page in block 7 .* \(SQLSTATE XX001\)$/,
        );
        return true;
      });
      assert.equal(await store.getCommand("c1"), null, "nothing of the failed write was kept");
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name: "postgres store: a call the server could not finish now fails as unavailable, kept nothing",
  ignore,
  async fn(t) {
    await using cluster = await instances(1);
    const [store] = cluster.stores;
    const sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
    try {
      // What PostgreSQL answers when the call may succeed if made again: a statement_timeout or a
      // cancel, a serialization failure, a deadlock, a lock_timeout, resources of the moment.
      for (
        const [code, name] of [
          ["57014", "query_canceled"],
          ["40001", "serialization_failure"],
          ["40P01", "deadlock_detected"],
          ["55P03", "lock_not_available"],
          ["53000", "insufficient_resources"],
          ["53200", "out_of_memory"],
        ]
      ) {
        await t.step(`SQLSTATE ${code} (${name})`, async () => {
          await sql.unsafe(`
            CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'the server says ${name}' USING ERRCODE = '${name}'; END $$;
            CREATE TRIGGER refuse BEFORE INSERT ON commands FOR EACH ROW
              EXECUTE FUNCTION refuse();`);
          try {
            await assert.rejects(store.enqueue(newCommand("c1")), (error: Error) => {
              assert.ok(error instanceof StoreUnavailableError, String(error));
              assert.match(
                error.message,
                new RegExp(
                  `^database postgres://\\S+ could not finish the call now \\(enqueue\\): the ` +
                    `server says ${name} \\(SQLSTATE ${code}\\); it may succeed if made again$`,
                ),
              );
              return true;
            });
          } finally {
            await sql.unsafe("DROP TRIGGER refuse ON commands; DROP FUNCTION refuse()");
          }
          assert.equal(await store.getCommand("c1"), null, "nothing of the failed call was kept");
        });
      }
      await t.step("a real statement_timeout", async () => {
        await sql.unsafe(`
          CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN PERFORM pg_sleep(5); RETURN NEW; END $$;
          CREATE TRIGGER slow BEFORE INSERT ON commands FOR EACH ROW EXECUTE FUNCTION slow();`);
        await sql.unsafe(`ALTER DATABASE ${await databaseName(sql)} SET statement_timeout = 200`);
        await using timed = await openPostgresStore(cluster.url);
        await assert.rejects(timed.enqueue(newCommand("c2")), (error: Error) => {
          assert.ok(error instanceof StoreUnavailableError, String(error));
          assert.match(error.message, /statement timeout \(SQLSTATE 57014\)/);
          return true;
        });
        await sql.unsafe("DROP TRIGGER slow ON commands");
        assert.equal((await timed.enqueue(newCommand("c2"))).outcome, "created", "heals by itself");
      });
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name: "postgres store: a transaction rolled back as a deadlock's victim or for a serialization " +
    "failure is run again, twice at most; other failures are not",
  ignore,
  async fn(t) {
    await using cluster = await instances(2);
    const [store, other] = cluster.stores;
    const sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
    /** Makes the next `failures` inserts of a command fail with `name`; counts every attempt. */
    const failFirst = async (failures: number, name: string) => {
      await sql.unsafe(`
        DROP TRIGGER IF EXISTS refuse ON commands; DROP FUNCTION IF EXISTS refuse();
        DROP SEQUENCE IF EXISTS attempts; CREATE SEQUENCE attempts;
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          -- A sequence is not rolled back with the transaction: it counts every attempt.
          IF nextval('attempts') <= ${failures} THEN
            RAISE EXCEPTION 'the server says ${name}' USING ERRCODE = '${name}';
          END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER refuse BEFORE INSERT ON commands FOR EACH ROW EXECUTE FUNCTION refuse();`);
    };
    const attempts = async () =>
      Number((await sql.unsafe("SELECT last_value FROM attempts"))[0].last_value);
    // What another instance hears of the commands enqueued.
    const heard: string[] = [];
    const subscription = await other.subscribe({
      event(event) {
        if (event.type === "changed") heard.push(event.commandId);
      },
      resync() {},
    });
    try {
      for (const name of ["deadlock_detected", "serialization_failure"]) {
        await t.step(`${name} twice: the third run commits, and notifies once`, async () => {
          await failFirst(2, name);
          heard.length = 0;
          const outcome = await store.enqueue(newCommand(`c-${name}`));
          assert.equal(outcome.outcome, "created");
          assert.equal(await attempts(), 3);
          assert.equal((await store.getCommand(`c-${name}`))?.status, "queued");
          // Notifications arrive in commit order: once the next command's is heard, all are.
          await store.enqueue(newCommand(`after-${name}`));
          await until(() => heard.includes(`after-${name}`), "the next command's event");
          assert.deepEqual(heard, [`c-${name}`, `after-${name}`]);
        });
      }
      await t.step("three times: the caller is told, as before", async () => {
        await failFirst(3, "deadlock_detected");
        await assert.rejects(store.enqueue(newCommand("c3")), StoreUnavailableError);
        assert.equal(await attempts(), 3);
        assert.equal(await store.getCommand("c3"), null);
      });
      await t.step("a statement timeout is not run again", async () => {
        await failFirst(1, "query_canceled");
        await assert.rejects(store.enqueue(newCommand("c4")), StoreUnavailableError);
        assert.equal(await attempts(), 1);
        assert.equal(await store.getCommand("c4"), null);
      });
    } finally {
      await subscription.close();
      await sql.end();
    }
  },
});

Deno.test({
  name: "postgres store: a database's own settings do not change what the store reads and writes",
  ignore,
  async fn() {
    const db = await migratedTestDatabase(migrate);
    try {
      const sql = postgres(db.url, { max: 1, onnotice: () => {} });
      try {
        // Binary output read as PostgreSQL's escape format would come back garbled; transactions
        // run at repeatable read would fail two instances' concurrent enqueues of one id.
        const name = await databaseName(sql);
        await sql.unsafe(`ALTER DATABASE ${name} SET bytea_output = 'escape'`);
        await sql.unsafe(
          `ALTER DATABASE ${name} SET default_transaction_isolation = 'repeatable read'`,
        );
      } finally {
        await sql.end();
      }
      const stores = await Promise.all([1, 2, 3, 4].map(() => openPostgresStore(db.url)));
      try {
        for (let i = 0; i < 5; i++) {
          const outcomes = await Promise.all(stores.map((s) => s.enqueue(newCommand(`c${i}`))));
          assert.deepEqual(outcomes.map((o) => o.outcome).sort(), [
            "created",
            "duplicate",
            "duplicate",
            "duplicate",
          ]);
        }
        const data = new Uint8Array([0, 1, 0x5c, 0x7f, 0x80, 0xff, 0x41]);
        const stored = await stores[0].appendOutput({
          commandId: "c0",
          attempt: 1,
          stream: "stdout",
          offset: 0,
          data,
          now: T0,
          keep: { headBytes: 1024, tailBytes: 1024 },
        });
        assert.equal(stored.outcome, "stored");
        const [chunk] = await stores[1].listOutput("c0");
        assert.deepEqual([...chunk.data], [...data]);
      } finally {
        await Promise.all(stores.map((s) => s.close()));
      }
    } finally {
      await db.drop();
    }
  },
});

Deno.test({
  name: "postgres store: a URL that would change a setting the store gives each connection is " +
    "refused, one the store does not read is warned of",
  ignore,
  async fn(t) {
    await using db = await testDatabase();
    for (
      const param of [
        "bytea_output=escape",
        "BYTEA_OUTPUT=escape",
        "client_encoding=LATIN1",
        "default_transaction_isolation=serializable",
        "idle_in_transaction_session_timeout=0",
        "idle_in_transaction_session_timeout=",
      ]
    ) {
      await t.step(`?${param} is refused`, async () => {
        const key = param.split("=")[0];
        await assert.rejects(
          openPostgresStore(`${db.url}?sslmode=disable&${param}`),
          (error: Error) => {
            assert.equal(error.name, "StoreError");
            assert.match(
              error.message,
              new RegExp(
                `^cannot open database \\S+: its \\?${key}= would change a setting status gives ` +
                  `each connection itself \\(.+\\); remove it from the URL$`,
              ),
            );
            return true;
          },
        );
      });
    }
    await t.step("the driver's options the store sets itself are warned of, and work", async () => {
      using logs = captureLogs();
      await using store = await openPostgresStore(
        `${db.url}?max=50&connect_timeout=60&fetch_types=false&backoff=30&application_name=mine` +
          // The server reads a setting the store gives after those of libpq's ?options=.
          `&options=${encodeURIComponent("-c bytea_output=escape")}`,
      );
      assert.equal((await store.enqueue(newCommand("c1"))).outcome, "created");
      // fetch_types=false would have left the store's array parameters unserializable.
      assert.deepEqual(await store.existingCommandIds(["c1", "c2"]), ["c1"]);
      const data = new Uint8Array([0, 0x5c, 0xff]);
      await store.appendOutput({
        commandId: "c1",
        attempt: 1,
        stream: "stdout",
        offset: 0,
        data,
        now: T0,
        keep: { headBytes: 1024, tailBytes: 1024 },
      });
      assert.deepEqual([...(await store.listOutput("c1"))[0].data], [...data]);
      const warnings = logs.records.filter((r) => r.level === "warning").map((r) =>
        String(r.message)
      );
      assert.equal(warnings.length, 1, warnings.join("\n"));
      assert.match(
        warnings[0],
        /^database postgres:\/\/\S+: its URL's \?max=, \?connect_timeout=, \?fetch_types=, \?backoff= are not read: status sets them itself/,
      );
    });
  },
});

Deno.test({
  name: "postgres store: a server timeout under 1 s is refused in the URL, and warned of when " +
    "the database sets it",
  ignore,
  async fn(t) {
    await using db = await testDatabase();
    for (
      const [param, ended, ms] of [
        ["statement_timeout=1", "statements", 1],
        ["STATEMENT_TIMEOUT=0.5s", "statements", 500],
        ["lock_timeout=200ms", "waits for a lock", 200],
        ["transaction_timeout=999", "transactions", 999],
      ] as const
    ) {
      await t.step(`?${param} is refused`, async () => {
        await assert.rejects(openPostgresStore(`${db.url}?${param}`), (error: Error) => {
          assert.equal(error.name, "StoreError");
          assert.match(
            error.message,
            new RegExp(
              `^cannot open database \\S+: its \\?${param.replace(".", "\\.")} would make the ` +
                `server end status's ${ended} after ${ms} ms, failing most calls \\(answered ` +
                `503 as if the database were away\\); give at least 1s, or 0 for none, or remove ` +
                `it from the URL$`,
            ),
          );
          return true;
        });
      });
    }
    await t.step("0 (none), and 1s and more, are taken", async () => {
      using logs = captureLogs();
      await using store = await openPostgresStore(
        `${db.url}?statement_timeout=0&lock_timeout=1s&application_name=mine`,
      );
      assert.equal((await store.enqueue(newCommand("c1"))).outcome, "created");
      assert.ok(!logs.records.some((r) => r.level === "warning"), logs.messages().join("\n"));
    });
    await t.step(
      "a short one the database sets: a warning naming it, and the store opens",
      async () => {
        const sql = postgres(db.url, { max: 1, onnotice: () => {} });
        try {
          await sql.unsafe(`ALTER DATABASE ${await databaseName(sql)} SET statement_timeout = 200`);
        } finally {
          await sql.end();
        }
        using logs = captureLogs();
        await using store = await openPostgresStore(db.url);
        assert.ok(
          logs.has(
            /^statement_timeout is 200 ms on postgres:\/\/\S+ \(set for this user or database.*\): the store's calls that take longer fail/,
          ),
          logs.messages().join("\n"),
        );
        assert.equal((await store.enqueue(newCommand("c2"))).outcome, "created");
      },
    );
  },
});

/** The name of the database `sql` is connected to, quoted as an identifier. */
async function databaseName(sql: postgres.Sql): Promise<string> {
  const [{ name }] = await sql`SELECT quote_ident(current_database()) AS name`;
  return name as string;
}

Deno.test({
  name: "postgres store: instances stepping one run at once start no more than max_concurrency",
  ignore,
  async fn() {
    await using cluster = await instances(4);
    const agents = Array.from({ length: 10 }, (_, i) => `a${i}`);
    await cluster.stores[0].createRun({
      id: "r",
      name: "uname",
      params: {},
      target: { agents },
      fingerprint: "fp",
      maxConcurrency: 3,
      maxConcurrencySpec: 3,
      maxErrors: null,
      targets: agents.map((agentId) => ({
        agentId,
        commandId: `r:${agentId}`,
        offlineAtCreation: false,
      })),
      now: T0,
    });
    // Steps that answer the whole run and steps that read each command's status take one lock.
    const steps = await Promise.all(
      cluster.stores.flatMap((store) => [
        store.advanceRun("r", T0),
        store.advanceRun("r", T0),
        store.stepRun("r", T0),
      ]),
    );
    const started = new Set(steps.flatMap((step) => step!.toEnqueue.map((t) => t.agentId)));
    assert.deepEqual([...started].sort(), ["a0", "a1", "a2"]);
    const run = await cluster.stores[1].getRun("r");
    assert.equal(run!.targets.filter((t) => t.startedAt !== null).length, 3);
  },
});

Deno.test({
  name: "postgres store: a step that reads each command's status waits for another's step",
  ignore,
  async fn() {
    await using cluster = await instances(1);
    const [store] = cluster.stores;
    await store.createRun({
      id: "r",
      name: "uname",
      params: {},
      target: { agents: ["a0", "a1"] },
      fingerprint: "fp",
      maxConcurrency: 1,
      maxConcurrencySpec: 1,
      maxErrors: null,
      targets: ["a0", "a1"].map((agentId) => ({
        agentId,
        commandId: `r:${agentId}`,
        offlineAtCreation: false,
      })),
      now: T0,
    });
    const sql = postgres(cluster.url, { max: 2, onnotice: () => {} });
    try {
      // Another instance's step holds the run's lock and skips a0 (as a cancel of a0 would).
      let step: ReturnType<typeof store.stepRun> | undefined;
      await sql.begin(async (tx) => {
        await tx`SELECT id FROM runs WHERE id = 'r' FOR UPDATE`;
        await tx`UPDATE run_targets SET skipped_at = ${T0} WHERE run_id = 'r' AND position = 0`;
        step = store.stepRun("r", T0 + 1);
        await until(
          async () =>
            (await sql`SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
              AND wait_event_type = 'Lock'`).length > 0,
          "the step waits for a lock",
        );
      });
      // It decided from a0 skipped (a step that read before the lock would have started a0, as
      // stored before, and found it skipped when writing): a1 starts.
      const outcome = await step;
      assert.deepEqual(outcome?.toEnqueue.map((t) => t.agentId), ["a1"]);
      assert.deepEqual(outcome?.run.targets.map((t) => [t.skippedAt, t.startedAt]), [
        [T0, null],
        [null, T0 + 1],
      ]);
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name:
    "postgres store: a run's part enqueued while another instance's cancel of the run commits " +
    "waits for it, and is stored cancelled",
  ignore,
  async fn() {
    await using cluster = await instances(1);
    const [store] = cluster.stores;
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
      now: T0,
    });
    assert.equal((await store.stepRun("r", T0))?.toEnqueue.length, 1);
    const sql = postgres(cluster.url, { max: 2, onnotice: () => {} });
    try {
      // Another instance's cancel holds the run's lock, its flag set and not committed yet.
      let enqueued: ReturnType<typeof store.enqueue> | undefined;
      await sql.begin(async (tx) => {
        await tx`SELECT id FROM runs WHERE id = 'r' FOR UPDATE`;
        await tx`UPDATE runs SET cancel_requested = true WHERE id = 'r'`;
        // This instance's step started a1's part before the cancel, and a1 waits here.
        enqueued = store.enqueue(newCommand("r:a1", "a1", T0 + 1), {
          deploymentHash: "default",
          deliveryLeaseMs: 30_000,
        });
        await until(
          async () =>
            (await sql`SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
              AND wait_event_type = 'Lock'`).length > 0,
          "the enqueue waits for a lock",
        );
      });
      // Old behaviour: the enqueue read no run, and handed the part to a1's wait as the cancel
      // committed.
      const outcome = await enqueued!;
      assert.equal(outcome.outcome, "created");
      assert.equal(outcome.command.status, "cancelled");
      assert.equal(outcome.outcome === "created" ? outcome.claimed : undefined, null);
      assert.equal(
        await store.claimNext({
          agentId: "a1",
          deploymentHash: "default",
          now: T0 + 2,
          deliveryLeaseMs: 30_000,
        }),
        null,
      );
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name: "postgres store: a run of 5,000 targets is created in time on a database 2 ms away",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const db = await migratedTestDatabase(migrate);
    const proxy = freezableProxy(new URL(db.url), { delayMs: 1 });
    const store = await openPostgresStore(proxy.url, { queryTimeoutSecs: 5 });
    try {
      const agents = Array.from({ length: 5000 }, (_, i) => `a${i}`);
      const created = await store.createRun({
        id: "r",
        name: "uname",
        params: {},
        target: { agents },
        fingerprint: "fp",
        maxConcurrency: 1,
        maxConcurrencySpec: null,
        maxErrors: null,
        targets: agents.map((agentId, i) => ({
          agentId,
          commandId: `r:${agentId}`,
          offlineAtCreation: i % 2 === 1,
        })),
        now: T0,
      });
      assert.equal(created.outcome, "created");
      assert.deepEqual(
        created.run.targets.slice(-2).map((t) => [t.position, t.agentId, t.offlineAtCreation]),
        [[4998, "a4998", false], [4999, "a4999", true]],
      );
    } finally {
      await proxy.close();
      await store.close().catch(() => {});
      await db.drop();
    }
  },
});

Deno.test("isDriverFault: the driver's write to a dropped socket, and nothing else", async () => {
  await using dir = await faultModule();
  const fault = await dir.throwCaught();
  assert.ok(isDriverFault(fault));
  assert.ok(!isDriverFault(new TypeError("Cannot read properties of null (reading 'write')")));
  assert.ok(!isDriverFault(new Error("nextWrite")));
});

Deno.test({
  name: "postgres store: a fault of the driver on a closing connection neither ends the process " +
    "nor the store: new connections, and notifications still arrive",
  ignore,
  async fn() {
    await using cluster = await instances(2);
    const [a, b] = cluster.stores;
    const queued = new Set<string>();
    let resynced = 0;
    const subscription = await a.subscribe({
      event(event) {
        if (event.type === "queued") queued.add(event.agentId);
      },
      resync() {
        resynced++;
      },
    });
    try {
      await using dir = await faultModule();
      // Uncaught, from an immediate, as the driver throws it: the store handles the error event.
      dir.throwUncaught();
      await until(() => resynced > 0, "listening again after the fault");
      assert.equal(await a.getCommand("none"), null, "the recycled pool answers");
      await b.enqueue(newCommand("after", "a9"));
      await until(() => queued.has("a9"), "the enqueue of the other instance heard");
    } finally {
      await subscription.close();
    }
  },
});

/**
 * A module at `.../postgres/connection.js` whose `nextWrite` writes to a null socket, as the
 * driver's does after a close (its stack then names the driver as the real one would).
 */
async function faultModule() {
  const root = await Deno.makeTempDir({ prefix: "status-fault-" });
  await Deno.mkdir(`${root}/postgres`);
  const path = `${root}/postgres/connection.js`;
  await Deno.writeTextFile(
    path,
    `let socket = null;
export function nextWrite() { return socket.write("x"); }
export function later() { setImmediate(nextWrite); }
`,
  );
  const module = await import(pathToFileURL(path).href);
  return {
    throwCaught(): unknown {
      try {
        module.nextWrite();
      } catch (error) {
        return error;
      }
      throw new Error("nextWrite did not throw");
    },
    throwUncaught(): void {
      module.later();
    },
    async [Symbol.asyncDispose]() {
      await Deno.remove(root, { recursive: true });
    },
  };
}

Deno.test({
  name: "postgres store: a URL the driver cannot read, or an unknown sslmode, is refused unquoted",
  ignore,
  async fn() {
    await using db = await testDatabase();
    const url = new URL(db.url);
    url.password = "pw-of-the-test";
    const withPort = url.toString().replace(`:${url.port}/`, ":99999/");
    const withSslmode = `${url}?sslmode=bogus`;
    for (const bad of [withPort, withSslmode]) {
      await assert.rejects(openPostgresStore(bad), (error: Error) => {
        assert.ok(error instanceof StoreError, error.message);
        assert.doesNotMatch(error.message, /pw-of-the-test/);
        return true;
      });
    }
  },
});

Deno.test({
  name: "postgres store: sslmode=allow connects to a server without TLS, as libpq does",
  ignore,
  async fn() {
    await using db = await testDatabase();
    const url = new URL(db.url);
    if (url.searchParams.has("sslmode")) return; // CI names its own
    url.searchParams.set("sslmode", "allow");
    const store = await openPostgresStore(url.toString());
    await store.close();
    url.search = "?sslmode=%61llow"; // "allow", percent-encoded
    await (await openPostgresStore(url.toString())).close();
  },
});

Deno.test({
  name: "postgres store: of a repeated sslmode the last one counts, as the driver reads it",
  ignore,
  async fn() {
    await using db = await testDatabase();
    const url = new URL(db.url);
    if (url.searchParams.has("sslmode")) return; // CI names its own
    url.search = "?sslmode=allow&sslmode=require";
    await assert.rejects(openPostgresStore(url.toString()), (error: Error) => {
      assert.ok(error instanceof StoreError, error.message);
      assert.match(error.message, /TLS connection failed.*sslmode=require: does the server/);
      return true;
    });
    url.search = "?sslmode=require&sslmode=allow";
    await (await openPostgresStore(url.toString())).close();
  },
});

Deno.test({
  name: "postgres store: sslmode=require against a server without TLS says so, not 'not reachable'",
  ignore,
  async fn() {
    await using db = await testDatabase();
    const url = new URL(db.url);
    if (url.searchParams.has("sslmode")) return; // CI names its own
    url.searchParams.set("sslmode", "require");
    await assert.rejects(openPostgresStore(url.toString()), (error: Error) => {
      assert.ok(error instanceof StoreError, error.message);
      assert.match(error.message, /TLS connection failed.*sslmode=require: does the server/);
      assert.doesNotMatch(error.message, /not reachable/);
      return true;
    });
  },
});

/**
 * A login role of its own on a test database, with a password: `fn` gets the database's URL as
 * that role and an admin connection; the role and what it owns are dropped after.
 */
async function withRole(
  dbUrl: string,
  prefix: string,
  fn: (url: string, role: string, admin: postgres.Sql) => Promise<void>,
): Promise<void> {
  const role = `${prefix}_${crypto.randomUUID().slice(0, 8)}`;
  const admin = postgres(dbUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE ROLE ${role} LOGIN PASSWORD 'pw-${role}'`);
    const url = new URL(dbUrl);
    url.username = role;
    url.password = `pw-${role}`;
    await fn(url.toString(), role, admin);
  } finally {
    await admin.unsafe(`DROP OWNED BY ${role}`).catch(() => {});
    await admin.end();
    const cleanup = postgres(dbUrl, { max: 1, onnotice: () => {} });
    await cleanup.unsafe(`DROP ROLE IF EXISTS ${role}`).catch(() => {});
    await cleanup.end();
  }
}

Deno.test({
  name: "postgres store: a new connection lost while the driver reads the array types (a server " +
    "restarting) is not blamed on a short statement_timeout or the catalog",
  ignore,
  async fn() {
    await using db = await testDatabase();
    const target = new URL(db.url);
    // Lets the first connection through; ends each later one (as a server shutting down does)
    // once it is ready, as the driver sends its first query on it: the read of the array types.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    let accepted = 0;
    const conns: Deno.Conn[] = [];
    const ready = new TextEncoder().encode("Z\0\0\0\x05I");
    const holds = (chunk: Uint8Array, part: Uint8Array) =>
      chunk.some((_, i) => part.every((byte, j) => chunk[i + j] === byte));
    const pipe = async (from: Deno.Conn, to: Deno.Conn, end: boolean) => {
      const buffer = new Uint8Array(65536);
      try {
        for (;;) {
          const n = await from.read(buffer);
          if (n === null) break;
          await to.write(buffer.subarray(0, n));
          if (end && holds(buffer.subarray(0, n), ready)) {
            await to.closeWrite();
            from.close();
            return;
          }
        }
      } catch {
        // closed
      }
    };
    const accepting = (async () => {
      for await (const client of listener) {
        const server = await Deno.connect({
          hostname: target.hostname,
          port: Number(target.port),
        });
        conns.push(client, server);
        void pipe(client, server, false);
        void pipe(server, client, ++accepted > 1);
      }
    })().catch(() => {});
    const url = new URL(db.url);
    url.port = String((listener.addr as Deno.NetAddr).port);
    try {
      await using store = await openPostgresStore(url.toString());
      using logs = captureLogs();
      // Two at once: the second needs a new connection, which is cut.
      const calls = await Promise.allSettled([
        store.getCommand("c1"),
        store.getCommand("c2"),
      ]);
      await until(() => accepted > 1, "a second connection");
      for (const call of calls) {
        if (call.status === "rejected") {
          assert.ok(call.reason instanceof StoreUnavailableError, String(call.reason));
        }
      }
      // The driver's failed read of the array types surfaces a moment later, unawaited.
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.ok(
        !logs.has(/first query on a new connection/),
        logs.messages().join("\n"),
      );
      assert.equal(store.typeFetchFailure, null);
    } finally {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // closed
        }
      }
      await accepting;
    }
  },
});

Deno.test({
  name: "postgres store: a server that fails the driver's first query on each connection fails " +
    "the open with its reason, not the process",
  ignore,
  async fn() {
    await using db = await testDatabase();
    await withRole(db.url, "status_notypes", async (url, _role, admin) => {
      // The driver reads the array types on each new connection (a statement_timeout too short
      // for that query, set for the user or in the URL, fails it the same way).
      await admin.unsafe("REVOKE SELECT ON pg_catalog.pg_type FROM PUBLIC");
      using logs = captureLogs();
      await assert.rejects(openPostgresStore(url), (error: Error) => {
        assert.ok(error instanceof StoreError, error.message);
        assert.match(error.message, /permission denied for table pg_type/);
        return true;
      });
      assert.ok(
        logs.has(/first query on a new connection .*permission denied for table pg_type/),
        logs.messages().join("\n"),
      );
    });
  },
});

Deno.test({
  name: "postgres store: a user who may not create the schema is told to own the database",
  ignore,
  async fn() {
    await using db = await testDatabase();
    await withRole(db.url, "status_nocreate", async (url, role, admin) => {
      await admin.unsafe(`REVOKE CREATE ON SCHEMA public FROM PUBLIC`);
      await assert.rejects(openPostgresStore(url), (error: Error) => {
        assert.ok(error instanceof StoreError, error.message);
        assert.match(error.message, /permission denied.*must own the database/);
        assert.doesNotMatch(error.message, new RegExp(`pw-${role}`));
        return true;
      });
    });
  },
});

Deno.test({
  name: "postgres store: a user who may not migrate an older schema is told to own the database",
  ignore,
  async fn() {
    await using db = await testDatabase();
    const owner = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      await owner.unsafe("CREATE TABLE status_schema (version integer NOT NULL)");
      await owner.unsafe("INSERT INTO status_schema VALUES (5)");
      for (const migration of PG_MIGRATIONS.slice(0, 5)) await owner.unsafe(migration);
    } finally {
      await owner.end();
    }
    await withRole(db.url, "status_writer", async (url, role, admin) => {
      await admin.unsafe(
        `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role}`,
      );
      await assert.rejects(openPostgresStore(url), (error: Error) => {
        assert.ok(error instanceof StoreError, error.message);
        // Migration 6 alters the agents table, which only its owner may.
        assert.match(error.message, /must be owner of table agents; .* must own the database/);
        return true;
      });
    });
  },
});

Deno.test({
  name: "postgres store: a user that may only read the tables, or a read-only database, is refused",
  ignore,
  async fn() {
    await using db = await migratedTestDatabase(migrate);
    const name = new URL(db.url).pathname.slice(1);
    await withRole(db.url, "status_reader", async (url, role, admin) => {
      await admin.unsafe(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${role}`);
      await assert.rejects(openPostgresStore(url), (error: Error) => {
        assert.ok(error instanceof StoreError, error.message);
        assert.match(error.message, new RegExp(`user "${role}" lacks INSERT on agents`));
        assert.doesNotMatch(error.message, new RegExp(`pw-${role}`));
        return true;
      });
      // The owner, with writes off by default for the database (as on a standby).
      await admin.unsafe(`ALTER DATABASE ${name} SET default_transaction_read_only = on`);
      await assert.rejects(openPostgresStore(db.url), (error: Error) => {
        assert.ok(error instanceof StoreError, error.message);
        assert.match(error.message, /is read-only \(default_transaction_read_only is on/);
        return true;
      });
      await admin.unsafe(`ALTER DATABASE ${name} RESET default_transaction_read_only`);
      await (await openPostgresStore(db.url)).close();
    });
  },
});

Deno.test({
  name:
    "postgres store: a database that stops taking writes (a failover) is unavailable, not broken",
  ignore,
  async fn() {
    await using db = await migratedTestDatabase(migrate);
    const name = new URL(db.url).pathname.slice(1);
    await using store = await openPostgresStore(db.url, { maxConnections: 1 });
    const admin = postgres(db.url, { max: 1, onnotice: () => {} });
    // New sessions of the database start read-only; the store's session is ended to take one.
    const turn = async (readOnly: boolean) => {
      await admin.unsafe(
        readOnly
          ? `ALTER DATABASE ${name} SET default_transaction_read_only = on`
          : `ALTER DATABASE ${name} RESET default_transaction_read_only`,
      );
      await admin.unsafe(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid()`,
        [name],
      );
    };
    const outcome = async (what: () => Promise<unknown>) => {
      try {
        await what();
        return "ok";
      } catch (error) {
        if (!(error instanceof StoreUnavailableError)) throw error;
        return error.message;
      }
    };
    try {
      await turn(true);
      let message = "";
      // The first call may still meet the ended session (unavailable as well, for that reason).
      await until(
        async () =>
          /takes no writes now/.test(
            message = await outcome(() => store.enqueue(newCommand("w1", "a1", T0))),
          ),
        "an enqueue is refused as unavailable",
      );
      assert.match(message, /read-only/);
      assert.match(await outcome(() => store.ping()), /takes no writes now \(ping\)/);
      assert.equal(await store.getCommand("w1"), null, "nothing was written");

      await turn(false);
      await until(async () => await outcome(() => store.ping()) === "ok", "writes are back");
      assert.equal((await store.enqueue(newCommand("w1", "a1", T0))).outcome, "created");
    } finally {
      await admin.unsafe(`ALTER DATABASE ${name} RESET default_transaction_read_only`);
      await admin.end();
    }
  },
});

Deno.test({
  name: "postgres store: a server that takes no more connections says so, not 'not reachable'",
  ignore,
  async fn() {
    await using db = await testDatabase();
    const role = `status_limited_${crypto.randomUUID().slice(0, 8)}`;
    const admin = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      // As a server whose max_connections are all taken answers (SQLSTATE 53300).
      await admin.unsafe(`CREATE ROLE ${role} LOGIN CONNECTION LIMIT 0`);
      const url = new URL(db.url);
      url.username = role;
      await assert.rejects(openPostgresStore(url.toString()), (error: Error) => {
        assert.ok(error instanceof StoreError, error.message);
        assert.match(error.message, /takes no more connections now \(53300 too many connections/);
        assert.match(error.message, /each status instance uses up to 11: raise max_connections/);
        assert.doesNotMatch(error.message, /not reachable/);
        return true;
      });
    } finally {
      await admin.unsafe(`DROP ROLE IF EXISTS ${role}`).catch(() => {});
      await admin.end();
    }
  },
});

Deno.test({
  name: "postgres store: an instance whose clock is off from the database server's says so, " +
    "once, and again when it is right",
  ignore,
  async fn() {
    await using db = await migratedTestDatabase(migrate);
    let offMs = 300_000;
    using logs = captureLogs();
    const clockLines = () => logs.messages().filter((m) => m.startsWith("this instance's clock"));
    await using store = await openPostgresStore(db.url, { localClock: () => Date.now() + offMs });
    assert.equal(clockLines().length, 1, logs.messages().join("\n"));
    assert.match(
      clockLines()[0],
      /^this instance's clock is 300(\.\d)? s ahead of database server postgres:\/\/.*'s \(more than 2 s\): each instance ends leases and queued commands by its own clock, so this one ends leases and queued commands' time to live early \(a running command queued again or lost, a queued one expired\); set its clock right \(NTP\)$/,
    );
    // Looked at again at every lease lookup and health probe, said no more while it stays off;
    // the probe's answer says it (for /health).
    const ahead = (await store.ping()).clockAheadMs;
    assert.ok(ahead !== null && Math.abs(ahead - 300_000) < 1000, String(ahead));
    await store.nextLeaseExpiry();
    assert.equal(clockLines().length, 1);
    offMs = 0;
    assert.equal((await store.ping()).clockAheadMs, null);
    assert.match(
      clockLines()[1],
      /^this instance's clock is within 2 s of database server .*'s again$/,
    );
    offMs = -120_000;
    await store.nextLeaseExpiry();
    assert.equal(clockLines().length, 3);
    assert.match(clockLines()[2], /is 120(\.\d)? s behind .* hands out leases and times to live/);
    const behind = (await store.ping()).clockAheadMs;
    assert.ok(behind !== null && Math.abs(behind + 120_000) < 1000, String(behind));
  },
});

Deno.test({
  name: "postgres store: instances recording when the same agents were seen, in other orders, " +
    "do not deadlock",
  ignore,
  async fn() {
    await using cluster = await instances(2);
    const [x, y] = cluster.stores;
    const admin = postgres(cluster.url, { max: 1, onnotice: () => {} });
    try {
      await admin.unsafe(
        `INSERT INTO agents (id, token, scopes, created_at)
         SELECT 'agent-' || lpad(g::text, 5, '0'), NULL, '[]', 0 FROM generate_series(0, 1999) g`,
      );
      await admin.unsafe("ANALYZE agents");
    } finally {
      await admin.end();
    }
    const ids = Array.from({ length: 2000 }, (_, i) => `agent-${String(i).padStart(5, "0")}`);
    for (let round = 1; round <= 5; round++) {
      // Each instance saw the fleet in another order (agents reach instances as they please).
      await Promise.all([
        x.touchAgents(ids.map((id) => [id, T0 + round * 10] as const)),
        y.touchAgents(ids.toReversed().map((id) => [id, T0 + round * 10 + 1] as const)),
      ]);
    }
    assert.equal((await x.getAgent("agent-00000"))?.lastSeenAt, T0 + 51);
    assert.equal((await x.getAgent("agent-01999"))?.lastSeenAt, T0 + 51);
  },
});

Deno.test("postgres store: a port that closes every connection without a PostgreSQL answer fails the open in time", async (t) => {
  // An HTTP server (or a proxy with no database behind it) on the URL's port: the driver read its
  // answer as half a message, and reconnected at once each time the connection closed, thousands
  // of times a second, so the open never ended.
  for (
    const [kind, answer] of [
      [
        "an HTTP server",
        "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
      ],
      ["a proxy with no server behind it", ""],
    ]
  ) {
    await t.step(kind, async () => {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (listener.addr as Deno.NetAddr).port;
      let connections = 0;
      const serving = (async () => {
        for await (const conn of listener) {
          connections++;
          try {
            if (answer) await conn.write(new TextEncoder().encode(answer));
          } catch {
            // the client went first
          }
          conn.close();
        }
      })();
      using logs = captureLogs();
      try {
        const error = await storeError(
          openPostgresStore(`postgres://status:secret-pw@127.0.0.1:${port}/status`, {
            connectTimeoutSecs: 1,
            queryTimeoutSecs: 2,
          }),
          /^cannot open database postgres:\/\/status:\*\*\*@127\.0\.0\.1:\d+\/status: /,
        );
        assert.equal(
          error.message,
          `cannot open database postgres://status:***@127.0.0.1:${port}/status: no PostgreSQL ` +
            "server answered within 3 s: the connection was made, then closed or left without " +
            "an answer a PostgreSQL server gives (is that address a PostgreSQL server's, and " +
            "not another service's or a proxy's with no server behind it?)",
        );
        assert.ok(error instanceof StoreUnavailableError, error.name);
        // Said while it waited.
        assert.deepEqual(
          logs.records.filter((r) => r.level === "warning").map((r) => String(r.message)),
          [
            `database postgres://status:***@127.0.0.1:${port}/status has not answered within 2 ` +
            "s; waiting up to 3 s in all before the start fails",
          ],
        );
        assert.ok(connections > 0, "it connected");
        // The last attempts may still be in the listen queue when the open fails.
        await new Promise((resolve) => setTimeout(resolve, 200));
        const after = connections;
        await new Promise((resolve) => setTimeout(resolve, 300));
        assert.equal(connections, after, "no connection is made once the open failed");
      } finally {
        listener.close();
        await serving.catch(() => {});
      }
    });
  }
});

Deno.test("postgres store: a server starting up or shutting down is named as such, not unreachable", async () => {
  // What PostgreSQL answers a connection while it starts (or recovers after a crash), or stops.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const fields = "SFATAL\0C57P03\0Mthe database system is starting up\0\0";
  const message = new Uint8Array(5 + fields.length);
  message[0] = "E".charCodeAt(0);
  new DataView(message.buffer).setInt32(1, 4 + fields.length);
  message.set(new TextEncoder().encode(fields), 5);
  const serving = (async () => {
    for await (const conn of listener) {
      try {
        await conn.read(new Uint8Array(1024)); // the startup message
        await conn.write(message);
      } catch {
        // the client went first
      }
      conn.close();
    }
  })();
  try {
    const error = await storeError(
      openPostgresStore(`postgres://status:secret-pw@127.0.0.1:${port}/status`, {
        connectTimeoutSecs: 2,
        queryTimeoutSecs: 2,
      }),
      /^cannot open database postgres:\/\/status:\*\*\*@127\.0\.0\.1:\d+\/status: /,
    );
    assert.match(
      error.message,
      /: the server does not take connections now \(57P03 the database system is starting up\); start status again once it does$/,
    );
    assert.ok(error instanceof StoreUnavailableError, error.name);
  } finally {
    listener.close();
    await serving.catch(() => {});
  }
});

Deno.test("postgres store: a host name that does not resolve is named as such", async () => {
  const error = await storeError(
    openPostgresStore("postgres://status:secret-pw@no-such-host.invalid:5432/status", {
      connectTimeoutSecs: 2,
    }),
    /^cannot open database postgres:\/\/status:\*\*\*@no-such-host\.invalid:5432\/status: /,
  );
  assert.match(
    error.message,
    /: the host name no-such-host\.invalid could not be (found \(ENOTFOUND\); check the URL's host|resolved now \(EAI_AGAIN\); is DNS reachable\?)$/,
  );
  assert.doesNotMatch(error.message, /secret-pw/);
});
