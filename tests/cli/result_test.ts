import assert from "node:assert/strict";
import { closeLogging } from "../../src/log/mod.ts";
import { EXIT_WAIT_TIMEOUT, OperatorClient } from "../../src/operator/mod.ts";
import { startServer } from "../../src/server/mod.ts";
import { run } from "./_run.ts";

Deno.test("status result --follow --wait-timeout stops waiting with exit 75; the command goes on", async (t) => {
  // A dev-mode dashboard and a command for an agent that never comes: it stays queued.
  const server = await startServer({ availableDescriptors: "plenty", db: ":memory:", port: 0 });
  try {
    const client = new OperatorClient({ dashboardUrl: server.url });
    const { id } = await client.enqueue({ agentId: "nobody", name: "echo hi" });
    const said = new RegExp(
      `^status: ${id} is still queued after 1 s \\(--wait-timeout\\); stopped waiting, the ` +
        `command goes on \\(see it with: status result ${id}, cancel it with: status cancel ${id}\\)$`,
    );
    const cases: Array<[string, string[]]> = [
      ["printing its output", ["--follow", "--wait-timeout", "1"]],
      ["with --json, --follow implied", ["--json", "--wait-timeout", "1"]],
    ];
    for (const [what, flags] of cases) {
      await t.step(what, async () => {
        const out = await run(["result", id, ...flags, "--dashboard-url", server.url]);
        assert.equal(out.code, EXIT_WAIT_TIMEOUT, out.stderr.join("\n"));
        assert.match(out.stderr.at(-1)!, said);
        assert.deepEqual(out.stdout, []);
        assert.equal((await client.getCommand(id)).status, "queued");
      });
    }
  } finally {
    await server.shutdown();
    closeLogging();
  }
});

Deno.test("status result --wait-timeout with --stdout is refused as --follow is", async () => {
  const out = await run(["result", "cmd-1", "--wait-timeout", "5", "--stdout"], {
    DASHBOARD_URL: "http://127.0.0.1:9",
  });
  assert.equal(out.code, 2);
  assert.deepEqual(out.stderr, ["status: --wait-timeout cannot be combined with --stdout"]);
});

Deno.test("status result --wait-timeout against a dashboard that does not answer says nothing of the command's status", async (t) => {
  // Takes connections and never answers.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const connection of listener) held.push(connection);
  })();
  const url = `http://127.0.0.1:${listener.addr.port}`;
  try {
    for (const flags of [["--follow"], ["--json"]]) {
      await t.step(flags[0], async () => {
        const out = await run([
          "result",
          "cmd-1",
          ...flags,
          "--wait-timeout",
          "1",
          "--dashboard-url",
          url,
        ]);
        assert.equal(out.code, EXIT_WAIT_TIMEOUT);
        assert.deepEqual(out.stdout, []);
        assert.equal(
          out.stderr.at(-1),
          "status: stopped waiting for cmd-1 after 1 s (--wait-timeout): the dashboard has not " +
            "answered about it in that time, so whether it is final is not known (see it with: " +
            "status result cmd-1)",
          "not: cmd-1 is still not final; the command goes on",
        );
      });
    }
  } finally {
    listener.close();
    await accepting;
    for (const connection of held) connection.close();
  }
});

Deno.test("status run show --wait-timeout counts from the start, the first read too, against a dashboard that does not answer", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const connection of listener) held.push(connection);
  })();
  try {
    const out = await run([
      "run",
      "show",
      "r1",
      "--wait-timeout",
      "1",
      "--dashboard-url",
      `http://127.0.0.1:${listener.addr.port}`,
    ]);
    assert.equal(out.code, EXIT_WAIT_TIMEOUT, out.stderr.join("\n"));
    assert.deepEqual(out.stderr, [
      "status: stopped waiting for run r1 after 1 s (--wait-timeout): the dashboard has not " +
      "answered about it in that time, so whether it has ended is not known (see it with: " +
      "status run show r1)",
    ]);
  } finally {
    listener.close();
    await accepting;
    for (const connection of held) connection.close();
  }
});

Deno.test("--wait-timeout counts from the start, the first request too, against a dashboard that does not answer", async (t) => {
  // Takes connections and never answers: the enqueue, the cancel or the run's creation waited
  // for the request timeout (15 s), then failed with exit 1, whatever --wait-timeout said.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const connection of listener) held.push(connection);
  })();
  const url = `http://127.0.0.1:${listener.addr.port}`;
  const cases: Array<[string, string[], string]> = [
    [
      "status enqueue --wait",
      ["enqueue", "echo hi", "--agent", "a1", "--id", "c-7", "--wait"],
      "status: stopped waiting for c-7 after 1 s (--wait-timeout): the dashboard has not " +
      "answered the enqueue in that time, so the command may have been queued as c-7, or not: " +
      "see it with status result c-7, or send the same command (the same id and body queue " +
      "nothing twice)",
    ],
    [
      "status enqueue --wait --json",
      ["enqueue", "echo hi", "--agent", "a1", "--id", "c-7", "--json"],
      "status: stopped waiting for c-7 after 1 s (--wait-timeout): the dashboard has not " +
      "answered the enqueue in that time, so the command may have been queued as c-7, or not: " +
      "see it with status result c-7, or send the same command (the same id and body queue " +
      "nothing twice)",
    ],
    [
      "status cancel --wait",
      ["cancel", "c-7", "--wait"],
      "status: stopped waiting for c-7 after 1 s (--wait-timeout): the dashboard has not " +
      "answered the cancel in that time, so whether it reached c-7 is not known (see it with: " +
      "status result c-7)",
    ],
    [
      "status run start --wait",
      ["run", "start", "echo hi", "--agent", "a1", "--agent", "a2", "--id", "r-7", "--wait"],
      "status: stopped waiting for run r-7 after 1 s (--wait-timeout): the dashboard has not " +
      "answered its creation in that time; the run may have been created as r-7: see it with " +
      "status run show r-7, or send the same command (the same id and body start nothing twice)",
    ],
  ];
  try {
    for (const [what, args, said] of cases) {
      await t.step(what, async () => {
        const out = await run([...args, "--wait-timeout", "1", "--dashboard-url", url]);
        assert.equal(out.code, EXIT_WAIT_TIMEOUT, out.stderr.join("\n"));
        assert.deepEqual(out.stdout, []);
        assert.equal(out.stderr.at(-1), said);
      });
    }
  } finally {
    listener.close();
    await accepting;
    for (const connection of held) connection.close();
  }
});
