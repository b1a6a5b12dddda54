/** @jsxImportSource hono/jsx */
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
import { formatLabels, parseLabels, parseMaxConcurrency } from "../../protocol/runs.ts";
import {
  formatDuration,
  formatTime,
  named,
  statusTone,
  visibleText,
  withoutTerminalCodes,
} from "./format.ts";
import { type Frame, Layout, NoScriptNote, StatusBadge } from "./pages.tsx";

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

/** Agents a target names in words before the rest are counted (a run may name 10,000). */
export const TARGET_AGENTS_SHOWN = 10;

/** Rows of agents on one page of a run: each is laid out again at every refresh. */
export const RUN_AGENTS_PAGE_SIZE = 100;

/** The target in words, its first {@link TARGET_AGENTS_SHOWN} agents named and the rest counted. */
export function targetText(target: RunView["target"]): string {
  const parts: string[] = [];
  if (target.agents) {
    const more = target.agents.length - TARGET_AGENTS_SHOWN;
    const named = target.agents.slice(0, TARGET_AGENTS_SHOWN).join(", ");
    parts.push(`agents ${named}${more > 0 ? ` and ${more} more` : ""}`);
  }
  if (target.deployment) parts.push(`deployment ${target.deployment}`);
  if (target.labels && Object.keys(target.labels).length > 0) {
    parts.push(`labels ${formatLabels(target.labels)}`);
  }
  return visibleText(parts.join(" and "));
}

function RunBadge(props: { status: string }) {
  return <span class={`status ${statusTone(runTone(props.status))}`}>{props.status}</span>;
}

/** Runs the runs page lists, newest first (the runs API has no cursor to page further). */
export const RUNS_SHOWN = 100;

/**
 * The runs page: newest first.
 *
 * @param props Frame, the runs, and whether older runs than these exist (not listed).
 */
export function RunsPage(props: Frame & { runs: RunSummaryJson[]; more?: boolean }) {
  return (
    <Layout {...props} title="Runs" current="runs">
      <p>
        <a href="/runs/new">Start a run</a>
      </p>
      <NoScriptNote />
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
                    <td data-label="Target" class="text">{targetText(run.target)}</td>
                    <td data-label="Command" class="text">
                      <code>{visibleText(run.name)}</code>
                    </td>
                    <td data-label="Created">
                      <time datetime={run.created_at}>{formatTime(run.created_at) ?? "—"}</time>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        {props.more
          ? (
            <p class="hint" id="runs-more">
              {`Only the newest ${RUNS_SHOWN} runs are listed; an older run's page is ` +
                "/runs/ID, its id as status run list --limit 500 shows it."}
            </p>
          )
          : null}
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
        {formatDuration(a.duration_secs)}
      </td>
      <td data-label="Output" class="text">
        {visibleText(a.first_line !== null ? withoutTerminalCodes(a.first_line) : a.error ?? "—")}
      </td>
      <td data-label="Command" class="text">
        {commandLink
          ? <a href={`/commands/${encodeURIComponent(a.command_id)}`}>{a.command_id}</a>
          : "—"}
      </td>
    </tr>
  );
}

/**
 * How many pages of {@link RUN_AGENTS_PAGE_SIZE} agents a run's page has.
 *
 * @param run The run.
 */
export function runPageCount(run: Pick<RunView, "agents">): number {
  return Math.max(1, Math.ceil(run.agents.length / RUN_AGENTS_PAGE_SIZE));
}

function runPageHref(run: Pick<RunView, "id">, page: number): string {
  const path = `/runs/${encodeURIComponent(run.id)}`;
  return page > 1 ? `${path}?page=${page}` : path;
}

/**
 * One run: what it runs where, its totals, a row per agent ({@link RUN_AGENTS_PAGE_SIZE} a page,
 * in the run's order), and a cancel button while it goes on. The detail is re-read every two
 * seconds until the run ends.
 *
 * @param props Frame, the run, a notice and the page of its agents (from 1; default 1).
 */
export function RunPage(props: Frame & { run: RunView; notice?: Child; page?: number }) {
  const run = props.run;
  const over = ended(run);
  const pages = runPageCount(run);
  const page = Math.min(Math.max(1, props.page ?? 1), pages);
  const first = (page - 1) * RUN_AGENTS_PAGE_SIZE;
  const rows = run.agents.slice(first, first + RUN_AGENTS_PAGE_SIZE);
  return (
    <Layout {...props} title={`Run ${run.id}`} current="runs">
      {props.notice ? <p class="notice info" role="status">{props.notice}</p> : null}
      {over ? null : <NoScriptNote />}
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
            <code>{visibleText(run.name)}</code>
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
          <caption class="sr-only">
            {pages > 1
              ? `Agents ${first + 1}–${first + rows.length} of the run`
              : "Every agent of the run"}
          </caption>
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
            {rows.map((agent) => <AgentRow agent={agent} />)}
          </tbody>
        </table>
        {pages > 1
          ? (
            <nav class="pager" aria-label="Pages">
              {page > 1 ? <a href={runPageHref(run, 1)} rel="first">First</a> : null}
              {page > 1 ? <a href={runPageHref(run, page - 1)} rel="prev">Previous</a> : null}
              <span>{`Agents ${first + 1}–${first + rows.length} of ${run.agents.length}`}</span>
              {page < pages ? <a href={runPageHref(run, page + 1)} rel="next">Next</a> : null}
            </nav>
          )
          : null}
      </div>
    </Layout>
  );
}

/** What the start-a-run form was filled with. */
export interface RunFormValues {
  /** The id the run gets (one per form shown, so a form sent twice starts one run). */
  id?: string;
  name?: string;
  agents?: string;
  deployment?: string;
  labels?: string;
  concurrency?: string;
  errors?: string;
  timeout?: string;
  ttl?: string;
}

function Field(
  props: {
    id: keyof RunFormValues;
    label: string;
    hint: string;
    values: RunFormValues;
    placeholder?: string;
    required?: boolean;
  },
) {
  const id = `run-${props.id}`;
  return (
    <>
      <label for={id}>{props.label}</label>
      <input
        id={id}
        name={props.id}
        type="text"
        required={props.required}
        maxlength={4096}
        autocomplete="off"
        spellcheck={false}
        placeholder={props.placeholder}
        value={props.values[props.id] ?? ""}
        aria-describedby={`${id}-hint`}
      />
      <p class="hint" id={`${id}-hint`}>{props.hint}</p>
    </>
  );
}

/**
 * The start-a-run form.
 *
 * @param props Frame, the values to show again and an error.
 */
export function StartRunPage(props: Frame & { values: RunFormValues; error?: string }) {
  const { values } = props;
  return (
    <Layout {...props} title="Start a run" current="runs">
      {props.error ? <p class="notice error" role="alert">{props.error}</p> : null}
      <form method="post" action="/runs/new" class="panel">
        <input type="hidden" name="csrf" value={props.csrf ?? ""} />
        {values.id ? <input type="hidden" name="id" value={values.id} autocomplete="off" /> : null}
        <Field
          id="name"
          label="Command line"
          hint="Run without a shell on every agent of the target."
          placeholder="df -h /tmp"
          required
          values={values}
        />
        <Field
          id="agents"
          label="Agents (optional)"
          hint="Agent ids separated by commas."
          placeholder="web-1, web-2"
          values={values}
        />
        <Field
          id="deployment"
          label="Deployment (optional)"
          hint="Agents whose heartbeat names this deployment."
          placeholder="prod"
          values={values}
        />
        <Field
          id="labels"
          label="Labels (optional)"
          hint="key=value pairs separated by commas; an agent must carry every one."
          placeholder="role=web"
          values={values}
        />
        <Field
          id="concurrency"
          label="At most at once (optional)"
          hint="A number, or a share of the agents such as 10%. Empty: all at once."
          placeholder="10%"
          values={values}
        />
        <Field
          id="errors"
          label="Failures allowed (optional)"
          hint="After more failures than this nothing more starts. Empty: never stop."
          placeholder="2"
          values={values}
        />
        <Field
          id="timeout"
          label="Timeout in seconds (optional)"
          hint="Each command's deadline on its agent."
          values={values}
        />
        <Field
          id="ttl"
          label="Queue expiry in seconds (optional)"
          hint="A command still queued this long (an offline agent) ends expired."
          values={values}
        />
        <button type="submit">Start the run</button>
      </form>
    </Layout>
  );
}

/**
 * Turns the form into a `POST /api/v1/runs` body.
 *
 * @param values The form.
 * @returns The body, or a sentence saying what is wrong.
 */
export function runRequestOfForm(
  values: RunFormValues,
): { body: Record<string, unknown> } | { error: string } {
  if (!values.name?.trim()) return { error: "Enter a command line." };
  const target: Record<string, unknown> = {};
  const agents = (values.agents ?? "").split(",").map((a) => a.trim()).filter(Boolean);
  if (agents.length > 0) target.agents = agents;
  if (values.deployment?.trim()) target.deployment = values.deployment.trim();
  if (values.labels?.trim()) {
    try {
      target.labels = parseLabels(values.labels);
    } catch (error) {
      return { error: `Labels: ${(error as Error).message}.` };
    }
  }
  if (Object.keys(target).length === 0) {
    return { error: "Name the agents, a deployment or labels." };
  }
  const body: Record<string, unknown> = { name: values.name, target };
  if (values.id) body.id = values.id;
  if (values.concurrency?.trim()) {
    try {
      body.max_concurrency = parseMaxConcurrency(values.concurrency);
    } catch (error) {
      return { error: `At most at once: ${(error as Error).message}.` };
    }
  }
  const params: Record<string, number> = {};
  for (
    const [key, field, label, max] of [
      ["max_errors", "errors", "Failures allowed", 100_000],
      ["timeout_secs", "timeout", "Timeout", 86_400],
      ["ttl_secs", "ttl", "Queue expiry", 30 * 86_400],
    ] as const
  ) {
    const raw = values[field]?.trim();
    if (!raw) continue;
    const min = key === "max_errors" ? 0 : 1;
    if (!/^\d{1,9}$/.test(raw) || Number(raw) < min || Number(raw) > max) {
      return {
        error: `${label} must be a whole number from ${min} to ${max}, got "${named(raw)}".`,
      };
    }
    if (key === "max_errors") body.max_errors = Number(raw);
    else params[key] = Number(raw);
  }
  if (Object.keys(params).length > 0) body.params = params;
  return { body };
}
