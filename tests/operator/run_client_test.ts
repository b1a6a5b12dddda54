import assert from "node:assert/strict";
import { OperatorClient, OperatorError } from "../../src/operator/client.ts";
import {
  cancelRun,
  createRun,
  formatRunSummary,
  formatRunTable,
  getRun,
  listRuns,
  runEnded,
  waitForRun,
} from "../../src/operator/run_client.ts";
import type { RunAgentView, RunView } from "../../src/protocol/runs.ts";
import { startServer } from "../../src/server/mod.ts";

function agent(id: string, part: Partial<RunAgentView>): RunAgentView {
  return {
    agent_id: id,
    command_id: `r1.${id}`,
    state: "pending",
    offline_at_creation: false,
    exit_code: null,
    duration_secs: null,
    started_at: null,
    run_started_at: null,
    run_completed_at: null,
    first_line: null,
    error: null,
    ...part,
  };
}

const run: RunView = {
  id: "r1",
  name: "uname -a",
  params: {},
  target: { labels: { role: "web" } },
  max_concurrency_spec: "50%",
  max_concurrency: 2,
  max_errors: null,
  status: "failed",
  cancel_requested: false,
  created_at: "2026-01-12T10:00:00Z",
  completed_at: "2026-01-12T10:00:05Z",
  totals: { total: 4, success: 1, failed: 1, skipped: 1, lost: 1, failed_total: 2, active: 0 },
  agents: [
    agent("web-01", { state: "success", exit_code: 0, duration_secs: 0.04, first_line: "Linux" }),
    agent("web-02", { state: "failed", exit_code: 2, duration_secs: 1.25, first_line: "a  b\tc" }),
    agent("web-03", { state: "skipped" }),
    agent("web-04", { state: "lost", offline_at_creation: true, error: "the agent never came" }),
  ],
};

Deno.test("formatRunTable shows each agent's state, exit code, duration and first line", () => {
  assert.deepEqual(formatRunTable(run, 12), [
    "AGENT   STATUS          EXIT  DURATION  OUTPUT",
    "web-01  success         0     0.0 s     Linux",
    "web-02  failed          2     1.3 s     a b c",
    "web-03  skipped",
    "web-04  lost (offline)                  the agent n…",
  ]);
});

Deno.test("formatRunSummary counts the states, sorted, leaving out the aggregates", () => {
  assert.equal(
    formatRunSummary(run),
    "run r1 failed: 1 failed, 1 lost, 1 skipped, 1 success (of 4)",
  );
  assert.equal(
    formatRunSummary({ id: "r2", status: "running", totals: { total: 0 } }),
    "run r2 running: no agents (of 0)",
  );
});

Deno.test("runEnded is true for the final run statuses only", () => {
  assert.equal(runEnded({ status: "running" }), false);
  assert.equal(runEnded({ status: "cancelling" }), false);
  for (const status of ["succeeded", "failed", "cancelled"] as const) {
    assert.equal(runEnded({ status }), true, status);
  }
});

Deno.test("waitForRun rides out a dashboard restart when the wall clock steps forward meanwhile", async () => {
  // The outage was measured on Date.now: a clock stepped two minutes ahead (NTP) during a one
  // second restart looked like an outage of two minutes, and `status run start --follow` gave up.
  const realNow = Date.now;
  let calls = 0;
  const fakeFetch: typeof fetch = () => {
    if (++calls <= 2) {
      if (calls === 2) {
        const stepped = realNow() + 120_000;
        Date.now = () => stepped;
      }
      return Promise.reject(new TypeError("error sending request: connection refused"));
    }
    return Promise.resolve(Response.json(run));
  };
  try {
    const client = new OperatorClient({ dashboardUrl: "http://127.0.0.1:9", fetch: fakeFetch });
    const ended = await waitForRun(client, "r1", { intervalMs: 1, maxOutageMs: 60_000 });
    assert.equal(ended.status, "failed");
    assert.equal(calls, 3);
  } finally {
    Date.now = realNow;
  }
});

Deno.test("waitForRun waits four times as long as a slow read of the run took, at most 10 s", async () => {
  // A run of thousands of agents took a second to read; `--follow` read it again half a second
  // later, keeping the dashboard busy most of the time with one follower.
  let now = 0;
  const readMs = [1000, 50, 5000, 1000];
  const pauses: number[] = [];
  let reads = 0;
  const fakeFetch: typeof fetch = () => {
    now += readMs[reads++];
    return Promise.resolve(
      Response.json(reads < readMs.length ? { ...run, status: "running" } : run),
    );
  };
  const clock = {
    now: () => now,
    sleep: (ms: number) => {
      pauses.push(ms);
      now += ms;
      return Promise.resolve();
    },
  };
  const client = new OperatorClient({ dashboardUrl: "http://127.0.0.1:9", fetch: fakeFetch });
  const options = { intervalMs: 500, clock };
  const ended = await waitForRun(client, "r1", options);
  assert.equal(ended.status, "failed");
  assert.deepEqual(pauses, [4000, 500, 10_000]);
});

const ADMIN = "admin-token-0123456789abcdef";

/** A dashboard outside dev mode with agents web-1 and web-2, and a client holding its token. */
async function dashboard() {
  const server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
    adminToken: ADMIN,
  });
  const client = new OperatorClient({ dashboardUrl: server.url, adminToken: ADMIN });
  for (const id of ["web-1", "web-2"]) await client.addAgent(id);
  return { server, client, [Symbol.asyncDispose]: () => server.shutdown() };
}

/** The error `promise` rejects with, which must be an OperatorError. */
async function failure(promise: Promise<unknown>): Promise<OperatorError> {
  const error = await promise.then(() => assert.fail("no error"), (e) => e);
  assert.ok(error instanceof OperatorError, String(error));
  return error;
}

Deno.test("createRun, getRun, listRuns and cancelRun against a dashboard", async () => {
  await using d = await dashboard();
  const request = { id: "r1", name: "uname -a", target: { agents: ["web-2", "web-1"] } };
  const created = await createRun(d.client, request);
  assert.equal(created.id, "r1");
  assert.equal(created.status, "running");
  assert.deepEqual(created.agents.map((a) => a.agent_id), ["web-1", "web-2"]);
  assert.deepEqual(created.offline, ["web-1", "web-2"]);
  assert.equal(created.duplicate, undefined);
  assert.equal((await createRun(d.client, request)).duplicate, true, "the same id and body");

  const read = await getRun(d.client, "r1");
  assert.equal(read.name, "uname -a");
  assert.equal(read.totals.total, 2);
  const [listed] = await listRuns(d.client, { open: true, limit: 5 });
  assert.equal(listed.id, "r1");
  assert.equal("agents" in listed, false);

  const cancelled = await cancelRun(d.client, "r1");
  assert.equal(cancelled.status, "cancelled");
  assert.ok(runEnded(cancelled));
  assert.deepEqual(await listRuns(d.client, { open: true }), []);
  assert.equal((await waitForRun(d.client, "r1")).status, "cancelled", "an ended run at once");
});

Deno.test("the run calls fail with the dashboard's sentence and the client's kinds", async (t) => {
  await using d = await dashboard();
  await createRun(d.client, { id: "r1", name: "uptime", target: { agents: ["web-1"] } });

  await t.step("a target naming an unknown agent is not_found", async () => {
    const error = await failure(
      createRun(d.client, { name: "uptime", target: { agents: ["web-1", "web-9"] } }),
    );
    assert.equal(error.kind, "not_found");
    assert.equal(error.status, 404);
    assert.equal(error.message, "agents not registered: web-9");
  });
  await t.step("an unknown run is not_found, for a read, a wait and a cancel", async () => {
    for (
      const call of [
        () => getRun(d.client, "r9"),
        () => waitForRun(d.client, "r9"),
        () => cancelRun(d.client, "r9"),
      ]
    ) {
      const error = await failure(call());
      assert.equal(error.kind, "not_found");
      assert.equal(error.message, "run r9 does not exist");
    }
  });
  await t.step("a run id taken by another body is a conflict", async () => {
    const error = await failure(
      createRun(d.client, { id: "r1", name: "uptime", target: { agents: ["web-2"] } }),
    );
    assert.equal(error.kind, "conflict");
    assert.match(error.message, /run r1 already exists with a different body; use a new id/);
  });
  await t.step("a cancel of an ended run is a conflict that says how it ended", async () => {
    await cancelRun(d.client, "r1");
    const error = await failure(cancelRun(d.client, "r1"));
    assert.equal(error.kind, "conflict");
    assert.equal(error.message, "run r1 has already ended (cancelled); nothing to cancel");
  });
  await t.step("without the admin token every call is refused as auth", async () => {
    const anonymous = new OperatorClient({ dashboardUrl: d.server.url });
    for (
      const call of [
        () => createRun(anonymous, { name: "uptime", target: { agents: ["web-1"] } }),
        () => getRun(anonymous, "r1"),
        () => listRuns(anonymous),
        () => cancelRun(anonymous, "r1"),
        () => waitForRun(anonymous, "r1"),
      ]
    ) {
      const error = await failure(call());
      assert.equal(error.kind, "auth");
      assert.equal(error.status, 401);
    }
  });
});

Deno.test("the run calls refuse arguments of the wrong kind, sending nothing", async (t) => {
  let sent = 0;
  const client = new OperatorClient({
    dashboardUrl: "http://dashboard.test",
    fetch: () => {
      sent++;
      return Promise.resolve(Response.json(run));
    },
  });
  const rule = "1–64 characters of A-Z a-z 0-9 . _ -, not only dots";
  await t.step("a client that is not an OperatorClient", async () => {
    const fake = { dashboardUrl: "http://dashboard.test" } as never;
    await assert.rejects(() => createRun(fake, { name: "x", target: { agents: ["a"] } }), {
      name: "TypeError",
      message:
        `createRun's client must be an OperatorClient, got {"dashboardUrl":"http://dashboard.test"}`,
    });
    for (const [name, call] of [["getRun", getRun], ["cancelRun", cancelRun]] as const) {
      await assert.rejects(() => call(fake, "r1"), {
        name: "TypeError",
        message:
          `${name}'s client must be an OperatorClient, got {"dashboardUrl":"http://dashboard.test"}`,
      });
    }
    await assert.rejects(() => listRuns(undefined as never), {
      name: "TypeError",
      message: "listRuns's client must be an OperatorClient, got undefined",
    });
  });
  // ".." would reach another route (/api/v1/runs/.. is /api/v1/).
  for (const [id, shown] of [["..", '".."'], ["a/b", '"a/b"'], ["", '""'], [7, "7"]] as const) {
    await t.step(`run id ${shown}`, async () => {
      for (
        const call of [
          () => getRun(client, id as string),
          () => cancelRun(client, id as string),
          () => waitForRun(client, id as string),
        ]
      ) {
        await assert.rejects(call, {
          name: "TypeError",
          message: `run id must be ${rule}, got ${shown}`,
        });
      }
    });
  }
  await t.step("a request or options that are not objects", async () => {
    await assert.rejects(() => createRun(client, null as never), {
      name: "TypeError",
      message: "createRun's request must be an object, got null",
    });
    await assert.rejects(() => listRuns(client, "open" as never), {
      name: "TypeError",
      message: `listRuns's options must be an object, got "open"`,
    });
    await assert.rejects(() => waitForRun(client, "r1", null as never), {
      name: "TypeError",
      message: "waitForRun's options must be an object, got null",
    });
  });
  await t.step(
    "waitForRun's intervals out of range (NaN read again at once, in a loop)",
    async () => {
      for (const intervalMs of [NaN, 0, Infinity]) {
        await assert.rejects(() => waitForRun(client, "r1", { intervalMs }), {
          name: "RangeError",
          message:
            `intervalMs must be a number of milliseconds from 1 to 2147483647, got ${intervalMs}`,
        });
      }
      await assert.rejects(() => waitForRun(client, "r1", { maxOutageMs: -1 }), {
        name: "RangeError",
        message: "maxOutageMs must be a number of milliseconds from 0 to 2147483647, got -1",
      });
    },
  );
  assert.equal(sent, 0);
});
