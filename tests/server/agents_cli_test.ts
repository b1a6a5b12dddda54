import assert from "node:assert/strict";
import { run } from "../cli/_run.ts";
import { PERMS, runCli } from "../_cli.ts";
import { openSqliteStore } from "../../src/store/mod.ts";

/** `status agents <args>` in process, through main.ts. */
function agents(args: string[]) {
  return run(["agents", ...args]);
}

async function withDb(fn: (db: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "status-agents-" });
  try {
    // The dashboard creates its database; `status agents` manages an existing one.
    await openSqliteStore(`${dir}/status.db`).close();
    await fn(`${dir}/status.db`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("status agents add prints a new token once and stores it", async () => {
  await withDb(async (db) => {
    const { code, stdout, stderr } = await agents(["add", "web-1", "--db", db]);
    assert.equal(code, 0);
    assert.equal(stdout.length, 2);
    assert.equal(stdout[0], "AGENT_ID=web-1");
    const token = /^AGENT_TOKEN=([A-Za-z0-9_-]{43})$/.exec(stdout[1])?.[1];
    assert.ok(token, stdout[1]);
    assert.match(stderr.join("\n"), /not shown again/);
    await using store = openSqliteStore(db);
    const agent = await store.getAgent("web-1");
    assert.equal(agent?.token, token);
    assert.deepEqual(agent?.scopes, ["commands:wait", "commands:report", "commands:enqueue"]);
  });
});

Deno.test("status agents add takes --scopes and refuses duplicates and bad ids", async (t) => {
  await withDb(async (db) => {
    await t.step("scopes", async () => {
      const { code } = await agents(["add", "reader", "--db", db, "--scopes", "commands:wait"]);
      assert.equal(code, 0);
      await using store = openSqliteStore(db);
      assert.deepEqual((await store.getAgent("reader"))?.scopes, ["commands:wait"]);
    });
    await t.step("an unknown scope is a usage error", async () => {
      const { code, stderr } = await agents(["add", "x", "--db", db, "--scopes", "commands:all"]);
      assert.equal(code, 2);
      assert.match(
        stderr.join("\n"),
        /^status: option '--scopes <list>' argument 'commands:all' is invalid/,
      );
    });
    await t.step("a second add of one id fails with exit code 1", async () => {
      const { code, stdout, stderr } = await agents(["add", "reader", "--db", db]);
      assert.equal(code, 1);
      assert.match(stderr.join("\n"), /^status: agent reader already exists/m);
      assert.deepEqual(stdout, [], "no token printed");
    });
    await t.step("a bad id is a usage error", async () => {
      const { code, stderr } = await agents(["add", "bad id", "--db", db]);
      assert.equal(code, 2);
      assert.match(stderr.join("\n"), /^status: command-argument value 'bad id' is invalid/);
    });
  });
});

Deno.test("status agents list never prints tokens", async (t) => {
  await withDb(async (db) => {
    const added = await agents(["add", "web-1", "--db", db]);
    const token = added.stdout[1].slice("AGENT_TOKEN=".length);
    await t.step("table", async () => {
      const { code, stdout } = await agents(["list", "--db", db]);
      assert.equal(code, 0);
      assert.match(stdout[0], /^ID\s+SCOPES\s+LAST SEEN\s+CREATED\s+QUEUED$/);
      assert.match(stdout[1], /^web-1\s+commands:wait,commands:report,commands:enqueue\s+never/);
      assert.ok(!stdout.join("\n").includes(token));
    });
    await t.step("json", async () => {
      const { stdout } = await agents(["list", "--db", db, "--json"]);
      const listed = JSON.parse(stdout.join("\n"));
      assert.equal(listed[0].id, "web-1");
      assert.equal(listed[0].has_token, true);
      assert.ok(!stdout.join("\n").includes(token));
    });
  });
});

Deno.test("status agents rotate and remove act on known agents only", async (t) => {
  await withDb(async (db) => {
    const added = await agents(["add", "web-1", "--db", db]);
    const old = added.stdout[1];
    await t.step("rotate prints a new token that replaces the old one", async () => {
      const { code, stdout } = await agents(["rotate", "web-1", "--db", db]);
      assert.equal(code, 0);
      assert.match(stdout[0], /^AGENT_TOKEN=[A-Za-z0-9_-]{43}$/);
      assert.notEqual(stdout[0], old);
      await using store = openSqliteStore(db);
      assert.equal(`AGENT_TOKEN=${(await store.getAgent("web-1"))?.token}`, stdout[0]);
    });
    await t.step("unknown ids fail with exit code 1", async () => {
      for (const sub of ["rotate", "remove"]) {
        const { code, stdout, stderr } = await agents([sub, "ghost", "--db", db]);
        assert.equal(code, 1);
        assert.match(stderr.join("\n"), /^status: agent ghost does not exist/m);
        assert.deepEqual(stdout, []);
      }
    });
    await t.step("remove cancels the agent's commands not final and says how many", async () => {
      {
        await using store = openSqliteStore(db);
        const now = Date.now();
        for (const id of ["c1", "c2"]) {
          await store.enqueue({
            id,
            agentId: "web-1",
            name: "echo",
            params: {},
            fingerprint: id,
            now,
          });
        }
      }
      const { code, stderr } = await agents(["remove", "web-1", "--db", db]);
      assert.equal(code, 0);
      assert.deepEqual(stderr, [
        "agent web-1 removed; 2 of its queued or running commands were cancelled",
      ]);
      await using store = openSqliteStore(db);
      assert.equal(await store.getAgent("web-1"), null);
      for (const id of ["c1", "c2"]) {
        const command = await store.getCommand(id);
        assert.equal(command?.status, "cancelled");
        assert.equal(command?.endCause, "agent_removed");
      }
    });
  });
});

Deno.test("status agents runs with --allow-read --allow-write --allow-env only", async () => {
  await withDb(async (db) => {
    const cli = (...args: string[]) =>
      runCli(["agents", ...args, "--db", db], { perms: PERMS.agentsOnDisk });
    const add = await cli("add", "web-1");
    assert.equal(add.code, 0, add.stderr);
    const token = /AGENT_TOKEN=(\S+)/.exec(add.stdout)![1];
    const missing = await cli("remove", "ghost");
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /agent ghost does not exist/);
    const list = await cli("list");
    assert.equal(list.code, 0);
    assert.ok(!list.stdout.includes(token));
  });
});

Deno.test("status agents refuses a database that does not exist, naming it, and creates nothing", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "status-agents-" });
  try {
    for (const args of [["list"], ["add", "web-1"]]) {
      await t.step(args.join(" "), async () => {
        for (const db of [`${dir}/typo.db`, `${dir}/nonexistent/x.db`]) {
          const { code, stdout, stderr } = await agents([...args, "--db", db]);
          assert.equal(code, 2, stderr.join("\n"));
          assert.match(stderr.join("\n"), new RegExp(`database ${db} does not exist`));
          assert.deepEqual(stdout, [], 'no token printed, no "no agents"');
          await assert.rejects(() => Deno.stat(db), Deno.errors.NotFound);
        }
        await assert.rejects(() => Deno.stat(`${dir}/nonexistent`), Deno.errors.NotFound);
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
