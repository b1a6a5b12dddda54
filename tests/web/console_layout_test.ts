/**
 * The console's pages in chromium with what a hostile agent can put on them: text without a place
 * to break it (a signal, an error, a version, labels, a deployment, a first line of output) wraps
 * inside its cell instead of widening the page past the screen, at 1440 px and at 375 px; so do
 * the longest ids and command line an operator may give, and a value from the address.
 */
import assert from "node:assert/strict";
import { makeDashboard, P, reportBody } from "../server/_helpers.ts";
import { browserTest, launchChromium } from "./_browser.ts";

const NAME = "text an agent sends without a break wraps: every page fits the screen";

/** A word of `n` characters with no place to break a line. */
const word = (prefix: string, n: number) => prefix + "x".repeat(n - prefix.length);

async function layoutTest(t: Deno.TestContext): Promise<void> {
  await using d = await makeDashboard({ devMode: true, runSweepMs: 0 });
  const agent = "w1";
  await d.store.ensureAgent(agent, d.clock.now());
  const labels: Record<string, string> = {};
  for (let i = 0; i < 8; i++) labels[word(`k${i}`, 60)] = word(`v${i}`, 120);
  const beat = await d.agent({
    path: "/api/v1/agent/heartbeat",
    agentId: agent,
    token: null,
    body: { version: word("v", 64), deployment_hash: word("d", 256), labels },
  });
  assert.equal(beat.status, 200, await beat.text());

  // A command that ended by a signal of the agent's own naming, with an error of one word.
  const enqueued = await d.admin("POST", P.enqueue, { agent_id: agent, name: "sleep 5" });
  const { id } = await enqueued.json() as { id: string };
  const take = async () => {
    const wait = await d.agent({ path: P.wait(), agentId: agent, token: null });
    const command = await wait.json() as { id: string };
    const ack = await d.agent({
      path: P.ack,
      agentId: agent,
      token: null,
      body: { command_id: command.id, attempt: 1 },
    });
    assert.equal(ack.status, 200, await ack.text());
    return command.id;
  };
  assert.equal(await take(), id);
  const report = (commandId: string, stdout: string) =>
    d.agent({
      path: P.report,
      agentId: agent,
      token: null,
      body: reportBody(commandId, {
        status: "failed",
        result: { ...reportBody(commandId).result, signal: word("SIG", 400), stdout },
        error: word("E", 3000),
      }),
    });
  assert.equal((await report(id, "")).status, 200);

  // A run whose row shows the first line of its output: 200 characters without a break.
  const run = await d.admin("POST", "/api/v1/runs", {
    id: "run-1",
    name: "echo hi",
    target: { agents: [agent] },
  });
  assert.equal(run.status, 201, await run.text());
  assert.equal((await report(await take(), `${word("o", 400)}\n`)).status, 200);

  // What an operator may give without a break: the longest ids and command line, in a queued
  // command's notice, a run's title, its command and its target.
  const longAgent = word("agent-", 128);
  await d.store.ensureAgent(longAgent, d.clock.now());
  const longName = word("/bin/", 4096);
  const queued = await d.admin("POST", P.enqueue, {
    id: word("cmd-", 128),
    agent_id: word("gone-", 128),
    name: longName,
  });
  assert.equal(queued.status, 202, await queued.text());
  const longRun = await d.admin("POST", "/api/v1/runs", {
    id: word("run-", 64),
    name: longName,
    target: { agents: [longAgent] },
  });
  assert.equal(longRun.status, 201, await longRun.text());

  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    (request) => d.dashboard.app.fetch(request),
  );
  const browser = await launchChromium();
  try {
    for (const width of [1440, 375]) {
      const page = await browser.newPage({ viewport: { width, height: 900 } });
      const paths = [
        "/",
        "/commands",
        `/commands/${id}`,
        "/runs",
        "/runs/run-1",
        `/commands/${word("cmd-", 128)}`,
        `/runs/${word("run-", 64)}`,
        `/commands/${word("no-such-", 200)}`,
      ];
      for (const path of paths) {
        await t.step(`${path} at ${width} px`, async () => {
          const response = await page.goto(`http://127.0.0.1:${server.addr.port}${path}`);
          assert.equal(response?.status(), path.includes("no-such-") ? 404 : 200);
          const scrolled = await page.evaluate("document.documentElement.scrollWidth") as number;
          assert.ok(scrolled <= width, `${path} is ${scrolled} px wide at ${width} px`);
        });
      }
      await page.close();
    }
  } finally {
    await browser.close();
    await server.shutdown();
  }
}

browserTest(NAME, import.meta.filename!, layoutTest);
