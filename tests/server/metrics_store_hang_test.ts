/**
 * A scrape while the database takes no part (a network partition, a frozen server): the metrics
 * still answer in time for a scraper's timeout, saying the store does not.
 */
import assert from "node:assert/strict";
import { parseStrict } from "../_prom_strict.ts";
import { until } from "../_until.ts";
import { pgIgnore, testDatabase } from "../_pg.ts";
import { createApp } from "../../src/server/mod.ts";
import { openPostgresStore } from "../../src/store/postgres.ts";
import { ADMIN_TOKEN, FakeClock } from "./_helpers.ts";

/** A TCP proxy to PostgreSQL that can stop forwarding (the packets are lost, nothing closes). */
function partitionableProxy(target: URL) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let cut = false;
  const conns: Deno.Conn[] = [];
  const pipe = async (from: Deno.Conn, to: Deno.Conn) => {
    const buffer = new Uint8Array(65536);
    try {
      for (let n = await from.read(buffer); n !== null; n = await from.read(buffer)) {
        if (!cut) await to.write(buffer.subarray(0, n));
      }
    } catch {
      // closed
    }
  };
  const accepting = (async () => {
    for await (const client of listener) {
      const server = await Deno.connect({ hostname: target.hostname, port: Number(target.port) });
      conns.push(client, server);
      void pipe(client, server);
      void pipe(server, client);
    }
  })().catch(() => {});
  const url = new URL(target);
  url.hostname = "127.0.0.1";
  url.port = String((listener.addr as Deno.NetAddr).port);
  return {
    url: url.toString(),
    cut() {
      cut = true;
    },
    async close() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // closed
        }
      }
      await accepting;
    },
  };
}

Deno.test({
  name: "a scrape while the database does not answer is answered within 5 s, status_store_up 0",
  ignore: pgIgnore(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // The scrape waited for the store's query timeout (15 s), longer than a scraper waits (10 s in
    // examples/prometheus.yml): the scrape failed instead of saying status_store_up 0.
    await using db = await testDatabase();
    const proxy = partitionableProxy(new URL(db.url));
    const store = await openPostgresStore(proxy.url, { queryTimeoutSecs: 600 });
    const clock = new FakeClock();
    const dashboard = createApp({ store, clock, adminToken: ADMIN_TOKEN, autoExpireLeases: false });
    const scrape = () =>
      dashboard.app.request("/metrics", { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
    try {
      const up = parseStrict(await (await scrape()).text());
      assert.equal(up.get("status_store_up")?.samples[0].value, 1);
      proxy.cut();
      let answered = false;
      const during = Promise.resolve(scrape()).finally(() => answered = true);
      await clock.advanceAsync(4_999);
      assert.equal(answered, false, "the store is given its time");
      await clock.advanceAsync(1);
      await until(() => answered, "the scrape is answered");
      const families = parseStrict(await (await during).text());
      assert.equal(families.get("status_store_up")?.samples[0].value, 0);
      assert.ok(Number.isNaN(families.get("status_agents_online")?.samples[0].value));
    } finally {
      await proxy.close();
      await dashboard.close().catch(() => {});
      await store.close().catch(() => {});
    }
  },
});
