import assert from "node:assert/strict";
import { run } from "./_run.ts";
import { PERMS, spawnCli } from "../_cli.ts";
import { until } from "../_until.ts";

// Every command that waits for a command or a run takes one --wait-timeout: the same help, the
// same values, the same refusal.
const WAITING: Array<[string[], string[], string]> = [
  [["enqueue"], ["echo hi", "--agent", "a"], "--wait"],
  [["run", "start"], ["echo hi", "--agent", "a"], "--wait"],
  [["run", "show"], ["run-1"], "--follow"],
  [["result"], ["cmd-1"], "--follow"],
  [["cancel"], ["cmd-1"], "--wait"],
];
// A dashboard that is not there: a refused value is bad usage (2), said before asking it.
const env = { DASHBOARD_URL: "http://127.0.0.1:9" };

Deno.test("every command that waits takes --wait-timeout with the same meaning and values", async (t) => {
  for (const [command, args, implied] of WAITING) {
    await t.step(`status ${command.join(" ")}`, async (t) => {
      const help = (await run([...command, "--help"], env)).stdout.join("\n").replace(/\s+/g, " ");
      assert.match(
        help,
        new RegExp(
          `--wait-timeout <secs> with ${implied} \\(implied\\): stop waiting after this many ` +
            `seconds and exit 75 \\((the (command|run) goes on|the agent still stops the command)\\)`,
        ),
      );
      for (const value of ["0", "-1", "1.5", "abc", "2592001"]) {
        await t.step(value, async () => {
          const out = await run([...command, ...args, `--wait-timeout=${value}`], env);
          assert.equal(out.code, 2);
          assert.deepEqual(out.stderr, [
            `status: option '--wait-timeout <secs>' argument '${value}' is invalid: must be a ` +
            "whole number from 1 to 2592000",
          ]);
        });
      }
    });
  }
});

Deno.test("Ctrl-C before the dashboard answers the enqueue, cancel, run or run cancel says what may have happened", async (t) => {
  // Ctrl-C during the first request ended the CLI without a word (later ones said "the command
  // goes on"), though the enqueue, cancel or run's creation may have reached the dashboard.
  const { promise: release, resolve } = Promise.withResolvers<void>();
  let received = 0;
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async () => {
    received++;
    await release;
    return Response.json({ error: "too late" }, { status: 503 });
  });
  const url = `http://127.0.0.1:${server.addr.port}`;
  const cases: Array<[string, string[], RegExp]> = [
    [
      "status enqueue --wait",
      ["enqueue", "echo hi", "--agent", "a", "--id", "int-1", "--wait"],
      /^stopped before the dashboard answered; the command may have been queued as int-1, or not: see it with status result int-1, or send the same command \(the same id and body queue nothing twice\)$/,
    ],
    [
      "status enqueue without --id",
      ["enqueue", "echo hi", "--agent", "a"],
      /^stopped before the dashboard answered; the command may have been queued as [0-9a-f-]{36}, or not: see it with status result [0-9a-f-]{36}, or send the same command with --id [0-9a-f-]{36} /,
    ],
    [
      "status cancel --wait",
      ["cancel", "int-2", "--wait"],
      /^stopped before the dashboard answered; whether the cancel reached int-2 is not known \(see it with: status result int-2\)$/,
    ],
    [
      "status run start --wait",
      ["run", "start", "echo hi", "--agent", "a", "--id", "run-1", "--wait"],
      /^stopped before the dashboard answered; the run may have been created as run-1: see it with status run show run-1, or send the same command /,
    ],
    [
      // It ended without a word, though the cancel may have reached the dashboard.
      "status run cancel",
      ["run", "cancel", "run-2"],
      /^stopped before the dashboard answered; whether the cancel reached run run-2 is not known \(see it with: status run show run-2\)$/,
    ],
  ];
  try {
    for (const [what, args, said] of cases) {
      await t.step(what, async () => {
        const before = received;
        await using proc = spawnCli([...args, "--dashboard-url", url], { perms: PERMS.operator });
        await until(() => received > before, "the request to reach the dashboard", 30_000);
        proc.kill("SIGINT");
        const status = await proc.exited(30_000);
        assert.equal(status.code, 130, proc.stderr.text);
        assert.match(proc.stderr.lines.at(-1) ?? "", said);
      });
    }
  } finally {
    resolve();
  }
});

Deno.test("Ctrl-C while status enqueue reads the queued command back says it was queued", async (t) => {
  // `status enqueue --json` ended without a word when interrupted after the enqueue was answered.
  const { promise: release, resolve } = Promise.withResolvers<void>();
  let reads = 0;
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      if (request.method === "POST") {
        const { id } = await request.json();
        return Response.json({ queued: true, id, duplicate: id === "int-dup" }, { status: 202 });
      }
      reads++;
      await release;
      return Response.json({ error: "too late" }, { status: 503 });
    },
  );
  const url = `http://127.0.0.1:${server.addr.port}`;
  const cases: Array<[string, string[], RegExp]> = [
    [
      "status enqueue --json",
      ["enqueue", "echo hi", "--agent", "a", "--id", "int-9", "--json"],
      /^stopped while reading it back; int-9 was queued for agent a \(see it with: status result int-9\)$/,
    ],
    [
      "status enqueue of a duplicate",
      ["enqueue", "echo hi", "--agent", "a", "--id", "int-dup"],
      /^already enqueued \(same id and body\): int-dup for agent a; see it with: status result int-dup$/,
    ],
  ];
  try {
    for (const [what, args, said] of cases) {
      await t.step(what, async () => {
        const before = reads;
        await using proc = spawnCli([...args, "--dashboard-url", url], { perms: PERMS.operator });
        await until(() => reads > before, "the read-back to reach the dashboard", 30_000);
        proc.kill("SIGINT");
        const status = await proc.exited(30_000);
        assert.equal(status.code, 130, proc.stderr.text);
        assert.match(proc.stderr.lines.at(-1) ?? "", said);
      });
    }
  } finally {
    resolve();
  }
});
