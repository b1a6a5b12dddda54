import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { openSqliteStore, SqliteStore, StoreError } from "../../src/store/mod.ts";
import { runStoreContract } from "./contract.ts";

runStoreContract("sqlite (memory)", () => openSqliteStore(":memory:"));

runStoreContract("sqlite (file)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "status-store-" });
  const store = openSqliteStore(`${dir}/status.db`, { synchronous: "normal" });
  const close = store.close.bind(store);
  // Remove the directory with the store.
  store.close = async () => {
    await close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  return store;
});

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "status-store-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("sqlite store creates its file in WAL mode with the current schema version", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/nested/dir/status.db`;
    const store = openSqliteStore(path);
    await store.close();
    const db = new DatabaseSync(path);
    try {
      const journal = db.prepare("PRAGMA journal_mode").get() as { journal_mode: string };
      assert.equal(journal.journal_mode, "wal");
      const version = db.prepare("PRAGMA user_version").get() as { user_version: number };
      assert.equal(version.user_version, SqliteStore.schemaVersion);
    } finally {
      db.close();
    }
  });
});

Deno.test("sqlite store keeps agents, queued commands, leases and results across reopening", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/status.db`;
    const now = Date.UTC(2026, 0, 12);
    {
      await using store = openSqliteStore(path);
      await store.addAgent({ id: "a1", token: "t".repeat(43), scopes: ["commands:wait"], now });
      for (const id of ["done", "leased", "queued"]) {
        await store.enqueue({ id, agentId: "a1", name: "echo", params: {}, fingerprint: id, now });
      }
      await store.claimNext({ agentId: "a1", deploymentHash: "d", now, deliveryLeaseMs: 1000 });
      await store.report({
        commandId: "done",
        agentId: "a1",
        attempt: 1,
        status: "success",
        result: null,
        error: null,
        startedAt: null,
        completedAt: null,
        now,
      });
      await store.claimNext({ agentId: "a1", deploymentHash: "d", now, deliveryLeaseMs: 1000 });
    }
    await using store = openSqliteStore(path);
    assert.equal((await store.getAgent("a1"))?.token, "t".repeat(43));
    assert.equal((await store.getCommand("done"))?.status, "success");
    assert.equal((await store.getCommand("done"))?.result?.status, "success");
    assert.equal((await store.getCommand("leased"))?.status, "delivered");
    assert.equal(await store.nextLeaseExpiry(), now + 1000);
    assert.equal((await store.getCommand("queued"))?.status, "queued");
  });
});

Deno.test("sqlite store refuses a database it does not understand", async (t) => {
  await withTempDir(async (dir) => {
    await t.step("a newer schema version", async () => {
      const path = `${dir}/newer.db`;
      await openSqliteStore(path).close();
      const db = new DatabaseSync(path);
      db.exec(`PRAGMA user_version = ${SqliteStore.schemaVersion + 1}`);
      db.close();
      assert.throws(() => openSqliteStore(path), (error: Error) => {
        assert.ok(error instanceof StoreError);
        assert.match(error.message, /newer than this program/);
        return true;
      });
    });
    await t.step("another program's database", () => {
      const path = `${dir}/foreign.db`;
      const db = new DatabaseSync(path);
      db.exec("CREATE TABLE things (x INTEGER)");
      db.close();
      assert.throws(() => openSqliteStore(path), /is not a status database/);
    });
    await t.step("a path that cannot be a database", async () => {
      await Deno.mkdir(`${dir}/a-directory.db`);
      assert.throws(() => openSqliteStore(`${dir}/a-directory.db`), StoreError);
    });
  });
});

Deno.test("sqlite store validates its options", () => {
  assert.throws(() => openSqliteStore(""), TypeError);
  // deno-lint-ignore no-explicit-any
  assert.throws(() => openSqliteStore(":memory:", { synchronous: "off" as any }), TypeError);
  assert.throws(() => openSqliteStore(":memory:", { busyTimeoutMs: -1 }), RangeError);
});
