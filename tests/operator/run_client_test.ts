import assert from "node:assert/strict";
import { OperatorClient } from "../../src/operator/client.ts";
import {
  formatRunSummary,
  formatRunTable,
  runEnded,
  waitForRun,
} from "../../src/operator/run_client.ts";
import type { RunAgentView, RunView } from "../../src/protocol/runs.ts";

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
