/**
 * The library's public face: `mod.ts` exports exactly the names below (a change to the public API
 * is a deliberate edit of this list), and every exported function and class has a runnable
 * `@example` (`deno test --doc` runs it).
 */
import assert from "node:assert/strict";
import * as status from "../mod.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

const PUBLIC_API = {
  executor: [
    "CommandOptions",
    "CommandRunner",
    "CommandUser",
    "createPolicy",
    "DeadlineWarning",
    "DEFAULT_ALLOWED_PATH_PREFIXES",
    "DEFAULT_ALLOWED_PROGRAMS",
    "defaultPolicy",
    "ExecPolicy",
    "ExecResult",
    "ExecStatus",
    "KillMode",
    "OnOutput",
    "PolicyInput",
    "runCommand",
    "RunnerOptions",
    "RunOptions",
    "Sandbox",
    "SandboxOptions",
    "StartFailure",
  ],
  agent: ["AgentOptions", "AgentRunSummary", "ExecutorOptions", "runAgent"],
  dashboard: [
    "AppOptions",
    "ConfigError",
    "RunningServer",
    "ServeOptions",
    "startServer",
    "StoreError",
    "StoreFullError",
    "StoreUnavailableError",
  ],
  operator: [
    "AddAgentOptions",
    "AddedAgent",
    "AgentRecord",
    "AgentToken",
    "CancelAnswer",
    "cancelRun",
    "checkHealth",
    "CommandPage",
    "CommandRecord",
    "createRun",
    "EnqueueAnswer",
    "EnqueueOptions",
    "followCommand",
    "FollowHandlers",
    "FollowOptions",
    "FollowResult",
    "getRun",
    "HealthCheck",
    "HealthOptions",
    "HealthReport",
    "ListOptions",
    "ListRunsOptions",
    "listRuns",
    "OperatorClient",
    "OperatorClientOptions",
    "OperatorError",
    "OperatorErrorKind",
    "RemovedAgent",
    "RunAnswer",
    "runEnded",
    "RunningCommand",
    "StoredResult",
    "WaitForFinalOptions",
    "waitForRun",
    "WaitForRunOptions",
    "WireTime",
  ],
  wire: [
    "AckRequest",
    "AGENT_INSTANCE_HEADER",
    "AgentScope",
    "canonicalStringV2",
    "COMMAND_STATUSES",
    "CommandParams",
    "CommandStatus",
    "DeliveredCommand",
    "EnqueueRequest",
    "ExecResultBody",
    "generateToken",
    "HEADER",
    "HeartbeatRequest",
    "Labels",
    "LIVE_PATHS",
    "MAX_TTL_SECS",
    "MaxConcurrency",
    "OUTPUT_ENCODINGS",
    "OutputChunkRequest",
    "OutputEncoding",
    "OutputStreamName",
    "PATHS",
    "PRIORITIES",
    "Priority",
    "REPORT_STATUSES",
    "ReportRequest",
    "ReportStatus",
    "RUN_PATHS",
    "RunAgentState",
    "RunAgentView",
    "RunRequest",
    "RunStatus",
    "RunTarget",
    "RunView",
    "signedHeaders",
    "SignedParts",
    "SignOptions",
    "signV2",
  ],
};

interface DocTag {
  kind: string;
  doc?: string;
}

interface DocJs {
  doc?: string;
  tags?: DocTag[];
}

interface DocMember {
  name: string;
  jsDoc?: DocJs;
}

interface DocSymbol {
  name: string;
  declarations: {
    kind: string;
    jsDoc?: DocJs;
    def?: { properties?: DocMember[]; methods?: DocMember[] };
  }[];
}

/** What `deno doc --json mod.ts` says mod.ts exports. */
async function documentedSymbols(): Promise<DocSymbol[]> {
  const run = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--json", "mod.ts"],
    cwd: ROOT,
    stdin: "null",
  }).output();
  assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
  const doc = JSON.parse(new TextDecoder().decode(run.stdout));
  return doc.nodes[`file://${ROOT}/mod.ts`].symbols;
}

Deno.test("mod.ts exports the public API and nothing else", async () => {
  const exported = (await documentedSymbols()).map((s) => s.name).sort();
  assert.deepEqual(exported, Object.values(PUBLIC_API).flat().sort());
});

Deno.test("every function and class mod.ts exports has a runnable @example", async () => {
  const missing: string[] = [];
  for (const symbol of await documentedSymbols()) {
    for (const declaration of symbol.declarations) {
      if (declaration.kind !== "function" && declaration.kind !== "class") continue;
      const examples = (declaration.jsDoc?.tags ?? []).filter((t) => t.kind === "example");
      const runnable = examples.filter((e) => !/```\w*\s+ignore/.test(e.doc ?? ""));
      if (runnable.length === 0) missing.push(symbol.name);
    }
  }
  assert.deepEqual(missing, [], "functions and classes without a runnable example");
});

Deno.test("what exists for tests is marked @internal in the public types", async () => {
  const leaks: string[] = [];
  for (const symbol of await documentedSymbols()) {
    for (const declaration of symbol.declarations) {
      const members = [...declaration.def?.properties ?? [], ...declaration.def?.methods ?? []];
      for (const member of members) {
        const internal = member.jsDoc?.tags?.some((t) => t.kind === "internal") ?? false;
        if (!internal && /\bfor tests\b|\btests inject/i.test(member.jsDoc?.doc ?? "")) {
          leaks.push(`${symbol.name}.${member.name}`);
        }
      }
    }
  }
  assert.deepEqual(leaks, [], "members documented as for tests but not @internal");
});

Deno.test("the README's library section names only what mod.ts exports", async () => {
  const readme = await Deno.readTextFile(`${ROOT}/README.md`);
  const section = readme.slice(readme.indexOf("## As a library"), readme.indexOf("## Development"));
  const exported = new Set(Object.values(PUBLIC_API).flat());
  // Functions and classes named in backticks: `runAgent`, `Sandbox.create({...})`, ...
  for (const [, name] of section.matchAll(/`([a-zA-Z][A-Za-z]+)(?:\.[a-z]+)?(?:\([^`]*\))?`/g)) {
    if (
      !/^(create|run|check|follow|sign|canonical|generate|default)[A-Z]|^[A-Z][a-z]+[A-Z]/.test(
        name,
      )
    ) {
      continue;
    }
    assert.ok(exported.has(name), `README names ${name}, which mod.ts does not export`);
  }
});

Deno.test("every {@link} in the public docs names something mod.ts exports", async () => {
  // A link to an internal name (createExecutor, checkPolicy, ...) has no page on JSR.
  const symbols = await documentedSymbols();
  const exported = new Set(symbols.map((s) => s.name));
  const dangling: string[] = [];
  const walk = (value: unknown, where: string): void => {
    if (typeof value === "string") {
      for (const [, target] of value.matchAll(/\{@link(?:code|plain)?\s+([^\s|}]+)/g)) {
        if (!exported.has(target.split(".")[0])) dangling.push(`${where} → ${target}`);
      }
    } else if (Array.isArray(value)) value.forEach((v) => walk(v, where));
    else if (value && typeof value === "object") {
      for (const v of Object.values(value)) walk(v, where);
    }
  };
  for (const symbol of symbols) walk(symbol.declarations, symbol.name);
  assert.deepEqual(dangling, []);
});

Deno.test("every {@link X.member} in the public docs names a public member of X", async () => {
  // Sandbox's doc linked Sandbox.open (@internal: no entry on JSR), and RunOptions.onWarning was
  // declared on CommandOptions.
  const symbols = await documentedSymbols();
  const publicMembers = new Map<string, Set<string>>();
  for (const symbol of symbols) {
    const names = publicMembers.get(symbol.name) ?? new Set<string>();
    for (const declaration of symbol.declarations) {
      for (
        const member of [...declaration.def?.properties ?? [], ...declaration.def?.methods ?? []]
      ) {
        if (!member.jsDoc?.tags?.some((t) => t.kind === "internal")) names.add(member.name);
      }
    }
    publicMembers.set(symbol.name, names);
  }
  const text = JSON.stringify(symbols.map((s) => s.declarations));
  const broken = [...text.matchAll(/\{@link(?:code|plain)?\s+(\w+)\.(\w+)/g)]
    .filter(([, owner, member]) => !publicMembers.get(owner)?.has(member))
    .map(([, owner, member]) => `${owner}.${member}`);
  assert.deepEqual(broken, []);
});

Deno.test("every file the README links to is published with it", async () => {
  // JSR shows the README: docs/protocol.md and the console's screenshots were links to nothing.
  const readme = await Deno.readTextFile(`${ROOT}/README.md`);
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
  const include: string[] = config.publish.include;
  const targets = [...readme.matchAll(/\]\(([^)#\s]+)\)/g)].map((m) => m[1])
    .filter((target) => !/^[a-z]+:/.test(target));
  assert.ok(targets.includes("docs/protocol.md"));
  for (const target of targets) {
    assert.ok(Deno.statSync(`${ROOT}/${target}`).isFile, target);
    assert.ok(
      include.some((entry) => entry.endsWith("/") ? target.startsWith(entry) : target === entry),
      `${target} is not in deno.json's publish.include`,
    );
  }
});

Deno.test("every .md file mod.ts's module doc names is published with it", async () => {
  // It named PROTOCOL.md, the first specification, which is not in the repository; the wire
  // contract is docs/protocol.md.
  const mod = await Deno.readTextFile(`${ROOT}/mod.ts`);
  const doc = mod.slice(0, mod.indexOf("*/"));
  const include: string[] =
    JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`)).publish.include;
  const named = [...doc.matchAll(/[\w./-]+\.md\b/g)].map((m) => m[0]);
  assert.ok(named.includes("docs/protocol.md"), "the module doc names the wire contract");
  for (const file of named) {
    assert.ok(Deno.statSync(`${ROOT}/${file}`).isFile, file);
    assert.ok(
      include.some((entry) => entry.endsWith("/") ? file.startsWith(entry) : file === entry),
      `${file} is not in deno.json's publish.include`,
    );
  }
});

Deno.test("no exported constant's function is documented as returning unknown", async () => {
  // PATHS.wait and LIVE_PATHS.output were `(id: string) => unknown` in the docs JSR shows: their
  // return types were left to inference, which the documentation does not do.
  const vague: string[] = [];
  const walk = (value: unknown, where: string): void => {
    if (Array.isArray(value)) return value.forEach((v) => walk(v, where));
    if (!value || typeof value !== "object") return;
    const node = value as Record<string, unknown>;
    const name = typeof node.name === "string" ? `${where}.${node.name}` : where;
    const fn = node.kind === "fnOrConstructor"
      ? (node.value as { tsType?: { kind?: string; value?: string } })
      : undefined;
    if (fn?.tsType?.kind === "keyword" && fn.tsType.value === "unknown") vague.push(where);
    for (const v of Object.values(node)) walk(v, name);
  };
  for (const symbol of await documentedSymbols()) {
    for (const declaration of symbol.declarations) {
      if (declaration.kind === "variable") walk(declaration.def, symbol.name);
    }
  }
  assert.deepEqual(vague, []);
});

Deno.test("every .md file a comment in src/ names is in the repository", async () => {
  // 48 comments named PROTOCOL.md, the first specification, which is not in the repository; the
  // sections they cite (§1–7) are docs/protocol.md's.
  const missing: string[] = [];
  for await (const file of walkSources(`${ROOT}/src`)) {
    const text = await Deno.readTextFile(file);
    for (const [name] of text.matchAll(/[\w./-]+\.md\b/g)) {
      if (!existsSync(`${ROOT}/${name}`)) missing.push(`${file.slice(ROOT.length + 1)}: ${name}`);
    }
  }
  assert.deepEqual(missing, []);
});

Deno.test("the store errors mod.ts exports are the ones a dashboard that cannot start carries", async () => {
  // They were not exported: a program could not tell a store that is locked or full (try again
  // later, free space) from a wrong setting but by the words of the message.
  const error = await status.startServer({
    availableDescriptors: "plenty",
    db: "/no/such/directory/status.db",
    port: 0,
  }).catch((e) => e);
  assert.ok(error instanceof status.ConfigError, String(error));
  assert.ok(error.cause instanceof status.StoreError, String(error.cause));
  assert.equal(error.cause.name, "StoreError");
  for (const Subclass of [status.StoreFullError, status.StoreUnavailableError]) {
    const sub = new Subclass("x");
    assert.ok(sub instanceof status.StoreError);
    assert.equal(sub.name, Subclass.name);
  }
});

async function* walkSources(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) yield* walkSources(path);
    else if (/\.tsx?$/.test(entry.name)) yield path;
  }
}

function existsSync(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}
