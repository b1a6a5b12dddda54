// Hono renders these on the server once: list items need no React-style `key`.
// deno-lint-ignore-file jsx-key

/**
 * The console's pages of fan-out runs: the list (`/runs`) and one run (`/runs/{id}`: totals and
 * one row per agent, refreshed every two seconds while it goes on, with a cancel button). They
 * read the runs API in process, like the other pages.
 *
 * @module
 */
import type { Child } from "hono/jsx";
import type { RunAgentView, RunView } from "../../protocol/runs.ts";
import { formatLabels } from "../../protocol/runs.ts";
import { formatTime, statusTone } from "./format.ts";
import { type Frame, Layout, StatusBadge } from "./pages.tsx";

/** A run as the list shows it (no per-agent rows). */
export type RunSummaryJson = Omit<RunView, "agents">;

/** Whether a run has ended. */
function ended(run: Pick<RunView, "status">): boolean {
  return run.status === "succeeded" || run.status === "failed" || run.status === "cancelled";
}

function runTone(status: string): string {
  switch (status) {
    case "succeeded":
      return "success";
    case "running":
    case "cancelling":
      return "running";
    default:
      return status;
  }
}

/** The totals in words: `18 success · 2 rejected · 5 skipped of 25`. */
export function totalsText(totals: Record<string, number>): string {
  const skip = new Set(["total", "failed_total", "active"]);
  const parts = Object.entries(totals).filter(([key, n]) => !skip.has(key) && n > 0)
    .sort(([a], [b]) => a.localeCompare(b)).map(([key, n]) => `${n} ${key}`);
  return `${parts.join(" · ") || "no agents"} of ${totals.total ?? 0}`;
}

/** The target in words. */
export function targetText(target: RunView["target"]): string {
  const parts: string[] = [];
  if (target.agents) parts.push(`agents ${target.agents.join(", ")}`);
  if (target.deployment) parts.push(`deployment ${target.deployment}`);
  if (target.labels && Object.keys(target.labels).length > 0) {
    parts.push(`labels ${formatLabels(target.labels)}`);
  }
  return parts.join(" and ");
}

function RunBadge(props: { status: string }) {
  return <span class={`status ${statusTone(runTone(props.status))}`}>{props.status}</span>;
}

/**
 * The runs page: newest first.
 *
 * @param props Frame and the runs.
 */
export function RunsPage(props: Frame & { runs: RunSummaryJson[] }) {
  return (
    <Layout {...props} title="Runs" current="runs">
      <div id="runs" data-refresh-secs="5">
        {props.runs.length === 0
          ? (
            <p>
              No run yet. Start one with{" "}
              <code>status enqueue "uname -a" --label role=web --max-concurrency 5 --wait</code>.
            </p>
          )
          : (
            <table class="cards">
              <caption class="sr-only">Fan-out runs, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Run</th>
                  <th scope="col">Status</th>
                  <th scope="col">Agents</th>
                  <th scope="col">Target</th>
                  <th scope="col">Command</th>
                  <th scope="col">Created</th>
                </tr>
              </thead>
              <tbody>
                {props.runs.map((run) => (
                  <tr data-run={run.id}>
                    <th scope="row" data-label="Run">
                      <a href={`/runs/${encodeURIComponent(run.id)}`}>{run.id}</a>
                    </th>
                    <td data-label="Status">
                      <RunBadge status={run.status} />
                    </td>
                    <td data-label="Agents">{totalsText(run.totals)}</td>
                    <td data-label="Target">{targetText(run.target)}</td>
                    <td data-label="Command">
                      <code>{run.name}</code>
                    </td>
                    <td data-label="Created">
                      <time datetime={run.created_at}>{formatTime(run.created_at) ?? "—"}</time>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
      </div>
    </Layout>
  );
}

function AgentRow(props: { agent: RunAgentView }) {
  const a = props.agent;
  const commandLink = a.state !== "pending" && a.state !== "skipped" && a.state !== "starting";
  return (
    <tr data-agent={a.agent_id} data-state={a.state}>
      <th scope="row" data-label="Agent">{a.agent_id}</th>
      <td data-label="Status">
        <StatusBadge status={a.state} />
        {a.offline_at_creation ? <span class="sub">offline at creation</span> : null}
      </td>
      <td data-label="Exit">{a.exit_code === null ? "—" : String(a.exit_code)}</td>
      <td data-label="Duration">
        {a.duration_secs === null ? "—" : `${a.duration_secs.toFixed(1)} s`}
      </td>
      <td data-label="Output">
        {a.first_line ?? a.error ?? "—"}
      </td>
      <td data-label="Command">
        {commandLink
          ? <a href={`/commands/${encodeURIComponent(a.command_id)}`}>{a.command_id}</a>
          : "—"}
      </td>
    </tr>
  );
}

/**
 * One run: what it runs where, its totals, one row per agent, and a cancel button while it goes
 * on. The detail is re-read every two seconds until the run ends.
 *
 * @param props Frame, the run and a notice.
 */
export function RunPage(props: Frame & { run: RunView; notice?: Child }) {
  const run = props.run;
  const over = ended(run);
  return (
    <Layout {...props} title={`Run ${run.id}`} current="runs">
      {props.notice ? <p class="notice info" role="status">{props.notice}</p> : null}
      <div
        id="run-detail"
        data-status={run.status}
        data-refresh-secs={over ? undefined : "2"}
      >
        <dl class="panel">
          <dt>Status</dt>
          <dd>
            <RunBadge status={run.status} />
          </dd>
          <dt>Command</dt>
          <dd>
            <code>{run.name}</code>
          </dd>
          <dt>Target</dt>
          <dd>{targetText(run.target)}</dd>
          <dt>Rate</dt>
          <dd>
            {`at most ${run.max_concurrency} at once`}
            {run.max_concurrency_spec !== null && typeof run.max_concurrency_spec === "string"
              ? ` (${run.max_concurrency_spec})`
              : ""}
            {run.max_errors === null ? "" : `; stops after ${run.max_errors + 1} failures`}
          </dd>
          <dt>Agents</dt>
          <dd>{totalsText(run.totals)}</dd>
          <dt>Created</dt>
          <dd>
            <time datetime={run.created_at}>{formatTime(run.created_at) ?? "—"}</time>
          </dd>
          <dt>Ended</dt>
          <dd>{run.completed_at ? formatTime(run.completed_at) ?? "—" : "—"}</dd>
        </dl>
        {!over && props.csrf !== undefined
          ? (
            <form method="post" action={`/runs/${encodeURIComponent(run.id)}/cancel`}>
              <input type="hidden" name="csrf" value={props.csrf} />
              <button type="submit" class="danger">Cancel the run</button>
            </form>
          )
          : null}
        <table class="cards">
          <caption class="sr-only">Every agent of the run</caption>
          <thead>
            <tr>
              <th scope="col">Agent</th>
              <th scope="col">Status</th>
              <th scope="col">Exit</th>
              <th scope="col">Duration</th>
              <th scope="col">Output</th>
              <th scope="col">Command</th>
            </tr>
          </thead>
          <tbody>
            {run.agents.map((agent) => <AgentRow agent={agent} />)}
          </tbody>
        </table>
      </div>
    </Layout>
  );
}
