/**
 * `status up` (dashboard + agent in one process): starts, runs the seed's curl request, serves
 * the demo script, stops on SIGINT with exit code 0; and says so clearly when its port is busy.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { tempDir, waitForFinal } from "./helpers.ts";
import { PERMS, ROOT, runCli, spawnCli } from "../_cli.ts";
import { AGENT_SCOPES, openSqliteStore } from "../../src/store/mod.ts";
import { generateToken } from "../../src/protocol/mod.ts";
import { openAgentState } from "../../src/agent/mod.ts";

const BANNER = /^status up: dashboard on http:\/\/127\.0\.0\.1:(\d+) /;

Deno.test("status up: the seed's curl gets a result, the demo script works, SIGINT exits 0", async () => {
  await using dir = tempDir();
  await using up = spawnCli(["up", "--port", "0", "--log-format", "json"], {
    perms: PERMS.up,
    cwd: dir.path,
  });
  const { match } = await up.stdout.waitFor(BANNER, { timeoutMs: 30_000 });
  const url = `http://127.0.0.1:${match![1]}`;
  await up.stdout.waitFor("Press Ctrl-C to stop.");
  assert.match(
    up.stdout.text,
    /curl -X POST http:\/\/localhost:\d+\/api\/v1\/agent\/commands\/enqueue -H 'Content-Type: application\/json' -H 'X-Agent-Id: test-agent' -d '\{"id":"cmd-001","name":"echo Hello from dashboard","params":\{\}\}'/,
  );
  assert.match(up.stdout.text, /enqueue "echo hi" --agent test-agent --wait --dashboard-url/);
  assert.match(up.stdout.text, /^status up: web console at http:\/\/localhost:\d+\/ /m);
  const consolePage = await fetch(`${url}/`);
  assert.equal(consolePage.status, 200);
  assert.match(await consolePage.text(), /dev mode<\/span>.*<h1>Agents<\/h1>/s, "the console");

  const response = await fetch(`${url}/api/v1/agent/commands/enqueue`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Agent-Id": "test-agent" },
    body: '{"id":"cmd-001","name":"echo Hello from dashboard","params":{}}',
  });
  assert.equal(response.status, 202);
  await response.body?.cancel();
  const record = await waitForFinal(url, "cmd-001");
  assert.equal(record.status, "success");
  assert.equal((record.result as { stdout: string }).stdout, "Hello from dashboard\n");

  // The demo script, against this `status up` (it needs bash and curl).
  const hasCurl = (await new Deno.Command("bash", {
    args: ["-c", "command -v curl"],
    stdout: "null",
    stderr: "null",
  }).output()).success;
  if (hasCurl) await runDemo(url);

  assert.ok(existsSync(`${dir.path}/.status/status.db`));
  assert.ok(existsSync(`${dir.path}/.status/agent-state`));

  up.kill("SIGINT");
  const status = await up.exited(30_000);
  assert.equal(status.code, 0, up.stderr.text);
  assert.match(up.stderr.text, /status up: stopped/);
});

async function runDemo(url: string): Promise<void> {
  const demo = new Deno.Command("bash", {
    args: [`${ROOT}/examples/long_poll_demo.sh`],
    env: { DASHBOARD_URL: url, AGENT_ID: "test-agent", COMMAND: "echo from the demo script" },
    stdout: "piped",
    stderr: "piped",
  });
  const output = await demo.output();
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, stderr);
  assert.match(stdout, /from the demo script/);
  assert.match(stderr, /==> enqueue demo-\d+-\d+ for agent test-agent/);
  assert.match(stderr, /success/);
}

Deno.test("status up says clearly when its port is busy", async () => {
  await using dir = tempDir();
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const run = await runCli(["up", "--port", String(port)], { perms: PERMS.up, cwd: dir.path });
  assert.equal(run.code, 1);
  assert.match(run.stderr, new RegExp(`status: port ${port} is busy: .*--port <n>`));
  assert.equal(run.stdout, "");
});

Deno.test("status up on a database whose agents have tokens says how to go on", async () => {
  await using dir = tempDir();
  Deno.mkdirSync(`${dir.path}/.status`, { mode: 0o700 });
  {
    await using store = openSqliteStore(`${dir.path}/.status/status.db`);
    await store.addAgent({ id: "web-7", token: generateToken(), scopes: AGENT_SCOPES, now: 0 });
  }
  // The state of another agent id, with nothing left to deliver: status up would take it over
  // (and forget that agent's command ids) if it opened it before refusing the database.
  const owner = `${dir.path}/.status/agent-state/owner.json`;
  Deno.mkdirSync(`${dir.path}/.status/agent-state`, { mode: 0o700 });
  const before = JSON.stringify({ agent_id: "web-7", dashboard_url: "status up" }) + "\n";
  Deno.writeTextFileSync(owner, before);
  const run = await runCli(["up", "--port", "0"], { perms: PERMS.up, cwd: dir.path });
  assert.equal(run.code, 2, run.stderr);
  assert.equal(Deno.readTextFileSync(owner), before, "the agent's state is left as it was");
  // It told to set STATUS_ADMIN_TOKEN (or --status-admin-token), which status up ignores.
  assert.doesNotMatch(run.stderr, /status-admin-token/);
  assert.match(
    run.stderr,
    /status: \.\/\.status\/status\.db holds agents with tokens, and "status up" runs its dashboard only in dev mode, .*"status agents remove <id> --db \.\/\.status\/status\.db", give status up another --data-dir, or run this database with "status serve --db \.\/\.status\/status\.db" and STATUS_ADMIN_TOKEN$/m,
  );
  assert.equal(run.stdout, "");
});

Deno.test("status up refuses a bad port with exit code 2", async () => {
  const run = await runCli(["up", "--port", "70000"], { perms: PERMS.up });
  assert.equal(run.code, 2);
  assert.match(run.stderr, /--port/);
});

Deno.test("status up takes PORT and AGENT_ID like every command, and names what it ignores", async () => {
  await using dir = tempDir();
  await Deno.writeTextFile(`${dir.path}/.env`, "AGENT_ID=mine\nDB=/nonexistent/x.db\n");
  await using up = spawnCli(["up", "--log-format", "json", "--data-dir", "data/deep"], {
    perms: PERMS.up,
    cwd: dir.path,
    // Another program's DATABASE_URL (a Rails app's) is not checked either: it stopped status up.
    env: { PORT: "0", BIND: "0.0.0.0", DATABASE_URL: "mysql2://app:secret@db/app" },
  });
  const { match } = await up.stdout.waitFor(BANNER, { timeoutMs: 30_000 });
  assert.notEqual(match![1], "5000", "PORT=0 from the environment: any free port");
  await up.stdout.waitFor("status up: agent mine is polling it");
  assert.ok(
    up.logged(
      "status up ignores BIND (from the environment), DB (from .env), DATABASE_URL (from the " +
        "environment): it always listens on " +
        '127.0.0.1 in dev mode with its data in --data-dir; use "status serve" and ' +
        '"status agent" for these',
    ),
    up.stderr.text,
  );
  assert.ok(existsSync(`${dir.path}/data/deep/status.db`), "the data folder, parents included");
  // No one else may read the database or the agent's state.
  for (const [path, mode] of [["data/deep", 0o700], ["data/deep/status.db", 0o600]] as const) {
    assert.equal((Deno.statSync(`${dir.path}/${path}`).mode ?? 0) & 0o777, mode, path);
  }
  up.kill("SIGINT");
  assert.equal((await up.exited()).code, 0);
});

Deno.test("status up takes the flag of every setting it reads, and none of those it ignores", async () => {
  await using dir = tempDir();
  const bounds = await runCli(
    ["up", "--port", "0", "--command-timeout-secs", "30", "--command-timeout-max-secs", "20"],
    { perms: PERMS.up, cwd: dir.path },
  );
  assert.equal(bounds.code, 2, bounds.stderr);
  assert.match(
    bounds.stderr,
    /COMMAND_TIMEOUT_SECS \(30, from flag --command-timeout-secs\) must not be above COMMAND_TIMEOUT_MAX_SECS \(20, from flag --command-timeout-max-secs\)/,
  );
  const help = await runCli(["up", "--help"], { perms: PERMS.up, cwd: dir.path });
  for (const flag of ["--allowed-programs", "--agent-labels", "--queue-ttl-secs", "--log-level"]) {
    assert.ok(help.stdout.includes(flag), `${flag} in up --help`);
  }
  const bind = await runCli(["up", "--bind", "0.0.0.0"], { perms: PERMS.up, cwd: dir.path });
  assert.equal(bind.code, 2);
  assert.match(bind.stderr, /unknown option '--bind'/);
  assert.ok(!existsSync(`${dir.path}/.status`), "nothing made of a refused command line");
});

Deno.test("status up with another --agent-id over results its old agent has not delivered refuses", async () => {
  await using dir = tempDir();
  const stateDir = `${dir.path}/.status/agent-state`;
  Deno.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  {
    using state = openAgentState({
      dir: stateDir,
      owner: { agentId: "web-1", dashboardUrl: "status up" },
    });
    state.outbox.put({ command_id: "cmd-1", status: "success", result: null });
  }
  const run = await runCli(["up", "--port", "0", "--agent-id", "web-2"], {
    perms: PERMS.up,
    cwd: dir.path,
  });
  assert.equal(run.code, 2, run.stderr);
  assert.match(
    run.stderr,
    /status: cannot start the agent web-2: \.\/\.status\/agent-state holds 1 result\(s\) not yet delivered of agent "web-1", which would be sent as web-2's; run status up --agent-id web-1 until they are delivered, or give this one its own --data-dir$/m,
  );
  assert.equal(run.stdout, "");
  // Nothing was sent or lost.
  using state = openAgentState({
    dir: stateDir,
    owner: { agentId: "web-1", dashboardUrl: "status up" },
  });
  assert.equal(state.outbox.get("cmd-1")?.status, "success");
});

Deno.test("status up over results whose owner.json is damaged says how to claim them", async () => {
  await using dir = tempDir();
  const stateDir = `${dir.path}/.status/agent-state`;
  Deno.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  {
    using state = openAgentState({
      dir: stateDir,
      owner: { agentId: "web-1", dashboardUrl: "status up" },
    });
    state.outbox.put({ command_id: "cmd-1", status: "success", result: null });
  }
  Deno.writeTextFileSync(`${stateDir}/owner.json`, "{damaged");
  const run = await runCli(["up", "--port", "0", "--agent-id", "web-1"], {
    perms: PERMS.up,
    cwd: dir.path,
  });
  assert.equal(run.code, 2, run.stderr);
  assert.match(
    run.stderr,
    /status: cannot start the agent web-1: \.\/\.status\/agent-state holds 1 result\(s\) not yet delivered of an agent its owner\.json does not name \(it is damaged\), which would be sent as web-1's; if they are this agent's, put {"agent_id":"web-1","dashboard_url":"status up"} in \.\/\.status\/agent-state\/owner\.json and start it again, or give this one its own --data-dir$/m,
  );
  // Nothing was sent or lost.
  using state = openAgentState({ dir: stateDir });
  assert.equal(state.outbox.get("cmd-1")?.status, "success");
});

Deno.test("status up: a second SIGINT during a command stops at once, exit code 130", async () => {
  await using dir = tempDir();
  await using up = spawnCli(["up", "--port", "0", "--log-format", "json"], {
    perms: PERMS.up,
    cwd: dir.path,
  });
  const { match } = await up.stdout.waitFor(BANNER, { timeoutMs: 30_000 });
  const url = `http://127.0.0.1:${match![1]}`;
  await up.stdout.waitFor("Press Ctrl-C to stop.");
  const response = await fetch(`${url}/api/v1/agent/commands/enqueue`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Agent-Id": "test-agent" },
    body: '{"id":"long-1","name":"sleep 60","params":{}}',
  });
  assert.equal(response.status, 202);
  await response.body?.cancel();
  await up.stderr.waitFor("Executing command: sleep 60 (id: long-1)", { timeoutMs: 30_000 });
  up.kill("SIGINT");
  await up.stderr.waitFor(/SIGINT received: stopping/, { timeoutMs: 10_000 });
  up.kill("SIGINT");
  const status = await up.exited(30_000);
  assert.equal(status.code, 130, up.stderr.text);
  assert.match(up.stderr.text, /received again: stopping at once/);
});
