/** @jsxImportSource hono/jsx */
// Hono renders these on the server once: list items need no React-style `key` (and a `key` would
// be written out as an attribute).
// deno-lint-ignore-file jsx-key

/**
 * The console's pages, rendered on the dashboard with Hono's JSX: every stored string goes
 * through JSX text or attribute escaping, never into markup. The pages work without script; the
 * one script (`/static/console.js`) adds live updates to the command page.
 *
 * @module
 */
import type { Child } from "hono/jsx";
import { COMMAND_STATUSES, formatLabels, PRIORITIES } from "../../protocol/mod.ts";
import {
  type AgentJson,
  agentState,
  type CommandJson,
  formatAgo,
  formatDuration,
  formatHeartbeat,
  formatTime,
  isFinal,
  outputView,
  statusTone,
  visibleText,
} from "./format.ts";

/** What every page's frame needs. */
export interface Frame {
  /** The dashboard runs in dev mode (no login; "dev mode" in the header). */
  devMode: boolean;
  /** The session's CSRF token, when a session exists (the logout and other forms need it). */
  csrf?: string;
  /** The page the navigation marks as current. */
  current?: "agents" | "commands" | "runs" | "enqueue";
}

/** Statuses a command can have, for the filter. */
export const STATUS_CHOICES: readonly string[] = COMMAND_STATUSES;

function Csrf(props: { token?: string }) {
  return <input type="hidden" name="csrf" value={props.token ?? ""} />;
}

/**
 * The frame of every page: header, navigation, main.
 *
 * @param props Title, frame and content.
 */
export function Layout(props: Frame & { title: string; children?: Child }) {
  const nav = (key: Frame["current"], href: string, label: string) => (
    <a href={href} aria-current={props.current === key ? "page" : undefined}>{label}</a>
  );
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="referrer" content="same-origin" />
        <title>{`${props.title} · status`}</title>
        <link rel="stylesheet" href="/static/console.css" />
        <script src="/static/console.js" defer></script>
      </head>
      <body>
        <a class="skip" href="#main">Skip to content</a>
        <header class="top">
          <a class="brand" href="/">status</a>
          {props.devMode
            ? (
              <span class="badge dev" title="No admin token: the console and API are open">
                dev mode
              </span>
            )
            : null}
          <nav aria-label="Console">
            {nav("agents", "/", "Agents")}
            {nav("commands", "/commands", "Commands")}
            {nav("runs", "/runs", "Runs")}
            {nav("enqueue", "/enqueue", "Enqueue")}
          </nav>
          {!props.devMode && props.csrf
            ? (
              <form method="post" action="/logout" class="logout">
                <Csrf token={props.csrf} />
                <button type="submit">Log out</button>
              </form>
            )
            : null}
        </header>
        <main id="main" tabindex={-1}>
          <h1>{props.title}</h1>
          {props.children}
        </main>
      </body>
    </html>
  );
}

/**
 * A status as a coloured badge with its word.
 *
 * @param props The status.
 */
export function StatusBadge(props: { status: string }) {
  return <span class={`status ${statusTone(props.status)}`}>{props.status}</span>;
}

/**
 * Says, where script is off, that a page which follows what it shows does not: it is read again
 * only when reloaded. Outside the parts the script swaps in.
 */
export function NoScriptNote() {
  return (
    <noscript>
      <p class="notice info" id="noscript-note">
        JavaScript is off, so this page does not update itself: reload it to see what changed.
      </p>
    </noscript>
  );
}

function Notice(props: { kind: "error" | "info"; children?: Child }) {
  return (
    <p class={`notice ${props.kind}`} role={props.kind === "error" ? "alert" : "status"}>
      {props.children}
    </p>
  );
}

/**
 * The login form (outside dev mode).
 *
 * @param props The login form's CSRF token, where to go after, and a message.
 */
export function LoginPage(
  props: { csrf: string; next: string; error?: string; info?: string },
) {
  return (
    <Layout title="Log in" devMode={false}>
      {props.error ? <Notice kind="error">{props.error}</Notice> : null}
      {props.info ? <Notice kind="info">{props.info}</Notice> : null}
      <form method="post" action="/login" class="panel narrow">
        <Csrf token={props.csrf} />
        <input type="hidden" name="next" value={props.next} />
        <label for="token">Admin token</label>
        <input
          id="token"
          name="token"
          type="password"
          autocomplete="current-password"
          required
          autofocus
        />
        <p class="hint">The dashboard's STATUS_ADMIN_TOKEN.</p>
        <button type="submit">Log in</button>
      </form>
    </Layout>
  );
}

/** Which part of the fleet a page of the agents list shows. */
export interface AgentsPageRange {
  /** The page starts after this agent id (the page's `after`); absent: the first page. */
  after?: string;
  /** The position of the page's first agent in the whole list, from 1. */
  from: number;
  /** Agents in the whole list. */
  total: number;
  /** The `after` of the next page, when agents follow this page. */
  next?: string;
}

/**
 * An agents-list URL.
 *
 * @param after The page starts after this agent id; absent: the first page.
 */
export function agentsHref(after?: string): string {
  return after ? `/?${new URLSearchParams({ after })}` : "/";
}

/**
 * The agents page: one page of agents, by id.
 *
 * @param props Frame, the page's agents, the current time and where the page lies in the list
 * (absent: the list is the whole fleet).
 */
export function AgentsPage(
  props: Frame & { agents: AgentJson[]; now: number; range?: AgentsPageRange },
) {
  const range = props.range ?? { from: 1, total: props.agents.length };
  const to = range.from + props.agents.length - 1;
  return (
    <Layout {...props} title="Agents" current="agents">
      <NoScriptNote />
      <div id="agents" data-refresh-secs="5">
        {props.agents.length === 0
          ? (range.after
            ? (
              <p>
                No agent after {range.after}. <a href={agentsHref()}>Go to the first page</a>
              </p>
            )
            : (
              <p>
                No agent is known yet. Start one with <code>status --agent-id ID</code>{" "}
                (dev mode) or add one with <code>status agents add ID</code>.
              </p>
            ))
          : (
            <table class="cards">
              <caption class="sr-only">Every agent, with its state and last heartbeat</caption>
              <thead>
                <tr>
                  <th scope="col">Agent</th>
                  <th scope="col">State</th>
                  <th scope="col">Deployment</th>
                  <th scope="col">Labels</th>
                  <th scope="col">Version</th>
                  <th scope="col">Last seen</th>
                  <th scope="col">Heartbeat</th>
                  <th scope="col">Running</th>
                  <th scope="col">Queued</th>
                </tr>
              </thead>
              <tbody>
                {props.agents.map((agent) => {
                  const state = agentState(agent, props.now);
                  const running = agent.running ?? null;
                  return (
                    <tr data-agent={agent.id}>
                      <th scope="row" data-label="Agent">
                        <a href={`/commands?agent=${encodeURIComponent(agent.id)}`}>{agent.id}</a>
                      </th>
                      <td data-label="State">
                        <span class={`state ${state}`} data-state={state}>
                          {state === "waiting" ? "online · waiting" : state}
                        </span>
                      </td>
                      <td data-label="Deployment" class="text">
                        {agent.deployment_hash ? visibleText(agent.deployment_hash) : "—"}
                      </td>
                      <td data-label="Labels" class="text">
                        {visibleText(formatLabels(agent.labels)) || "—"}
                      </td>
                      <td data-label="Version" class="text">
                        {agent.version ? visibleText(agent.version) : "—"}
                      </td>
                      <td data-label="Last seen">
                        <time datetime={agent.last_seen_at ?? undefined}>
                          {formatAgo(agent.last_seen_at, props.now)}
                        </time>
                      </td>
                      <td data-label="Heartbeat">
                        {formatHeartbeat(agent.heartbeat)}
                        {agent.heartbeat_at
                          ? (
                            <span class="sub">
                              <time datetime={agent.heartbeat_at}>
                                {formatAgo(agent.heartbeat_at, props.now)}
                              </time>
                            </span>
                          )
                          : null}
                      </td>
                      <td data-label="Running" class="text">
                        {running
                          ? (
                            <a href={`/commands/${encodeURIComponent(running.id)}`}>
                              {running.name === undefined ? running.id : visibleText(running.name)}
                            </a>
                          )
                          : "—"}
                      </td>
                      <td data-label="Queued">{String(agent.queued ?? 0)}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          )}
        {range.after || range.next
          ? (
            <nav class="pager" aria-label="Pages">
              {range.after ? <a href={agentsHref()} rel="first">First</a> : null}
              {props.agents.length > 0
                ? <span>{`Agents ${range.from}–${to} of ${range.total}`}</span>
                : null}
              {range.next ? <a href={agentsHref(range.next)} rel="next">Next</a> : null}
            </nav>
          )
          : null}
      </div>
    </Layout>
  );
}

/** The filter and page of the commands list. */
export interface CommandFilter {
  agent?: string;
  status?: string;
  /** The page of the commands before this cursor (the list's `next_before`); absent: the first. */
  before?: string;
}

/**
 * A commands-list URL.
 *
 * @param filter Agent, status and page.
 */
export function commandsHref(filter: CommandFilter): string {
  const query = new URLSearchParams();
  if (filter.agent) query.set("agent", filter.agent);
  if (filter.status) query.set("status", filter.status);
  if (filter.before) query.set("before", filter.before);
  const text = query.toString();
  return text ? `/commands?${text}` : "/commands";
}

/**
 * The agents a form offers: the first ones by id, and whether the fleet has more (the form then
 * takes a typed id, these its suggestions).
 */
export interface AgentChoices {
  /** Agent ids, by id. */
  ids: string[];
  /** The fleet has more agents than these. */
  more: boolean;
}

/**
 * The suggestions of a typed agent id: a `<datalist>` of the choices.
 *
 * @param props The datalist's id and the agent ids.
 */
function AgentSuggestions(props: { id: string; ids: string[] }) {
  return (
    <datalist id={props.id}>
      {props.ids.map((id) => <option value={id} />)}
    </datalist>
  );
}

/**
 * The commands page: newest first, filtered, paged.
 *
 * @param props Frame, one page of commands, the agents to choose from, whether the filter's agent
 * is registered, the filter and the cursor of the next page (older commands) when there is one.
 */
export function CommandsPage(
  props: Frame & {
    commands: CommandJson[];
    agents: AgentChoices;
    /** Whether the filter's agent is registered (no agent filter: `true`). */
    agentRegistered: boolean;
    filter: CommandFilter;
    older?: string;
  },
) {
  const { filter, agents } = props;
  const unregistered = filter.agent !== undefined && !props.agentRegistered;
  return (
    <Layout {...props} title="Commands" current="commands">
      <form method="get" action="/commands" class="filters" role="search">
        <div class="field">
          <label for="filter-agent">Agent</label>
          {agents.more
            ? (
              // A fleet larger than a list: the agent is typed, the first ones suggested.
              <>
                <input
                  id="filter-agent"
                  name="agent"
                  type="text"
                  list="filter-agent-choices"
                  maxlength={128}
                  autocomplete="off"
                  spellcheck={false}
                  placeholder="All agents"
                  value={filter.agent ?? ""}
                  aria-describedby="filter-agent-hint"
                />
                <AgentSuggestions id="filter-agent-choices" ids={agents.ids} />
                <p class="hint" id="filter-agent-hint">
                  {unregistered ? `${filter.agent} is not registered. ` : ""}Empty: all agents.
                </p>
              </>
            )
            : (
              <select id="filter-agent" name="agent">
                <option value="">All agents</option>
                {agents.ids.map((id) => (
                  <option value={id} selected={id === filter.agent}>{id}</option>
                ))}
                {
                  // An agent the list does not know (removed since, or typed): the filter still
                  // names it, rather than showing "All agents" over its commands alone.
                  unregistered
                    ? (
                      <option value={filter.agent} selected>
                        {`${filter.agent} (not registered)`}
                      </option>
                    )
                    : null
                }
              </select>
            )}
        </div>
        <div class="field">
          <label for="filter-status">Status</label>
          <select id="filter-status" name="status">
            <option value="">All statuses</option>
            {STATUS_CHOICES.map((status) => (
              <option value={status} selected={status === filter.status}>
                {status}
              </option>
            ))}
          </select>
        </div>
        <button type="submit">Filter</button>
      </form>
      {props.commands.length === 0
        ? (filter.before
          ? (
            <p>
              No older command matches.{" "}
              <a href={commandsHref({ ...filter, before: undefined })}>Go to the first page</a>
            </p>
          )
          : <p>No command matches.</p>)
        : (
          <table class="cards">
            <caption class="sr-only">Commands, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Command</th>
                <th scope="col">Status</th>
                <th scope="col">Agent</th>
                <th scope="col">Queued at</th>
                <th scope="col">Exit</th>
                <th scope="col">Duration</th>
              </tr>
            </thead>
            <tbody>
              {props.commands.map((command) => (
                <tr>
                  <th scope="row" data-label="Command">
                    <a href={`/commands/${encodeURIComponent(command.id)}`}>
                      <code>{visibleText(command.name)}</code>
                    </a>
                    <span class="sub">{command.id}</span>
                  </th>
                  <td data-label="Status">
                    <StatusBadge status={command.status} />
                  </td>
                  <td data-label="Agent" class="id">{command.agent_id}</td>
                  <td data-label="Queued at">{formatTime(command.created_at)}</td>
                  <td data-label="Exit" class="text">{exitText(command)}</td>
                  <td data-label="Duration">{formatDuration(command.result?.duration_secs)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      <nav class="pager" aria-label="Pages">
        {filter.before
          ? <a href={commandsHref({ ...filter, before: undefined })} rel="first">Newest</a>
          : null}
        <span>{filter.before ? "Older commands" : "Newest commands"}</span>
        {props.older
          ? <a href={commandsHref({ ...filter, before: props.older })} rel="next">Older</a>
          : null}
      </nav>
    </Layout>
  );
}

function exitText(command: CommandJson): string {
  const result = command.result;
  if (!result) return "—";
  if (result.signal) return `signal ${visibleText(result.signal)}`;
  return result.exit_code === null ? "—" : String(result.exit_code);
}

function Output(
  props: {
    stream: "stdout" | "stderr";
    text: string | null | undefined;
    encoding?: string;
    truncated: number | null | undefined;
  },
) {
  const view = outputView(props.text, props.encoding, props.truncated);
  return (
    <section class="output" aria-labelledby={`${props.stream}-title`}>
      <h3 id={`${props.stream}-title`}>{props.stream}</h3>
      {view.binary ? <p class="hint">Not UTF-8 text: invalid bytes are shown as �.</p> : null}
      {view.nulBytes ? <p class="hint">NUL bytes are shown as ␀.</p> : null}
      {view.bidiOverrides
        ? (
          <p class="hint">
            Bidirectional overrides and isolates, which would turn the text around, are shown as
            escapes (<code>\u202e</code>).
          </p>
        )
        : null}
      {view.terminalCodes
        ? (
          <p class="hint">
            Terminal colour and cursor codes are left out here; the API and{" "}
            <code>status result</code> keep them.
          </p>
        )
        : null}
      <pre id={props.stream} data-stream={props.stream} tabindex={0}>{view.head}{view.cutBytes > 0
        ? (
          <span class="cut" role="note">
            {`\n[… ${view.cutBytes} bytes of ${props.stream} were cut here …]\n`}
          </span>
        )
        : null}{view.tail}</pre>
      {view.cutBytes > 0
        ? (
          <p class="hint">
            The agent kept the first and the last bytes; {String(view.cutBytes)}{" "}
            bytes in between were dropped.
          </p>
        )
        : null}
    </section>
  );
}

/**
 * The enqueue form filled with a command's agent, command line, timeout and priority, or null
 * when the command has parameters the form does not take (they would be lost).
 *
 * @param command The command.
 */
export function againHref(command: CommandJson): string | null {
  const params = command.params ?? {};
  if (Object.keys(params).some((key) => key !== "timeout_secs" && key !== "priority")) return null;
  const query = new URLSearchParams({ agent: command.agent_id, name: command.name });
  if (typeof params.timeout_secs === "number") query.set("timeout", String(params.timeout_secs));
  if (typeof params.priority === "string") query.set("priority", params.priority);
  return `/enqueue?${query}`;
}

/**
 * Why a queued command waits, when its agent cannot take it now (as the enqueue's `warning` says,
 * which `status enqueue` prints): it is not registered, or offline.
 */
function QueuedFor(props: { command: CommandJson; agent: AgentJson | null; now: number }) {
  const { command, agent } = props;
  const expiry = command.expires_at
    ? `; it expires at ${formatTime(command.expires_at)} if still queued then`
    : "";
  if (agent === null) {
    return (
      <Notice kind="info">
        {`Agent ${command.agent_id} is not registered on this dashboard: the command waits in ` +
          `its queue until the agent is added and connects${expiry}.`}
      </Notice>
    );
  }
  if (agentState(agent, props.now) !== "offline") return null;
  const seen = agent.last_seen_at
    ? `is offline (last seen ${formatAgo(agent.last_seen_at, props.now)})`
    : "has never connected";
  return (
    <Notice kind="info">
      {`Agent ${command.agent_id} ${seen}: the command waits in its queue until the agent ` +
        `connects${expiry}.`}
    </Notice>
  );
}

/**
 * The part of the command page that live updates replace: everything about the command.
 *
 * @param props The command and the session's CSRF token.
 */
export function CommandDetail(
  props: {
    command: CommandJson;
    csrf?: string;
    /** The agent of a queued command (null: not registered), and the time, when looked up. */
    agent?: { agent: AgentJson | null; now: number };
  },
) {
  const { command } = props;
  const final = isFinal(command.status);
  const again = againHref(command);
  const result = command.result ?? null;
  // A command that ended without a result (its agent died while running it): what its agent sent
  // while it ran is the only output there is (kept for a while after the end).
  const sent = command.live_output;
  const live = !result && final && sent && (sent.stdout || sent.stderr) ? sent : undefined;
  const steps: Array<[string, string | null | undefined]> = [
    ["queued", command.created_at],
    ["delivered", command.delivered_at],
    ["acked", command.acked_at],
    ["started", command.started_at],
    ["finished", command.completed_at],
  ];
  return (
    <div
      id="command-detail"
      data-command-id={command.id}
      data-status={command.status}
      data-final={final ? "true" : "false"}
    >
      <p class="headline">
        <StatusBadge status={command.status} />
        <code class="cmdline">{visibleText(command.name)}</code>
      </p>
      {command.status === "queued" && props.agent
        ? <QueuedFor command={command} {...props.agent} />
        : null}
      {!final && command.cancel_requested
        ? <Notice kind="info">Cancel requested: waiting for the agent to stop the command.</Notice>
        : null}
      {!final && !command.cancel_requested
        ? (
          <form method="post" action={`/commands/${encodeURIComponent(command.id)}/cancel`}>
            <Csrf token={props.csrf} />
            <button type="submit" class="danger" id="cancel-button">Cancel command</button>
          </form>
        )
        : null}
      {again
        ? (
          <p>
            <a href={again}>Enqueue again…</a>
          </p>
        )
        : null}
      <dl class="facts">
        <dt>Id</dt>
        <dd>
          <code>{command.id}</code>
        </dd>
        <dt>Agent</dt>
        <dd>
          <a href={`/commands?agent=${encodeURIComponent(command.agent_id)}`}>
            {command.agent_id}
          </a>
        </dd>
        <dt>Priority</dt>
        <dd>{command.priority ?? "normal"}</dd>
        <dt>Attempts</dt>
        <dd>{String(command.attempt)}</dd>
        <dt>Exit</dt>
        <dd data-field="exit">{exitText(command)}</dd>
        <dt>Duration</dt>
        <dd>{formatDuration(result?.duration_secs)}</dd>
        {command.params?.timeout_secs !== undefined
          ? (
            <>
              <dt>Timeout</dt>
              <dd>{`${String(command.params.timeout_secs)} s`}</dd>
            </>
          )
          : null}
        {command.error
          ? (
            <>
              <dt>Error</dt>
              <dd>{visibleText(command.error)}</dd>
            </>
          )
          : null}
      </dl>
      <h2>Timeline</h2>
      <ol class="timeline">
        {steps.map(([label, at]) => (
          <li class={at ? "done" : "pending"}>
            <span class="step">{label}</span>{" "}
            <time datetime={at ?? undefined}>{formatTime(at)}</time>
          </li>
        ))}
      </ol>
      <h2>Output</h2>
      {!result && !final
        ? <p class="hint" id="output-hint">Output appears when the command ends.</p>
        : null}
      {!result && final && !live ? <p class="hint">No output was recorded.</p> : null}
      {live
        ? (
          <p class="hint" id="live-output-hint">
            {`It ended without a result: this is the output its agent sent while it ran (attempt ${
              String(live.attempt ?? command.attempt)
            }).`}
          </p>
        )
        : null}
      <Output
        stream="stdout"
        text={live ? live.stdout : result?.stdout}
        encoding={live ? live.stdout_encoding : result?.stdout_encoding}
        truncated={live ? live.stdout_truncated_bytes : result?.stdout_truncated_bytes}
      />
      <Output
        stream="stderr"
        text={live ? live.stderr : result?.stderr}
        encoding={live ? live.stderr_encoding : result?.stderr_encoding}
        truncated={live ? live.stderr_truncated_bytes : result?.stderr_truncated_bytes}
      />
    </div>
  );
}

/**
 * The command page.
 *
 * @param props Frame, the command and a notice (what a form just did).
 */
export function CommandPage(
  props: Frame & {
    command: CommandJson;
    notice?: string;
    agent?: { agent: AgentJson | null; now: number };
  },
) {
  return (
    <Layout {...props} title="Command" current="commands">
      {props.notice ? <Notice kind="info">{props.notice}</Notice> : null}
      {isFinal(props.command.status) ? null : <NoScriptNote />}
      <p class="sr-only" role="status" aria-live="polite" id="live-status"></p>
      <CommandDetail command={props.command} csrf={props.csrf} agent={props.agent} />
    </Layout>
  );
}

/** What the enqueue form was filled with. */
export interface EnqueueValues {
  /** The id the command gets (one per form shown, so a form sent twice enqueues once). */
  id?: string;
  agent?: string;
  name?: string;
  timeout?: string;
  priority?: string;
}

/**
 * The enqueue form.
 *
 * @param props Frame, the agents to choose from, whether the agent asked for is registered, the
 * values to show again and an error.
 */
export function EnqueuePage(
  props: Frame & {
    agents: AgentChoices;
    /** Whether `values.agent` is registered (none asked for: `true`). */
    agentRegistered: boolean;
    values: EnqueueValues;
    error?: string;
  },
) {
  const { values, agents } = props;
  return (
    <Layout {...props} title="Enqueue a command" current="enqueue">
      {props.error ? <Notice kind="error">{props.error}</Notice> : null}
      {agents.ids.length === 0
        ? <Notice kind="info">No agent is known yet: start one first.</Notice>
        : null}
      <form method="post" action="/enqueue" class="panel">
        <Csrf token={props.csrf} />
        {values.id ? <input type="hidden" name="id" value={values.id} autocomplete="off" /> : null}
        <label for="enqueue-agent">Agent</label>
        {agents.more
          ? (
            // A fleet larger than a list: the agent is typed, the first ones suggested.
            <>
              <input
                id="enqueue-agent"
                name="agent"
                type="text"
                list="enqueue-agent-choices"
                required
                maxlength={128}
                autocomplete="off"
                spellcheck={false}
                value={values.agent ?? ""}
                aria-describedby="enqueue-agent-hint"
              />
              <AgentSuggestions id="enqueue-agent-choices" ids={agents.ids} />
              <p class="hint" id="enqueue-agent-hint">
                {`The agent's id; the first ${agents.ids.length} agents are suggested.`}
              </p>
            </>
          )
          : (
            <select id="enqueue-agent" name="agent" required>
              {
                // An agent asked for that is not known: nothing is chosen in its place, so the
                // form cannot be sent to another agent by mistake.
                values.agent && !props.agentRegistered
                  ? <option value="" selected>Choose an agent</option>
                  : null
              }
              {agents.ids.map((id) => (
                <option value={id} selected={id === values.agent}>{id}</option>
              ))}
            </select>
          )}
        <label for="enqueue-name">Command line</label>
        <input
          id="enqueue-name"
          name="name"
          type="text"
          required
          maxlength={4096}
          autocomplete="off"
          spellcheck={false}
          placeholder="uname -a"
          value={values.name ?? ""}
          aria-describedby="enqueue-name-hint"
        />
        <p class="hint" id="enqueue-name-hint">
          Run without a shell: the agent's allowlist and path rules apply.
        </p>
        <label for="enqueue-timeout">Timeout in seconds (optional)</label>
        <input
          id="enqueue-timeout"
          name="timeout"
          type="number"
          min={1}
          max={86400}
          step={1}
          inputmode="numeric"
          value={values.timeout ?? ""}
          aria-describedby="enqueue-timeout-hint"
        />
        <p class="hint" id="enqueue-timeout-hint">Empty: the agent's default deadline.</p>
        <label for="enqueue-priority">Priority</label>
        <select id="enqueue-priority" name="priority">
          {PRIORITIES.map((priority) => (
            <option value={priority} selected={priority === (values.priority || "normal")}>
              {priority}
            </option>
          ))}
        </select>
        <button type="submit">Enqueue</button>
      </form>
    </Layout>
  );
}

/**
 * A page that says what went wrong, never with a stack trace.
 *
 * @param props Frame, title and message.
 */
export function ErrorPage(
  props: Frame & { title: string; message: string; children?: Child },
) {
  return (
    <Layout {...props} title={props.title}>
      <Notice kind="error">{props.message}</Notice>
      {props.children}
      <p>
        <a href="/">Back to the agents</a>
      </p>
    </Layout>
  );
}
