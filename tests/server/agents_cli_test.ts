import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { CommanderError } from "@commander-js/extra-typings";
import { agentsCommand } from "../../src/cli/agents.ts";
import { memoryIo } from "../../src/cli/io.ts";
import { closeLogging } from "../../src/log/mod.ts";
import { openSqliteStore } from "../../src/store/mod.ts";

async function run(args: string[]) {
  const io = memoryIo();
  const command = agentsCommand(io);
  command.exitOverride();
  command.configureOutput({ writeErr: (text) => io.err(text.trimEnd()), writeOut: () => {} });
  for (const sub of command.commands) {
    sub.exitOverride();
    sub.configureOutput({ writeErr: (text) => io.err(text.trimEnd()), writeOut: () => {} });
  }
  try {
    await command.parseAsync(args, { from: "user" });
    return { io, error: undefined };
  } catch (error) {
    return { io, error: error as Error & { exitCode?: number; code?: string } };
  } finally {
    closeLogging();
  }
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
    const { io, error } = await run(["add", "web-1", "--db", db]);
    assert.equal(error, undefined);
    assert.equal(io.stdout.length, 2);
    assert.equal(io.stdout[0], "AGENT_ID=web-1");
    const token = /^AGENT_TOKEN=([A-Za-z0-9_-]{43})$/.exec(io.stdout[1])?.[1];
    assert.ok(token, io.stdout[1]);
    assert.match(io.stderr.join("\n"), /not shown again/);
    await using store = openSqliteStore(db);
    const agent = await store.getAgent("web-1");
    assert.equal(agent?.token, token);
    assert.deepEqual(agent?.scopes, ["commands:wait", "commands:report", "commands:enqueue"]);
  });
});

Deno.test("status agents add takes --scopes and refuses duplicates and bad ids", async (t) => {
  await withDb(async (db) => {
    await t.step("scopes", async () => {
      const { error } = await run(["add", "reader", "--db", db, "--scopes", "commands:wait"]);
      assert.equal(error, undefined);
      await using store = openSqliteStore(db);
      assert.deepEqual((await store.getAgent("reader"))?.scopes, ["commands:wait"]);
    });
    await t.step("an unknown scope is a usage error", async () => {
      const { error } = await run(["add", "x", "--db", db, "--scopes", "commands:all"]);
      assert.ok(error instanceof CommanderError);
      assert.equal(error.code, "commander.invalidArgument");
    });
    await t.step("a second add of one id fails with exit code 1", async () => {
      const { io, error } = await run(["add", "reader", "--db", db]);
      assert.equal(error?.exitCode, 1);
      assert.match(error!.message, /agent reader already exists/);
      assert.deepEqual(io.stdout, [], "no token printed");
    });
    await t.step("a bad id is a usage error (exit code 2 in main)", async () => {
      const { error } = await run(["add", "bad id", "--db", db]);
      assert.ok(error instanceof CommanderError);
      assert.equal(error.code, "commander.invalidArgument");
    });
  });
});

Deno.test("status agents list never prints tokens", async (t) => {
  await withDb(async (db) => {
    const added = await run(["add", "web-1", "--db", db]);
    const token = added.io.stdout[1].slice("AGENT_TOKEN=".length);
    await t.step("table", async () => {
      const { io, error } = await run(["list", "--db", db]);
      assert.equal(error, undefined);
      assert.match(io.stdout[0], /^ID\s+SCOPES\s+LAST SEEN\s+CREATED\s+QUEUED$/);
      assert.match(io.stdout[1], /^web-1\s+commands:wait,commands:report,commands:enqueue\s+never/);
      assert.ok(!io.stdout.join("\n").includes(token));
    });
    await t.step("json", async () => {
      const { io } = await run(["list", "--db", db, "--json"]);
      const agents = JSON.parse(io.stdout.join("\n"));
      assert.equal(agents[0].id, "web-1");
      assert.equal(agents[0].has_token, true);
      assert.ok(!io.stdout.join("\n").includes(token));
    });
  });
});

Deno.test("status agents rotate and remove act on known agents only", async (t) => {
  await withDb(async (db) => {
    const added = await run(["add", "web-1", "--db", db]);
    const old = added.io.stdout[1];
    await t.step("rotate prints a new token that replaces the old one", async () => {
      const { io, error } = await run(["rotate", "web-1", "--db", db]);
      assert.equal(error, undefined);
      assert.match(io.stdout[0], /^AGENT_TOKEN=[A-Za-z0-9_-]{43}$/);
      assert.notEqual(io.stdout[0], old);
      await using store = openSqliteStore(db);
      assert.equal(`AGENT_TOKEN=${(await store.getAgent("web-1"))?.token}`, io.stdout[0]);
    });
    await t.step("unknown ids fail with exit code 1", async () => {
      for (const sub of ["rotate", "remove"]) {
        const { error, io } = await run([sub, "ghost", "--db", db]);
        assert.equal(error?.exitCode, 1);
        assert.match(error!.message, /agent ghost does not exist/);
        assert.deepEqual(io.stdout, []);
      }
    });
    await t.step("remove", async () => {
      const { error } = await run(["remove", "web-1", "--db", db]);
      assert.equal(error, undefined);
      await using store = openSqliteStore(db);
      assert.equal(await store.getAgent("web-1"), null);
    });
  });
});

Deno.test("status agents runs with --allow-read --allow-write --allow-env only", async () => {
  await withDb(async (db) => {
    const main = fileURLToPath(import.meta.resolve("../../main.ts"));
    const config = fileURLToPath(import.meta.resolve("../../deno.json"));
    const cli = (...args: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--config",
          config,
          "--allow-read",
          "--allow-write",
          "--allow-env",
          main,
          "agents",
          ...args,
          "--db",
          db,
        ],
        stdin: "null",
      }).output();
    const add = await cli("add", "web-1");
    const stdout = new TextDecoder().decode(add.stdout);
    assert.equal(add.code, 0, new TextDecoder().decode(add.stderr));
    const token = /AGENT_TOKEN=(\S+)/.exec(stdout)![1];
    const missing = await cli("remove", "ghost");
    assert.equal(missing.code, 1);
    assert.match(new TextDecoder().decode(missing.stderr), /agent ghost does not exist/);
    const list = await cli("list");
    assert.equal(list.code, 0);
    assert.ok(!new TextDecoder().decode(list.stdout).includes(token));
  });
});

Deno.test("status agents refuses a database that does not exist, naming it, and creates nothing", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "status-agents-" });
  try {
    for (const args of [["list"], ["add", "web-1"]]) {
      await t.step(args.join(" "), async () => {
        for (const db of [`${dir}/typo.db`, `${dir}/nonexistent/x.db`]) {
          const { io, error } = await run([...args, "--db", db]);
          assert.equal(error?.exitCode, 2, String(error));
          assert.match(error!.message, new RegExp(`database ${db} does not exist`));
          assert.deepEqual(io.stdout, [], 'no token printed, no "no agents"');
          await assert.rejects(() => Deno.stat(db), Deno.errors.NotFound);
        }
        await assert.rejects(() => Deno.stat(`${dir}/nonexistent`), Deno.errors.NotFound);
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
