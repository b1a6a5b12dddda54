/**
 * The console's run pages in process (dev mode, a fake clock): the list, one run with a row per
 * agent and its labels on the agents page, the cancel form and its CSRF check, a missing run.
 */
import assert from "node:assert/strict";
import { makeDashboard } from "../server/_helpers.ts";

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

  const missing = await t.dashboard.app.request(`${origin}/runs/nope`);
  assert.equal(missing.status, 404);
  assert.match(await missing.text(), /Run nope does not exist/);
});
