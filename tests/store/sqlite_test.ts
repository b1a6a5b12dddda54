import assert from "node:assert/strict";
import { DatabaseSync, type SQLInputValue, StatementSync } from "node:sqlite";
import { setImmediate } from "node:timers";
import {
  AGENT_SCOPES,
  openSqliteStore,
  SqliteStore,
  StoreError,
  StoreUnavailableError,
} from "../../src/store/mod.ts";
import { CHECKPOINT_AFTER_COMMITS } from "../../src/store/sqlite.ts";
import { APPLICATION_ID, MIGRATIONS } from "../../src/store/_migrations.ts";
import { runStoreContract } from "./contract.ts";
import { countTargetReads } from "./_target_reads.ts";
import { jsonLogs, PERMS, runCli, spawnCli } from "../_cli.ts";
import { tempDir } from "../e2e/helpers.ts";
import { captureLogs } from "../agent/_helpers.ts";

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

async function withTempDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "status-store-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("sqlite store creates its file in WAL mode with the current schema version", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/status.db`;
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
    await t.step("another program's database that numbers its schema, left as it was", () => {
      // Its version was taken for ours: it was opened (or migrated) and failed at every request.
      for (const version of [3, SqliteStore.schemaVersion]) {
        const path = `${dir}/versioned-${version}.db`;
        const db = new DatabaseSync(path);
        db.exec(`CREATE TABLE things (x INTEGER); PRAGMA user_version = ${version}`);
        db.close();
        assert.throws(() => openSqliteStore(path), {
          name: "StoreError",
          message: `${path} is not a status database (schema version ${version}, but not ` +
            "status's application id)",
        });
        const after = new DatabaseSync(path);
        const mode = after.prepare("PRAGMA journal_mode").get()?.journal_mode;
        after.close();
        assert.equal(mode, "delete", "not switched to WAL");
        assert.throws(() => Deno.statSync(`${path}-reserve`), Deno.errors.NotFound);
      }
    });
    await t.step("a directory, saying which path to give", async () => {
      await Deno.mkdir(`${dir}/a-directory.db`);
      assert.throws(() => openSqliteStore(`${dir}/a-directory.db`), {
        name: "StoreError",
        message:
          `cannot open database ${dir}/a-directory.db: it is a directory, not a file (give ` +
          `the database file's own path, such as ${dir}/a-directory.db/status.db)`,
      });
    });
    await t.step("a file that is not SQLite, or a damaged one, saying what to do", async () => {
      const text = `${dir}/notes.db`;
      await Deno.writeTextFile(text, "not a database\n".repeat(100));
      assert.throws(() => openSqliteStore(text), {
        name: "StoreError",
        message: `cannot open database ${text}: it is not a SQLite database (another kind of ` +
          "file, or an encrypted one); give the path of a status database, or of a file that " +
          "does not exist yet to create one",
      });
      assert.equal(await Deno.readTextFile(text), "not a database\n".repeat(100), "left as it was");
      const damaged = `${dir}/damaged.db`;
      await openSqliteStore(damaged).close();
      const bytes = await Deno.readFile(damaged);
      bytes.fill(0x5a, 100);
      await Deno.writeFile(damaged, bytes);
      assert.throws(() => openSqliteStore(damaged), {
        name: "StoreError",
        message: `cannot open database ${damaged}: the file is damaged (database disk image is ` +
          "malformed); restore it from a backup, or recover what it holds with sqlite3's " +
          ".recover into a new file",
      });
    });
    await t.step("a pipe, and nothing created beside it", () => {
      // As /dev/null would be (SQLite left /dev/null-journal behind).
      const path = `${dir}/a-pipe.db`;
      assert.ok(new Deno.Command("mkfifo", { args: [path] }).outputSync().success);
      assert.throws(() => openSqliteStore(path), {
        name: "StoreError",
        message: `cannot open database ${path}: it is not a regular file (a device, a pipe or a ` +
          "socket)",
      });
      assert.deepEqual(
        [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.startsWith("a-pipe")),
        ["a-pipe.db"],
      );
    });
  });
});

Deno.test("sqlite store upgrades a database of every older schema version, keeping its rows", async (t) => {
  await withTempDir(async (dir) => {
    for (let version = 1; version < MIGRATIONS.length; version++) {
      await t.step(`from version ${version}`, async () => {
        const path = `${dir}/v${version}.db`;
        const old = new DatabaseSync(path);
        old.exec(`PRAGMA journal_mode = WAL; ${MIGRATIONS.slice(0, version).join("")}`);
        old.exec(`PRAGMA user_version = ${version}; PRAGMA application_id = ${APPLICATION_ID}`);
        old.exec("INSERT INTO agents (id, token, scopes, created_at) VALUES ('a1', NULL, '[]', 1)");
        old.exec(
          `INSERT INTO commands (id, agent_id, name, params, priority, fingerprint, status, attempt,
             delivered_attempt, created_at, updated_at, completed_at)
           VALUES ('c1', 'a1', 'echo hi', '{}', 0, 'f1', 'success', 1, 1, 1, 2, 2),
                  ('c2', 'a1', 'echo q', '{}', 2, 'f2', 'queued', 0, 0, 1, 1, NULL)`,
        );
        old.exec(
          `INSERT INTO results (command_id, attempt, status, has_output, exit_code, stdout, stderr,
             reported_at) VALUES ('c1', 1, 'success', 1, 0, 'hi
', '', 2)`,
        );
        old.close();
        await using store = openSqliteStore(path);
        const done = await store.getCommand("c1");
        assert.equal(done?.status, "success");
        assert.equal(done?.priority, "critical");
        assert.equal(done?.result?.stdout, "hi\n");
        const queued = await store.getCommand("c2");
        assert.equal(queued?.status, "queued");
        assert.equal(queued?.priority, "normal");
        assert.equal((await store.getAgent("a1"))?.id, "a1");
      });
    }
  });
});

Deno.test("sqlite store: a migration that fails leaves the database at its version, saying which", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/status.db`;
    const old = new DatabaseSync(path);
    old.exec(`PRAGMA journal_mode = WAL; ${MIGRATIONS.slice(0, 7).join("")}`);
    old.exec(`PRAGMA user_version = 7; PRAGMA application_id = ${APPLICATION_ID}`);
    old.exec("INSERT INTO agents (id, token, scopes, created_at) VALUES ('a1', NULL, '[]', 1)");
    // Migration 8 creates request_ids: a table of that name made by hand makes it fail inside.
    old.exec("CREATE TABLE request_ids (note TEXT)");
    old.close();
    assert.throws(() => openSqliteStore(path), {
      name: "StoreError",
      message: `cannot migrate database ${path} from schema version 7 to 8: table request_ids ` +
        "already exists; it is left at version 7, as it was (was its schema changed by another " +
        "program or by hand?)",
    });
    const after = new DatabaseSync(path);
    try {
      assert.equal(after.prepare("PRAGMA user_version").get()?.user_version, 7);
      assert.equal(after.prepare("SELECT count(*) AS n FROM agents").get()?.n, 1);
      assert.equal(after.prepare("PRAGMA integrity_check").get()?.integrity_check, "ok");
    } finally {
      after.close();
    }
  });
});

Deno.test("sqlite store: a migration that meets a damaged page says the file is damaged", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/status.db`;
    const old = new DatabaseSync(path);
    old.exec(`${MIGRATIONS.slice(0, 6).join("")} PRAGMA user_version = 6;`);
    old.exec(`PRAGMA application_id = ${APPLICATION_ID}`);
    const root = old.prepare("SELECT rootpage FROM sqlite_schema WHERE name = 'commands'").get();
    const pageSize = Number(old.prepare("PRAGMA page_size").get()?.page_size);
    old.close();
    // Migration 7 indexes the commands: it reads their pages, which the schema's does not.
    const bytes = await Deno.readFile(path);
    bytes.fill(0xff, (Number(root?.rootpage) - 1) * pageSize, Number(root?.rootpage) * pageSize);
    await Deno.writeFile(path, bytes);
    assert.throws(() => openSqliteStore(path), {
      name: "StoreError",
      message: `cannot open database ${path}: the file is damaged (database disk image is ` +
        "malformed); restore it from a backup, or recover what it holds with sqlite3's " +
        ".recover into a new file",
    });
  });
});

Deno.test("sqlite store: two processes migrating one database at once both open it", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/status.db`;
    // The other process (a dashboard starting, or `status agents add --db` at the same moment)
    // has begun the first migration and commits it a moment after this one read version 0.
    const migrations = import.meta.resolve("../../src/store/_migrations.ts");
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import { DatabaseSync, type SQLInputValue, StatementSync } from "node:sqlite";
        import { APPLICATION_ID, MIGRATIONS } from ${JSON.stringify(migrations)};
        const db = new DatabaseSync(${JSON.stringify(path)});
        db.exec("PRAGMA journal_mode = WAL");
        db.exec("BEGIN IMMEDIATE");
        db.exec(MIGRATIONS[0]);
        db.exec("PRAGMA user_version = 1; PRAGMA application_id = " + APPLICATION_ID);
        console.log("begun");
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500);
        db.exec("COMMIT");
        db.close();`,
      ],
      stdout: "piped",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    assert.equal((await reader.read()).value?.trim(), "begun");
    // Reads version 0 (the other's migration is not committed), then waits for its lock.
    const store = openSqliteStore(path, { busyTimeoutMs: 30_000 });
    try {
      assert.equal(await store.getAgent("a1"), null);
      const db = new DatabaseSync(path);
      const version = db.prepare("PRAGMA user_version").get()?.user_version;
      db.close();
      assert.equal(version, SqliteStore.schemaVersion);
    } finally {
      await store.close();
      await reader.cancel();
      assert.ok((await child.status).success);
    }
  });
});

Deno.test("sqlite store validates its options", () => {
  assert.throws(() => openSqliteStore(""), TypeError);
  // deno-lint-ignore no-explicit-any
  assert.throws(() => openSqliteStore(":memory:", { synchronous: "off" as any }), TypeError);
  assert.throws(() => openSqliteStore(":memory:", { busyTimeoutMs: -1 }), RangeError);
});

Deno.test("sqlite store sees agents changed by another process at once, and caches them otherwise", async () => {
  await withTempDir(async (dir) => {
    await using server = openSqliteStore(`${dir}/status.db`, { synchronous: "normal" });
    await using cli = openSqliteStore(`${dir}/status.db`, { synchronous: "normal" });
    const now = Date.now();
    assert.equal(await server.getAgent("web-1"), null);
    await cli.addAgent({ id: "web-1", token: "old".repeat(15), scopes: AGENT_SCOPES, now });
    assert.equal((await server.getAgent("web-1"))?.token, "old".repeat(15), "an add is seen");

    // While nothing changes, the agent comes from memory (the same record each time).
    const first = await server.getAgent("web-1");
    assert.equal(await server.getAgent("web-1"), first, "the same cached record");

    await cli.setAgentToken("web-1", "new".repeat(15));
    assert.equal((await server.getAgent("web-1"))?.token, "new".repeat(15), "a rotate is seen");
    await cli.removeAgent("web-1", now);
    assert.equal(await server.getAgent("web-1"), null, "a remove is seen");

    // The server's own writes update its cache directly.
    await server.addAgent({ id: "web-2", token: "two".repeat(15), scopes: AGENT_SCOPES, now });
    assert.equal((await server.getAgent("web-2"))?.token, "two".repeat(15));
    await server.setAgentToken("web-2", "2nd".repeat(15));
    assert.equal((await server.getAgent("web-2"))?.token, "2nd".repeat(15));
    await server.touchAgents([["web-2", now + 5]]);
    assert.equal((await server.getAgent("web-2"))?.lastSeenAt, now + 5);
    assert.equal((await cli.getAgent("web-2"))?.lastSeenAt, now + 5, "written to the file");

    // A look taken while the other store's write waits for its commit does not stand after it.
    const touched = cli.touchAgents([["web-2", now + 9]]);
    assert.equal((await server.getAgent("web-2"))?.lastSeenAt, now + 5, "not committed yet");
    await touched;
    assert.equal((await server.getAgent("web-2"))?.lastSeenAt, now + 9, "seen once committed");
  });
});

Deno.test("sqlite store claims on an empty queue without a write transaction", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/status.db`;
    await using store = openSqliteStore(path, { busyTimeoutMs: 0 });
    const now = Date.now();
    const request = { agentId: "a1", deploymentHash: "default", now, deliveryLeaseMs: 30_000 };
    // Another connection holds the write lock: a write transaction would fail with SQLITE_BUSY.
    const other = new DatabaseSync(path);
    try {
      other.exec("BEGIN IMMEDIATE");
      assert.equal(await store.claimNext(request), null, "an empty queue only reads");
      other.exec("ROLLBACK");
      await store.enqueue({
        id: "c1",
        agentId: "a1",
        name: "echo",
        params: {},
        fingerprint: "f",
        now,
      });
      other.exec("BEGIN IMMEDIATE");
      await assert.rejects(() => store.claimNext(request), /locked|busy/i, "a real claim writes");
      other.exec("ROLLBACK");
      assert.equal((await store.claimNext(request))?.id, "c1");
    } finally {
      other.close();
    }
  });
});

Deno.test("sqlite store creates a database only where asked, only in an existing directory", async (t) => {
  await withTempDir(async (dir) => {
    await t.step("a missing directory is refused and nothing is created", () => {
      const path = `${dir}/nonexistent/x.db`;
      assert.throws(() => openSqliteStore(path), (error: Error) => {
        assert.ok(error instanceof StoreError);
        assert.match(error.message, /directory .*nonexistent does not exist/);
        return true;
      });
      assert.throws(() => Deno.statSync(`${dir}/nonexistent`), Deno.errors.NotFound);
    });
    await t.step("create: false refuses a missing file, naming it", () => {
      const path = `${dir}/typo.db`;
      assert.throws(() => openSqliteStore(path, { create: false }), (error: Error) => {
        assert.ok(error instanceof StoreError);
        assert.match(error.message, /database .*typo\.db does not exist/);
        return true;
      });
      assert.throws(() => Deno.statSync(path), Deno.errors.NotFound);
    });
    await t.step("a SQLite URI is refused and nothing is created", () => {
      const path = `file:${dir}/uri.db`;
      assert.throws(() => openSqliteStore(path), (error: Error) => {
        assert.ok(error instanceof StoreError);
        assert.match(error.message, /begins with "file:" is read by SQLite as a URI/);
        return true;
      });
      assert.deepEqual([...Deno.readDirSync(dir)], [], "neither uri.db nor a reserve");
    });
    await t.step("create: false opens a file that exists", async () => {
      const path = `${dir}/status.db`;
      await openSqliteStore(path).close();
      await openSqliteStore(path, { create: false }).close();
    });
  });
});

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

Deno.test("sqlite store copies its write-ahead log into the database a turn after the answers", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/status.db`;
    await using store = openSqliteStore(path);
    const walFrames = () => {
      // What is left in the log for the database: frames after the last checkpoint.
      const other = new DatabaseSync(path);
      try {
        const row = other.prepare("PRAGMA wal_checkpoint(PASSIVE)").get() as Record<string, number>;
        return row.log;
      } finally {
        other.close();
      }
    };
    /** The write-ahead log's salts (header bytes 16–23): new ones each time it starts over. */
    const walSalt = () => {
      const header = Deno.readFileSync(`${path}-wal`).subarray(16, 24);
      return Array.from(header, (byte) => byte.toString(16).padStart(2, "0")).join("");
    };
    const write = (i: number) => store.ensureAgent(`agent-${i}`, Date.now());
    for (let i = 0; i < CHECKPOINT_AFTER_COMMITS - 1; i++) await write(i);
    await nextTurn();
    assert.equal(store.checkpoints, 0, "not before the count");
    assert.ok(walFrames() > 0, "the commits are in the log");
    await write(CHECKPOINT_AFTER_COMMITS);
    assert.equal(store.checkpoints, 0, "the commit's call is answered first");
    const salt = walSalt();
    await nextTurn();
    assert.equal(store.checkpoints, 1, "a turn later");
    // The whole log was copied: the store started it over itself (a new salt in its header), so
    // the next request's commit does not.
    assert.equal(store.logRestarts, 1);
    const restarted = walSalt();
    assert.notEqual(restarted, salt, "the log was started over in the checkpoint's turn");
    await write(CHECKPOINT_AFTER_COMMITS + 1);
    assert.equal(walSalt(), restarted, "the next commit appends to the restarted log");
    assert.equal(await store.getAgent(`agent-${CHECKPOINT_AFTER_COMMITS}`) !== null, true);

    // With a group open when it is due, it waits for that group's commit.
    for (let i = 0; i < CHECKPOINT_AFTER_COMMITS - 1; i++) await write(100 + i);
    const last = write(200);
    await nextTurn();
    // The due checkpoint's turn comes while this write's group is open: it is tried again a turn
    // after that group's commit.
    const open = write(201);
    await last;
    await open;
    await nextTurn();
    assert.equal(store.checkpoints, 2, "a turn after that group's commit");
  });

  // An in-memory store has no log to copy.
  await using memory = openSqliteStore(":memory:");
  for (let i = 0; i < CHECKPOINT_AFTER_COMMITS + 1; i++) await memory.ensureAgent(`m${i}`, 1);
  await nextTurn();
  assert.equal(memory.checkpoints, 0);
});

Deno.test("sqlite store commits concurrent writes together, answering none before the commit", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/status.db`;
    await using store = openSqliteStore(path);
    const now = Date.now();
    const before = store.commits;
    const ids = Array.from({ length: 20 }, (_, i) => `c${i}`);
    let answered = 0;
    const writes = ids.map((id) =>
      store.enqueue({ id, agentId: "a1", name: "echo", params: {}, fingerprint: id, now })
        .then((outcome) => {
          answered++;
          return outcome;
        })
    );
    // Nothing is committed yet, so nothing is answered and another connection sees nothing.
    const other = new DatabaseSync(path);
    try {
      const count = () =>
        (other.prepare("SELECT count(*) AS n FROM commands").get() as { n: number }).n;
      assert.equal(count(), 0);
      await Promise.resolve();
      assert.equal(answered, 0, "no write is answered before its commit");
      const outcomes = await Promise.all(writes);
      assert.deepEqual(outcomes.map((o) => o.outcome), ids.map(() => "created"));
      assert.equal(store.commits - before, 1, "twenty writes, one commit");
      assert.equal(count(), 20);
    } finally {
      other.close();
    }
  });
});

Deno.test("sqlite store fails only the write that failed in a group, and the next group is clean", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/status.db`;
    const now = Date.now();
    const command = (id: string) => ({
      id,
      agentId: "a1",
      name: "echo",
      params: {},
      fingerprint: id,
      now,
    });
    {
      await using store = openSqliteStore(path);
      const before = store.commits;
      // A name the schema refuses (NOT NULL): that write alone is undone.
      const bad = { ...command("bad"), name: null as unknown as string };
      const [first, failed, last] = await Promise.allSettled([
        store.enqueue(command("ok1")),
        store.enqueue(bad),
        store.enqueue(command("ok2")),
      ]);
      assert.equal(first.status, "fulfilled");
      assert.equal(failed.status, "rejected");
      assert.match(String((failed as PromiseRejectedResult).reason), /NOT NULL/);
      assert.equal(last.status, "fulfilled");
      assert.equal(store.commits - before, 1);
      assert.equal(await store.getCommand("bad"), null);
      // The next group is a new transaction of its own.
      await store.enqueue(command("ok3"));
      assert.equal(store.commits - before, 2);
    }
    await using reopened = openSqliteStore(path);
    for (const id of ["ok1", "ok2", "ok3"]) assert.equal((await reopened.getCommand(id))?.id, id);
    assert.equal(await reopened.getCommand("bad"), null);
  });
});

Deno.test("sqlite store sees inside its open group what another process committed before it", async () => {
  await withTempDir(async (dir) => {
    await using server = openSqliteStore(`${dir}/status.db`, { synchronous: "normal" });
    await using cli = openSqliteStore(`${dir}/status.db`, { synchronous: "normal" });
    const now = Date.now();
    await cli.addAgent({ id: "web-1", token: "old".repeat(15), scopes: AGENT_SCOPES, now });
    assert.equal((await server.getAgent("web-1"))?.token, "old".repeat(15), "cached");
    await cli.setAgentToken("web-1", "new".repeat(15));
    // The enqueue opens the server's group (the write lock); the read joins it before the commit.
    const enqueued = server.enqueue({
      id: "c1",
      agentId: "web-1",
      name: "true",
      params: {},
      fingerprint: "f",
      now,
    });
    const agent = server.getAgent("web-1");
    assert.equal((await enqueued).outcome, "created");
    assert.equal((await agent)?.token, "new".repeat(15), "the rotate is seen inside the group");
  });
});

Deno.test("a database the store creates, and its -wal and -shm files, are readable by their owner only", async () => {
  const dir = await Deno.makeTempDir({ prefix: "status-mode-" });
  try {
    const path = `${dir}/status.db`;
    const store = openSqliteStore(path);
    try {
      await store.addAgent({ id: "a1", token: "t".repeat(43), scopes: AGENT_SCOPES, now: 0 });
      for (const file of [path, `${path}-wal`, `${path}-shm`]) {
        assert.equal((Deno.statSync(file).mode ?? 0) & 0o777, 0o600, file);
      }
    } finally {
      await store.close();
    }
    // A database that exists keeps the mode its owner gave it.
    const shared = `${dir}/shared.db`;
    await openSqliteStore(shared).close();
    Deno.chmodSync(shared, 0o640);
    await openSqliteStore(shared).close();
    assert.equal((Deno.statSync(shared).mode ?? 0) & 0o777, 0o640);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a database every user may read (as an earlier status created it) is warned of at open", async () => {
  await using dir = tempDir("status-mode-");
  const path = `${dir.path}/status.db`;
  await openSqliteStore(path).close();
  using logs = captureLogs();
  // A group of its own may read it: the owner's choice, not warned of.
  Deno.chmodSync(path, 0o640);
  await openSqliteStore(path).close();
  assert.deepEqual(logs.messages().filter((m) => m.includes("every user")), []);
  // Created before status made its database 0600: the umask's 0644, kept as it was.
  Deno.chmodSync(path, 0o644);
  await openSqliteStore(path).close();
  assert.equal((Deno.statSync(path).mode ?? 0) & 0o777, 0o644, "its mode is left as it is");
  assert.deepEqual(logs.messages().filter((m) => m.includes("every user")), [
    `database ${path} may be read by every user (mode 0644; an earlier status created it so): ` +
    "any local user, and every command an agent on this machine runs, can read its commands, " +
    `their output and the agents' token hashes; stop the dashboard, chmod 600 ${path} and start ` +
    "it again",
  ]);
});

Deno.test("a database's files that another user made first, or a symlink beside it, are refused", async (t) => {
  // A database in /tmp: another user could make its files first, to read them, or leave a
  // symlink for this process to write through (the reserve appends 2 MiB of zeros).
  const dir = await Deno.makeTempDir({ prefix: "status-foreign-" });
  const path = `${dir}/status.db`;
  const victim = `${dir}/victim`;
  try {
    Deno.writeTextFileSync(victim, "precious\n");
    for (const companion of ["-reserve", "-wal", "-shm"]) {
      await t.step(`a symlink at ${companion}`, () => {
        Deno.symlinkSync(victim, path + companion);
        try {
          assert.throws(() => openSqliteStore(path), {
            name: "StoreError",
            message: `cannot open database ${path}: ${path}${companion} is a symlink; refusing ` +
              "(remove it, or keep the database in a directory only this user may write)",
          });
          assert.equal(Deno.readTextFileSync(victim), "precious\n");
        } finally {
          Deno.removeSync(path + companion);
        }
      });
    }
    await t.step({
      name: "a database file of another user, in a directory every user may write",
      ignore: Deno.uid() !== 0,
      fn: () => {
        Deno.chmodSync(dir, 0o1777); // as /tmp
        try {
          Deno.writeFileSync(path, new Uint8Array(), { mode: 0o666 });
          Deno.chownSync(path, 65534, 65534);
          assert.throws(
            () => openSqliteStore(path),
            new RegExp(`^StoreError: cannot open database ${path}: ${path} belongs to uid 65534`),
          );
          Deno.removeSync(path);
        } finally {
          Deno.chmodSync(dir, 0o700);
        }
      },
    });
    await t.step({
      name:
        "elsewhere another user's database is opened (root's --db on the dashboard user's file)",
      ignore: Deno.uid() !== 0,
      fn: async () => {
        const home = `${dir}/home`;
        Deno.mkdirSync(home, { mode: 0o755 });
        Deno.chownSync(home, 65534, 65534);
        const theirs = `${home}/status.db`;
        await openSqliteStore(theirs).close();
        Deno.chownSync(theirs, 65534, 65534);
        await using store = openSqliteStore(theirs, { create: false });
        assert.equal(await store.getAgent("none"), null);
      },
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a dashboard allowed to read only its database files still creates them readable by their owner only", async () => {
  // As under `deno run -P=serve`: read and write permission for status.db and its companions,
  // none for the directory around them.
  await using dir = tempDir("status-mode-");
  const db = `${dir.path}/status.db`;
  const files = ["", "-wal", "-shm", "-journal", "-reserve"].map((suffix) => db + suffix);
  await using serve = spawnCli(["serve", "--db", db, "--port", "0"], {
    perms: [
      "--allow-net",
      `--allow-read=${files.join(",")},/dev/null`,
      `--allow-write=${files.join(",")}`,
    ],
    cwd: dir.path,
  });
  await serve.waitForLog("dashboard listening");
  for (const file of [db, `${db}-wal`, `${db}-shm`]) {
    assert.equal((Deno.statSync(file).mode ?? 0) & 0o777, 0o600, file);
  }
  assert.ok(!serve.logged(/was an empty file/), "a database it created is not one it found empty");
});

Deno.test("a dashboard started on an empty file warns that it is taken as a new database", async () => {
  await using dir = tempDir("status-empty-");
  const db = `${dir.path}/status.db`;
  Deno.writeFileSync(db, new Uint8Array(), { mode: 0o600 }); // truncated by accident
  await using serve = spawnCli(["serve", "--db", db, "--port", "0"], { perms: PERMS.serve });
  await serve.waitForLog("dashboard listening");
  const warning = jsonLogs(serve.stderr).find((record) =>
    /was an empty file/.test(String(record.message))
  );
  assert.equal(warning?.level, "warning");
  assert.equal(
    warning?.message,
    `database ${db} was an empty file: it is now a new database, with no agents and no ` +
      "commands; if it held a dashboard's database (truncated by accident, or a copy that " +
      "failed), stop and restore it from a backup",
  );
});

Deno.test("sqlite store keeps request ids until they expire, across reopening, and deletes the expired", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/status.db`;
    const t0 = 1_000_000;
    let store = openSqliteStore(path);
    // Nothing else is written: the ids get a commit of their own, a second later.
    const before = store.commits;
    await Promise.all([
      store.keepRequestId({ key: "a1\nr-1", expiresAt: t0 + 660_000, sentAtMs: t0 }, t0),
      store.keepRequestId({ key: "a1\nr-2", expiresAt: t0 + 1000, sentAtMs: null }, t0),
    ]);
    const commits = store.commits - before;
    await store.close();
    store = openSqliteStore(path);
    try {
      assert.deepEqual(await store.keptRequestIds(t0), [
        { key: "a1\nr-2", expiresAt: t0 + 1000, sentAtMs: null },
        { key: "a1\nr-1", expiresAt: t0 + 660_000, sentAtMs: t0 },
      ]);
      assert.deepEqual((await store.keptRequestIds(t0 + 1000)).map((id) => id.key), ["a1\nr-1"]);
      assert.equal(commits, 1, "the two ids share one commit");
      // The next ids written (the first since the store opened; then once a second) delete the
      // expired; closing the store writes the ids kept since the last commit.
      const later = t0 + 10_000;
      const kept = store.keepRequestId(
        { key: "a2\nr-1", expiresAt: later + 660_000, sentAtMs: later },
        later,
      );
      await store.close();
      await kept;
    } finally {
      await store.close();
    }
    const db = new DatabaseSync(path);
    try {
      const rows = db.prepare("SELECT key FROM request_ids ORDER BY key").all() as {
        key: string;
      }[];
      assert.deepEqual(rows.map((row) => row.key), ["a1\nr-1", "a2\nr-1"]);
    } finally {
      db.close();
    }
  });
});

Deno.test("sqlite store keeps a request id again after it expired in a database of the first request_ids", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/status.db`;
    // Migration 8 as it first shipped (2026-12-01, for an hour): a key that was the primary key,
    // and an expiry index.
    const old = new DatabaseSync(path);
    old.exec(`PRAGMA journal_mode = WAL; ${MIGRATIONS.slice(0, 7).join("")}
      CREATE TABLE request_ids (
        key TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL,
        sent_at INTEGER
      ) STRICT;
      CREATE INDEX request_ids_expiry ON request_ids (expires_at);`);
    old.exec(`PRAGMA user_version = 8; PRAGMA application_id = ${APPLICATION_ID}`);
    old.exec("INSERT INTO request_ids VALUES ('a1\nr-0', 1, 1)");
    old.close();
    const t0 = 1_000_000;
    const store = openSqliteStore(path);
    try {
      const first = store.keepRequestId({ key: "a1\nr-1", expiresAt: t0 + 1000, sentAtMs: t0 }, t0);
      await store.ensureAgent("a1", t0);
      await first;
      // Its window over, the id is accepted again (the replay cache forgot it) and kept again,
      // in the commit of another request's write, before the expired row was deleted.
      const again = store.keepRequestId(
        { key: "a1\nr-1", expiresAt: t0 + 2000, sentAtMs: t0 + 1000 },
        t0 + 1000,
      );
      await store.ensureAgent("a2", t0 + 1000);
      await again;
      assert.equal((await store.getAgent("a2"))?.id, "a2");
      assert.deepEqual((await store.keptRequestIds(t0 + 1000)).map((id) => id.key), ["a1\nr-1"]);
    } finally {
      await store.close();
    }
  });
});

Deno.test("sqlite store reads the kept request ids while another process holds the write lock", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/status.db`;
    const t0 = 1_000_000;
    let store = openSqliteStore(path);
    await store.keepRequestId({ key: "a1\nr-1", expiresAt: t0 + 660_000, sentAtMs: t0 }, t0);
    await store.keepRequestId({ key: "a1\nr-0", expiresAt: t0 + 1, sentAtMs: t0 }, t0);
    await store.close();
    // Another process (status agents add, a backup script) is in the middle of a write.
    const other = new DatabaseSync(path);
    other.exec("BEGIN IMMEDIATE");
    store = openSqliteStore(path, { busyTimeoutMs: 50 });
    try {
      assert.deepEqual(await store.keptRequestIds(t0 + 1), [
        { key: "a1\nr-1", expiresAt: t0 + 660_000, sentAtMs: t0 },
      ]);
    } finally {
      other.exec("ROLLBACK");
      other.close();
      await store.close();
    }
  });
});

Deno.test("sqlite store commits a kept request id with the next write, before that write is answered", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/status.db`;
    const store = openSqliteStore(path);
    try {
      const kept = store.keepRequestId({ key: "a1\nr-1", expiresAt: 660_000, sentAtMs: 0 }, 0);
      await store.ensureAgent("a1", 0);
      // Read by another connection while the store is still open (as after a crash): the id is
      // in the file with the agent, not a second later.
      const db = new DatabaseSync(path, { readOnly: true });
      try {
        const rows = db.prepare("SELECT key FROM request_ids").all() as { key: string }[];
        assert.deepEqual(rows.map((row) => row.key), ["a1\nr-1"]);
      } finally {
        db.close();
      }
      await kept;
    } finally {
      await store.close();
    }
  });
});

Deno.test("sqlite store deletes the request ids it committed a batch at a time, once the batch expired", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/status.db`;
    const store = openSqliteStore(path);
    const keys = () => {
      const db = new DatabaseSync(path, { readOnly: true });
      try {
        const rows = db.prepare("SELECT key FROM request_ids ORDER BY rowid").all();
        return (rows as { key: string }[]).map((row) => row.key);
      } finally {
        db.close();
      }
    };
    // Each id rides the next write's commit: a batch of its own here.
    const keepWithWrite = async (key: string, now: number) => {
      const kept = store.keepRequestId({ key, expiresAt: now + 5_000, sentAtMs: now }, now);
      await store.ensureAgent("a1", now);
      await kept;
    };
    try {
      await keepWithWrite("a1\nr-1", 0);
      await keepWithWrite("a1\nr-2", 2_000);
      assert.deepEqual(keys(), ["a1\nr-1", "a1\nr-2"]);
      await keepWithWrite("a1\nr-3", 6_000);
      assert.deepEqual(keys(), ["a1\nr-2", "a1\nr-3"], "r-1 expired at 5 s");
      // Commits less than a second apart make one batch, deleted once its last id expired.
      await keepWithWrite("a1\nr-4", 6_500);
      await keepWithWrite("a1\nr-5", 11_200);
      assert.deepEqual(keys(), ["a1\nr-3", "a1\nr-4", "a1\nr-5"], "r-3 waits for r-4");
      await keepWithWrite("a1\nr-6", 12_300);
      assert.deepEqual(keys(), ["a1\nr-5", "a1\nr-6"]);
    } finally {
      await store.close();
    }
  });
});

/** Runs `mount` (or `umount`) with `args`; `false` where that is not allowed (not root). */
function mount(command: "mount" | "umount", args: string[]): boolean {
  const run = (args: string[]) => {
    try {
      return new Deno.Command(command, { args, stdout: "null", stderr: "null" }).outputSync()
        .success;
    } catch {
      return false;
    }
  };
  // An unmount is busy for a moment when another test's spawn forked while a file there was
  // open (the child holds it until its exec): it is detached then (as tests/_disk.ts does).
  return run(args) || (command === "umount" && run(["-l", ...args]));
}

Deno.test("sqlite store refuses a database it could only read, saying so, instead of failing every write", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "status-readonly-" });
  try {
    if (!mount("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", dir])) {
      console.warn(`${t.name}: skipped (mounting a read-only tmpfs needs root)`);
      return;
    }
    try {
      const path = `${dir}/status.db`;
      const store = openSqliteStore(path);
      await store.addAgent({ id: "a1", token: null, scopes: AGENT_SCOPES, now: 0 });
      // Its -wal and -shm files as a running dashboard leaves them: SQLite opens such a file
      // read-only where it cannot write (a read-only mount here; a file mode or owner elsewhere).
      for (const suffix of ["-wal", "-shm"]) {
        Deno.copyFileSync(`${path}${suffix}`, `${dir}/k${suffix}`);
      }
      await store.close();
      for (const suffix of ["-wal", "-shm"]) {
        Deno.renameSync(`${dir}/k${suffix}`, `${path}${suffix}`);
      }
      assert.ok(mount("mount", ["-o", "remount,ro", dir]));
      let failure: unknown;
      try {
        await openSqliteStore(path).close(); // opened: closed, so that the mount can go
      } catch (error) {
        failure = error;
      }
      assert.ok(failure instanceof StoreError, String(failure));
      assert.match(
        failure.message,
        /cannot open database .*status\.db: it can be read but not written by this user/,
      );
    } finally {
      mount("umount", [dir]);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sqlite store refuses a database of an older schema, or not in WAL mode, it could only read, saying so", async (t) => {
  // SQLite opens the file read-only and the first write it needs fails: a migration (a dashboard
  // killed left its -wal and -shm files), or WAL mode (a copy in rollback mode).
  for (const [kind, wal] of [["an older schema", true], ["not in WAL mode", false]] as const) {
    await t.step(kind, async () => {
      const dir = await Deno.makeTempDir({ prefix: "status-readonly-" });
      try {
        if (!mount("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", dir])) {
          console.warn(`${t.name}: skipped (mounting a read-only tmpfs needs root)`);
          return;
        }
        try {
          const path = `${dir}/status.db`;
          const old = new DatabaseSync(path);
          if (wal) old.exec("PRAGMA journal_mode = WAL");
          const version = wal ? 7 : MIGRATIONS.length;
          old.exec(`${MIGRATIONS.slice(0, version).join("")} PRAGMA user_version = ${version};`);
          old.exec(`PRAGMA application_id = ${APPLICATION_ID}`);
          if (wal) {
            for (const suffix of ["-wal", "-shm"]) {
              Deno.copyFileSync(`${path}${suffix}`, `${dir}/k${suffix}`);
            }
          }
          old.close();
          if (wal) {
            for (const suffix of ["-wal", "-shm"]) {
              Deno.renameSync(`${dir}/k${suffix}`, `${path}${suffix}`);
            }
          }
          assert.ok(mount("mount", ["-o", "remount,ro", dir]));
          assert.throws(() => openSqliteStore(path), {
            name: "StoreError",
            message: `cannot open database ${path}: it can be read but not written by this user ` +
              "(the file's or its -wal or -shm file's mode or owner, or a read-only mount); give " +
              "the user that runs status write access to them",
          });
        } finally {
          mount("umount", [dir]);
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
});

Deno.test("sqlite store serving a dashboard refuses a file another dashboard serves", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/status.db`;
    const first = openSqliteStore(path, { serving: true });
    try {
      assert.throws(
        () => openSqliteStore(path, { serving: true }),
        (error: Error) =>
          error instanceof StoreError &&
          /cannot open database .*status\.db: another dashboard \(status serve\) is using it/
            .test(error.message),
      );
      // status agents ... --db still manages it meanwhile.
      const cli = openSqliteStore(path, { create: false });
      await cli.addAgent({ id: "a1", token: null, scopes: AGENT_SCOPES, now: 0 });
      await cli.close();
      assert.equal((await first.getAgent("a1"))?.id, "a1");
    } finally {
      await first.close();
    }
    const next = openSqliteStore(path, { serving: true });
    await next.close();
  });
});

Deno.test("sqlite store reads a run's targets once for a step that changes nothing", async () => {
  await using store = openSqliteStore(":memory:");
  const T0 = Date.UTC(2026, 0, 12, 10, 0, 0);
  await store.createRun({
    id: "r",
    name: "echo hi",
    params: {},
    target: { agents: ["a1", "a2"] },
    fingerprint: "fp",
    maxConcurrency: 1,
    maxConcurrencySpec: 1,
    maxErrors: null,
    targets: ["a1", "a2"].map((agentId) => ({
      agentId,
      commandId: `r:${agentId}`,
      offlineAtCreation: false,
    })),
    now: T0,
  });
  using counted = countTargetReads();
  assert.equal((await store.advanceRun("r", T0))?.toEnqueue.length, 1);
  assert.equal(counted.reads, 2, "a step that starts a target reads the run before and after");
  counted.reads = 0;
  assert.equal((await store.advanceRun("r", T0 + 1))?.toEnqueue.length, 1);
  assert.equal(counted.reads, 1, "a step that changes nothing reads it once");
});

Deno.test("sqlite store steps a run without reading its commands' results or output", async () => {
  await using store = openSqliteStore(":memory:");
  const T0 = Date.UTC(2026, 0, 12, 10, 0, 0);
  const agents = ["a1", "a2", "a3"];
  await store.createRun({
    id: "r",
    name: "echo hi",
    params: {},
    target: { agents },
    fingerprint: "fp",
    maxConcurrency: 2,
    maxConcurrencySpec: 2,
    maxErrors: null,
    targets: agents.map((agentId) => ({
      agentId,
      commandId: `r:${agentId}`,
      offlineAtCreation: false,
    })),
    now: T0,
  });
  await store.advanceRun("r", T0);
  // a1 ran and printed; a2 is queued.
  for (const agentId of ["a1", "a2"]) {
    await store.enqueue({
      id: `r:${agentId}`,
      agentId,
      name: "echo hi",
      params: {},
      fingerprint: "fp",
      now: T0,
    });
  }
  const claimed = await store.claimNext({
    agentId: "a1",
    deploymentHash: "default",
    now: T0,
    deliveryLeaseMs: 30_000,
  });
  assert.equal(claimed?.id, "r:a1");
  await store.report({
    commandId: "r:a1",
    agentId: "a1",
    attempt: 1,
    status: "success",
    result: {
      exitCode: 0,
      signal: null,
      durationSecs: 0.01,
      stdout: `hi\n${"x".repeat(8000)}`,
      stderr: "",
      stdoutTruncatedBytes: 0,
      stderrTruncatedBytes: 0,
    },
    error: null,
    startedAt: null,
    completedAt: null,
    now: T0 + 1,
  });
  // The statements that read a run's targets, and those of them that read output.
  using counted = countTargetReads();
  const step = await store.stepRun("r", T0 + 2);
  assert.deepEqual(step?.toEnqueue.map((t) => t.commandId), ["r:a3"]);
  assert.deepEqual(
    [counted.reads, counted.output],
    [2, 0],
    "a step that starts a3 reads the run twice",
  );
  counted.reads = 0;
  const unchanged = await store.stepRun("r", T0 + 3);
  assert.deepEqual(unchanged?.run.targets.map((t) => t.command?.status ?? null), [
    "success",
    "queued",
    null,
  ]);
  assert.deepEqual(
    [counted.reads, counted.output],
    [1, 0],
    "a step that changes nothing reads it once",
  );
  assert.deepEqual(await store.getRunState("r"), unchanged?.run);
  assert.deepEqual([counted.reads, counted.output], [2, 0]);
  // advanceRun answers the whole run: it reads the start of each command's output.
  const whole = await store.advanceRun("r", T0 + 4);
  assert.equal(whole?.run.targets[0].command?.result?.stdout?.slice(0, 3), "hi\n");
  assert.deepEqual([counted.reads, counted.output], [3, 1]);
});

Deno.test("sqlite store says which lock stopped it when another process holds the file at start", async (t) => {
  await withTempDir(async (dir) => {
    await t.step("the write lock, over a database the store must migrate", () => {
      const path = `${dir}/older.db`;
      const old = new DatabaseSync(path);
      old.exec(`PRAGMA journal_mode = WAL; ${MIGRATIONS[0]}`);
      old.exec(`PRAGMA user_version = 1; PRAGMA application_id = ${APPLICATION_ID}`);
      old.close();
      // A script (or sqlite3) in the middle of a write.
      const other = new DatabaseSync(path);
      other.exec("BEGIN IMMEDIATE");
      try {
        assert.throws(() => openSqliteStore(path, { busyTimeoutMs: 50 }), {
          name: "StoreUnavailableError",
          message: `cannot open database ${path}: another process holds its lock (waited ` +
            "50 ms): a script or sqlite3 in the middle of a transaction, or one that opened it " +
            "in exclusive locking mode; end it and start again",
        });
      } finally {
        other.exec("ROLLBACK");
        other.close();
      }
      const version = new DatabaseSync(path);
      assert.equal(version.prepare("PRAGMA user_version").get()?.user_version, 1, "left as it was");
      version.close();
    });
    await t.step("an exclusive lock, that keeps even readers out", () => {
      const path = `${dir}/current.db`;
      openSqliteStore(path).close();
      const other = new DatabaseSync(path);
      other.exec("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE");
      try {
        assert.throws(() => openSqliteStore(path, { busyTimeoutMs: 50 }), {
          name: "StoreUnavailableError",
          message: new RegExp(`^cannot open database ${path}: another process holds its lock`),
        });
      } finally {
        other.exec("ROLLBACK");
        other.close();
      }
    });
  });
});

Deno.test("sqlite store refuses to create a database where the write-ahead log of a missing one is left", async () => {
  await withTempDir(async (dir) => {
    // A dashboard killed before its log was copied into the database (kill -9, power loss): its
    // last writes are in status.db-wal alone. The database moved or deleted by hand, SQLite made a
    // new one and deleted that log, and what it held with it.
    const path = `${dir}/status.db`;
    const writer = new DatabaseSync(path);
    writer.exec("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0");
    writer.exec("CREATE TABLE kept (x INTEGER); INSERT INTO kept VALUES (1)");
    Deno.copyFileSync(`${path}-wal`, `${dir}/wal-copy`);
    writer.close();
    Deno.removeSync(path);
    Deno.renameSync(`${dir}/wal-copy`, `${path}-wal`);
    const log = Deno.readFileSync(`${path}-wal`);
    assert.ok(log.length > 0);
    assert.throws(() => openSqliteStore(path), {
      name: "StoreError",
      message: `cannot create database ${path}: ${path}-wal is left from a database of that ` +
        "name that is gone, and holds its last writes; put the database back beside it, or " +
        "move the -wal file away to start with an empty database",
    });
    assert.deepEqual(Deno.readFileSync(`${path}-wal`), log, "the log is left as it was");
    assert.throws(() => Deno.statSync(path), Deno.errors.NotFound, "no database is created");
    // Moved away, as the message says: an empty database.
    Deno.renameSync(`${path}-wal`, `${dir}/status.db-wal.old`);
    await openSqliteStore(path).close();
  });
});

Deno.test("sqlite store refuses a database on a read-only mount with no -wal or -shm left, saying why", async (t) => {
  // A dashboard stopped cleanly leaves no -wal or -shm file, and SQLite cannot make them on the
  // mount: it said "unable to open the file (does its directory exist and is it writable?)".
  const dir = await Deno.makeTempDir({ prefix: "status-readonly-" });
  try {
    if (!mount("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", dir])) {
      console.warn(`${t.name}: skipped (mounting a read-only tmpfs needs root)`);
      return;
    }
    try {
      const path = `${dir}/status.db`;
      await openSqliteStore(path).close();
      assert.throws(() => Deno.statSync(`${path}-shm`), Deno.errors.NotFound);
      assert.ok(mount("mount", ["-o", "remount,ro", dir]));
      assert.throws(() => openSqliteStore(path), {
        name: "StoreError",
        message: `cannot open database ${path}: it can be read but not written by this user ` +
          "(the file's or its -wal or -shm file's mode or owner, or a read-only mount); give the " +
          "user that runs status write access to them",
      });
    } finally {
      mount("umount", [dir]);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sqlite store refuses writes while its file is removed or replaced, and takes them once it is back", async (t) => {
  await withTempDir(async (dir) => {
    const path = `${dir}/status.db`;
    const enqueue = (store: SqliteStore, id: string) =>
      store.enqueue({ id, agentId: "a1", name: "uptime", params: {}, fingerprint: "f", now: 1 });
    await using store = openSqliteStore(path);
    await store.addAgent({ id: "a1", token: "t1", scopes: AGENT_SCOPES, now: 1 });
    await enqueue(store, "c1");

    await t.step("removed: every write of the group is refused, saying why", async () => {
      await Deno.rename(path, `${path}.moved`);
      const refused = (error: Error) =>
        error instanceof StoreUnavailableError &&
        error.message.includes(`the database ${path} was removed while the store had it open`);
      // A request id kept meanwhile fails with the write it would be committed with.
      const kept = store.keepRequestId({ key: "a1\nr1", expiresAt: 10_000, sentAtMs: null }, 2);
      await Promise.all([
        assert.rejects(enqueue(store, "c2"), refused),
        assert.rejects(store.cancel("c1", 2), refused),
        assert.rejects(kept, refused),
      ]);
      // Writes that SQLite commits on their own, outside a group.
      await assert.rejects(store.setAgentToken("a1", "t2"), refused);
      await assert.rejects(
        store.addAgent({ id: "a2", token: null, scopes: AGENT_SCOPES, now: 2 }),
        refused,
      );
      assert.throws(() => store.otherCommits(), refused);
      await Deno.rename(`${path}.moved`, path);
      assert.equal(typeof store.otherCommits(), "number");
      assert.equal((await enqueue(store, "c3")).outcome, "created");
    });

    await t.step("replaced: the new file is left as it is", async () => {
      await Deno.rename(path, `${path}.old`);
      await Deno.writeFile(path, new Uint8Array());
      await assert.rejects(
        enqueue(store, "c4"),
        (error: Error) =>
          error instanceof StoreUnavailableError &&
          /was replaced by another file/.test(error.message),
      );
      assert.equal((await Deno.stat(path)).size, 0);
      await Deno.rename(`${path}.old`, path);
    });

    await t.step("what was answered is what the file holds", async () => {
      await store.close();
      await using again = openSqliteStore(path);
      assert.equal((await again.getCommand("c1"))?.status, "queued");
      assert.equal(await again.getCommand("c2"), null);
      assert.equal((await again.getCommand("c3"))?.status, "queued");
      assert.equal(await again.getCommand("c4"), null);
      assert.equal((await again.getAgent("a1"))?.token, "t1");
      assert.equal(await again.getAgent("a2"), null);
      assert.deepEqual(await again.keptRequestIds(2), []);
    });
  });
});

Deno.test("sqlite store refuses writes once its write-ahead log is removed, and copies what it held into the database", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/status.db`;
    const enqueue = (store: SqliteStore, id: string) =>
      store.enqueue({ id, agentId: "a1", name: "uptime", params: {}, fingerprint: "f", now: 1 });
    await using store = openSqliteStore(path);
    await enqueue(store, "c1");
    await Deno.remove(`${path}-wal`);
    await assert.rejects(
      enqueue(store, "c2"),
      (error: Error) =>
        error instanceof StoreUnavailableError &&
        error.message.includes(`the write-ahead log ${path}-wal was removed while the store had`),
    );
    // The database file alone, as a crash now would leave it: c1 was only in the removed log.
    await Deno.copyFile(path, `${dir}/copy.db`);
    await using copy = openSqliteStore(`${dir}/copy.db`);
    assert.equal((await copy.getCommand("c1"))?.status, "queued");
    assert.equal(await copy.getCommand("c2"), null);
  });
});

Deno.test("sqlite store refuses an emptied database whose write-ahead log is left, leaving both as they were", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/status.db`;
    const store = openSqliteStore(path);
    await store.enqueue({
      id: "c1",
      agentId: "a1",
      name: "uptime",
      params: {},
      fingerprint: "f",
      now: 1,
    });
    // As a crash leaves them: c1 is in the log alone.
    const log = Deno.readFileSync(`${path}-wal`);
    await store.close();
    Deno.writeFileSync(`${path}-wal`, log);
    Deno.writeFileSync(path, new Uint8Array()); // truncated by a copy or a backup tool gone wrong
    assert.throws(() => openSqliteStore(path), {
      name: "StoreError",
      message: `cannot open database ${path}: the file is empty, but ${path}-wal is left beside ` +
        "it and holds the last writes of the database that was there; put that database back, " +
        "or move the -wal file away to start with an empty database",
    });
    assert.deepEqual(Deno.readFileSync(`${path}-wal`), log, "the log is left as it was");
    assert.equal(Deno.statSync(path).size, 0);
    // Moved away, as the message says: an empty database.
    Deno.renameSync(`${path}-wal`, `${dir}/status.db-wal.old`);
    await using empty = openSqliteStore(path);
    assert.equal(await empty.getCommand("c1"), null);
  });
});

Deno.test("sqlite store tells a damaged page it meets while it runs as a StoreError naming the file", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/status.db`;
    await using store = openSqliteStore(path);
    await store.enqueue({
      id: "c1",
      agentId: "a1",
      name: "uptime",
      params: {},
      fingerprint: "f",
      now: 1,
    });
    const other = new DatabaseSync(path);
    try {
      other.exec("PRAGMA wal_checkpoint(TRUNCATE)");
      const root = other.prepare("SELECT rootpage FROM sqlite_schema WHERE name = 'commands'")
        .get();
      const pageSize = Number(other.prepare("PRAGMA page_size").get()?.page_size);
      const file = await Deno.open(path, { write: true });
      try {
        await file.seek((Number(root?.rootpage) - 1) * pageSize, Deno.SeekMode.Start);
        await file.write(new Uint8Array(pageSize).fill(0xff));
      } finally {
        file.close();
      }
      // Another process's commit: the store reads the file again rather than its cache.
      other.exec(`PRAGMA application_id = ${APPLICATION_ID}`);
    } finally {
      other.close();
    }
    await assert.rejects(store.getCommand("c1"), {
      name: "StoreError",
      message: `the database ${path} failed: the file is damaged (database disk image is ` +
        "malformed); restore it from a backup, or recover what it holds with sqlite3's " +
        ".recover into a new file (SQLite: database disk image is malformed)",
    });
  });
});

Deno.test("sqlite store tells a file overwritten while it runs as a StoreError saying what to do", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/status.db`;
    await using store = openSqliteStore(path);
    const command = (id: string) => ({
      id,
      agentId: "a1",
      name: "uptime",
      params: {},
      fingerprint: "f",
      now: 1,
    });
    await store.enqueue(command("c1"));
    const other = new DatabaseSync(path);
    try {
      other.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    } finally {
      other.close();
    }
    // Its header overwritten in place (not replaced: the same file, as a careless copy would).
    const file = await Deno.open(path, { write: true });
    try {
      await file.write(new TextEncoder().encode("this is no SQLite database at all"));
    } finally {
      file.close();
    }
    const said = `the database ${path} failed: the file is no longer a SQLite database ` +
      "(something overwrote it); stop the dashboard and restore it from a backup (SQLite: file " +
      "is not a database)";
    await assert.rejects(store.getCommand("c1"), { name: "StoreError", message: said });
    await assert.rejects(store.enqueue(command("c2")), { name: "StoreError", message: said });
  });
});

Deno.test("a dashboard whose -shm file is removed says so, and goes on", async () => {
  await using dir = tempDir("status-shm-");
  const db = `${dir.path}/status.db`;
  await using serve = spawnCli(["serve", "--db", db, "--port", "0"], { perms: PERMS.serve });
  const url = (await serve.stdout.waitFor(/listening on (http:\S+)/)).match![1];
  await Deno.remove(`${db}-shm`);
  await serve.waitForLog(
    `the -shm file of database ${db} was removed while the dashboard had it open: restart the ` +
      "dashboard; until then a write by another process (sqlite3, a script) would be lost, and " +
      "status agents --db refuses the file",
  );
  const enqueued = await fetch(`${url}/api/v1/agent/commands/enqueue`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Agent-Id": "a1" },
    body: JSON.stringify({ id: "c1", name: "echo hi" }),
  });
  assert.equal(enqueued.status, 202);
  await enqueued.body?.cancel();
  const health = await fetch(`${url}/health`);
  assert.equal(health.status, 200);
  await health.body?.cancel();
});

Deno.test("status agents add refuses a database a dashboard serves whose -shm file was removed", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/status.db`;
    const add = (id: string) =>
      runCli(["agents", "add", id, "--db", path], { perms: PERMS.agentsOnDisk });
    let serving = openSqliteStore(path, { serving: true });
    try {
      await serving.addAgent({ id: "a1", token: null, scopes: AGENT_SCOPES, now: 1 });
      await Deno.remove(`${path}-shm`);
      const refused = await add("web-9");
      // Exit code 2, as for any database the command cannot open.
      assert.equal(refused.code, 2, refused.stderr);
      assert.match(
        refused.stderr,
        /its -shm file was removed while a dashboard \(status serve\) has it open; a write made now would be lost .*restart the dashboard, then try again/,
      );
      // The dashboard's own writes go on.
      await serving.enqueue({
        id: "c1",
        agentId: "a1",
        name: "uptime",
        params: {},
        fingerprint: "f",
        now: 1,
      });
      await serving.close();
      serving = openSqliteStore(path, { serving: true });
      // Restarted, as the message says: the agent is added, and kept.
      assert.equal((await add("web-9")).code, 0);
      assert.equal((await serving.getAgent("web-9"))?.id, "web-9");
      assert.equal((await serving.getCommand("c1"))?.status, "queued");
    } finally {
      await serving.close();
    }
    await using reopened = openSqliteStore(path);
    assert.equal((await reopened.getAgent("web-9"))?.id, "web-9");
  });
});

/**
 * The query plans (`EXPLAIN QUERY PLAN`, on an empty database of the current schema) of the
 * statements of the commands and their output that the store runs in `call`.
 */
async function plansOf(call: () => Promise<unknown>): Promise<string[]> {
  const sources = await statementsOf(call);
  const db = new DatabaseSync(":memory:");
  try {
    for (const migration of MIGRATIONS) db.exec(migration);
    return sources.map((sql) =>
      (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as Array<{ detail: string }>)
        .map((row) => row.detail).join("\n")
    );
  } finally {
    db.close();
  }
}

/** The statements of the commands and their output that the store runs in `call`. */
async function statementsOf(call: () => Promise<unknown>): Promise<string[]> {
  const sources = new Set<string>();
  const methods = ["all", "get", "run"] as const;
  const originals = methods.map((method) => StatementSync.prototype[method]);
  for (const [i, method] of methods.entries()) {
    const original = originals[i] as (...args: SQLInputValue[]) => unknown;
    StatementSync.prototype[method] = function (this: StatementSync, ...args: SQLInputValue[]) {
      if (/\b(commands|output_chunks)\b/.test(this.sourceSQL)) sources.add(this.sourceSQL);
      return original.apply(this, args);
    } as never;
  }
  try {
    await call();
  } finally {
    for (const [i, method] of methods.entries()) {
      StatementSync.prototype[method] = originals[i] as never;
    }
  }
  return [...sources];
}

Deno.test("sqlite store: an agent's open commands, a page's commands in hand and a batch of output are read by their indexes, not through the fleet's commands or every final command", async (t) => {
  await using store = openSqliteStore(":memory:");
  // Through the whole fleet's commands (in hand or queued), an agent's whole history, or every
  // command final before a time.
  const fleetWide = /commands_status|commands_agent\b|commands_completed|SCAN (commands|c|h)\b/;
  // An agent's commands in the statuses asked for: by the queue's index, the index of commands in
  // hand, or the index of an agent's commands by status.
  const byAgent =
    /INDEX (commands_queue|commands_in_hand|commands_agent_status) \(agent_id=\?( AND status=\?)?\)/g;
  await t.step("an agent's open commands", async () => {
    const plans = await plansOf(() => store.countOpenCommands("a1", 1000));
    assert.equal(plans.length, 1);
    assert.equal(plans[0].match(byAgent)?.length, 2, plans[0]);
    assert.doesNotMatch(plans[0], fleetWide, plans[0]);
  });
  await t.step("the commands in hand of a page of agents", async () => {
    const plans = await plansOf(() => store.commandsInHand(["a1", "a2"]));
    assert.equal(plans.length, 1);
    assert.equal(plans[0].match(byAgent)?.length, 2, plans[0]);
    assert.doesNotMatch(plans[0], fleetWide, plans[0]);
  });
  await t.step("where a stream's stored output ends: its last chunk, not every one", async () => {
    const append = () =>
      store.appendOutput({
        commandId: "c1",
        attempt: 1,
        stream: "stdout",
        offset: 0,
        data: new Uint8Array([1]),
        now: 0,
        keep: { headBytes: 10, tailBytes: 10 },
      });
    const sources = await statementsOf(append);
    const [end] = sources.filter((sql) => /^SELECT coalesce/.test(sql.trim()));
    assert.ok(end, sources.join("\n"));
    const db = new DatabaseSync(":memory:");
    try {
      for (const migration of MIGRATIONS) db.exec(migration);
      const program = (db.prepare(`EXPLAIN ${end}`).all() as Array<{ opcode: string }>)
        .map((row) => row.opcode);
      assert.ok(!program.includes("AggStep"), "no aggregate over the stream's chunks");
      assert.ok(program.includes("Prev"), "read from the last chunk back");
    } finally {
      db.close();
    }
  });
  await t.step("a batch of live output to prune", async () => {
    const plans = await plansOf(() => store.pruneOutput(Date.now(), 1000));
    assert.equal(plans.length, 1);
    assert.match(plans[0], /SEARCH output_chunks USING INTEGER PRIMARY KEY/);
    assert.doesNotMatch(plans[0], fleetWide, plans[0]);
  });
});

Deno.test("sqlite store: an agent's commands in one status are read by an index of both, not through the agent's history or the fleet's commands in that status", async (t) => {
  await using store = openSqliteStore(":memory:");
  for (const before of [undefined, 1000]) {
    await t.step(before === undefined ? "the first page" : "an older page", async () => {
      const plans = await plansOf(() =>
        store.listCommands({ agentId: "a1", status: "failed", before, limit: 26 })
      );
      assert.equal(plans.length, 1);
      assert.match(
        plans[0],
        /SEARCH c USING (COVERING )?INDEX commands_agent_status \(agent_id=\? AND status=\?/,
      );
      assert.doesNotMatch(plans[0], /TEMP B-TREE/, "read newest first, not sorted");
    });
  }
});
