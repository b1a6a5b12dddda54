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

Deno.test({
  name: "examples/nginx.conf lets the dashboard refuse a run over its 3 MiB limit with its own 413",
  ignore: nginx === null,
  fn: async () => {
    await using dir = tempDir("status-nginx-");
    await using serve = await startServe({ db: ":memory:" });
    await using proxy = await startNginx(nginx!, dir.path, [serve.port]);
    const body = JSON.stringify({
      name: "echo hi",
      target: { agents: ["web-1"] },
      params: { note: "x".repeat(3 * 1024 * 1024 + 100_000) },
    });
    const response = await fetch(`${proxy.url}/api/v1/runs`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body,
    });
    const text = await response.text();
    assert.equal(response.status, 413);
    // nginx's own 413 is an HTML page that names no limit; the dashboard's says which it is.
    assert.equal(JSON.parse(text).error, "request body is larger than 3145728 bytes", text);
  },
});

Deno.test({
  name: "examples/nginx.conf holds a wait until an enqueue wakes it, and streams events unbuffered",
  ignore: nginx === null,
  fn: async () => {
    await using dir = tempDir("status-nginx-");
    await using serve = await startServe({ db: ":memory:" });
    await using proxy = await startNginx(nginx!, dir.path, [serve.port]);
    const wait = fetch(`${proxy.url}/api/v1/agent/commands/wait/dep-1?timeout=60`, {
      headers: { "X-Agent-Id": "web-1" },
    });
    // The wait is held open by the dashboard (through nginx) before the enqueue.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const enqueued = await fetch(`${proxy.url}/api/v1/agent/commands/enqueue`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        agent_id: "web-1",
        name: "echo hi",
        params: { deployment_hash: "dep-1" },
      }),
    });
    const command = await enqueued.json();
    assert.ok(enqueued.ok, JSON.stringify(command));
    const delivered = await wait;
    assert.equal(delivered.status, 200);
    assert.equal((await delivered.json()).id, command.id);
    // The stream's first event arrives while the stream stays open (nothing buffers it).
    const events = await fetch(`${proxy.url}/api/v1/commands/${command.id}/events`);
    assert.equal(events.status, 200);
    const reader = events.body!.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    while (!seen.includes("event: status")) {
      const { value, done } = await reader.read();
      assert.ok(!done, `the stream ended: ${seen}`);
      seen += value;
    }
    await reader.cancel();
  },
});
