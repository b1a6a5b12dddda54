/**
 * Two dashboard instances behind `examples/nginx.conf` while their database is away: what the
 * README says of the outage (`GET /health` answers `503` with the store down, requests that need
 * the database `503` with `Retry-After`) is what clients of the balancer get, every time, and not
 * nginx's own `502` page once it has marked every instance down.
 */
import assert from "node:assert/strict";
import { pgIgnore, startCluster, testDatabase } from "../_pg.ts";
import { until } from "../_until.ts";
import { tempDir } from "../e2e/helpers.ts";
import { findNginx, Instance, startNginx } from "./_fleet.ts";

const ADMIN = "admin-token-0123456789abcdef";
const nginx = findNginx();

Deno.test({
  name: "behind examples/nginx.conf, with the database away, every answer is the dashboard's 503",
  ignore: pgIgnore(true) || nginx === null,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using cluster = await startCluster();
    await using db = await testDatabase(cluster);
    const env = { STATUS_ADMIN_TOKEN: ADMIN };
    const args = ["--log-level", "error"];
    await using a = new Instance(db.url, env, args);
    await using b = new Instance(db.url, env, args);
    await Promise.all([a.start(), b.start()]);
    await using dir = tempDir("status-outage-");
    await using proxy = await startNginx(nginx!, dir.path, [a.port, b.port]);
    const health = async () => {
      const response = await fetch(`${proxy.url}/health`);
      return { status: response.status, text: await response.text() };
    };
    assert.equal((await health()).status, 200);

    await cluster.stop("fast");
    await until(async () => (await health()).status !== 200, "the outage is seen", 20_000);
    for (let i = 0; i < 10; i++) {
      const { status, text } = await health();
      assert.equal(status, 503, `health ${i}: ${text.slice(0, 200)}`);
      const body = JSON.parse(text);
      assert.equal(body.status, "unavailable");
      assert.equal(body.store.status, "down");
      const enqueued = await fetch(`${proxy.url}/api/v1/agent/commands/enqueue`, {
        method: "POST",
        headers: { Authorization: `Bearer ${ADMIN}`, "Content-Type": "application/json" },
        body: JSON.stringify({ id: `c${i}`, agent_id: "web-1", name: "echo hi" }),
      });
      const said = await enqueued.text();
      assert.equal(enqueued.status, 503, `enqueue ${i}: ${said.slice(0, 200)}`);
      assert.ok(enqueued.headers.has("Retry-After"), said);
      assert.match(JSON.parse(said).error, /database is unavailable/);
    }

    await cluster.start();
    await until(async () => (await health()).status === 200, "the instances recover", 30_000);
  },
});
