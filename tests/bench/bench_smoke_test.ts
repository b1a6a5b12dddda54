/**
 * Smoke test of `deno task bench --quick`: the whole benchmark runs end to end with small N and
 * writes its report. Nothing here asserts on speed.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

Deno.test({
  name: "bench --quick runs every phase and writes the results table",
  // The bench starts and stops its own child processes and sockets.
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "status-bench-test-" });
    try {
      const out = `${dir}/RESULTS.md`;
      const output = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--quiet",
          "--allow-net",
          "--allow-run",
          "--allow-read",
          "--allow-write",
          "--allow-env",
          "--allow-sys",
          `${ROOT}/bench/run.ts`,
          "--quick",
          "--no-install",
          "--out",
          out,
        ],
        cwd: ROOT,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(output.stderr);
      assert.equal(output.code, 0, stderr.slice(-3000));
      const report = await Deno.readTextFile(out);
      assert.match(report, /^# Benchmark results/);
      assert.match(report, /\| figure \| measured \| target \| met\? \|/);
      assert.match(report, /wake-up p50 \/ p99 \/ max, 100 waiting \(status\)/);
      assert.match(report, /dashboard CPU, idle/);
      assert.match(
        report,
        /resident memory \(max\), 100 waiting again after 100 had left \(a reconnect wave\) \| \d/,
      );
      assert.match(report, /agent CPU while it waits/);
      assert.match(report, /throughput: 1 agent, run `true`/);
      assert.match(report, /throughput: dashboard alone, 10 simulated agents/);
      assert.match(report, /executor overhead per command/);
      // The wake-up floor: a bare server whose enqueue is one write and fdatasync.
      assert.match(
        report,
        /platform floor wake-up p50 \/ p99 \/ max, 100 waiting \(bare node:http, enqueue = one write \+ fdatasync\) \| \d/,
      );
      assert.match(report, /- commit: \S+/);
      assert.doesNotMatch(report, /Phases that failed/);
      // The anchors are measured, or said to be unavailable (CI installs them: they must run there).
      const ci = Deno.env.get("CI") !== undefined;
      assert.match(report, ci ? /durable Redis \(appendfsync always\)/ : /Redis BLPOP|Redis: /);
      assert.match(
        report,
        ci ? /PostgreSQL INSERT \+ NOTIFY/ : /PostgreSQL INSERT \+ NOTIFY|PostgreSQL: /,
      );
      // status serve on PostgreSQL (two instances) is either measured or said to be skipped.
      assert.match(
        report,
        /status serve on PostgreSQL, two instances: wake-up .*enqueue on the other instance|status serve on PostgreSQL, two instances \| skipped/,
      );
      // The table is printed too.
      assert.match(new TextDecoder().decode(output.stdout), /## Summary/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
