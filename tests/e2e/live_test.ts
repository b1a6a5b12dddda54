/**
 * Live output, the fleet view and one agent per id, end to end: real `status serve`, real agents
 * and the operator CLI as separate processes.
 */
import assert from "node:assert/strict";
// @ts-types="../server/_prometheus_parser.d.ts"
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { parseServerSentEvents } from "../../src/operator/mod.ts";
import { fromBase64 } from "../../src/protocol/mod.ts";
import { denoForCommands, startAgent, startServe, tempDir, waitForFinal } from "./helpers.ts";
import { PERMS, runCli, spawnCli } from "../_cli.ts";

/** Options of an agent that may run `deno` (at `deno`) on scripts under `dir`. */
function denoAgentArgs(dir: string, deno: string): string[] {
  return ["--allowed-programs", `echo,${deno}`, "--allowed-path-prefixes", dir];
}

async function enqueue(url: string, agent: string, name: string): Promise<string> {
  const response = await fetch(`${url}/api/v1/agent/commands/enqueue`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name, agent_id: agent }),
  });
  assert.equal(response.status, 202);
  return (await response.json()).id;
}

Deno.test("status result --follow prints each line as it is printed and exits with the command's code", async () => {
  await using dir = tempDir();
  // A root agent runs commands as nobody, who must be able to read the script.
  await Deno.chmod(dir.path, 0o755);
  const deno = denoForCommands(dir.path);
  const marker = `${dir.path}/go`;
  const script = `${dir.path}/lines.ts`;
  await Deno.writeTextFile(
    script,
    `while (true) { try { Deno.statSync(${JSON.stringify(marker)}); break; } catch { /* not yet */ }
       await new Promise((r) => setTimeout(r, 20)); }
     for (let i = 1; i <= 5; i++) {
       console.log("line " + i + " " + Date.now());
       if (i < 5) await new Promise((r) => setTimeout(r, 1000));
     }
     console.error("done on stderr");
     Deno.exit(3);`,
  );
  await using serve = await startServe({ db: `${dir.path}/status.db`, cwd: dir.path });
  await using agent = startAgent({
    url: serve.url,
    agentId: "live-1",
    stateDir: `${dir.path}/state`,
    cwd: dir.path,
    args: denoAgentArgs(dir.path, deno),
  });
  await agent.stderr.waitFor("long-poll: polling loop started", { timeoutMs: 30_000 });
  const id = await enqueue(serve.url, "live-1", `${deno} run --allow-read=${marker} ${script}`);

  await using follower = spawnCli(["result", id, "--follow", "--dashboard-url", serve.url], {
    perms: PERMS.operator,
    cwd: dir.path,
  });
  // Once the follower has the stream open (it has printed the command's status), let it print.
  await follower.stderr.waitFor(new RegExp(`^${id} (delivered|running)`), { timeoutMs: 30_000 });
  await Deno.writeTextFile(marker, "");

  const delays: number[] = [];
  for (let i = 1; i <= 5; i++) {
    const { match } = await follower.stdout.waitFor(new RegExp(`^line ${i} (\\d+)$`), {
      timeoutMs: 15_000,
    });
    delays.push(Date.now() - Number(match![1]));
  }
  assert.ok(delays[0] <= 1500, `the first line showed ${delays[0]} ms after it was printed`);
  const status = await follower.exited(30_000);
  assert.equal(status.code, 3, follower.stderr.text);
  assert.deepEqual(
    follower.stdout.lines.filter((l) => l !== "").map((l) => l.replace(/ \d+$/, "")),
    ["line 1", "line 2", "line 3", "line 4", "line 5"],
    "every line once, in order",
  );
  assert.match(follower.stderr.text, /done on stderr/);
  assert.match(follower.stderr.text, new RegExp(`${id} failed, exit code 3`));
  assert.ok(!follower.stderr.text.includes("\x1b[2K"), "no elapsed indicator when piped");
});

/** The dashboard's resident memory, from its own /metrics (dev mode: no token needed). */
async function residentBytes(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const family = parsePrometheusTextFormat(text).find((f) =>
    f.name === "process_resident_memory_bytes"
  );
  assert.ok(family, "the dashboard exports its resident memory");
  return Number((family.metrics[0] as { value: string }).value);
}

Deno.test({
  name: "a command printing 50 MB keeps the dashboard's memory bounded",
  async fn() {
    await using dir = tempDir();
    // A root agent runs commands as nobody, who must be able to read the script.
    await Deno.chmod(dir.path, 0o755);
    const deno = denoForCommands(dir.path);
    const script = `${dir.path}/flood.ts`;
    await Deno.writeTextFile(
      script,
      `const mib = new Uint8Array(1 << 20).fill(120);
       for (let i = 0; i < 50; i++) {
         let written = 0;
         while (written < mib.length) written += Deno.stdout.writeSync(mib.subarray(written));
       }
       console.error("flooded");`,
    );
    await using serve = await startServe({ db: `${dir.path}/status.db`, cwd: dir.path });
    await using agent = startAgent({
      url: serve.url,
      agentId: "flood-1",
      stateDir: `${dir.path}/state`,
      cwd: dir.path,
      args: denoAgentArgs(dir.path, deno),
    });
    await agent.stderr.waitFor("long-poll: polling loop started", { timeoutMs: 30_000 });
    // Warm up (first requests, first output), then measure while the command floods.
    await waitForFinal(serve.url, await enqueue(serve.url, "flood-1", "echo warm"));
    const before = await residentBytes(serve.url);
    let peak = before;
    const id = await enqueue(serve.url, "flood-1", `${deno} run ${script}`);
    let final: Awaited<ReturnType<typeof waitForFinal>> | undefined;
    const finished = waitForFinal(serve.url, id, 120_000).then((f) => final = f);
    while (final === undefined) {
      peak = Math.max(peak, await residentBytes(serve.url));
      await Promise.race([finished, new Promise((r) => setTimeout(r, 50))]);
    }
    peak = Math.max(peak, await residentBytes(serve.url));
    assert.equal(final.status, "success", JSON.stringify(final.error));
    const result = final.result as Record<string, number | string>;
    const total = 50 * 1024 * 1024;
    // The kept head and tail, with the marker line where the rest was dropped (ASCII output).
    const dropped = Number(result.stdout_truncated_bytes);
    const marker = new RegExp(`\\n?\\[status: ${dropped} bytes dropped here\\]\\n`);
    assert.match(String(result.stdout), marker);
    const stdout = String(result.stdout).replace(marker, "");
    assert.equal(stdout.length + dropped, total);

    const growth = peak - before;
    assert.ok(
      growth < 40 * 1024 * 1024,
      `the dashboard's peak memory grew by ${
        Math.round(growth / 1024 / 1024)
      } MiB for 50 MiB of output`,
    );

    // What it kept of the live output is bounded too: replay the whole event stream.
    const events = await fetch(`${serve.url}/api/v1/commands/${id}/events`);
    let kept = 0;
    let highest = 0;
    for await (const event of parseServerSentEvents(events.body!)) {
      if (event.event !== "output") continue;
      const chunk = JSON.parse(event.data);
      if (chunk.stream !== "stdout") continue;
      const bytes = fromBase64(chunk.data).length;
      kept += bytes;
      highest = Math.max(highest, chunk.offset + bytes);
    }
    assert.ok(kept > 0, "live output arrived");
    assert.ok(kept <= 64 * 1024, `the dashboard kept ${kept} bytes of live stdout`);
    assert.ok(highest > 1024 * 1024, "the kept tail is from late in the output");
  },
});

Deno.test("two agents with one id: the second is refused and says why; it takes over after the first exits", async () => {
  await using dir = tempDir();
  await using serve = await startServe({ db: `${dir.path}/status.db`, cwd: dir.path });
  await using first = startAgent({
    url: serve.url,
    agentId: "twin",
    stateDir: `${dir.path}/state-1`,
    cwd: dir.path,
    args: ["--polling-timeout-secs", "2"],
  });
  await first.stderr.waitFor("long-poll: polling loop started", { timeoutMs: 30_000 });
  await using second = startAgent({
    url: serve.url,
    agentId: "twin",
    stateDir: `${dir.path}/state-2`,
    cwd: dir.path,
    args: ["--polling-backoff-secs", "1", "--polling-backoff-max-secs", "1"],
  });
  const refused = await second.stderr.waitFor("another process is polling with the same AGENT_ID", {
    timeoutMs: 30_000,
  });
  assert.match(refused.line, /already connected from another process/);
  assert.match(refused.line, /"status":409/);
  await serve.proc.stderr.waitFor("second agent process refused", { timeoutMs: 10_000 });

  first.kill("SIGTERM");
  assert.equal((await first.exited(30_000)).code, 0);
  await serve.proc.stderr.waitFor("taken over by instance", { timeoutMs: 30_000 });
  const run = await runCli(
    ["enqueue", "echo taken over", "--agent", "twin", "--wait", "--dashboard-url", serve.url],
    { perms: PERMS.operator, cwd: dir.path },
  );
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, "taken over");
});

Deno.test("status agents over HTTP shows a real agent online, then offline once it stops; its /metrics parse", async () => {
  await using dir = tempDir();
  await using serve = await startServe({
    db: `${dir.path}/status.db`,
    cwd: dir.path,
    args: ["--offline-after-secs", "2"],
  });
  await using agent = startAgent({
    url: serve.url,
    agentId: "fleet-1",
    stateDir: `${dir.path}/state`,
    cwd: dir.path,
    args: ["--metrics-interval-secs", "1", "--metrics-port", "127.0.0.1:0"],
  });
  await agent.stderr.waitFor("long-poll: polling loop started", { timeoutMs: 30_000 });
  const list = async () => {
    const run = await runCli(["agents", "--json", "--dashboard-url", serve.url], {
      perms: PERMS.operator,
      cwd: dir.path,
    });
    assert.equal(run.code, 0, run.stderr);
    return (JSON.parse(run.stdout) as Array<Record<string, unknown>>).find((a) =>
      a.id === "fleet-1"
    );
  };
  let seen = await list();
  for (let i = 0; i < 50 && !(seen?.version && seen.state === "waiting"); i++) {
    await new Promise((r) => setTimeout(r, 200));
    seen = await list();
  }
  assert.equal(seen?.state, "waiting");
  assert.match(String(seen?.version), /^\d+\.\d+\.\d+/);
  assert.equal(seen?.deployment_hash, "default");
  assert.ok(seen?.heartbeat, "the heartbeat's figures are shown");

  const table = await runCli(["agents", "--dashboard-url", serve.url], {
    perms: PERMS.operator,
    cwd: dir.path,
  });
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^fleet-1 \(no token\)\s+waiting\s+\d{4}-/m);

  // The agent's own metrics.
  const listening = await agent.stderr.waitFor(/metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/);
  const metrics = await fetch(`http://127.0.0.1:${listening.match![1]}/metrics`);
  const families = parsePrometheusTextFormat(await metrics.text());
  const lastPoll = families.find((f) =>
    f.name === "status_agent_last_poll_success_timestamp_seconds"
  );
  assert.ok(lastPoll, "the agent exports its last successful poll");
  assert.ok(families.some((f) => f.name === "status_agent_poll_errors_total"));

  agent.kill("SIGTERM");
  assert.equal((await agent.exited(30_000)).code, 0);
  const states = new Set<string>();
  for (let i = 0; i < 60; i++) {
    const now = await list();
    states.add(String(now?.state));
    if (now?.state === "offline") break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(states.has("offline"), `states seen after the stop: ${[...states]}`);
});

Deno.test("a restarted agent (same state directory) is the same instance: not refused", async () => {
  await using dir = tempDir();
  await using serve = await startServe({ db: `${dir.path}/status.db`, cwd: dir.path });
  const options = {
    url: serve.url,
    agentId: "again",
    stateDir: `${dir.path}/state`,
    cwd: dir.path,
  };
  const instanceOf = async (agent: ReturnType<typeof startAgent>) =>
    (await agent.stderr.waitFor(/"message":"agent instance ([^"]+)"/)).match![1];
  let first: string;
  {
    await using agent = startAgent(options);
    first = await instanceOf(agent);
    await agent.stderr.waitFor("long-poll: polling loop started", { timeoutMs: 30_000 });
    agent.kill("SIGTERM");
    assert.equal((await agent.exited(30_000)).code, 0);
  }
  await using again = startAgent(options);
  assert.equal(await instanceOf(again), first);
  const run = await runCli(
    ["enqueue", "echo back", "--agent", "again", "--wait", "--dashboard-url", serve.url],
    { perms: PERMS.operator, cwd: dir.path },
  );
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, "back");
  assert.ok(!again.stderr.text.includes("another process is polling"), again.stderr.text);
});
