import { openSqliteStore } from "../../src/store/mod.ts";
/**
 * The operator CLI (`status enqueue/result/list/cancel`, run as `deno run --allow-net main.ts`)
 * against a real `status serve` and `status agent`.
 */
import assert from "node:assert/strict";
import { closedPort } from "../_stub_dashboard.ts";
import { startAgent, startServe, tempDir } from "./helpers.ts";
import { PERMS, runCli } from "../_cli.ts";

const AGENT = "e2e-agent";

Deno.test("operator CLI against a real dashboard and agent", async (t) => {
  await using dir = tempDir();
  await using serve = await startServe({ db: `${dir.path}/status.db`, cwd: dir.path });
  await using agent = startAgent({
    url: serve.url,
    agentId: AGENT,
    stateDir: `${dir.path}/agent-state`,
    cwd: dir.path,
  });
  await agent.stderr.waitFor("long-poll: polling loop started", { timeoutMs: 30_000 });
  const op = (...args: string[]) =>
    runCli([...args, "--dashboard-url", serve.url], { perms: PERMS.operator, cwd: dir.path });

  await t.step("enqueue --wait prints progress and the output, exit 0", async () => {
    const run = await op("enqueue", "echo hi there", "--agent", AGENT, "--id", "op-1", "--wait");
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, "hi there");
    const progress = run.stderr.split("\n").filter((l) => l.startsWith("op-1 "));
    assert.match(progress[0], /^op-1 queued \(0\.0 s\)$/);
    assert.match(progress.at(-1)!, /^op-1 success, exit code 0 \(\d+\.\d s\)$/);
  });

  await t.step("enqueue --wait exits with the command's exit code", async () => {
    const missing = `/tmp/status-e2e-missing-${crypto.randomUUID()}`;
    const failed = await op("enqueue", `ls ${missing}`, "--agent", AGENT, "--wait");
    assert.equal(failed.code, 2, failed.stderr);
    assert.match(failed.stderr, /No such file or directory/);
    assert.match(failed.stderr, /failed, exit code 2/);
  });

  await t.step("a rejected command exits 126", async () => {
    const rejected = await op("enqueue", "cat /etc/passwd", "--agent", AGENT, "--wait");
    assert.equal(rejected.code, 126, rejected.stderr);
    assert.match(rejected.stderr, /rejected: /);
  });

  await t.step("a command past its deadline exits 124", async () => {
    const timeout = await op("enqueue", "sleep 30", "--agent", AGENT, "--timeout", "1", "--wait");
    assert.equal(timeout.code, 124, timeout.stderr);
    assert.match(timeout.stderr, /timeout/);
  });

  await t.step("enqueue --json prints the command object", async () => {
    const run = await op(
      "enqueue",
      "echo j",
      "--agent",
      AGENT,
      "--id",
      "op-json",
      "--wait",
      "--json",
    );
    assert.equal(run.code, 0, run.stderr);
    const record = JSON.parse(run.stdout);
    assert.equal(record.id, "op-json");
    assert.equal(record.status, "success");
    assert.equal(record.result.stdout, "j\n");
  });

  await t.step("result shows a command", async () => {
    const run = await op("result", "op-1");
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^id: +op-1$/m);
    assert.match(run.stdout, /^agent: +e2e-agent$/m);
    assert.match(run.stdout, /^status: +success, exit code 0$/m);
    assert.match(run.stdout, /^--- stdout ---\nhi there$/m);
    const json = await op("result", "op-1", "--json");
    assert.equal(JSON.parse(json.stdout).result.stdout, "hi there\n");
    const missing = await op("result", "no-such-command");
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /status: no command no-such-command/);
  });

  await t.step("list shows a table, newest first", async () => {
    const run = await op("list", "--agent", AGENT, "--limit", "3");
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trimEnd().split("\n");
    assert.match(lines[0], /^ID +AGENT +STATUS +EXIT +CREATED +COMMAND$/);
    assert.equal(lines.length, 4);
    assert.match(lines[1], /^op-json +e2e-agent +success +0 /);
    const failed = await op("list", "--status", "rejected", "--json");
    const records = JSON.parse(failed.stdout);
    assert.equal(records.length, 1);
    assert.equal(records[0].name, "cat /etc/passwd");
  });

  await t.step("cancel a queued command, then refuse to cancel it again", async () => {
    // No agent polls for "nobody": the command stays queued.
    const queued = await op("enqueue", "echo never", "--agent", "nobody");
    assert.equal(queued.code, 0, queued.stderr);
    const id = queued.stdout.trim();
    assert.match(queued.stderr, new RegExp(`queued: ${id} for agent nobody`));
    const cancel = await op("cancel", id);
    assert.equal(cancel.code, 0, cancel.stderr);
    assert.equal(cancel.stdout, `cancelled ${id}`);
    const again = await op("cancel", id);
    assert.equal(again.code, 1);
    assert.match(again.stderr, new RegExp(`${id} has already finished \\(cancelled\\)`));
    const missing = await op("cancel", "no-such-command");
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no command no-such-command/);
  });

  await t.step("a repeated enqueue of the same id and body is a duplicate", async () => {
    const run = await op("enqueue", "echo hi there", "--agent", AGENT, "--id", "op-1");
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /already enqueued \(same id and body; it is \w+\)/);
    const conflict = await op("enqueue", "echo other", "--agent", AGENT, "--id", "op-1");
    assert.equal(conflict.code, 1);
    assert.match(conflict.stderr, /HTTP 409/);
  });

  agent.kill("SIGINT");
  assert.equal((await agent.exited()).code, 0);
  serve.proc.kill("SIGINT");
  assert.equal((await serve.proc.exited()).code, 0);
});

Deno.test("operator CLI names the URL when the dashboard is not there", async () => {
  const url = `http://127.0.0.1:${closedPort()}`;
  const run = await runCli([
    "enqueue",
    "echo hi",
    "--agent",
    "a",
    "--wait",
    "--dashboard-url",
    url,
  ]);
  assert.equal(run.code, 1);
  assert.match(
    run.stderr,
    new RegExp(`status: cannot reach the dashboard at ${url}: connection refused`),
  );
  assert.equal(run.stdout, "");
});

Deno.test("operator CLI refuses bad flag values with exit code 2", async () => {
  const run = await runCli(["enqueue", "echo hi", "--agent", "a", "--priority", "urgent"]);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /must be one of critical, high, normal, low$/);
});

Deno.test("operator CLI with an admin token against a dashboard outside dev mode", async () => {
  await using dir = tempDir();
  const db = `${dir.path}/status.db`;
  await openSqliteStore(db).close(); // as a first "status serve" would
  const added = await runCli(["agents", "add", "web-1", "--db", db], {
    perms: ["--allow-read", "--allow-write", "--allow-env"],
    cwd: dir.path,
  });
  assert.equal(added.code, 0, added.stderr);
  const token = /^AGENT_TOKEN=(\S+)$/m.exec(added.stdout)?.[1];
  assert.ok(token, added.stdout);
  const admin = `admin-${crypto.randomUUID()}`;
  await using serve = await startServe({
    db,
    cwd: dir.path,
    args: ["--status-admin-token", admin],
  });
  await using agent = startAgent({
    url: serve.url,
    agentId: "web-1",
    stateDir: `${dir.path}/agent-state`,
    cwd: dir.path,
    args: ["--agent-token", token],
  });
  await agent.stderr.waitFor("long-poll: polling loop started", { timeoutMs: 30_000 });
  const op = (...args: string[]) =>
    runCli([...args, "--dashboard-url", serve.url], { perms: PERMS.operator, cwd: dir.path });

  const ok = await op(
    "enqueue",
    "echo signed",
    "--agent",
    "web-1",
    "--wait",
    "--status-admin-token",
    admin,
  );
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout, "signed");

  const wrong = await op("list", "--status-admin-token", "x".repeat(32));
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /status: the dashboard refused the admin token \(HTTP 401/);
  assert.doesNotMatch(wrong.stderr, /x{32}/);

  const none = await op("enqueue", "echo hi", "--agent", "web-1");
  assert.equal(none.code, 1);
  assert.match(
    none.stderr,
    /status: the dashboard refused a request without an admin token .*STATUS_ADMIN_TOKEN is not set, or is set where it could not be read: the environment \(Deno was started without --allow-env\)/,
  );

  agent.kill("SIGINT");
  assert.equal((await agent.exited()).code, 0);
  serve.proc.kill("SIGINT");
  assert.equal((await serve.proc.exited()).code, 0);
});
