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
  const result = await run([
    "enqueue",
    "echo hi",
    "--agent",
    "web-1",
    "--id",
    "cmd-1",
    "--dashboard-url",
    url,
  ]);
  assert.equal(result.code, 0, result.stderr.join("\n"));
  assert.equal(
    result.stderr[0],
    "warning: agent web-1 is offline\\n\\u001b[2Jstatus: forged line",
  );
  assert.equal(result.stderr.length, 2, result.stderr.join("\n"));
});

Deno.test("status enqueue does not say queued when the answer says it was not", async () => {
  await using server = answering(200, { queued: false, id: "cmd-1", error: "queue full" });
  const url = `http://127.0.0.1:${server.addr.port}`;
  const result = await run([
    "enqueue",
    "echo hi",
    "--agent",
    "web-1",
    "--id",
    "cmd-1",
    "--dashboard-url",
    url,
  ]);
  assert.equal(result.code, 1);
  assert.deepEqual(result.stdout, []);
  assert.equal(result.stderr.length, 1, result.stderr.join("\n"));
  assert.ok(
    result.stderr[0].startsWith(
      `status: the dashboard at ${url} answered the enqueue with "queued": false (queue full); ` +
        `is ${url} a status dashboard?; the command may have been queued as cmd-1: `,
    ),
    result.stderr[0],
  );
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

/** A command as the dashboard shows it, ended with "OTHER" on its stdout. */
function commandView(id: string) {
  return {
    id,
    agent_id: "web-1",
    name: "echo hi",
    params: {},
    status: "success",
    attempt: 1,
    created_at: "2026-01-12T10:00:00Z",
    result: {
      exit_code: 0,
      signal: null,
      duration_secs: 0.1,
      stdout: "OTHER\n",
      stderr: "",
      stdout_truncated_bytes: 0,
      stderr_truncated_bytes: 0,
    },
    error: null,
  };
}

Deno.test("the operator commands take no answer about another command, agent or run for the one they asked about", async (t) => {
  // A proxy's cache or a broken dashboard answering about another record: printed as this one's,
  // it would show another command's output and exit code, or another agent's token.
  await t.step("enqueue: another command's id, the command sent may be queued", async () => {
    await using server = answering(202, { queued: true, id: "other" });
    const url = `http://127.0.0.1:${server.addr.port}`;
    const result = await run([
      "enqueue",
      "echo hi",
      "--agent",
      "web-1",
      "--id",
      "mine",
      "--wait",
      "--dashboard-url",
      url,
    ]);
    assert.equal(result.code, 1, result.stderr.join("\n"));
    assert.deepEqual(result.stdout, []);
    assert.equal(result.stderr.length, 1, result.stderr.join("\n"));
    assert.ok(
      result.stderr[0].startsWith(
        `status: the dashboard at ${url} answered the enqueue of mine with command other; ` +
          `is ${url} a status dashboard?; the command may have been queued as mine: `,
      ),
      result.stderr[0],
    );
  });
  await t.step("enqueue --wait: an event stream ending with another command", async () => {
    await using server = Deno.serve(
      { port: 0, hostname: "127.0.0.1", onListen() {} },
      (request) => {
        if (request.method === "POST") return Response.json({ queued: true, id: "mine" });
        if (new URL(request.url).pathname.endsWith("/events")) {
          const end = `id: 1:\nevent: end\ndata: ${JSON.stringify(commandView("other"))}\n\n`;
          return new Response(end, { headers: { "Content-Type": "text/event-stream" } });
        }
        return Response.json(commandView("mine"));
      },
    );
    const url = `http://127.0.0.1:${server.addr.port}`;
    const result = await run([
      "enqueue",
      "echo hi",
      "--agent",
      "web-1",
      "--id",
      "mine",
      "--wait",
      "--dashboard-url",
      url,
    ]);
    assert.equal(result.code, 1, result.stderr.join("\n"));
    assert.deepEqual(result.stdout, []);
    assert.equal(
      result.stderr.at(-1),
      "status: the event stream of mine sent an event of command other",
    );
  });
  await t.step("result: another command's record", async () => {
    await using server = answering(200, commandView("other"));
    const url = `http://127.0.0.1:${server.addr.port}`;
    for (const json of [[], ["--json"]]) {
      const result = await run(["result", "mine", ...json, "--dashboard-url", url]);
      assert.equal(result.code, 1, result.stderr.join("\n"));
      assert.deepEqual(result.stdout, []);
      assert.equal(
        result.stderr.join("\n"),
        `status: the dashboard at ${url} answered the request for command mine with command ` +
          `other; is ${url} a status dashboard?`,
      );
    }
  });
  await t.step("agents add, rotate, remove: another agent's answer", async () => {
    await using server = Deno.serve(
      { port: 0, hostname: "127.0.0.1", onListen() {} },
      () => Response.json({ id: "other", token: "t".repeat(43), removed: true }),
    );
    const url = `http://127.0.0.1:${server.addr.port}`;
    const said: Record<string, string> = {
      add: 'the agent may have been added: print a new token with "status agents rotate web-1"',
      rotate: 'the old token may no longer work: rotate again with "status agents rotate web-1"',
      remove: "whether agent web-1 was removed is not known",
    };
    const words: Record<string, string> = {
      add: "agent add",
      rotate: "token rotation",
      remove: "agent removal",
    };
    for (const verb of ["add", "rotate", "remove"]) {
      const result = await run(["agents", verb, "web-1", "--dashboard-url", url]);
      assert.equal(result.code, 1, `${verb}: ${result.stderr.join("\n")}`);
      assert.deepEqual(result.stdout, [], verb);
      assert.equal(
        result.stderr.join("\n"),
        `status: the dashboard at ${url} answered the ${words[verb]} of web-1 with agent ` +
          `"other" (${said[verb]}); is ${url} a status dashboard?`,
      );
    }
  });
  await t.step("run start and show: another run", async () => {
    await using server = answering(201, runView({ id: "other" }));
    const url = `http://127.0.0.1:${server.addr.port}`;
    const start = await run([
      "run",
      "start",
      "echo hi",
      "--agent",
      "web-1",
      "--id",
      "mine",
      "--dashboard-url",
      url,
    ]);
    assert.equal(start.code, 1, start.stderr.join("\n"));
    assert.deepEqual(start.stdout, []);
    assert.match(
      start.stderr.join("\n"),
      /^status: the dashboard's answer to POST \/api\/v1\/runs is run other, not mine.*may have been created/,
    );
    const show = await run(["run", "show", "mine", "--dashboard-url", url]);
    assert.equal(show.code, 1, show.stderr.join("\n"));
    assert.deepEqual(show.stdout, []);
    assert.equal(
      show.stderr.join("\n"),
      "status: the dashboard's answer to GET /api/v1/runs/mine is run other, not mine",
    );
  });
});

Deno.test("status result writes no bytes of output marked base64 that is not base64", async (t) => {
  // Decoded leniently, "!!!not base64" became six bytes of garbage written out as the command's
  // exact output, exit 0.
  const broken = {
    ...commandView("c1"),
    result: { ...commandView("c1").result, stdout: "!!!not base64", stdout_encoding: "base64" },
  };
  await using server = answering(200, broken);
  const url = `http://127.0.0.1:${server.addr.port}`;
  for (const flags of [[], ["--stdout"], ["--json"]]) {
    await t.step(`status result c1 ${flags.join(" ")}`, async () => {
      const result = await run(["result", "c1", ...flags, "--dashboard-url", url]);
      assert.equal(result.code, 1, result.stderr.join("\n"));
      assert.deepEqual(result.stdout, []);
      assert.equal(
        result.stderr.join("\n"),
        `status: the dashboard at ${url} answered the command c1 request with an unexpected ` +
          'body at "result.stdout": must be standard padded base64, as stdout_encoding says',
      );
    });
  }
  await t.step("base64 that is base64 is still written byte for byte", async () => {
    await using good = answering(200, {
      ...broken,
      result: { ...broken.result, stdout: "AP8=" },
    });
    const result = await run([
      "result",
      "c1",
      "--stdout",
      "--dashboard-url",
      `http://127.0.0.1:${good.addr.port}`,
    ]);
    assert.equal(result.code, 0, result.stderr.join("\n"));
    assert.deepEqual(result.bytes.flatMap((chunk) => [...chunk]), [0, 255]);
  });
});

Deno.test("status agents add --scopes warns when the dashboard granted more than asked", async (t) => {
  // The agent was added and its token is needed, but a token the operator meant to keep from
  // enqueueing can enqueue: said nowhere before.
  const token = "t".repeat(43);
  await t.step("more than asked: a warning naming them", async () => {
    await using server = answering(201, {
      id: "web-1",
      token,
      scopes: ["commands:wait", "commands:report", "commands:enqueue"],
    });
    const url = `http://127.0.0.1:${server.addr.port}`;
    const result = await run([
      "agents",
      "add",
      "web-1",
      "--scopes",
      "commands:wait,commands:report",
      "--dashboard-url",
      url,
    ]);
    assert.equal(result.code, 0, result.stderr.join("\n"));
    assert.deepEqual(result.stdout, ["AGENT_ID=web-1", `AGENT_TOKEN=${token}`]);
    assert.equal(
      result.stderr.at(-1),
      "warning: the dashboard granted agent web-1 more scopes than --scopes asked for: " +
        'commands:enqueue (asked: commands:wait, commands:report); remove it ("status agents ' +
        'remove web-1") if its token must not have them',
    );
  });
  await t.step("what was asked, or no --scopes: no warning", async () => {
    await using server = answering(201, { id: "web-1", token, scopes: ["commands:wait"] });
    const url = `http://127.0.0.1:${server.addr.port}`;
    for (const scopes of [["--scopes", "commands:wait"], []]) {
      const result = await run(["agents", "add", "web-1", ...scopes, "--dashboard-url", url]);
      assert.equal(result.code, 0, result.stderr.join("\n"));
      assert.equal(result.stderr.filter((line) => line.startsWith("warning")).length, 0);
    }
  });
});
