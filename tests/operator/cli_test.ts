import assert from "node:assert/strict";
import { closedPort, StubDashboard } from "../_stub_dashboard.ts";
import { run } from "../cli/_run.ts";
import { main } from "../../main.ts";
import { memoryIo } from "../../src/cli/io.ts";
import { LIST_LIMIT, RUN_LIST_LIMIT } from "../../src/protocol/mod.ts";
import { checkPolicy, defaultPolicy } from "../../src/exec/mod.ts";
import { startServer } from "../../src/server/mod.ts";
import { parse as shellParse } from "shell-quote";

Deno.test("status enqueue --wait shows progress and exits with the command's code", async (t) => {
  await t.step("success", async () => {
    await using stub = new StubDashboard();
    const out = await run([
      "enqueue",
      "echo hi",
      "--agent",
      "test-agent",
      "--wait",
      "--dashboard-url",
      stub.url,
    ]);
    assert.equal(out.code, 0);
    assert.deepEqual(out.stdout, ["hi"]);
    const id = (stub.seen[0].body as { id: string }).id;
    const progress = out.stderr.map((l) => l.replace(/ \(\d+\.\d s\)$/, ""));
    assert.deepEqual(progress, [
      `${id} queued`,
      `${id} delivered to test-agent`,
      `${id} running`,
      `${id} success, exit code 0`,
    ]);
  });
  const cases: Array<[string, Record<string, unknown> | null, number]> = [
    ["failed", { exit_code: 3, stdout: "", stderr: "boom\n" }, 3],
    ["rejected", null, 126],
    ["timeout", { exit_code: null, signal: "SIGTERM", stdout: "", stderr: "" }, 124],
    ["killed", { exit_code: null, signal: "SIGKILL", stdout: "", stderr: "" }, 137],
    ["lost", null, 1],
    ["interrupted", null, 1],
  ];
  for (const [status, finalResult, expected] of cases) {
    await t.step(`${status} exits ${expected}`, async () => {
      await using stub = new StubDashboard({
        lifecycle: ["queued", status],
        finalResult,
        finalError: status === "rejected" ? "program rm is not allowed" : null,
      });
      const out = await run([
        "enqueue",
        "rm x",
        "--agent",
        "a",
        "--wait",
        "--dashboard-url",
        stub.url,
      ]);
      assert.equal(out.code, expected);
      if (status === "failed") assert.ok(out.stderr.includes("boom"));
      if (status === "rejected") {
        assert.match(out.stderr.join("\n"), /rejected: program rm is not allowed/);
      }
    });
  }
  await t.step("--json prints the final command", async () => {
    await using stub = new StubDashboard();
    const out = await run([
      "enqueue",
      "echo hi",
      "--agent",
      "a",
      "--id",
      "j-1",
      "--timeout",
      "7",
      "--priority",
      "critical",
      "--deployment-hash",
      "dep-1",
      "--wait",
      "--json",
      "--dashboard-url",
      stub.url,
    ]);
    assert.equal(out.code, 0);
    const record = JSON.parse(out.stdout.join("\n"));
    assert.equal(record.id, "j-1");
    assert.equal(record.status, "success");
    assert.deepEqual(stub.seen[0].body, {
      id: "j-1",
      name: "echo hi",
      params: { timeout_secs: 7, priority: "critical", deployment_hash: "dep-1" },
    });
  });
});

Deno.test("status enqueue without --wait prints the id", async () => {
  await using stub = new StubDashboard();
  const out = await run(["enqueue", "echo hi", "--agent", "a", "--dashboard-url", stub.url]);
  assert.equal(out.code, 0);
  // An id of the CLI's own, sent with the command (see the test of a lost answer below).
  const id = (stub.seen[0].body as { id: string }).id;
  assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.deepEqual(out.stdout, [id]);
  assert.equal(
    out.stderr.join("\n"),
    `queued: ${id} for agent a; see it with: status result ${id}`,
  );
});

Deno.test("status enqueue whose answer was lost says the command may be queued, with its id and how to send it again", async (t) => {
  // The dashboard took the enqueue, then its answer was a proxy's 502: it may be queued.
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
  });
  const bodies: Array<{ id?: string }> = [];
  await using proxy = {
    server: Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (request) => {
      const text = await request.text();
      bodies.push(JSON.parse(text));
      await fetch(`${server.url}/api/v1/agent/commands/enqueue`, {
        method: "POST",
        headers: request.headers,
        body: text,
      }).then((answer) => answer.body?.cancel());
      return new Response("bad gateway", { status: 502 });
    }),
    async [Symbol.asyncDispose]() {
      await this.server.shutdown();
    },
  };
  const proxyUrl = `http://127.0.0.1:${proxy.server.addr.port}`;
  for (const given of [[], ["--id", "deploy-7"]]) {
    await t.step(given.length ? "with --id" : "without --id", async () => {
      const out = await run([
        "enqueue",
        "echo hi",
        "--agent",
        "web-1",
        ...given,
        "--dashboard-url",
        proxyUrl,
      ]);
      assert.equal(out.code, 1);
      assert.deepEqual(out.stdout, []);
      const id = bodies.at(-1)!.id!;
      if (given.length) assert.equal(id, "deploy-7");
      const again = given.length ? "the same command" : `the same command with --id ${id}`;
      assert.deepEqual(out.stderr, [
        `status: the dashboard at ${proxyUrl} failed on enqueue for agent web-1: HTTP 502: bad ` +
        `gateway; the command may have been queued as ${id}: see it with status result ${id}, ` +
        `or send ${again} (the same id and body queue nothing twice)`,
      ]);
      // Sent again as it says, it is the one command, not a second.
      const resent = await run([
        "enqueue",
        "echo hi",
        "--agent",
        "web-1",
        "--id",
        id,
        "--dashboard-url",
        server.url,
      ]);
      assert.equal(resent.code, 0);
      assert.deepEqual(resent.stdout, [id]);
      assert.equal(
        resent.stderr.at(-1),
        `already enqueued (same id and body; it is queued): ${id} for agent web-1; see it with: ` +
          `status result ${id}`,
      );
    });
  }
  await t.step(
    "a dashboard that was not reached: nothing was sent, and nothing is said of it",
    async () => {
      const url = `http://127.0.0.1:${closedPort()}`;
      const out = await run(["enqueue", "echo hi", "--agent", "web-1", "--dashboard-url", url]);
      assert.equal(out.code, 1);
      assert.deepEqual(out.stderr, [
        `status: cannot reach the dashboard at ${url}: connection refused (is it running there? ` +
        "set DASHBOARD_URL or --dashboard-url)",
      ]);
    },
  );
});

Deno.test("operator commands refuse bad flag values with exit code 2", async (t) => {
  const url = "http://127.0.0.1:1";
  const bad = [
    ["enqueue", "echo hi", "--agent", "bad agent!", "--dashboard-url", url],
    ["enqueue", "echo hi", "--dashboard-url", url],
    ["enqueue", "", "--agent", "a", "--dashboard-url", url],
    ["enqueue", "echo hi", "--agent", "a", "--timeout", "0", "--dashboard-url", url],
    ["enqueue", "echo hi", "--agent", "a", "--timeout", "1.5", "--dashboard-url", url],
    ["enqueue", "echo hi", "--agent", "a", "--priority", "urgent", "--dashboard-url", url],
    ["enqueue", "echo", "hi", "--agent", "a", "--dashboard-url", url],
    ["enqueue", "echo hi", "--agent", "a", "--dashboard-url", "ftp://x"],
    ["list", "--status", "done", "--dashboard-url", url],
    ["list", "--limit", "-1", "--dashboard-url", url],
    ["list", "--limit", String(LIST_LIMIT.max + 1), "--dashboard-url", url],
    ["run", "list", "--limit", String(RUN_LIST_LIMIT.max + 1), "--dashboard-url", url],
    ["result", "a/b", "--dashboard-url", url],
    ["cancel", "--dashboard-url", url],
  ];
  for (const args of bad) {
    await t.step(args.join(" "), async () => {
      const out = await run(args);
      assert.equal(out.code, 2, out.stderr.join("\n"));
    });
  }
});

Deno.test("operator commands name the dashboard URL when it is unreachable", async () => {
  const url = `http://127.0.0.1:${closedPort()}`;
  for (
    const args of [["enqueue", "echo hi", "--agent", "a"], ["result", "x"], ["list"], [
      "cancel",
      "x",
    ]]
  ) {
    const out = await run([...args, "--dashboard-url", url]);
    assert.equal(out.code, 1);
    assert.match(
      out.stderr.join("\n"),
      new RegExp(`cannot reach the dashboard at ${url}: connection refused`),
    );
  }
});

Deno.test("operator commands refuse a dashboard URL with a user or password, and never print the password", async () => {
  // fetch would send them as Basic credentials in the Authorization header the admin token
  // needs ("Basic …, Bearer …"), and the dashboard would refuse every request.
  const url = `http://ops:hunter22@127.0.0.1:${closedPort()}`;
  for (const args of [["list"], ["health"], ["agents", "add", "web-1"]]) {
    for (const given of [["--dashboard-url", url], ["--env-file", "/dev/null"]]) {
      const out = await run([...args, ...given], { DASHBOARD_URL: url });
      const what = `${args.join(" ")} ${given[0]}`;
      assert.equal(out.code, 2, what);
      const said = [...out.stdout, ...out.stderr].join("\n");
      assert.match(said, /http:\/\/ops:\*\*\*@127\.0\.0\.1:/, what);
      assert.match(said, /a user name or password in it would be sent in the Authorization/, what);
      assert.doesNotMatch(said, /hunter22/, what);
    }
  }
});

Deno.test("status enqueue --wait-timeout of 30 days waits (the runtime's timer fired one beyond 24.8 days at once)", async () => {
  await using stub = new StubDashboard({ adminToken: "admin-token-0123456789" });
  const out = await run([
    "enqueue",
    "echo long",
    "--agent",
    "a",
    "--wait-timeout",
    "2592000",
    "--dashboard-url",
    stub.url,
    "--status-admin-token",
    "admin-token-0123456789",
  ]);
  assert.equal(out.code, 0, out.stderr.join("\n"));
  assert.deepEqual(out.stdout, ["long"]);
});

Deno.test("status result, list and cancel against a stub dashboard", async (t) => {
  await using stub = new StubDashboard({ adminToken: "admin-token-0123456789" });
  const auth = ["--dashboard-url", stub.url, "--status-admin-token", "admin-token-0123456789"];
  for (const id of ["c1", "c2"]) {
    assert.equal(
      (await run(["enqueue", `echo ${id}`, "--agent", "a", "--id", id, ...auth])).code,
      0,
    );
  }
  await t.step("result", async () => {
    const out = await run(["result", "c1", ...auth]);
    assert.equal(out.code, 0);
    assert.ok(out.stdout.includes("id:        c1"));
    assert.ok(out.stdout.includes("status:    queued"));
    const json = await run(["result", "c1", "--json", ...auth]);
    assert.equal(JSON.parse(json.stdout.join("\n")).agent_id, "a");
    const missing = await run(["result", "nope", ...auth]);
    assert.equal(missing.code, 1);
    assert.deepEqual(missing.stderr, ["status: no command nope"]);
  });
  await t.step("list", async () => {
    const out = await run(["list", "--agent", "a", "--limit", "5", ...auth]);
    assert.equal(out.code, 0);
    assert.match(out.stdout[0], /^ID/);
    assert.match(out.stdout[1], /^c2 /);
    assert.match(out.stdout[2], /^c1 /);
    const none = await run(["list", "--agent", "zzz", ...auth]);
    assert.deepEqual(none.stdout, []);
    assert.deepEqual(none.stderr, ["no commands"]);
  });
  await t.step("cancel", async () => {
    assert.deepEqual((await run(["cancel", "c2", ...auth])).stdout, ["cancelled c2"]);
    stub.commands.get("c1")!.status = "running";
    assert.deepEqual((await run(["cancel", "c1", ...auth])).stdout, [
      "cancel requested: the agent will stop c1",
    ]);
    stub.commands.get("c1")!.status = "success";
    const final = await run(["cancel", "c1", ...auth]);
    assert.equal(final.code, 1);
    assert.match(final.stderr.join("\n"), /c1 has already finished/);
  });
  await t.step("a wrong admin token", async () => {
    const out = await run([
      "list",
      "--dashboard-url",
      stub.url,
      "--status-admin-token",
      "x".repeat(20),
    ]);
    assert.equal(out.code, 1);
    assert.match(out.stderr.join("\n"), /^status: the dashboard refused the admin token/);
  });
});

Deno.test("status result --stdout of output that is not text says on stderr how many bytes were dropped", async () => {
  const head = new Uint8Array([0xff, 0x00]);
  const tail = new Uint8Array([0xfe, 0x01]);
  await using stub = new StubDashboard({
    lifecycle: ["success"],
    finalResult: {
      exit_code: 0,
      stdout: btoa(String.fromCharCode(...head, ...tail)),
      stdout_encoding: "base64",
      stdout_truncated_bytes: 1000,
      stderr: "text\n[status: 7 bytes dropped here]\nend\n",
      stderr_truncated_bytes: 7,
    },
  });
  const remote = ["--dashboard-url", stub.url];
  assert.equal(
    (await run(["enqueue", "tar cf - /tmp/x", "--agent", "a", "--id", "b1", ...remote])).code,
    0,
  );
  const out = await run(["result", "b1", "--stdout", ...remote]);
  assert.equal(out.code, 0, out.stderr.join("\n"));
  assert.deepEqual([...out.bytes.flatMap((b) => [...b])], [...head, ...tail]);
  assert.equal(out.stderr.length, 1, out.stderr.join("\n"));
  assert.match(out.stderr[0], /^\(1000 bytes of stdout were dropped from the middle; /);
  // Text has its marker line in the bytes themselves: no note.
  const err = await run(["result", "b1", "--stderr", ...remote]);
  assert.equal(err.code, 0);
  assert.deepEqual(err.stderr, []);
});

Deno.test("status list pages with --before and says how to see older commands", async () => {
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
  });
  for (let i = 1; i <= 5; i++) {
    const out = await run([
      "enqueue",
      `echo ${i}`,
      "--agent",
      "pager",
      "--id",
      `page-${i}`,
      "--dashboard-url",
      server.url,
    ]);
    assert.equal(out.code, 0, out.stderr.join("\n"));
  }
  const list = (...args: string[]) =>
    run(["list", "--agent", "pager", "--limit", "2", ...args, "--dashboard-url", server.url]);
  const seen: string[] = [];
  // Each next page is read by the command line the previous one printed, word for word: it keeps
  // the dashboard given by flag (without it, the default one would be asked) and --json.
  let out = await list("--json");
  for (let page = 0; page < 3; page++) {
    assert.equal(out.code, 0, out.stderr.join("\n"));
    seen.push(...JSON.parse(out.stdout.join("\n")).map((c: { id: string }) => c.id));
    const hint = out.stderr.find((line) => line.startsWith("older commands: "));
    if (page < 2) {
      assert.match(
        hint ?? "",
        new RegExp(
          "^older commands: status list --agent pager --limit 2 --json " +
            `--dashboard-url ${server.url.replace(/\/$/, "")} --before \\d+$`,
        ),
      );
      out = await run(hint!.replace(/^older commands: status /, "").split(" "));
    } else assert.equal(hint, undefined, "the last page names no older one");
  }
  assert.deepEqual(seen, ["page-5", "page-4", "page-3", "page-2", "page-1"]);
  const bad = await list("--before", "x1");
  assert.equal(bad.code, 2);
});

Deno.test("status list's next-page command keeps the settings file that named the dashboard, quoted", async () => {
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
  });
  for (const id of ["cfg-1", "cfg-2"]) {
    const out = await run([
      "enqueue",
      "echo hi",
      "--agent",
      "a",
      "--id",
      id,
      "--dashboard-url",
      server.url,
    ]);
    assert.equal(out.code, 0, out.stderr.join("\n"));
  }
  const dir = await Deno.makeTempDir();
  try {
    // Without --config, the next page would be asked of ./config.json's dashboard, or the default.
    const config = `${dir}/the fleet's config.json`;
    await Deno.writeTextFile(config, JSON.stringify({ dashboard_url: server.url }));
    const first = await run(["list", "--limit", "1", "--config", config]);
    assert.equal(first.code, 0, first.stderr.join("\n"));
    assert.match(first.stdout.join("\n"), /cfg-2/);
    const hint = first.stderr.find((line) => line.startsWith("older commands: "));
    assert.ok(hint, first.stderr.join("\n"));
    const words = shellParse(hint.replace(/^older commands: /, "")) as string[];
    assert.deepEqual(words.slice(0, 6), ["status", "list", "--limit", "1", "--config", config]);
    const next = await run(words.slice(1));
    assert.equal(next.code, 0, next.stderr.join("\n"));
    assert.match(next.stdout.join("\n"), /cfg-1/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("status run --help says a run stops starting commands once more than --max-errors failed", async () => {
  // --max-errors 2 lets a third failure happen before the rest are skipped (the run's own line
  // says "stop after 3 failures"); "stopping after --max-errors failures" said the second.
  const { code, stdout } = await run(["run", "--help"]);
  assert.equal(code, 0);
  const text = stdout.join("").replaceAll(/\s+/g, " ");
  assert.match(text, /once more than --max-errors have failed/);
});

Deno.test("the command lines of the --help examples pass the agent's default policy", async () => {
  // "df -h /" was shown for a run: every agent of it ended rejected (/ is outside /tmp, /var/tmp).
  for (const args of [["enqueue", "--help"], ["run", "start", "--help"]]) {
    const { code, stdout } = await run(args);
    assert.equal(code, 0);
    const help = stdout.join("").replaceAll(/\s+/g, " ");
    const lines = [...help.matchAll(/(?:status (?:enqueue|run start)|e\.g\.) "([^"<]+)"/g)]
      .map((match) => match[1]);
    assert.ok(lines.length > 0, `status ${args.join(" ")} shows examples`);
    for (const line of lines) {
      const checked = checkPolicy(line.split(" "), defaultPolicy(), {
        searchPath: "/usr/local/bin:/usr/bin:/bin",
      });
      assert.ok(checked.ok, `status ${args.join(" ")} shows "${line}": ${JSON.stringify(checked)}`);
    }
  }
});

Deno.test("status run start that reached no dashboard does not say the run may have been created", async () => {
  const url = `http://127.0.0.1:${closedPort()}`;
  const out = await run(["run", "start", "echo hi", "--agent", "web-1", "--dashboard-url", url]);
  assert.equal(out.code, 1);
  assert.deepEqual(out.stderr, [
    `status: cannot reach the dashboard at ${url}: connection refused (is it running there? ` +
    "set DASHBOARD_URL or --dashboard-url)",
  ]);
});

Deno.test("an id that begins with a dash is printed after -- in the command lines the CLI suggests, which then run", async (t) => {
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
  });
  /** Runs `status <words>`, the dashboard's URL given before a `--`, as a user would type it. */
  const status = async (...words: string[]) => {
    const dash = words.includes("--") ? words.indexOf("--") : words.length;
    const flags = ["--dashboard-url", server.url, "--log-level", "error"];
    const io = memoryIo();
    const code = await main([...words.slice(0, dash), ...flags, ...words.slice(dash)], io);
    return { code, stdout: io.stdout, stderr: io.stderr };
  };
  /** Runs the command line a message suggests (`status result -- -x`), split as a shell would. */
  const suggested = (line: string) => status(...line.replace(/^status /, "").split(" "));
  await t.step("a command's", async () => {
    const queued = await status("enqueue", "echo hi", "--agent", "web-1", "--id", "-x");
    assert.equal(queued.code, 0);
    assert.equal(
      queued.stderr.at(-1),
      "queued: -x for agent web-1; see it with: status result -- -x",
    );
    const shown = await suggested("status result -- -x");
    assert.equal(shown.code, 0, shown.stderr.join("\n"));
    assert.match(shown.stdout[0], /^id: +-x$/);
    const waited = await status("result", "--wait-timeout", "1", "--", "-x");
    assert.equal(waited.code, 75);
    assert.match(
      waited.stderr.at(-1)!,
      /\(see it with: status result -- -x, cancel it with: status cancel -- -x\)$/,
    );
    assert.equal((await suggested("status cancel -- -x")).code, 0);
  });
  await t.step("a run's", async () => {
    const started = await status("run", "start", "echo hi", "--agent", "web-1", "--id", "-r");
    assert.equal(started.code, 0, started.stderr.join("\n"));
    const line = /follow it with: (status run show --follow -- -r)$/.exec(started.stderr.at(-1)!);
    assert.ok(line, started.stderr.at(-1));
    const shown = await status("run", "show", "--wait-timeout", "1", "--", "-r");
    assert.equal(shown.code, 75);
    assert.match(
      shown.stderr.at(-1)!,
      /\(see it with: status run show -- -r, cancel it with: status run cancel -- -r\)$/,
    );
    assert.equal((await suggested("status run cancel -- -r")).code, 0);
  });
  await t.step("an agent's", async () => {
    assert.equal((await status("agents", "add", "--", "-a")).code, 0);
    const again = await status("agents", "add", "--", "-a");
    assert.deepEqual(again.stderr, [
      'status: agent -a already exists; print a new token with "status agents rotate -- -a"',
    ]);
    assert.equal((await suggested("status agents rotate -- -a")).code, 0);
  });
});

Deno.test("status enqueue --json whose command cannot be read back says it was queued, with its id", async () => {
  // The enqueue is answered; reading the command back is answered 503.
  await using stub = new StubDashboard({ failFirst: 1 });
  const out = await run([
    "enqueue",
    "echo hi",
    "--agent",
    "a",
    "--json",
    "--dashboard-url",
    stub.url,
  ]);
  assert.equal(out.code, 1);
  assert.deepEqual(out.stdout, []);
  const id = (stub.seen[0].body as { id: string }).id;
  assert.equal(stub.commands.get(id)?.status, "queued");
  assert.equal(out.stderr.length, 1);
  assert.match(
    out.stderr[0],
    new RegExp(
      `^status: ${id} was queued for agent a, but reading it back failed: the dashboard at ` +
        `${RegExp.escape(stub.url)} failed on GET /api/v1/commands/${id}: HTTP 503.* \\(see it ` +
        `with: status result ${id}\\)$`,
    ),
  );
});

Deno.test("a command line the dashboard would refuse is bad usage, refused before anything is sent", async (t) => {
  let sent = 0;
  await using listener = {
    server: Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
      sent++;
      return Response.json({ error: "not expected" }, { status: 500 });
    }),
    async [Symbol.asyncDispose]() {
      await this.server.shutdown();
    },
  };
  const url = `http://127.0.0.1:${listener.server.addr.port}`;
  const cases: Array<[string, string[], string]> = [
    [
      "a line break",
      ["enqueue", "echo hi\nrm -rf /tmp/x", "--agent", "a"],
      "status: command-argument value 'echo hi\\nrm -rf /tmp/x' is invalid for argument " +
      "'command-line': must not contain control characters (NUL, newline, tab, escape, ...)",
    ],
    [
      "a terminal escape, in a run",
      ["run", "start", "echo \u001b[2J", "--agent", "a"],
      "status: command-argument value 'echo \\u001b[2J' is invalid for argument 'command-line': " +
      "must not contain control characters (NUL, newline, tab, escape, ...)",
    ],
    [
      "a bidirectional override",
      ["enqueue", "ls /tmp/\u202efdp.exe", "--agent", "a"],
      "status: command-argument value 'ls /tmp/\\u202efdp.exe' is invalid for argument " +
      "'command-line': must not contain bidirectional formatting characters (U+202E and the " +
      "like), which make a command line show in another order than it runs",
    ],
    [
      "the one reserved id",
      ["enqueue", "echo hi", "--agent", "a", "--id", "wait"],
      "status: option '--id <id>' argument 'wait' is invalid: must not be \"wait\": the " +
      "dashboard refuses it (its agent routes would be read as a wait's)",
    ],
    [
      "the one reserved run id",
      ["run", "start", "echo hi", "--agent", "a", "--id", "new"],
      "status: option '--id <id>' argument 'new' is invalid: must not be \"new\": the " +
      "dashboard refuses it (the console's page of that run would be its start-a-run form)",
    ],
  ];
  for (const [what, args, said] of cases) {
    await t.step(what, async () => {
      const out = await run([...args, "--dashboard-url", url]);
      assert.equal(out.code, 2);
      assert.deepEqual(out.stderr, [said]);
    });
  }
  assert.equal(sent, 0);
});
