/**
 * `status agents` over HTTP (no `--db`), `status health`, and what an empty list prints, in process
 * against a real dashboard.
 */
import assert from "node:assert/strict";
import { run } from "./_run.ts";
import { startServer } from "../../src/server/mod.ts";
import { openSqliteStore } from "../../src/store/mod.ts";
import { closedPort } from "../_stub_dashboard.ts";
import { runCli } from "../_cli.ts";
import { main } from "../../main.ts";
import { memoryIo } from "../../src/cli/io.ts";
import { unreachableAdvice } from "../../src/cli/health.ts";

const ADMIN = "admin-token-0123456789abcdef";

async function dashboard() {
  const store = openSqliteStore(":memory:");
  const server = await startServer({
    availableDescriptors: "plenty",
    store,
    port: 0,
    adminToken: ADMIN,
  });
  return {
    server,
    store,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
      await store.close();
    },
  };
}

Deno.test("status agents without --db adds, lists, rotates and removes over the operator API", async () => {
  await using d = await dashboard();
  const remote = ["--dashboard-url", d.server.url, "--status-admin-token", ADMIN];
  const agents = (args: string[]) => run(["agents", ...args]);

  const added = await agents(["add", "web-1", ...remote]);
  assert.equal(added.code, 0);
  assert.equal(added.stdout[0], "AGENT_ID=web-1");
  const token = added.stdout[1].replace("AGENT_TOKEN=", "");
  assert.equal((await d.store.getAgent("web-1"))?.token, token, "stored on the dashboard");
  assert.doesNotMatch(added.stderr.join("\n"), /dev mode/, "with an admin token it was not in it");

  const again = await agents(["add", "web-1", ...remote]);
  assert.equal(again.code, 1);
  assert.match(again.stderr.join("\n"), /already exists/);

  const listed = await agents(["list", "--json", ...remote]);
  const rows = JSON.parse(listed.stdout.join("\n"));
  assert.equal(rows[0].id, "web-1");
  assert.equal(rows[0].state, "offline");
  const table = await agents(remote); // list is the default
  assert.match(table.stdout[0], /^ID\s+STATE\s+LAST SEEN\s+VERSION/);
  assert.match(table.stdout[1], /^web-1\s+offline\s+never/);
  assert.match(table.stdout[0], /\sDEPLOYMENT\s+LABELS\s+RUNNING\s/);
  // Its --help named every column but LABELS.
  const help = (await agents(["list", "--help"])).stdout.join(" ").replaceAll(/\s+/g, " ");
  for (const column of table.stdout[0].trim().split(/\s{2,}/).slice(1)) {
    const word = column.toLowerCase().replace(/^queued$/, "queue");
    assert.ok(help.toLowerCase().includes(word), `agents list --help names ${column}: ${help}`);
  }
  await d.store.recordHeartbeat("web-1", {
    version: "1",
    deploymentHash: "prod",
    instanceId: null,
    sample: null,
    labels: { zone: "eu", role: "web" },
    now: Date.now() - 3_600_000,
  });
  const labelled = await agents(remote);
  assert.match(labelled.stdout[1], /\sprod\s+role=web,zone=eu\s/);

  const rotated = await agents(["rotate", "web-1", ...remote]);
  assert.notEqual(rotated.stdout[0], `AGENT_TOKEN=${token}`);
  assert.equal((await d.store.getAgent("web-1"))?.token, rotated.stdout[0].slice(12));

  const removed = await agents(["remove", "web-1", ...remote]);
  assert.equal(removed.code, 0);
  assert.deepEqual(removed.stderr, ["agent web-1 removed; it had no queued or running command"]);
  assert.equal(await d.store.getAgent("web-1"), null);
  const missing = await agents(["remove", "web-1", ...remote]);
  assert.match(missing.stderr.join("\n"), /agent web-1 does not exist/);

  const refused = await agents(["list", "--dashboard-url", d.server.url]);
  assert.match(refused.stderr.join("\n"), /STATUS_ADMIN_TOKEN/);
});

Deno.test("status agents rotate and remove of a missing agent say the same with and without --db", async () => {
  await using d = await dashboard();
  const remote = ["--dashboard-url", d.server.url, "--status-admin-token", ADMIN];
  const dir = await Deno.makeTempDir();
  try {
    const db = ["--db", `${dir}/status.db`];
    await openSqliteStore(`${dir}/status.db`).close();
    for (const action of ["rotate", "remove"]) {
      const over = await run(["agents", action, "web-9", ...remote]);
      const onDisk = await run(["agents", action, "web-9", ...db]);
      assert.equal(over.code, 1, action);
      assert.equal(onDisk.code, 1, action);
      assert.deepEqual(over.stderr, onDisk.stderr, action);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("status agents remove says how many of the agent's commands it cancelled", async () => {
  await using d = await dashboard();
  const remote = ["--dashboard-url", d.server.url, "--status-admin-token", ADMIN];
  const now = Date.now();
  for (const id of ["web-1", "web-2"]) {
    await d.store.addAgent({ id, token: null, scopes: ["commands:wait"], now });
  }
  for (const [id, agentId] of [["c1", "web-1"], ["c2", "web-1"], ["c3", "web-2"]]) {
    await d.store.enqueue({ id, agentId, name: "echo hi", params: {}, fingerprint: id, now });
  }
  const one = await run(["agents", "remove", "web-2", ...remote]);
  assert.equal(one.code, 0);
  assert.deepEqual(one.stderr, [
    "agent web-2 removed; 1 of its queued or running commands was cancelled",
  ]);
  const two = await run(["agents", "remove", "web-1", ...remote]);
  assert.deepEqual(two.stderr, [
    "agent web-1 removed; 2 of its queued or running commands were cancelled",
  ]);
  assert.deepEqual(two.stdout, []);
  const status = await run(["result", "c1", "--json", ...remote]);
  assert.equal(JSON.parse(status.stdout.join("\n")).status, "cancelled");
});

Deno.test("status agents add to a dashboard in dev mode says it needs an admin token to start again", async () => {
  await using store = openSqliteStore(":memory:");
  const server = await startServer({ availableDescriptors: "plenty", store, port: 0 });
  try {
    assert.equal(server.devMode, true);
    const added = await run(["agents", "add", "web-1", "--dashboard-url", server.url], {});
    assert.equal(added.code, 0, added.stderr.join("\n"));
    assert.equal(added.stdout[0], "AGENT_ID=web-1");
    assert.deepEqual(added.stderr, [
      `agent web-1 added on ${server.url}. Give the agent these two settings (e.g. in its .env); ` +
      "the token is not shown again. The dashboard stays in dev mode until it stops; as its " +
      'database now holds an agent with a token, it starts again on it only as "status serve" ' +
      "with STATUS_ADMIN_TOKEN set (e.g. STATUS_ADMIN_TOKEN=$(openssl rand -base64 32)): " +
      '"status up" refuses it.',
    ]);
  } finally {
    await server.shutdown();
  }
});

Deno.test("status health checks the URL, the credentials and the clock", async () => {
  await using d = await dashboard();
  await d.store.addAgent({
    id: "web-1",
    token: "agent-token-0123456789abcdef",
    scopes: ["commands:wait"],
    now: Date.now(),
  });
  const health = (args: string[]) => run(["health", ...args]);

  const good = await health([
    "--dashboard-url",
    d.server.url,
    "--status-admin-token",
    ADMIN,
    "--agent-id",
    "web-1",
    "--agent-token",
    "agent-token-0123456789abcdef",
  ]);
  assert.equal(good.code, 0, good.stdout.join("\n"));
  const text = good.stdout.join("\n");
  assert.match(text, /dashboard\s+ok\s+reachable \(\d+ ms\), version \d+\.\d+\.\d+, dev mode off/);
  assert.match(text, /clock\s+ok\s+the dashboard is \d+\.\d s (ahead of|behind) this machine/);
  assert.match(text, /operator\s+ok\s+admin token accepted/);
  assert.match(text, /agent\s+ok\s+web-1: token and signature accepted/);

  const bad = await health([
    "--dashboard-url",
    d.server.url,
    "--status-admin-token",
    "wrong-admin-token-0123",
    "--agent-id",
    "web-1",
    "--agent-token",
    "wrong-agent-token-0123456",
    "--json",
  ]);
  assert.equal(bad.code, 1);
  const report = JSON.parse(bad.stdout.join("\n"));
  const byName = Object.fromEntries(
    report.checks.map((c: { name: string }) => [c.name, c]),
  );
  assert.equal(byName.operator.outcome, "failed");
  assert.match(byName.operator.message, /admin token is wrong/);
  assert.equal(byName.agent.outcome, "failed");
  assert.match(byName.agent.message, /bearer token is wrong/);
  assert.equal(typeof report.clockOffsetSecs, "number");

  const down = await health(["--dashboard-url", `http://127.0.0.1:${closedPort()}`, "--json"]);
  assert.equal(down.code, 1);
  assert.match(
    JSON.parse(down.stdout.join("\n")).checks[0].message,
    /^not reachable: connection refused$/,
  );
});

Deno.test("status health with the admin token says why an agent's credentials were refused", async (t) => {
  await using d = await dashboard();
  const token = "agent-token-0123456789abcdef";
  await d.store.addAgent({ id: "web-1", token, scopes: ["commands:wait"], now: Date.now() });
  await d.store.addAgent({ id: "web-2", token: null, scopes: ["commands:wait"], now: Date.now() });
  /** The agent check's message, with the admin token given (or a wrong one). */
  const agentCheck = async (agentId: string, agentToken: string | null, admin = ADMIN) => {
    const result = await run([
      "health",
      "--dashboard-url",
      d.server.url,
      "--status-admin-token",
      admin,
      "--agent-id",
      agentId,
      ...(agentToken === null ? [] : ["--agent-token", agentToken]),
      "--json",
    ]);
    assert.equal(result.code, 1);
    const report = JSON.parse(result.stdout.join("\n"));
    return report.checks.find((c: { name: string }) => c.name === "agent").message as string;
  };
  const refused = "refused (HTTP 401): agent id or bearer token is wrong (the dashboard's audit " +
    "log says which)";
  await t.step("an id the dashboard does not have", async () => {
    assert.equal(
      await agentCheck("web-9", token),
      `web-9 ${refused}; the dashboard has no agent web-9: add it with "status agents add web-9"`,
    );
  });
  await t.step("an agent without a token", async () => {
    assert.equal(
      await agentCheck("web-2", token),
      `web-2 ${refused}; agent web-2 has no token: give it one with "status agents rotate web-2"`,
    );
  });
  await t.step("a token that is not the agent's", async () => {
    assert.match(
      await agentCheck("web-1", "w".repeat(28)),
      /; agent web-1 is registered, so AGENT_TOKEN is not its token: use the one "status agents add" or "status agents rotate web-1" printed$/,
    );
  });
  await t.step("no token given for an agent that has one", async () => {
    assert.match(
      await agentCheck("web-1", null),
      /; agent web-1 has a token and none was given: set AGENT_TOKEN \(or --agent-token\) to the one "status agents add" or "status agents rotate web-1" printed$/,
    );
  });
  await t.step("without an accepted admin token, only the dashboard's answer", async () => {
    assert.equal(await agentCheck("web-9", token, "wrong-admin-token-0123"), `web-9 ${refused}`);
  });
});

Deno.test("status health that reaches no dashboard says where it looked and what to do", async (t) => {
  const closed = `http://127.0.0.1:${closedPort()}`;
  await t.step("a URL given", async () => {
    const down = await run(["health", "--dashboard-url", closed]);
    assert.equal(down.code, 1);
    assert.match(down.stdout.join("\n"), /dashboard\s+FAILED\s+not reachable: connection refused/);
    assert.deepEqual(down.stderr, [
      `status: is the dashboard running at ${closed} (from flag --dashboard-url)? start it, or ` +
      "set DASHBOARD_URL or --dashboard-url to where it listens",
    ]);
  });
  await t.step("a URL from the environment", async () => {
    const down = await run(["health"], { DASHBOARD_URL: closed });
    assert.equal(down.code, 1);
    assert.deepEqual(down.stderr, [
      `status: is the dashboard running at ${closed} (from the environment)? start it, or set ` +
      "DASHBOARD_URL or --dashboard-url to where it listens",
    ]);
  });
  await t.step("none given: the advice says the default was checked", () => {
    assert.equal(
      unreachableAdvice("http://localhost:5000", "default"),
      "is the dashboard running at http://localhost:5000 (the default: DASHBOARD_URL is not " +
        "set)? start it, or set DASHBOARD_URL or --dashboard-url to where it listens",
    );
  });
});

Deno.test("status health follows no redirect: no credential goes where it leads", async () => {
  const elsewhere: Request[] = [];
  await using other = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    elsewhere.push(req);
    return Response.json({ status: "ok", signed: true });
  });
  const to = `http://127.0.0.1:${other.addr.port}`;
  await using redirecting = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    (req) => {
      const path = new URL(req.url).pathname;
      return path === "/health"
        ? Response.json({ status: "ok", version: "1.0.0", dev_mode: false })
        : new Response(null, { status: 307, headers: { Location: `${to}${path}` } });
    },
  );
  const health = await run([
    "health",
    "--dashboard-url",
    `http://127.0.0.1:${redirecting.addr.port}`,
    "--status-admin-token",
    ADMIN,
    "--agent-id",
    "web-1",
    "--agent-token",
    "agent-token-0123456789abcdef",
    "--json",
  ]);
  assert.equal(health.code, 1);
  const checks = JSON.parse(health.stdout.join("\n")).checks;
  const byName = Object.fromEntries(checks.map((c: { name: string }) => [c.name, c]));
  for (const name of ["operator", "agent"]) {
    assert.equal(byName[name].outcome, "failed");
    assert.match(byName[name].message, /^the dashboard redirects \(307\) to "http:\/\/127/);
  }

  const moved = await run([
    "health",
    "--dashboard-url",
    `http://127.0.0.1:${redirecting.addr.port}/old`,
    "--json",
  ]);
  assert.equal(moved.code, 1);
  assert.match(
    JSON.parse(moved.stdout.join("\n")).checks[0].message,
    /^not reachable: the dashboard redirects \(307\) to "http:\/\/127.*\/old\/health"/,
  );
  // A dashboard is there: "is the dashboard running ...? start it" would send the operator off.
  assert.deepEqual(moved.stderr, []);

  // The other operator commands follow none either (they said "cannot reach the dashboard" for
  // what the redirect led to, and sent the admin token there).
  const listed = await run([
    "list",
    "--dashboard-url",
    `http://127.0.0.1:${redirecting.addr.port}`,
    "--status-admin-token",
    ADMIN,
  ]);
  assert.equal(listed.code, 1);
  assert.match(
    listed.stderr.join("\n"),
    /^status: the dashboard at http:\/\/127\S+ redirects \(307\) to "http:\/\/127\S+\/api\/v1\/commands", which status does not follow: set DASHBOARD_URL \(or --dashboard-url\) to the address it leads to$/,
  );
  assert.deepEqual(elsewhere, []);
});

Deno.test("status result and cancel take a fan-out run's command id of up to 193 characters", async () => {
  await using d = await dashboard();
  const remote = ["--dashboard-url", d.server.url, "--status-admin-token", ADMIN];
  const agent = "a".repeat(128);
  const runId = "r".repeat(64);
  await d.store.ensureAgent(agent, Date.now());
  const started = await run([
    "run",
    "start",
    "echo hi",
    "--agent",
    agent,
    "--id",
    runId,
    ...remote,
  ]);
  assert.equal(started.code, 0, started.stderr.join("\n"));
  const id = `${runId}:${agent}`;

  const shown = await run(["result", id, "--json", ...remote]);
  assert.equal(shown.code, 0, shown.stderr.join("\n"));
  assert.equal(JSON.parse(shown.stdout.join("\n")).id, id);
  const cancelled = await run(["cancel", id, ...remote]);
  assert.deepEqual(cancelled.stdout, [`cancelled ${id}`]);
  const tooLong = await run(["result", `${id}x`, ...remote]);
  assert.equal(tooLong.code, 2);
  assert.match(tooLong.stderr.join("\n"), /1–193 characters/);
});

Deno.test("an operator command given http:// for a dashboard that serves HTTPS says to use https://, not to start it", async (t) => {
  // What a TLS server sends back to a request in plain HTTP: an alert, not an HTTP answer.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    for await (const connection of listener) {
      await connection.read(new Uint8Array(4096)).catch(() => null);
      await connection.write(new Uint8Array([0x15, 3, 3, 0, 2, 2, 0x32])).catch(() => 0);
      connection.close();
    }
  })();
  const url = `http://127.0.0.1:${listener.addr.port}`;
  const said =
    "it answered, but not in HTTP (if it serves HTTPS, the URL must begin with https://)";
  try {
    await t.step("status list", async () => {
      const result = await run(["list", "--dashboard-url", url]);
      assert.equal(result.code, 1);
      assert.deepEqual(result.stderr, [`status: cannot reach the dashboard at ${url}: ${said}`]);
    });
    await t.step("status health", async () => {
      const result = await run(["health", "--dashboard-url", url]);
      assert.equal(result.code, 1);
      assert.deepEqual(result.stdout, [
        `dashboard ${url}`,
        `  dashboard FAILED  not reachable: ${said}`,
      ]);
      assert.deepEqual(result.stderr, [], "not: is the dashboard running there? start it");
    });
  } finally {
    listener.close();
    await serving;
  }
});

Deno.test("status health does not say DASHBOARD_URL is not set when it could not read it", async () => {
  // DASHBOARD_URL set, but not readable: the default is checked. Net access to it alone is
  // refused, so that no dashboard listening there on this machine can answer the check.
  const result = await runCli(["health"], {
    perms: ["--allow-net=127.0.0.1:9"],
    env: { DASHBOARD_URL: "http://127.0.0.1:9" },
  });
  assert.equal(result.code, 1);
  assert.match(result.stdout, /^dashboard http:\/\/localhost:5000\n/);
  assert.equal(
    result.stderr.trim().split("\n").at(-1),
    "status: is the dashboard running at http://localhost:5000 (the default: DASHBOARD_URL is " +
      "not set, or is set where it could not be read: the environment (Deno was started without " +
      "--allow-env) and .env and config.json (without --allow-read))? start it, or set " +
      "DASHBOARD_URL or --dashboard-url to where it listens",
  );
});

Deno.test("status agents add and rotate whose token cannot be printed say the agent has one, and how to get another", async (t) => {
  await using d = await dashboard();
  const dir = await Deno.makeTempDir({ prefix: "status-token-" });
  const db = `${dir}/status.db`;
  await openSqliteStore(db).close();
  /** `status agents <args>` with a standard output that fails every write (a full disk). */
  const agents = async (args: string[]) => {
    const io = {
      ...memoryIo(),
      out: () => {
        throw new Deno.errors.WriteZero("no space left on device");
      },
    };
    const code = await main(["agents", ...args, "--log-level", "error"], io);
    return { code, stderr: io.stderr };
  };
  try {
    const ways: Array<[string, string[], () => Promise<unknown>]> = [
      [
        "over the API",
        ["--dashboard-url", d.server.url, "--status-admin-token", ADMIN],
        () => d.store.getAgent("web-1"),
      ],
      ["with --db", ["--db", db], async () => {
        await using store = openSqliteStore(db);
        return await store.getAgent("web-1");
      }],
    ];
    for (const [how, flags, stored] of ways) {
      await t.step(how, async () => {
        const added = await agents(["add", "web-1", ...flags]);
        assert.equal(added.code, 1);
        assert.deepEqual(added.stderr, [
          "status: agent web-1 was added, but the token could not be printed (no space left on " +
          'device); print a new one with "status agents rotate web-1"',
        ]);
        assert.ok(await stored(), "the agent was added");
        const rotated = await agents(["rotate", "web-1", ...flags]);
        assert.equal(rotated.code, 1);
        assert.deepEqual(rotated.stderr, [
          "status: agent web-1 has a new token, but the token could not be printed (no space " +
          'left on device); print a new one with "status agents rotate web-1"',
        ]);
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an operator command refused for want of an admin token it could not read says why", async (t) => {
  await using d = await dashboard();
  await t.step("the environment not readable (--allow-net alone)", async () => {
    const result = await runCli(["list", "--dashboard-url", d.server.url], {
      perms: ["--allow-net"],
      env: { STATUS_ADMIN_TOKEN: ADMIN },
    });
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /status: the dashboard refused a request without an admin token \(HTTP 401[^)]*\); the dashboard is not in dev mode, and STATUS_ADMIN_TOKEN is not set, or is set where it could not be read: the environment \(Deno was started without --allow-env\) and \.env and config\.json \(without --allow-read\) could not be read\. Add --allow-env \(or --allow-env=STATUS_ADMIN_TOKEN\) and --allow-read=\.env,config\.json, run with this repository's permission set \(deno run -P=operator main\.ts\), or pass --status-admin-token <token>$/,
    );
    assert.doesNotMatch(result.stderr, /no admin token is set/);
  });
  await t.step("everything readable and no token set: as before", async () => {
    const result = await runCli(["list", "--dashboard-url", d.server.url], {
      perms: ["--allow-net", "--allow-env", "--allow-read"],
    });
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /\(HTTP 401[^)]*\); no admin token is set and the dashboard is not in dev mode; set STATUS_ADMIN_TOKEN \(or --status-admin-token\)$/,
    );
  });
});

Deno.test("status health that could not read AGENT_ID says so rather than that none was given", async () => {
  await using d = await dashboard();
  const result = await runCli(["health", "--dashboard-url", d.server.url, "--json"], {
    perms: ["--allow-net", "--allow-env=DASHBOARD_URL,STATUS_ADMIN_TOKEN", "--allow-read"],
    env: { AGENT_ID: "web-1", STATUS_ADMIN_TOKEN: ADMIN },
  });
  assert.equal(result.code, 0, result.stderr);
  const agent = JSON.parse(result.stdout).checks.find((c: { name: string }) => c.name === "agent");
  assert.deepEqual(agent, {
    name: "agent",
    outcome: "skipped",
    message: "no AGENT_ID given, or it is set where it could not be read: AGENT_ID (not granted " +
      "by --allow-env) (pass --agent-id)",
  });
});

Deno.test("an empty list says so on stderr, leaving stdout empty for scripts, as README says", async () => {
  await using d = await dashboard();
  const remote = ["--dashboard-url", d.server.url, "--status-admin-token", ADMIN];
  for (
    const [args, said] of [
      [["list"], "no commands"],
      [["run", "list"], "no runs"],
      [["agents", "list"], 'no agents; add one with "status agents add <id>"'],
    ] as const
  ) {
    const result = await run([...args, ...remote], {});
    assert.equal(result.code, 0, result.stderr.join("\n"));
    assert.deepEqual(result.stdout, [], args.join(" "));
    assert.deepEqual(result.stderr, [said], args.join(" "));
    const json = await run([...args, "--json", ...remote], {});
    assert.deepEqual(json.stdout, ["[]"], `${args.join(" ")} --json`);
    assert.deepEqual(json.stderr, [], `${args.join(" ")} --json`);
  }
});
