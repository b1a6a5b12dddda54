/**
 * Dev mode asks for no credentials: a foreign web page must not use it through the operator's
 * browser (cross-site request forgery, DNS rebinding).
 */
import assert from "node:assert/strict";
import { ADMIN_TOKEN, makeDashboard, P } from "./_helpers.ts";

const enqueueBody = JSON.stringify({ agent_id: "a1", name: "echo forged" });

async function queued(d: Awaited<ReturnType<typeof makeDashboard>>): Promise<number> {
  return (await d.store.listCommands({ limit: 100 })).length;
}

Deno.test("dev mode refuses a forged cross-site enqueue (text/plain, no preflight) and keeps nothing", async () => {
  await using d = await makeDashboard({ devMode: true });
  const forgeries: Record<string, string>[] = [
    { "Content-Type": "text/plain", Origin: "https://evil.example" },
    { "Content-Type": "text/plain", Origin: "null" },
    { "Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site" },
    { "Content-Type": "text/plain", Origin: "http://localhost:3000" },
  ];
  for (const headers of forgeries) {
    const response = await d.dashboard.app.request(`http://localhost:5000${P.enqueue}`, {
      method: "POST",
      headers,
      body: enqueueBody,
    });
    assert.equal(response.status, 403, JSON.stringify(headers));
    assert.match((await response.json()).error, /dev mode refuses requests a browser sent/);
  }
  assert.equal(await queued(d), 0);
});

Deno.test("dev mode refuses requests addressed to a foreign name (DNS rebinding), waits included", async () => {
  await using d = await makeDashboard({ devMode: true });
  for (
    const path of ["/api/v1/commands", P.wait("default", 0), "/api/v1/agents", "/"]
  ) {
    const response = await d.dashboard.app.request(`http://evil.example:5000${path}`, {
      headers: { "X-Agent-Id": "a1" },
    });
    assert.equal(response.status, 403, path);
    assert.match(await response.text(), /loopback/);
  }
});

Deno.test("dev mode answers the CLI, agents and its own pages", async () => {
  await using d = await makeDashboard({ devMode: true });
  const cli = await d.dashboard.app.request(`http://127.0.0.1:5000${P.enqueue}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: enqueueBody,
  });
  assert.equal(cli.status, 202);
  const page = await d.dashboard.app.request(`http://localhost:5000${P.enqueue}`, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      Origin: "http://localhost:5000",
      "Sec-Fetch-Site": "same-origin",
    },
    body: JSON.stringify({ agent_id: "a1", name: "echo from the console" }),
  });
  assert.equal(page.status, 202);
  const typed = await d.dashboard.app.request("http://[::1]:5000/api/v1/commands", {
    headers: { "Sec-Fetch-Site": "none" },
  });
  assert.equal(typed.status, 200);
  await typed.body?.cancel();
  assert.equal(await queued(d), 2);
});

Deno.test("outside dev mode the token decides, not the names", async () => {
  await using d = await makeDashboard();
  const response = await d.dashboard.app.request(`http://status.example.com${P.enqueue}`, {
    method: "POST",
    headers: {
      Authorization: `Bearer ${ADMIN_TOKEN}`,
      "Content-Type": "application/json",
      Origin: "https://elsewhere.example",
    },
    body: enqueueBody,
  });
  assert.equal(response.status, 202);
});
