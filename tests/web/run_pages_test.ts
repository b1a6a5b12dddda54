/**
 * The console's run pages in process (dev mode, a fake clock): the list, one run with a row per
 * agent and its labels on the agents page, the cancel form and its CSRF check, a missing run.
 */
import assert from "node:assert/strict";
import { makeDashboard } from "../server/_helpers.ts";
import { checkPolicy, defaultPolicy } from "../../src/exec/mod.ts";
import {
  RUN_AGENTS_PAGE_SIZE,
  RunPage,
  RUNS_SHOWN,
  TARGET_AGENTS_SHOWN,
} from "../../src/server/web/run_pages.tsx";

Deno.test("console: runs list, run page, cancel with CSRF; labels on the agents page", async () => {
  await using t = await makeDashboard({ devMode: true, runSweepMs: 0 });
  const origin = "http://localhost";
  for (const id of ["web-1", "web-2"]) {
    await t.store.ensureAgent(id, t.clock.now());
    await t.store.recordHeartbeat(id, {
      version: "1",
      deploymentHash: "prod",
      instanceId: null,
      sample: null,
      labels: { role: "web", zone: "eu" },
      now: t.clock.now(),
    });
  }
  const post = (id: string) =>
    t.dashboard.app.request(`${origin}/api/v1/runs`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        id,
        name: "echo <b>hi</b>",
        target: { labels: { role: "web" } },
        max_concurrency: 1,
      }),
    });
  const refused = await post("run-<1>");
  assert.equal(refused.status, 400, "a run id is checked");
  await refused.body?.cancel();
  const ok = await post("run-1");
  assert.equal(ok.status, 201, await ok.text());

  const agents = await (await t.dashboard.app.request(`${origin}/`)).text();
  assert.match(agents, /role=web,zone=eu/);

  const list = await (await t.dashboard.app.request(`${origin}/runs`)).text();
  assert.match(list, /href="\/runs\/run-1"/);
  assert.match(list, /labels role=web/);
  assert.match(list, /echo &lt;b&gt;hi&lt;\/b&gt;/, "the command line is escaped");

  const response = await t.dashboard.app.request(`${origin}/runs/run-1`);
  const cookie = response.headers.getSetCookie().map((line) => line.split(";")[0]).join("; ");
  const page = await response.text();
  assert.match(page, /data-refresh-secs="2"/, "an open run refreshes itself");
  assert.match(page, /data-agent="web-1" data-state="queued"/);
  assert.match(page, /data-agent="web-2" data-state="pending"/);
  assert.match(page, /at most 1 at once/);
  const csrf = /name="csrf" value="([^"]+)"/.exec(page)?.[1];
  assert.ok(csrf, "the page has a cancel form");

  const form = (token: string) => ({
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", Cookie: cookie },
    body: new URLSearchParams({ csrf: token }).toString(),
  });
  const forged = await t.dashboard.app.request(`${origin}/runs/run-1/cancel`, form("wrong"));
  assert.equal(forged.status, 403);
  await forged.body?.cancel();
  assert.equal((await t.store.getRun("run-1"))?.cancelRequested, false, "nothing changed");

  const cancel = await t.dashboard.app.request(`${origin}/runs/run-1/cancel`, form(csrf));
  assert.equal(cancel.status, 303);
  assert.equal(cancel.headers.get("Location"), "/runs/run-1?done=cancelled");
  const after = await (await t.dashboard.app.request(`${origin}/runs/run-1?done=cancelled`))
    .text();
  assert.match(after, /Cancelled: nothing more starts/);
  assert.match(after, /data-status="cancelled"/);
  assert.doesNotMatch(after, /data-refresh-secs/);
  assert.match(after, /data-agent="web-2" data-state="skipped"/);
  // The form sent again (a double click): said to be cancelled, not to have ended first.
  const twice = await t.dashboard.app.request(`${origin}/runs/run-1/cancel`, form(csrf));
  assert.equal(twice.status, 303);
  assert.equal(twice.headers.get("Location"), "/runs/run-1?done=already");
  const again = await (await t.dashboard.app.request(`${origin}/runs/run-1?done=already`)).text();
  assert.match(again, /It is cancelled: nothing more starts\./);

  const missing = await t.dashboard.app.request(`${origin}/runs/nope`);
  assert.equal(missing.status, 404);
  assert.match(await missing.text(), /Run nope does not exist/);
});

Deno.test("console: the start-a-run form checks its fields and starts a run", async () => {
  await using t = await makeDashboard({ devMode: true, runSweepMs: 0 });
  const origin = "http://localhost";
  await t.store.ensureAgent("web-1", t.clock.now());
  await t.store.recordHeartbeat("web-1", {
    version: "1",
    deploymentHash: "prod",
    instanceId: null,
    sample: null,
    labels: { role: "web", constructor: "x" },
    now: t.clock.now(),
  });
  const formPage = await t.dashboard.app.request(`${origin}/runs/new`);
  const cookie = formPage.headers.getSetCookie().map((line) => line.split(";")[0]).join("; ");
  const csrf = /name="csrf" value="([^"]+)"/.exec(await formPage.text())?.[1] ?? "";
  const submit = (fields: Record<string, string>) =>
    t.dashboard.app.request(`${origin}/runs/new`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded", Cookie: cookie },
      body: new URLSearchParams({ csrf, ...fields }).toString(),
    });
  const cases: Array<[Record<string, string>, number, RegExp]> = [
    [{ name: "uname" }, 400, /Name the agents, a deployment or labels/],
    [{ name: "uname", labels: "role" }, 400, /Labels: label &quot;role&quot; is not key=value/],
    [{ name: "uname", labels: "role=web", concurrency: "0" }, 400, /At most at once/],
    [{ name: "uname", labels: "role=web", errors: "x" }, 400, /Failures allowed must be/],
    [{ name: "uname", labels: "role=db" }, 404, /Not started: no agent matches the target/],
  ];
  for (const [fields, status, message] of cases) {
    const response = await submit(fields);
    const text = await response.text();
    assert.equal(response.status, status, JSON.stringify(fields));
    assert.match(text, message);
    assert.match(text, /value="uname"/, "the form keeps what was typed");
  }
  assert.equal((await t.store.listRuns({ limit: 10 })).length, 0, "nothing was started");
  const started = await submit({
    name: "uname",
    labels: "role=web",
    deployment: "prod",
    concurrency: "50%",
    errors: "0",
    timeout: "30",
    ttl: "60",
  });
  assert.equal(started.status, 303);
  const [run] = await t.store.listRuns({ limit: 10 });
  assert.equal(started.headers.get("Location"), `/runs/${run.id}`);
  assert.deepEqual(run.target, { deployment: "prod", labels: { role: "web" } });
  assert.equal(run.maxConcurrencySpec, "50%");
  assert.equal(run.maxErrors, 0);
  assert.deepEqual(run.params, { timeout_secs: 30, ttl_secs: 60, deployment_hash: "prod" });
  // A label key that every object has a property of (constructor) is a label like any other.
  const byConstructor = await submit({ name: "uname", labels: "constructor=x" });
  const text = await byConstructor.text();
  assert.equal(byConstructor.status, 303, text);
  const runs = await t.store.listRuns({ limit: 10 });
  assert.equal(
    byConstructor.headers.get("Location"),
    `/runs/${runs.find((r) => r.id !== run.id)?.id}`,
  );
  assert.ok(runs.some((r) => r.target.labels?.["constructor"] === "x"), "started by that label");
});

Deno.test("console: a refused field of the start-a-run form is named cut when it is tens of KB", async (t) => {
  await using d = await makeDashboard({ devMode: true, runSweepMs: 0 });
  const origin = "http://localhost";
  const formPage = await d.dashboard.app.request(`${origin}/runs/new`);
  const cookie = formPage.headers.getSetCookie().map((line) => line.split(";")[0]).join("; ");
  const csrf = /name="csrf" value="([^"]+)"/.exec(await formPage.text())?.[1] ?? "";
  const long = "7".repeat(50_000);
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ["timeout", { labels: "role=web", timeout: long }, /Timeout must be[^<]*/],
    ["failures allowed", { labels: "role=web", errors: long }, /Failures allowed must be[^<]*/],
    ["at most at once", { labels: "role=web", concurrency: long }, /At most at once:[^<]*/],
    ["labels", { labels: long }, /Labels:[^<]*/],
  ];
  for (const [what, fields, message] of cases) {
    await t.step(what, async () => {
      const response = await d.dashboard.app.request(`${origin}/runs/new`, {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded", Cookie: cookie },
        body: new URLSearchParams({ csrf, name: "uname", ...fields }).toString(),
      });
      assert.equal(response.status, 400);
      const said = message.exec(await response.text())?.[0] ?? "";
      assert.ok(said.includes("… (50000 characters)"), said.slice(0, 300));
      assert.ok(said.length < 600, `the message has ${said.length} characters`);
    });
  }
  assert.equal((await d.store.listRuns({ limit: 10 })).length, 0, "nothing was started");
});

Deno.test("console: a start-a-run form sent twice (a double click) starts one run", async () => {
  await using t = await makeDashboard({ devMode: true, runSweepMs: 0 });
  const origin = "http://localhost";
  await t.store.ensureAgent("web-1", t.clock.now());
  const formPage = await t.dashboard.app.request(`${origin}/runs/new`);
  const cookie = formPage.headers.getSetCookie().map((line) => line.split(";")[0]).join("; ");
  const text = await formPage.text();
  const csrf = /name="csrf" value="([^"]+)"/.exec(text)?.[1] ?? "";
  const id = /name="id" value="([^"]+)"/.exec(text)?.[1];
  assert.ok(id, "the form carries the id of the run it starts");
  const fields = { csrf, id, name: "uname", agents: "web-1" };
  const submit = () =>
    t.dashboard.app.request(`${origin}/runs/new`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded", Cookie: cookie },
      body: new URLSearchParams(fields).toString(),
    });
  const [first, second] = await Promise.all([submit(), submit()]);
  assert.equal(first.status, 303);
  assert.equal(second.status, 303);
  assert.equal(first.headers.get("Location"), `/runs/${id}`);
  assert.equal(second.headers.get("Location"), `/runs/${id}`);
  assert.equal((await t.store.listRuns({ limit: 10 })).length, 1, "one run");
  // The same form sent again with other values: refused with a sentence, and a new id to send.
  const edited = await t.dashboard.app.request(`${origin}/runs/new`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", Cookie: cookie },
    body: new URLSearchParams({ ...fields, name: "uptime" }).toString(),
  });
  assert.equal(edited.status, 409);
  const page = await edited.text();
  assert.match(page, /Not started: this form was sent before with other values/);
  assert.match(page, /value="uptime"/);
  const again = /name="id" value="([^"]+)"/.exec(page)?.[1];
  assert.ok(again && again !== id, "a new id");
  assert.equal((await t.store.listRuns({ limit: 10 })).length, 1);
});

Deno.test("console: a run's row shows its first line of output without terminal colour codes and its duration as command pages do", () => {
  const agent = {
    agent_id: "web-1",
    command_id: "r1:web-1",
    state: "success" as const,
    offline_at_creation: false,
    exit_code: 0,
    duration_secs: 125,
    started_at: "2026-01-12T10:00:00.000Z",
    run_started_at: "2026-01-12T10:00:00.000Z",
    run_completed_at: "2026-01-12T10:00:01.000Z",
    first_line: "\x1b[1;31mred\x1b[0m <b>first</b>",
    error: null,
  };
  const page = RunPage({
    devMode: true,
    run: {
      id: "r1",
      name: "ls --color",
      params: {},
      target: { agents: ["web-1"] },
      max_concurrency_spec: null,
      max_concurrency: 1,
      max_errors: null,
      status: "succeeded",
      cancel_requested: false,
      created_at: "2026-01-12T10:00:00.000Z",
      completed_at: "2026-01-12T10:00:01.000Z",
      totals: { success: 1, total: 1 },
      agents: [agent],
    },
  }).toString();
  assert.match(page, /<td data-label="Output" class="text">red &lt;b&gt;first&lt;\/b&gt;<\/td>/);
  assert.ok(!page.includes("\x1b"), "no escape character is left");
  // Its duration as on the command pages.
  assert.match(page, /<td data-label="Duration">2 min 5 s<\/td>/);
});

Deno.test("console: a runs list longer than the page says that older runs are not listed", async () => {
  await using d = await makeDashboard({ devMode: true, runSweepMs: 0 });
  const origin = "http://localhost";
  await d.store.ensureAgent("a1", d.clock.now());
  const start = async (id: string) => {
    const created = await d.dashboard.app.request(`${origin}/api/v1/runs`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ id, name: "echo hi", target: { agents: ["a1"] } }),
    });
    assert.equal(created.status, 201, await created.text());
    d.clock.advance(1000);
  };
  const listed = async () => {
    const text = await (await d.dashboard.app.request(`${origin}/runs`)).text();
    return { text, rows: [...text.matchAll(/<tr data-run="([^"]+)"/g)].map((m) => m[1]) };
  };
  for (let i = 0; i < RUNS_SHOWN; i++) await start(`r${String(i).padStart(3, "0")}`);
  const full = await listed();
  assert.equal(full.rows.length, RUNS_SHOWN);
  assert.doesNotMatch(full.text, /runs-more/, "every run is listed");
  await start("r-newest");
  const over = await listed();
  assert.equal(over.rows.length, RUNS_SHOWN);
  assert.equal(over.rows[0], "r-newest");
  assert.ok(!over.rows.includes("r000"), "the oldest is not listed");
  assert.match(over.text, /Only the newest 100 runs are listed/);
});

Deno.test("console: a run of many agents shows them a page at a time, and names the first few of its target", async (t) => {
  await using d = await makeDashboard({ devMode: true, runSweepMs: 0 });
  const origin = "http://localhost";
  const count = RUN_AGENTS_PAGE_SIZE * 2 + RUN_AGENTS_PAGE_SIZE / 2;
  const ids = Array.from({ length: count }, (_, i) => `b${String(i).padStart(4, "0")}`);
  for (const id of ids) await d.store.ensureAgent(id, d.clock.now());
  const created = await d.dashboard.app.request(`${origin}/api/v1/runs`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ id: "big", name: "echo hi", target: { agents: ids } }),
  });
  assert.equal(created.status, 201, await created.text());
  const get = (path: string) => d.dashboard.app.request(`${origin}${path}`);
  const rows = (text: string) => [...text.matchAll(/<tr data-agent="([^"]+)"/g)].map((m) => m[1]);
  const more = `agents ${ids.slice(0, TARGET_AGENTS_SHOWN).join(", ")} and ${
    count - TARGET_AGENTS_SHOWN
  } more`;

  await t.step("every agent once, in the run's order, one page at a time", async () => {
    const seen: string[] = [];
    const ranges: string[] = [];
    let path: string | undefined = "/runs/big";
    for (let page = 0; path && page < 10; page++) {
      const text: string = await (await get(path)).text();
      const shown = rows(text);
      assert.ok(shown.length <= RUN_AGENTS_PAGE_SIZE, `${path} shows ${shown.length} agents`);
      assert.ok(text.includes(more), `${path} names the first agents of the target`);
      assert.match(text, /data-refresh-secs="2"/, `${path} refreshes itself`);
      seen.push(...shown);
      ranges.push(/<span>(Agents [^<]*)<\/span>/.exec(text)?.[1] ?? "");
      path = text.match(/href="(\/runs\/big\?page=\d+)" rel="next">Next</)?.[1];
    }
    assert.deepEqual(seen, ids);
    assert.deepEqual(ranges, [
      `Agents 1–100 of ${count}`,
      `Agents 101–200 of ${count}`,
      `Agents 201–${count} of ${count}`,
    ]);
  });

  await t.step("the runs list names the first agents of the target, not all", async () => {
    const text = await (await get("/runs")).text();
    assert.ok(text.includes(more));
    assert.ok(!text.includes(ids.at(-1)!), "the last agent is counted, not named");
  });

  await t.step("page given twice: 400, showing neither", async () => {
    const response = await get("/runs/big?page=2&page=1");
    assert.equal(response.status, 400);
    const text = await response.text();
    assert.match(text, /The address gives page 2 times: this page shows one page at a time\./);
    assert.match(text, /href="\/runs\/big">See the run</);
    assert.deepEqual(rows(text), []);
  });

  for (const page of ["4", "0", "abc", "1e1"]) {
    await t.step(`page ${page}: 400, naming the pages there are`, async () => {
      const response = await get(`/runs/big?page=${page}`);
      assert.equal(response.status, 400);
      assert.match(
        await response.text(),
        new RegExp(`Run big has 3 pages of agents: page ${page} is not one of them\\.`),
      );
    });
  }
});

Deno.test("console: the command line the enqueue and start-a-run forms suggest passes the default policy", async () => {
  // The run form suggested "df -h /": every agent of such a run ended rejected (/ is outside the
  // default prefixes /tmp and /var/tmp).
  await using t = await makeDashboard({ devMode: true, runSweepMs: 0 });
  for (const path of ["/enqueue", "/runs/new"]) {
    const text = await (await t.dashboard.app.request(`http://localhost${path}`)).text();
    const input = /<input[^>]*name="name"[^>]*>/.exec(text)?.[0] ?? "";
    const suggested = /placeholder="([^"]+)"/.exec(input)?.[1];
    assert.ok(suggested, `${path} suggests a command line`);
    const checked = checkPolicy(suggested.split(" "), defaultPolicy(), {
      searchPath: "/usr/local/bin:/usr/bin:/bin",
    });
    assert.ok(checked.ok, `${path} suggests "${suggested}": ${JSON.stringify(checked)}`);
  }
});
