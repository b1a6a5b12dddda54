import assert from "node:assert/strict";
import { closeLogging } from "../../src/log/mod.ts";
import { OperatorClient } from "../../src/operator/mod.ts";
import { startServer } from "../../src/server/mod.ts";
import { run } from "./_run.ts";

Deno.test("status enqueue of an id enqueued before says where that command is now", async (t) => {
  // A dev-mode dashboard; no agent polls for "nobody", so its commands stay queued.
  const server = await startServer({ availableDescriptors: "plenty", db: ":memory:", port: 0 });
  try {
    const client = new OperatorClient({ dashboardUrl: server.url });
    const enqueue = () =>
      run([
        "enqueue",
        "echo hi",
        "--agent",
        "nobody",
        "--id",
        "dup-1",
        "--dashboard-url",
        server.url,
      ]);
    const first = await enqueue();
    assert.equal(first.code, 0, first.stderr.join("\n"));
    assert.equal(
      first.stderr.at(-1),
      "queued: dup-1 for agent nobody; see it with: status result dup-1",
    );
    await t.step("still queued", async () => {
      const again = await enqueue();
      assert.equal(again.code, 0, again.stderr.join("\n"));
      assert.deepEqual(again.stdout, ["dup-1"]);
      assert.equal(
        again.stderr.at(-1),
        "already enqueued (same id and body; it is queued): dup-1 for agent nobody; see it " +
          "with: status result dup-1",
      );
    });
    await t.step("ended: not 'queued', which would say it runs again", async () => {
      await client.cancel("dup-1");
      const again = await enqueue();
      assert.equal(again.code, 0, again.stderr.join("\n"));
      assert.equal(
        again.stderr.at(-1),
        "already enqueued (same id and body; it is cancelled): dup-1 for agent nobody; see it " +
          "with: status result dup-1",
      );
      assert.equal((await client.getCommand("dup-1")).status, "cancelled");
    });
  } finally {
    await server.shutdown();
    closeLogging();
  }
});
