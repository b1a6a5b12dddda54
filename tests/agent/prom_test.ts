import assert from "node:assert/strict";
// @ts-types="../server/_prometheus_parser.d.ts"
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { AgentMetrics, runAgent } from "../../src/agent/mod.ts";
import { command } from "../_stub_dashboard.ts";
import {
  cancellable,
  captureLogs,
  FakeExecutor,
  memoryAgentState,
  RecordingClock,
} from "./_helpers.ts";

async function lastPollSecs(metrics: AgentMetrics): Promise<number> {
  const families = parsePrometheusTextFormat(await (await metrics.render()).text());
  const family = families.find((f) =>
    f.name === "status_agent_last_poll_success_timestamp_seconds"
  );
  assert.ok(family, "the metric is exported");
  return Number(family.metrics[0].value);
}

function pathOf(input: RequestInfo | URL): string {
  return new URL(input instanceof Request ? input.url : String(input)).pathname;
}

Deno.test("the agent's last successful poll reads as its start until a long-poll succeeds", async () => {
  // It read 0 until the first long-poll returned (up to 30 s): an alert on time() minus it fired
  // for every agent that had just started.
  using _logs = captureLogs();
  const clock = new RecordingClock(1_800_000_000_000);
  const metrics = new AgentMetrics({ agentId: "agent-1", version: "0", instanceId: "i" });
  const stop = new AbortController();
  const waitOpen = Promise.withResolvers<void>();
  const answer = Promise.withResolvers<Response>();
  const running = runAgent({
    dashboardUrl: "http://127.0.0.1:9",
    agentId: "agent-1",
    heartbeat: false,
    executor: new FakeExecutor(),
    state: memoryAgentState(),
    fetch: () => {
      waitOpen.resolve();
      return answer.promise;
    },
    metrics,
    clock,
  }, stop.signal);
  await waitOpen.promise;
  assert.equal(await lastPollSecs(metrics), 1_800_000_000);
  clock.advance(20_000);
  stop.abort();
  answer.resolve(new Response(null, { status: 204 }));
  await running;
});

Deno.test("a running command's answered cancel-wait counts as a successful long-poll", async () => {
  // The agent polls for no new command while one runs: an hour-long command made the last
  // successful poll an hour old, although the agent was talking to the dashboard all along.
  using _logs = captureLogs();
  const clock = new RecordingClock(1_800_000_000_000);
  const metrics = new AgentMetrics({ agentId: "agent-1", version: "0", instanceId: "i" });
  const stop = new AbortController();
  const executor = new FakeExecutor();
  executor.behaviour = cancellable(new Promise(() => {}));
  let waits = 0;
  let cancelWaits = 0;
  let seenDuringCommand = 0;
  const fakeFetch: typeof fetch = async (input) => {
    const path = pathOf(input);
    if (path.endsWith("/cancel-wait")) {
      if (++cancelWaits === 1) {
        clock.advance(30_000);
        return new Response(null, { status: 204 });
      }
      seenDuringCommand = await lastPollSecs(metrics);
      return Response.json({ cancel_requested: true });
    }
    if (path.includes("/commands/wait/")) {
      if (++waits === 1) return Response.json(command("cmd-1", "sleep 3600"));
      stop.abort();
      return new Response(null, { status: 204 });
    }
    if (path.endsWith("/ack")) return Response.json({ acked: true, lease_expires_at: null });
    return Response.json({ accepted: true });
  };
  await runAgent({
    dashboardUrl: "http://127.0.0.1:9",
    agentId: "agent-1",
    heartbeat: false,
    liveOutput: false,
    executor,
    state: memoryAgentState(),
    fetch: fakeFetch,
    metrics,
    clock,
  }, stop.signal);
  assert.equal(cancelWaits, 2);
  // The first wait answered at the start; the cancel-wait 1 s (its delay) plus 30 s later.
  assert.equal(seenDuringCommand, 1_800_000_031);
});

Deno.test("the agent shows every final status and poll error kind at 0 before the first", async () => {
  // They appeared only with their first increment, at 1, which Prometheus's increase() does not
  // count: the first failed command or refused poll of a fresh agent went unseen.
  const metrics = new AgentMetrics({ agentId: "agent-1", version: "0", instanceId: "i" });
  const families = parsePrometheusTextFormat(await (await metrics.render()).text());
  const series = (name: string, label: string) =>
    new Map(
      families.find((f) => f.name === name)!.metrics.map((m) => [
        (m.labels as Record<string, string>)[label],
        Number(m.value),
      ]),
    );
  const commands = series("status_agent_commands_total", "status");
  for (const status of ["success", "failed", "timeout", "killed", "rejected", "cancelled"]) {
    assert.equal(commands.get(status), 0, `status ${status}`);
  }
  const errors = series("status_agent_poll_errors_total", "kind");
  for (const kind of ["network", "server", "throttled", "auth", "redirect", "refused", "invalid"]) {
    assert.equal(errors.get(kind), 0, `kind ${kind}`);
  }
  metrics.pollFailed("auth");
  const after = parsePrometheusTextFormat(await (await metrics.render()).text());
  const auth = after.find((f) => f.name === "status_agent_poll_errors_total")!.metrics
    .find((m) => (m.labels as Record<string, string>).kind === "auth");
  assert.equal(Number(auth?.value), 1);
});
