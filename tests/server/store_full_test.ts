/**
 * A dashboard whose database disk fills up, on a real small filesystem (a tmpfs mounted with
 * `size=`, which needs root; elsewhere the test says why it is skipped).
 */
import assert from "node:assert/strict";
import { DashboardClient } from "../../src/agent/client.ts";
import type { ReportRequest } from "../../src/protocol/mod.ts";
import { startServer } from "../../src/server/mod.ts";
import { openSqliteStore } from "../../src/store/mod.ts";
import { removeAndWaitForSpace, smallDisk } from "../_disk.ts";
import { P, reportBody } from "./_helpers.ts";

/** Fills the disk with a file until it is full; returns its path. */
function fill(path: string): void {
  const file = Deno.openSync(path, { write: true, create: true });
  const chunk = new Uint8Array(16 * 1024).fill(1);
  try {
    while (true) file.writeSync(chunk);
  } catch {
    // full
  } finally {
    file.close();
  }
}

function enqueue(url: string, id: string, padBytes: number): Promise<Response> {
  return fetch(`${url}${P.enqueue}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Agent-Id": "a1" },
    body: JSON.stringify({
      id,
      name: "echo hi",
      params: { metadata: { pad: "p".repeat(padBytes) } },
    }),
  });
}

/** One wait of an agent (1 s); its status. */
async function waitStatus(url: string, agentId: string): Promise<number> {
  const response = await fetch(`${url}${P.wait("default", 1)}`, {
    headers: { "X-Agent-Id": agentId },
  });
  await response.body?.cancel();
  return response.status;
}

Deno.test({
  name:
    "a full database disk answers 507 with Retry-After, /health says so, and it heals when space returns",
  async fn(t) {
    await using disk = await smallDisk(6 * 1024);
    if (!disk) {
      // CI runs as root, where this must run.
      if (Deno.env.get("CI")) {
        throw new Error("cannot mount a tmpfs: CI must run this test as root");
      }
      await t.step({ name: "mounting a tmpfs needs root: skipped", ignore: true, fn: () => {} });
      return;
    }
    const db = `${disk.dir}/status.db`;
    await using server = await startServer({
      availableDescriptors: "plenty",
      db,
      port: 0,
      rateLimitPerMinute: 1_000_000,
    });
    const agent = new DashboardClient({ dashboardUrl: server.url, agentId: "a1" });
    const signal = new AbortController().signal;

    // A command delivered before the disk fills, to report while it is full.
    assert.equal((await enqueue(server.url, "before", 10)).status, 202);
    assert.equal(await waitStatus(server.url, "a1"), 200);
    // Agent a2 is known and has nothing queued: its waits need no write.
    assert.equal(await waitStatus(server.url, "a2"), 204);

    // 2 MiB to free later, then fill the disk; the store's writes use up whatever it frees.
    Deno.writeFileSync(`${disk.dir}/spare`, new Uint8Array(2 * 1024 * 1024).fill(1));
    fill(`${disk.dir}/filler-a`);
    const statuses = new Map<number, number>();
    let full: Response | undefined;
    for (let i = 0; i < 2000 && !full; i++) {
      const response = await enqueue(server.url, `c${i}`, 8 * 1024);
      statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
      if (response.status === 202) await response.body?.cancel();
      else full = response;
    }
    assert.ok(full, `the disk never filled: ${JSON.stringify([...statuses])}`);
    assert.equal(full.status, 507, JSON.stringify([...statuses]));
    assert.equal(full.headers.get("Retry-After"), "30");
    assert.match((await full.json()).error, /store is full/);
    // Whatever the store gave back when it filled (its reserve, the write-ahead log) is taken too.
    fill(`${disk.dir}/filler-b`);

    await t.step("/health reports the full store with 503", async () => {
      const health = await fetch(`${server.url}/health`);
      assert.equal(health.status, 503);
      const body = await health.json();
      assert.equal(body.status, "store_full");
      assert.equal(body.store.status, "full");
    });

    await t.step("an agent is told to wait (507 with Retry-After), not to hammer", async () => {
      const outcome = await agent.report(reportBody("before") as ReportRequest, signal);
      assert.equal(outcome.kind, "throttled");
      assert.equal((outcome as { status: number }).status, 507);
      assert.equal((outcome as { retryAfterMs: number }).retryAfterMs, 30_000);
    });

    await t.step("reads and idle waits are still served", async () => {
      const read = await fetch(`${server.url}/api/v1/commands/before`);
      assert.equal(read.status, 200);
      await read.body?.cancel();
      assert.equal(await waitStatus(server.url, "a2"), 204);
    });

    await t.step("freed space is used for writes, not lost to the write-ahead log", async () => {
      await removeAndWaitForSpace(`${disk.dir}/spare`);
      // Many small commits: more than one write-ahead-log checkpoint's worth.
      for (let i = 0; i < 150; i++) {
        const response = await enqueue(server.url, `after-${i}`, 1024);
        if (response.status !== 202) assert.fail(`enqueue ${i}: ${await response.text()}`);
        await response.body?.cancel();
      }
      const report = await agent.report(reportBody("before") as ReportRequest, signal);
      assert.equal(report.kind, "accepted");
      const health = await fetch(`${server.url}/health`);
      assert.equal(health.status, 200);
      assert.equal((await health.json()).store.status, "ok");
    });
  },
});

Deno.test({
  name: "a store opened again on a full disk gives back its reserve to open, and heals",
  async fn(t) {
    await using disk = await smallDisk(6 * 1024);
    if (!disk) {
      await t.step({ name: "mounting a tmpfs needs root: skipped", ignore: true, fn: () => {} });
      return;
    }
    const db = `${disk.dir}/status.db`;
    const command = (id: string) => ({
      id,
      agentId: "a1",
      name: "echo hi",
      params: {},
      fingerprint: id,
      now: Date.now(),
    });
    {
      await using store = openSqliteStore(db);
      await store.enqueue(command("before"));
    }
    // The dashboard stopped, the disk filled up; then it starts again. SQLite cannot even read
    // without room for its -shm file ("disk I/O error").
    fill(`${disk.dir}/filler`);
    {
      await using store = openSqliteStore(db);
      assert.equal((await store.getCommand("before"))?.status, "queued");
      await removeAndWaitForSpace(`${disk.dir}/filler`);
      assert.equal((await store.enqueue(command("after"))).outcome, "created");
    }
    // Without a reserve to give back, the error says what is wrong.
    Deno.removeSync(`${db}-reserve`);
    fill(`${disk.dir}/filler`);
    assert.throws(() => openSqliteStore(db), {
      name: "StoreFullError",
      message: `cannot open database ${db}: no space is left on its disk (SQLite needs some ` +
        "even to read it); free some space and start again",
    });
  },
});

Deno.test({
  name: "a reserve another process holds open is still given back, at open and while running",
  async fn(t) {
    await using disk = await smallDisk(6 * 1024);
    if (!disk) {
      await t.step({ name: "mounting a tmpfs needs root: skipped", ignore: true, fn: () => {} });
      return;
    }
    const db = `${disk.dir}/status.db`;
    const command = (id: string) => ({
      id,
      agentId: "a1",
      name: "echo hi",
      params: { metadata: { pad: "p".repeat(8 * 1024) } },
      fingerprint: id,
      now: Date.now(),
    });
    {
      await using store = openSqliteStore(db);
      await store.enqueue(command("before"));
    }
    // A backup reading the reserve, or a process another thread is starting (it holds a copy of
    // every open file until its program runs): removing the file alone would free nothing.
    {
      using held = Deno.openSync(`${db}-reserve`, { read: true });
      fill(`${disk.dir}/filler`);
      await using store = openSqliteStore(db);
      assert.equal((await store.getCommand("before"))?.status, "queued");
      assert.equal(held.statSync().size, 0);
      await removeAndWaitForSpace(`${disk.dir}/filler`);
      assert.equal((await store.enqueue(command("after"))).outcome, "created");
    }
    await using store = openSqliteStore(db);
    using held = Deno.openSync(`${db}-reserve`, { read: true });
    assert.ok(held.statSync().size > 0);
    fill(`${disk.dir}/filler`);
    let refused: unknown;
    for (let i = 0; i < 1000 && !refused; i++) {
      try {
        await store.enqueue(command(`c${i}`));
      } catch (error) {
        refused = error;
      }
    }
    assert.equal((refused as Error)?.name, "StoreFullError");
    // Given back while the write failed (and taken again only as far as space allows).
    assert.equal(held.statSync().size, 0);
  },
});
