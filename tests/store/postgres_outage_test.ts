/**
 * The PostgreSQL store when its server is down for a while, then back: on a private cluster that
 * the test stops and starts.
 *
 * @module
 */
import assert from "node:assert/strict";
import { openPostgresStore } from "../../src/store/postgres.ts";
import { StoreUnavailableError } from "../../src/store/mod.ts";
import { pgIgnore, startCluster, testDatabase } from "../_pg.ts";

Deno.test({
  name: "postgres store: after the server was down for a while, the first call once it is back " +
    "connects at once",
  ignore: pgIgnore(true),
  async fn() {
    await using cluster = await startCluster();
    await using db = await testDatabase(cluster);
    // One connection, so that each call is an attempt of the same one; a timeout shorter than
    // the driver's own back-off after seven refused connects (10 to 20 s).
    await using store = await openPostgresStore(db.url, {
      maxConnections: 1,
      queryTimeoutSecs: 8,
    });
    assert.equal(await store.getCommand("c1"), null);
    await cluster.stop("fast");
    // Seven calls while it is down: each is refused (the driver waited longer before each).
    for (let call = 1; call <= 7; call++) {
      await assert.rejects(store.getCommand("c1"), StoreUnavailableError, `call ${call}`);
    }
    await cluster.start();
    // The dashboard's probes pace the attempts (0.25 s up to 5 s): the driver waited up to 20 s
    // more before it connected, and this call failed as unanswered within 8 s.
    assert.equal(await store.getCommand("c1"), null);
  },
});
