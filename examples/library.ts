/**
 * The library in one program: the executor alone, then a dashboard (dev mode, in memory) and an
 * agent in one process, with an operator enqueueing a command and waiting for its result, then
 * fanning one out as a run. The same code as the README's "As a library" example, importing this
 * checkout's `mod.ts`.
 *
 * Run from the repository's root: `deno run --allow-net --allow-run examples/library.ts`
 *
 * @module
 */
import {
  createPolicy,
  createRun,
  OperatorClient,
  runAgent,
  runCommand,
  startServer,
  waitForRun,
} from "../mod.ts";

// The executor alone: no shell, an allowlist, a deadline, bounded output.
const result = await runCommand("uname -a", {
  policy: createPolicy({ allowedPrograms: ["uname"] }),
  defaultTimeoutSecs: 10,
});
console.log(result.status, result.exit_code, result.stdout);

// A dashboard (dev mode, in memory) and an agent in one process.
await using server = await startServer({ port: 0, db: ":memory:" });
const stop = new AbortController();
const agent = runAgent({ dashboardUrl: server.url, agentId: "web-1" }, stop.signal);
const operator = new OperatorClient({ dashboardUrl: server.url });
const { id } = await operator.enqueue({ agentId: "web-1", name: "echo hi" });
console.log((await operator.waitForFinal(id)).result?.stdout); // "hi\n"
// One command fanned out to a group of agents (here the one), as "status run start" does.
const run = await createRun(operator, { name: "uname -r", target: { agents: ["web-1"] } });
console.log((await waitForRun(operator, run.id)).status); // "succeeded"
stop.abort();
await agent;
