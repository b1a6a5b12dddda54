/**
 * Keeps `docs/protocol.md` honest about the routes: every route the dashboard app registers is
 * named there (method and path, in backquotes), and every route named there is one the app
 * answers. The routes come from the app itself (`DashboardApp.routes`), not from its source. And
 * about the metrics: §14's tables name every metric family a scrape of the dashboard and of an
 * agent exports, with its type and labels, and only those.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ADMIN_TOKEN, makeDashboard } from "./_helpers.ts";
import { parseStrict } from "../_prom_strict.ts";
import { AgentMetrics } from "../../src/agent/mod.ts";
import { createPolicy, runCommand, toReportFields } from "../../src/exec/mod.ts";
import { COMMAND_STATUSES, FINAL_STATUSES } from "../../src/protocol/mod.ts";

const DOC = new URL("../../docs/protocol.md", import.meta.url);

/** `GET /api/v1/commands/{id}` and `GET /api/v1/commands/:id` both become `GET /api/v1/commands/{}`. */
function routeKey(method: string, path: string): string {
  return `${method} ${path.replace(/\{[^}/]+\}|:[A-Za-z_]+/g, "{}")}`;
}

/**
 * The routes `docs/protocol.md` names: a method and an absolute path at the start of a code span
 * (a query string ends the path; a code span may wrap onto the next line).
 */
function documentedRoutes(text: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const match of text.matchAll(/`(GET|HEAD|POST|PUT|PATCH|DELETE)\s+(\/[^`\s?#]*)/g)) {
    found.set(routeKey(match[1], match[2]), `${match[1]} ${match[2]}`);
  }
  return found;
}

/** A concrete URL path for a route path: each parameter becomes `x`. */
function concrete(path: string): string {
  return path.replace(/\{[^}/]+\}/g, "x");
}

Deno.test("docs/protocol.md names every route the dashboard registers, and only those", async () => {
  await using t = await makeDashboard();
  const registered = new Map(
    t.dashboard.routes.map((r) => [routeKey(r.method, r.path), `${r.method} ${r.path}`]),
  );
  const documented = documentedRoutes(await Deno.readTextFile(DOC));

  // The parser and the route list both see something: the agent's wait is in both.
  assert.ok(registered.has("GET /api/v1/agent/commands/wait/{}"), "the app lists its wait route");
  assert.ok(documented.has("GET /api/v1/agent/commands/wait/{}"), "the page names the wait route");

  // A console page's path with a trailing slash redirects to the page (one rule in §15, which
  // the page's own entry covers): the rule is named, and so is each page.
  assert.ok(documented.has("GET /commands/"), "the page names the trailing-slash redirect");
  const named = (key: string) =>
    documented.has(key) || (key.endsWith("/") && documented.has(key.slice(0, -1)));
  const undocumented = [...registered].filter(([key]) => !named(key)).map(([, r]) => r);
  assert.deepEqual(
    undocumented,
    [],
    `routes the app registers that docs/protocol.md does not name: ${undocumented.join(", ")}`,
  );
  const unknown = [...documented].filter(([key]) => !registered.has(key)).map(([, r]) => r);
  assert.deepEqual(
    unknown,
    [],
    `routes docs/protocol.md names that the app does not register: ${unknown.join(", ")}`,
  );
});

Deno.test("every route docs/protocol.md names is answered by the app, not by its 404", async () => {
  await using t = await makeDashboard();
  const documented = documentedRoutes(await Deno.readTextFile(DOC));
  for (const route of documented.values()) {
    const [method, path] = route.split(" ");
    // No credentials: each route refuses (401, a login redirect, 403 ...), but it is a route.
    const response = await t.dashboard.app.request(concrete(path), { method });
    const text = await response.text();
    assert.ok(
      !(response.status === 404 && text.includes("no route for")),
      `${route} (as ${method} ${concrete(path)}) is not a route of the app: ${text}`,
    );
  }
});

/** The rows of §4's table of statuses: status → [final, meaning]. */
function statusRows(text: string): Map<string, [boolean, string]> {
  const rows = new Map<string, [boolean, string]>();
  const section = text.slice(text.indexOf("### Statuses"), text.indexOf("### Lifecycle"));
  for (const match of section.matchAll(/^\| `([a-z]+)` +\| (yes| {3}) +\| (.*?) +\|$/gm)) {
    rows.set(match[1], [match[2] === "yes", match[3]]);
  }
  return rows;
}

Deno.test("docs/protocol.md §4 names every status, which are final, and where a start failure goes", async () => {
  const rows = statusRows(await Deno.readTextFile(DOC));
  assert.deepEqual([...rows.keys()].sort(), [...COMMAND_STATUSES].sort());
  for (const status of COMMAND_STATUSES) {
    assert.equal(rows.get(status)![0], FINAL_STATUSES.has(status), `${status}: final`);
  }
  // The page said a program that could not be started is `rejected`; the executor reports it
  // `failed`, with no result and the reason in `error`.
  const result = await runCommand("status-no-such-program", {
    policy: createPolicy({ allowedPrograms: ["status-no-such-program"] }),
  });
  const fields = toReportFields(result);
  assert.equal(fields.result, null);
  const saying = [...rows].filter(([, [, meaning]]) => meaning.includes("could not be started"));
  assert.deepEqual(saying.map(([status]) => status), [fields.status]);
});

/**
 * The metrics §14's tables name, as `name type labels` (labels: the names in backquotes before
 * any parenthesis of the labels column), split into the agent's (`status_agent_...`) and the
 * dashboard's.
 */
function documentedMetrics(text: string): { dashboard: string[]; agent: string[] } {
  const section = text.slice(text.indexOf("## 14. "), text.indexOf("## 15. "));
  const dashboard: string[] = [];
  const agent: string[] = [];
  for (const row of section.matchAll(/^\| `([a-zA-Z_:]+)` +\| (\w+) +\| (.*?) *\|$/gm)) {
    const labels = [...row[3].split("(")[0].matchAll(/`([a-z_]+)`/g)].map((m) => m[1]).sort();
    const line = `${row[1]} ${row[2]} ${labels.join(",")}`;
    (row[1].startsWith("status_agent_") ? agent : dashboard).push(line);
  }
  return { dashboard: dashboard.sort(), agent: agent.sort() };
}

/** The metric families of a scrape, in the form of {@link documentedMetrics}. */
function scrapedMetrics(text: string): string[] {
  return [...parseStrict(text).values()].map((family) => {
    const labels = new Set(family.samples.flatMap((s) => Object.keys(s.labels)));
    labels.delete("le");
    return `${family.name} ${family.type} ${[...labels].sort().join(",")}`;
  }).sort();
}

Deno.test("docs/protocol.md §14 names every metric of the dashboard and of the agent, with its type and labels", async () => {
  const documented = documentedMetrics(await Deno.readTextFile(DOC));
  await using t = await makeDashboard();
  const headers = { Authorization: `Bearer ${ADMIN_TOKEN}` };
  // A first request, so that the requests counter and the store's timings have series.
  await (await t.dashboard.app.request("/metrics", { headers })).body?.cancel();
  const dashboard = await (await t.dashboard.app.request("/metrics", { headers })).text();
  assert.deepEqual(documented.dashboard, scrapedMetrics(dashboard));
  const agent = new AgentMetrics({ agentId: "web-1", version: "0.1.0", instanceId: "i-1" });
  assert.deepEqual(documented.agent, scrapedMetrics(await (await agent.render()).text()));
});
