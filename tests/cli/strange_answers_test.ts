/**
 * The operator commands against something at DASHBOARD_URL that answers 2xx with a body that is
 * not what the protocol says (a proxy, another program, a broken dashboard): they fail naming it,
 * never print a success they cannot know.
 */
import assert from "node:assert/strict";
import { run } from "./_run.ts";

/** A server answering every request with this status and body. */
function answering(status: number, body: unknown) {
  return Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    () => Response.json(body, { status }),
  );
}

Deno.test("status cancel does not say cancelled when the answer does not", async (t) => {
  const cases: Array<[number, unknown, string]> = [
    [200, { hello: 1 }, "cancelled"],
    [200, [1, 2], "cancelled"],
    [200, null, "cancelled"],
    [200, { cancelled: false }, "cancelled"],
    [202, { cancelled: false }, "cancel_requested"],
  ];
  for (const [status, body, field] of cases) {
    await t.step(`${status} ${JSON.stringify(body)}`, async () => {
      await using server = answering(status, body);
      const url = `http://127.0.0.1:${server.addr.port}`;
      const result = await run(["cancel", "cmd-1", "--dashboard-url", url]);
      assert.equal(result.code, 1);
      assert.deepEqual(result.stdout, []);
      assert.equal(
        result.stderr.join("\n"),
        `status: the dashboard at ${url} answered the cancel of cmd-1 without "${field}": ` +
          `true, so whether cmd-1 was cancelled is not known; is ${url} a status dashboard? ` +
          "(see it with: status result cmd-1)",
      );
    });
  }
  await t.step("the dashboard's own answers still read as before", async () => {
    await using queued = answering(200, { cancelled: true, command: {} });
    let result = await run([
      "cancel",
      "cmd-1",
      "--dashboard-url",
      `http://127.0.0.1:${queued.addr.port}`,
    ]);
    assert.deepEqual([result.code, result.stdout], [0, ["cancelled cmd-1"]]);
    await using delivered = answering(202, { cancelled: false, cancel_requested: true });
    result = await run([
      "cancel",
      "cmd-1",
      "--dashboard-url",
      `http://127.0.0.1:${delivered.addr.port}`,
    ]);
    assert.deepEqual([result.code, result.stdout], [0, [
      "cancel requested: the agent will stop cmd-1",
    ]]);
  });
});

Deno.test("status agents never prints a token, a removal or a fleet the answer does not hold", async (t) => {
  const bodies: unknown[] = [
    { hello: 1 },
    [1, 2],
    null,
    { token: 5 },
    { token: "short" },
    {
      agents: "x",
    },
    { agents: [null] },
    { agents: [{ name: "web-1" }] },
  ];
  for (const body of bodies) {
    await t.step(JSON.stringify(body), async () => {
      await using server = answering(200, body);
      const url = `http://127.0.0.1:${server.addr.port}`;
      const add = await run(["agents", "add", "web-1", "--dashboard-url", url]);
      assert.equal(add.code, 1);
      assert.deepEqual(add.stdout, [], "no AGENT_TOKEN=undefined");
      assert.equal(
        add.stderr.join("\n"),
        `status: the dashboard at ${url} answered the agent add without a token an agent could ` +
          'use (the agent may have been added: print a new token with "status agents rotate ' +
          `web-1"); is ${url} a status dashboard?`,
      );
      const rotate = await run(["agents", "rotate", "web-1", "--dashboard-url", url]);
      assert.equal(rotate.code, 1);
      assert.deepEqual(rotate.stdout, []);
      assert.match(rotate.stderr.join("\n"), /the old token may no longer work: rotate again/);
      const remove = await run(["agents", "remove", "web-1", "--dashboard-url", url]);
      assert.equal(remove.code, 1);
      assert.equal(
        remove.stderr.join("\n"),
        `status: the dashboard at ${url} answered the agent removal without "removed": true, so ` +
          `whether agent web-1 was removed is not known; is ${url} a status dashboard?`,
        'not "agent web-1 removed"',
      );
      for (const json of [[], ["--json"]]) {
        const list = await run(["agents", "list", ...json, "--dashboard-url", url]);
        assert.equal(list.code, 1);
        assert.deepEqual(list.stdout, [], "not an empty fleet");
        assert.equal(
          list.stderr.join("\n"),
          `status: the dashboard at ${url} answered the agent list without ` +
            `{"agents": [{"id": ...}, ...]}; is ${url} a status dashboard?`,
        );
      }
    });
  }
});

Deno.test("status run list names what is wrong with a run list instead of a TypeError", async (t) => {
  const cases: Array<[unknown, string]> = [
    [null, ": must be an object, not null"],
    [{ runs: [1] }, ' at "runs.0": must be an object, not a number'],
    [{ runs: [{ id: "r1" }] }, ' at "runs.0.name": is required (expected string)'],
  ];
  for (const [body, problem] of cases) {
    await t.step(JSON.stringify(body), async () => {
      await using server = answering(200, body);
      const url = `http://127.0.0.1:${server.addr.port}`;
      const result = await run(["run", "list", "--dashboard-url", url]);
      assert.equal(result.code, 1);
      assert.deepEqual(result.stdout, []);
      assert.ok(
        result.stderr.join("\n").startsWith(
          `status: the dashboard's run list is not {"runs": [...]}${problem}`,
        ),
        result.stderr.join("\n"),
      );
    });
  }
});

Deno.test("status health prints what a dashboard's error answer says on one line, escaped", async () => {
  await using server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    (request) =>
      new URL(request.url).pathname === "/health"
        ? Response.json({ status: "ok", version: "1.0.0", time: new Date().toISOString() })
        : Response.json({ error: "no\n  agent    ok      forged\u001b[2J" }, { status: 401 }),
  );
  const result = await run([
    "health",
    "--dashboard-url",
    `http://127.0.0.1:${server.addr.port}`,
    "--status-admin-token",
    "admin-token-0123456789abcdef",
  ]);
  assert.equal(result.code, 1);
  const operator = result.stdout.filter((line) => line.startsWith("  operator"));
  assert.equal(operator.length, 1);
  assert.ok(operator[0].endsWith("no\\n  agent    ok      forged\\u001b[2J"), operator[0]);
  assert.equal(result.stdout.filter((line) => line.includes("forged")).length, 1);
});

Deno.test("status result --stdout of a command with no result yet exits 1, not 2 (bad usage)", async () => {
  await using server = answering(200, {
    id: "cmd-1",
    name: "sleep 5",
    status: "running",
    created_at: null,
    delivered_at: null,
    completed_at: null,
    result: null,
  });
  const url = `http://127.0.0.1:${server.addr.port}`;
  const result = await run(["result", "cmd-1", "--stdout", "--dashboard-url", url]);
  assert.equal(result.code, 1);
  assert.deepEqual(result.stdout, []);
  assert.equal(result.stderr.join("\n"), "status: cmd-1 has no output yet (status running)");
});

Deno.test("status enqueue prints the dashboard's warning on one line, escaped", async () => {
  await using server = answering(202, {
    queued: true,
    id: "cmd-1",
    warning: "agent web-1 is offline\n\u001b[2Jstatus: forged line",
  });
  const url = `http://127.0.0.1:${server.addr.port}`;
  const result = await run(["enqueue", "echo hi", "--agent", "web-1", "--dashboard-url", url]);
  assert.equal(result.code, 0, result.stderr.join("\n"));
  assert.equal(
    result.stderr[0],
    "warning: agent web-1 is offline\\n\\u001b[2Jstatus: forged line",
  );
  assert.equal(result.stderr.length, 2, result.stderr.join("\n"));
});

Deno.test("status enqueue prints no id the dashboard answered that is not a command id", async () => {
  // A script reads the id from stdout (id=$(status enqueue ...)): a line break would give it two,
  // an escape would reach the terminal.
  await using server = answering(202, { queued: true, id: "cmd-1\nrm -rf ~\u001b]0;pwned\u0007" });
  const url = `http://127.0.0.1:${server.addr.port}`;
  const result = await run(["enqueue", "echo hi", "--agent", "web-1", "--dashboard-url", url]);
  assert.equal(result.code, 1);
  assert.deepEqual(result.stdout, []);
  assert.equal(result.stderr.length, 1, result.stderr.join("\n"));
  assert.match(result.stderr[0], /^status: the dashboard at .* answered the enqueue .*"id"/);
  // It answered: the command may be queued, under the id status sent.
  assert.match(result.stderr[0], /; the command may have been queued as \S+: /);
  assert.doesNotMatch(result.stderr[0], /\p{Cc}/u);
});

/** A run as the dashboard shows it, with these fields changed. */
function runView(changes: Record<string, unknown> = {}) {
  return {
    id: "r1",
    name: "echo hi",
    status: "running",
    max_concurrency: 1,
    max_errors: null,
    totals: { total: 1, queued: 1 },
    agents: [{
      agent_id: "web-1",
      command_id: "r1.web-1",
      state: "queued",
      offline_at_creation: false,
      exit_code: null,
      duration_secs: null,
      first_line: null,
      error: null,
    }],
    created_at: "2026-01-12T10:00:00Z",
    ...changes,
  };
}

Deno.test("status run prints no run id, name or state the dashboard answered that would forge a line or drive the terminal", async (t) => {
  const hostile = "x\nforged line\u001b]0;pwned\u0007\u202e";
  await t.step("run start: an id that is not a run id is an invalid answer", async () => {
    await using server = answering(201, runView({ id: `r1${hostile}` }));
    const url = `http://127.0.0.1:${server.addr.port}`;
    const result = await run([
      "run",
      "start",
      "echo hi",
      "--agent",
      "web-1",
      "--dashboard-url",
      url,
    ]);
    assert.equal(result.code, 1);
    assert.deepEqual(result.stdout, []);
    assert.equal(result.stderr.length, 1, result.stderr.join("\n"));
    assert.match(result.stderr[0], /is not a run: must be 1–64 characters .*may have been created/);
    assert.doesNotMatch(result.stderr[0], /\p{Cc}/u);
  });
  await t.step("run list: one line per run, its name, time and totals escaped", async () => {
    await using server = answering(200, {
      runs: [runView({ name: `echo ${hostile}`, created_at: hostile, totals: { [hostile]: 1 } })],
    });
    const url = `http://127.0.0.1:${server.addr.port}`;
    const result = await run(["run", "list", "--dashboard-url", url]);
    assert.equal(result.code, 0, result.stderr.join("\n"));
    assert.equal(result.stdout.length, 1, result.stdout.join("\n"));
    assert.doesNotMatch(result.stdout[0], /[\p{Cc}\u202e]/u, result.stdout[0]);
    assert.ok(
      result.stdout[0].endsWith(
        "echo x\\nforged line\\u001b]0;pwned\\u0007\\u202e",
      ),
      result.stdout[0],
    );
  });
  await t.step("run show --follow: an agent's state escaped in its progress line", async () => {
    // Running at the first read, ended at the next.
    let reads = 0;
    await using server = Deno.serve(
      { port: 0, hostname: "127.0.0.1", onListen() {} },
      () => {
        const first = reads++ === 0;
        return Response.json(runView({
          status: first ? "running" : "failed",
          agents: [{ ...runView().agents[0], state: first ? "running" : `failed${hostile}` }],
        }));
      },
    );
    const url = `http://127.0.0.1:${server.addr.port}`;
    const result = await run(["run", "show", "r1", "--follow", "--dashboard-url", url]);
    assert.equal(result.code, 1, result.stderr.join("\n"));
    assert.deepEqual(result.stderr, [
      "web-1: failedx\\nforged line\\u001b]0;pwned\\u0007\\u202e",
    ]);
  });
});
