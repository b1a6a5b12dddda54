/**
 * `examples/nginx.conf` in front of a real `status serve`, both on loopback: what the README says
 * it gives (long-polls held, event streams unbuffered, every body the dashboard takes) holds
 * through it. Skipped where nginx is not installed.
 */
import assert from "node:assert/strict";
import { findNginx, startNginx } from "../slow/_fleet.ts";
import { startServe, tempDir } from "../e2e/helpers.ts";

const nginx = findNginx();
if (nginx === null) console.log("nginx tests skipped: nginx is not installed");

Deno.test({
  name:
    "examples/nginx.conf passes a run of 10,000 long agent ids (over 1 MiB) on to the dashboard",
  ignore: nginx === null,
  fn: async () => {
    await using dir = tempDir("status-nginx-");
    await using serve = await startServe({ db: ":memory:" });
    await using proxy = await startNginx(nginx!, dir.path, [serve.port]);
    const ids = Array.from({ length: 10_000 }, (_, i) => `agent-${"x".repeat(100)}-${i}`);
    const body = JSON.stringify({ name: "echo hi", target: { agents: ids } });
    assert.ok(body.length > 1024 * 1024, "the body is over 1 MiB");
    const response = await fetch(`${proxy.url}/api/v1/runs`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body,
    });
    const text = await response.text();
    // nginx's own 413 is an HTML page; the dashboard reads the run (and finds no such agents).
    assert.equal(response.status, 404, text.slice(0, 300));
    assert.match(JSON.parse(text).error, /^agents not registered: agent-x+-0, /);
  },
});
