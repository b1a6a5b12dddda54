/**
 * A `status serve` process at its open-files limit (under `prlimit`), flooded with connections:
 * it keeps serving waits, a new client takes the place of an idle connection, and nothing runs out
 * of descriptors. Slow (a real process, 600 connections), and needs a machine that is not busy
 * with other tests.
 */
import assert from "node:assert/strict";
import { until } from "../_until.ts";
import { type ServeProcess, startServe } from "../e2e/helpers.ts";
import { P } from "../server/_helpers.ts";
import { closeQuietly, rawConnect, readAll, send, waitHead } from "../server/_sockets.ts";

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A `status serve` process under `prlimit --nofile=<n>`, or `null` without prlimit. */
async function serveUnderFileLimit(dir: string, nofile: number): Promise<ServeProcess | null> {
  try {
    const probe = await new Deno.Command("prlimit", { args: ["--version"], stdout: "null" })
      .output();
    if (!probe.success) return null;
  } catch {
    return null;
  }
  return await startServe({
    db: `${dir}/status.db`,
    args: ["--header-timeout-secs", "2", "--rate-limit-per-minute", "100000"],
    prefix: ["prlimit", `--nofile=${nofile}:${nofile}`],
  });
}

Deno.test({
  name:
    "status serve at its open-files limit keeps serving waits, and a new client gets in in place of an idle connection",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "status-nofile-" });
    const served = await serveUnderFileLimit(dir, 256);
    if (!served) {
      if (Deno.env.get("CI")) throw new Error("prlimit is missing: .ci/run installs util-linux");
      await t.step({ name: "prlimit is not available", ignore: true, fn: () => {} });
      await Deno.remove(dir, { recursive: true });
      return;
    }
    const { proc, url } = served;
    const stderr = proc.stderr.lines;
    const port = Number(new URL(url).port);
    const conns: Deno.TcpConn[] = [];
    let ended = false;
    try {
      // Two agents wait, then 600 idle connections: more than the process has descriptors.
      const waiting: Deno.TcpConn[] = [];
      for (const agent of ["w1", "w2"]) {
        const conn = await rawConnect({ port });
        await send(conn, waitHead(agent, 60));
        waiting.push(conn);
      }
      await sleep(300);
      // All at once: a burst must not run the dashboard out of descriptors while it refuses.
      // (A dashboard that stopped accepting leaves connects hanging: give up on them after 10 s.)
      await Promise.allSettled(Array.from({ length: 600 }, async () => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const connecting = rawConnect({ port }).then((conn) => {
          if (ended) closeQuietly(conn);
          else conns.push(conn);
        });
        await Promise.race([
          connecting,
          new Promise((resolve) => timer = setTimeout(resolve, 10_000)),
        ]);
        clearTimeout(timer);
      }));
      await until(
        () => stderr.some((line) => line.includes("connection limit reached")),
        `the dashboard logs that the limit is reached: ${stderr.join("\n")}`,
      );
      // A new client takes the place of an idle connection (no need to wait for the header
      // timeout to close them).
      let enqueued: Response | undefined;
      const deadline = Date.now() + 20_000;
      while (!enqueued) {
        try {
          enqueued = await fetch(`${url}${P.enqueue}`, {
            method: "POST",
            headers: { "Content-Type": "application/json", "X-Agent-Id": "w1" },
            body: JSON.stringify({ id: "after-flood", name: "echo hi" }),
            signal: AbortSignal.timeout(3000),
          });
        } catch {
          if (Date.now() > deadline) {
            throw new Error(
              `no new connection was accepted again; the dashboard's log:\n${stderr.join("\n")}`,
            );
          }
          await sleep(250);
        }
      }
      assert.equal(enqueued.status, 202);
      await enqueued.body?.cancel();
      const woken = await readAll(waiting[0], 5000);
      assert.match(woken.text, /^HTTP\/1\.1 200 /, "the wait held through the flood is answered");
      assert.match(woken.text, /"id":"after-flood"/);
      const health = await fetch(`${url}/health`);
      assert.equal(health.status, 200);
      await health.body?.cancel();
      conns.push(...waiting);
      assert.ok(
        !stderr.some((line) => /Too many open files|Uncaught/.test(line)),
        stderr.join("\n"),
      );
    } finally {
      ended = true;
      for (const conn of conns) closeQuietly(conn);
      proc.kill("SIGTERM");
      await proc.status();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
