/**
 * Chaos (issue 9, "Keep, as tests of their own"): three agents and one dashboard, commands that
 * append a ledger line when they start and another when they end, and SIGKILLs of the dashboard
 * and of agents at random moments. Afterwards:
 *
 * - every command has a final state;
 * - none ran twice (at most one "start" line per command);
 * - a `success` really ran to its end (its "end" line is there);
 * - every `interrupted` command really did not finish, unless its report says it ended on its
 *   own while its agent was down (the only case where the agent cannot know how it ended).
 *
 * Agents run with `--allow-all` so that they may use a cgroup per command (or, without cgroups,
 * read `/proc` to find the process group their previous run left); that is what lets a restarted
 * agent stop a command before calling it interrupted. Slow: `deno task test:slow`.
 */
import assert from "node:assert/strict";
import { Sandbox } from "../../src/exec/mod.ts";
import {
  type ServeProcess,
  startAgent,
  startServe,
  tempDir,
  waitForFinal,
} from "../e2e/helpers.ts";
import { type CliProcess } from "../_cli.ts";

const AGENTS = 3;
const COMMANDS = 90;
const CHAOS_MS = 60_000;
const ENDED_ON_ITS_OWN = /ended on its own before the agent restarted/;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const random = (min: number, max: number) => min + Math.floor(Math.random() * (max - min));

Deno.test("chaos: random SIGKILLs of dashboard and agents lose nothing, run nothing twice, and interrupted means unfinished", async () => {
  await using dir = tempDir("status-chaos-");
  // The ledger is written by the commands, which run as nobody when the agent is root.
  const ledgerDir = Deno.makeTempDirSync({ dir: "/tmp", prefix: "status-chaos-ledger-" });
  await using _ledger = {
    [Symbol.asyncDispose]: () => Deno.remove(ledgerDir, { recursive: true }),
  };
  Deno.chmodSync(ledgerDir, 0o777);
  const ledger = `${ledgerDir}/ledger`;
  Deno.writeTextFileSync(ledger, "", { mode: 0o666 });
  Deno.chmodSync(ledger, 0o666);

  const db = `${dir.path}/status.db`;
  const serveArgs = [
    "--ack-timeout-secs",
    "2",
    "--max-attempts",
    "100",
    "--rate-limit-per-minute",
    "1000000",
  ];
  const dashboards: ServeProcess[] = [];
  let dashboard = await startServe({ db, cwd: dir.path, args: serveArgs });
  dashboards.push(dashboard);
  const { url, port } = dashboard;

  const agentIds = Array.from({ length: AGENTS }, (_, i) => `chaos-${i}`);
  const agentProcs: CliProcess[] = [];
  const agents = new Map<string, CliProcess>();
  const launch = (id: string) => {
    const proc = startAgent({
      url,
      agentId: id,
      stateDir: `${dir.path}/state-${id}`,
      cwd: dir.path,
      perms: ["--allow-all"],
      args: [
        "--allowed-programs",
        "sh",
        "--polling-timeout-secs",
        "5",
        "--polling-backoff-secs",
        "1",
        "--polling-backoff-max-secs",
        "2",
        "--metrics-interval-secs",
        "3600",
        "--shutdown-grace-secs",
        "1",
      ],
    });
    agentProcs.push(proc);
    agents.set(id, proc);
    return proc;
  };

  const run = crypto.randomUUID().slice(0, 8);
  const idOf = (i: number) => `c-${run}-${i}`;
  const agentOf = (i: number) => agentIds[i % AGENTS];
  const lineOf = (i: number) => {
    const pause = (random(1, 12) / 10).toFixed(1);
    return `sh -c 'echo ${idOf(i)} start >> ${ledger}; sleep ${pause}; echo ${
      idOf(i)
    } end >> ${ledger}'`;
  };

  const enqueue = async (i: number) => {
    const body = JSON.stringify({ id: idOf(i), name: lineOf(i), params: { timeout_secs: 30 } });
    for (let attempt = 0;; attempt++) {
      assert.ok(attempt < 600, `enqueue of ${idOf(i)} never succeeded`);
      try {
        const response = await fetch(`${url}/api/v1/agent/commands/enqueue`, {
          method: "POST",
          headers: { "Content-Type": "application/json", "X-Agent-Id": agentOf(i) },
          body,
          signal: AbortSignal.timeout(5000),
        });
        await response.body?.cancel();
        if (response.status === 202 || response.status === 409) return;
        assert.ok(response.status >= 500, `enqueue answered ${response.status}`);
      } catch (error) {
        if (error instanceof assert.AssertionError) throw error;
      }
      await sleep(100);
    }
  };

  const kills = { dashboard: 0, agent: 0 };
  try {
    for (const id of agentIds) {
      await launch(id).stderr.waitFor("long-poll: polling loop started", { timeoutMs: 30_000 });
    }
    const chaosEnd = Date.now() + CHAOS_MS;
    const enqueuer = (async () => {
      for (let i = 0; i < COMMANDS; i++) {
        await enqueue(i);
        await sleep(Math.max(0, (CHAOS_MS * 0.8) / COMMANDS - 50));
      }
    })();
    const chaos = (async () => {
      while (Date.now() < chaosEnd) {
        await sleep(random(500, 2500));
        if (Math.random() < 0.3) {
          kills.dashboard++;
          dashboard.proc.kill("SIGKILL");
          await dashboard.proc.exited(10_000);
          await sleep(random(50, 800));
          for (let tries = 0;; tries++) {
            try {
              dashboard = await startServe({ db, port, cwd: dir.path, args: serveArgs });
              dashboards.push(dashboard);
              break;
            } catch (error) {
              if (tries >= 10) throw error;
              await sleep(200);
            }
          }
        } else {
          kills.agent++;
          const id = agentIds[random(0, AGENTS)];
          const victim = agents.get(id)!;
          victim.kill("SIGKILL");
          await victim.exited(10_000);
          await sleep(random(50, 1500));
          await launch(id).stderr.waitFor("long-poll: polling loop started", {
            timeoutMs: 30_000,
          });
        }
      }
    })();
    await Promise.all([enqueuer, chaos]);

    const finals = await Promise.all(
      Array.from({ length: COMMANDS }, (_, i) => waitForFinal(url, idOf(i), 90_000)),
    );
    // Let any process a lost agent left behind end or be stopped before reading the ledger.
    for (const id of agentIds) {
      const proc = agents.get(id)!;
      proc.kill("SIGTERM");
      await proc.exited(30_000);
    }

    // Each restarted agent removed the working directories its killed predecessor left.
    const tags = agentIds.map((id) => Sandbox.tagOf(`${dir.path}/state-${id}`));
    const leftDirs = tags.flatMap((tag) => {
      try {
        return [...Deno.readDirSync(`/tmp/status-cmd-${tag}`)].map((e) => `${tag}/${e.name}`);
      } catch {
        return []; // none was made, or it was removed at the agent's stop
      }
    });
    assert.deepEqual(leftDirs, [], "working directories left behind");

    const starts = new Map<string, number>();
    const ends = new Set<string>();
    for (const line of Deno.readTextFileSync(ledger).split("\n")) {
      const [id, what] = line.split(" ");
      if (what === "start") starts.set(id, (starts.get(id) ?? 0) + 1);
      if (what === "end") ends.add(id);
    }
    const twice = [...starts].filter(([, n]) => n > 1).map(([id]) => id);
    assert.deepEqual(twice, [], "commands that ran twice");

    const byStatus = new Map<string, number>();
    let endedOnItsOwn = 0;
    for (let i = 0; i < COMMANDS; i++) {
      const final = finals[i];
      const id = idOf(i);
      byStatus.set(final.status, (byStatus.get(final.status) ?? 0) + 1);
      const error = String((final as { error?: unknown }).error ?? "");
      if (final.status === "success") {
        assert.ok(ends.has(id), `${id} reported success without finishing`);
      }
      if (final.status === "interrupted") {
        if (ENDED_ON_ITS_OWN.test(error)) endedOnItsOwn++;
        else assert.ok(!ends.has(id), `${id} reported interrupted but finished: ${error}`);
      }
    }
    console.log(
      `chaos: ${kills.dashboard} dashboard and ${kills.agent} agent SIGKILLs; statuses ${
        JSON.stringify(Object.fromEntries(byStatus))
      }; ${endedOnItsOwn} interrupted commands ended on their own while their agent was down`,
    );
    assert.ok(kills.dashboard + kills.agent >= 5, "enough chaos happened");
  } finally {
    for (const proc of agentProcs) await proc[Symbol.asyncDispose]();
    for (const d of dashboards) await d[Symbol.asyncDispose]();
  }
});
