import assert from "node:assert/strict";
import {
  flagOf,
  loadSettings,
  parseEnvFile,
  type SettingKey,
  SETTINGS,
} from "../../src/config/mod.ts";
import { FINAL_STATUSES } from "../../src/protocol/mod.ts";
import { startServer } from "../../src/server/mod.ts";

const root = new URL("../../", import.meta.url).pathname;
const keys = Object.keys(SETTINGS) as SettingKey[];

Deno.test("examples/config.json loads without error or ignored keys", () => {
  const loaded = loadSettings({
    roles: ["agent"],
    env: {},
    cwd: "/nonexistent",
    configPath: `${root}examples/config.json`,
  });
  assert.deepEqual(loaded.ignoredKeys, []);
  assert.equal(loaded.settings.agentId, "test-agent");
});

Deno.test("examples/.env.example names every setting and parses", () => {
  const text = Deno.readTextFileSync(`${root}examples/.env.example`);
  for (const key of keys) {
    assert.match(text, new RegExp(`^# ${SETTINGS[key].env}=`, "m"), SETTINGS[key].env);
  }
  const uncommented = text.replace(/^# ([A-Z0-9_]+=)/gm, "$1");
  assert.ok(Object.keys(parseEnvFile(uncommented, ".env.example")).length >= keys.length);
});

/** The rows of the README's configuration table: variable → [flag, default, meaning]. */
function readmeSettingRows(): Map<string, string[]> {
  const rows = new Map<string, string[]>();
  for (const line of Deno.readTextFileSync(`${root}README.md`).split("\n")) {
    const row = /^\| `([A-Z][A-Z0-9_]*)` +\|(.*)\|$/.exec(line);
    if (row) rows.set(row[1], row[2].split("|").map((cell) => cell.trim()));
  }
  return rows;
}

Deno.test("the README's configuration table names every setting, and only those", () => {
  const rows = readmeSettingRows();
  for (const key of keys) assert.ok(rows.has(SETTINGS[key].env), SETTINGS[key].env);
  const envs = new Set(keys.map((key) => SETTINGS[key].env));
  assert.deepEqual([...rows.keys()].filter((env) => !envs.has(env)), []);
});

Deno.test("the README's configuration table gives each setting's flag, default and --help text", () => {
  // It had drifted from the settings: SHUTDOWN_GRACE_SECS said SIGTERM, SIGINT or SIGHUP while
  // --help and .env.example said SIGTERM alone, and AGENT_TOKEN's row said more than --help.
  const rows = readmeSettingRows();
  for (const key of keys) {
    const spec = SETTINGS[key];
    const [flag, shown, meaning] = rows.get(spec.env)!;
    assert.equal(flag, `\`${flagOf(spec.env)}\``, `${spec.env}: flag`);
    const value = !("default" in spec)
      ? ""
      : Array.isArray(spec.default)
      ? spec.default.join(",")
      : String(spec.default);
    assert.equal(shown, value === "" ? "—" : `\`${value}\``, `${spec.env}: default`);
    assert.equal(meaning, spec.description, `${spec.env}: meaning`);
  }
});

Deno.test("examples/.env.example shows each default, or says a value is an example", () => {
  const lines = Deno.readTextFileSync(`${root}examples/.env.example`).split("\n");
  for (const key of keys) {
    const spec = SETTINGS[key];
    const at = lines.findIndex((line) => line.startsWith(`# ${spec.env}=`));
    const value = lines[at].slice(`# ${spec.env}=`.length);
    if ("default" in spec) {
      const shown = Array.isArray(spec.default) ? spec.default.join(",") : String(spec.default);
      assert.equal(value, shown, `${spec.env} shows its default`);
    } else if (value !== "") {
      assert.match(lines[at - 1], /example/i, `${spec.env}=${value} is marked as an example`);
    }
  }
});

Deno.test("examples/.env.example says of each setting what the code says of it", () => {
  // Its words had drifted from the settings': DASHBOARD_URL did not say a user or password is
  // refused, AGENT_ID and DEPLOYMENT_HASH left out "not only dots".
  const lines = Deno.readTextFileSync(`${root}examples/.env.example`).split("\n");
  for (const key of keys) {
    const spec = SETTINGS[key];
    let start = lines.findIndex((line) => line.startsWith(`# ${spec.env}=`));
    const end = start;
    while (start > 0 && lines[start - 1].startsWith("# ")) start--;
    const said = lines.slice(start, end).map((line) => line.slice(2)).join(" ");
    assert.ok(said.startsWith(`${spec.description}.`), `${spec.env}: ${said}`);
    assert.ok(said.includes(`Must be ${spec.expected}.`), `${spec.env}: ${said}`);
  }
});

Deno.test("examples/long_poll_demo.sh stops at every final status", () => {
  // Without "expired" it polled a command expired in the queue until WAIT_SECS, then said it had
  // no final result.
  const script = Deno.readTextFileSync(`${root}examples/long_poll_demo.sh`);
  const arm = /^\s*((?:[a-z]+ \| )+[a-z]+)\) break ;;$/m.exec(script);
  assert.ok(arm, "the case arm that ends the loop");
  assert.deepEqual(arm[1].split(" | ").sort(), [...FINAL_STATUSES].sort());
});

/** Runs examples/long_poll_demo.sh against `url` with `env`; what it said and its exit code. */
async function demo(url: string, env: Record<string, string> = {}) {
  const output = await new Deno.Command("bash", {
    args: [`${root}examples/long_poll_demo.sh`],
    env: { DASHBOARD_URL: url, COMMAND_ID: "demo-1", WAIT_SECS: "3", ...env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr).trimEnd() };
}

Deno.test({
  name: "examples/long_poll_demo.sh says why the dashboard refused its token, and exits 2",
  ignore: !(await new Deno.Command("bash", { args: ["-c", "command -v curl"], stdout: "null" })
    .output()).success,
  async fn(t) {
    await t.step("the enqueue refused: no token outside dev mode", async () => {
      await using server = await startServer({
        availableDescriptors: "plenty",
        db: ":memory:",
        port: 0,
        adminToken: "admin-token-0123456789abcdef",
      });
      const out = await demo(server.url);
      assert.equal(out.code, 2, out.stderr);
      assert.match(
        out.stderr.split("\n").at(-1)!,
        /^long_poll_demo: the dashboard refused the enqueue \(HTTP 401\): Authorization bearer token is missing; .*; outside dev mode set STATUS_ADMIN_TOKEN to the dashboard's admin token$/,
      );
    });
    await t.step("the reads refused (a token revoked, a proxy's rule)", async () => {
      // Before, every read failed without a word until WAIT_SECS, then "no final result".
      await using stub = Deno.serve(
        { hostname: "127.0.0.1", port: 0, onListen: () => {} },
        (request) =>
          request.method === "POST"
            ? Response.json({ queued: true, id: "demo-1" }, { status: 202 })
            : Response.json({ error: "admin token is wrong" }, { status: 401 }),
      );
      const out = await demo(`http://127.0.0.1:${stub.addr.port}`, {
        STATUS_ADMIN_TOKEN: "not-the-token",
      });
      assert.equal(out.code, 2, out.stderr);
      assert.equal(
        out.stderr.split("\n").at(-1),
        "long_poll_demo: the dashboard refused reading demo-1 (HTTP 401): admin token is wrong; " +
          "is STATUS_ADMIN_TOKEN the dashboard's admin token?",
      );
    });
    await t.step("a read that fails for a while is said, once", async () => {
      await using stub = Deno.serve(
        { hostname: "127.0.0.1", port: 0, onListen: () => {} },
        (request) =>
          request.method === "POST"
            ? Response.json({ queued: true, id: "demo-1" }, { status: 202 })
            : Response.json({ error: "the dashboard's database is unavailable" }, { status: 503 }),
      );
      const out = await demo(`http://127.0.0.1:${stub.addr.port}`, { WAIT_SECS: "1" });
      assert.equal(out.code, 1, out.stderr);
      const lines = out.stderr.split("\n");
      assert.equal(
        lines.filter((line) => line.includes("reading demo-1 failed")).length,
        1,
        out.stderr,
      );
      assert.equal(
        lines.at(-1),
        "long_poll_demo: no final result after 1s (last status: unknown; last read failed: " +
          "HTTP 503: the dashboard's database is unavailable)",
      );
    });
  },
});

Deno.test({
  name: "examples/long_poll_demo.sh keeps the admin token out of the process list",
  ignore: !(await new Deno.Command("bash", { args: ["-c", "command -v curl"], stdout: "null" })
    .output()).success,
  async fn() {
    // Given to curl as -H "Authorization: Bearer ...", the token stood in curl's command line,
    // which every local user reads (/proc/<pid>/cmdline, ps), at each of its reads.
    const token = `admin-token-${crypto.randomUUID()}`;
    const seen: string[] = [];
    /** The command lines of this machine's processes that hold the token, as another user sees. */
    const holders = () => {
      // ps, as any local user may run it (Deno reads /proc only under --allow-all).
      const { stdout } = new Deno.Command("ps", { args: ["-eo", "args"], stdout: "piped" })
        .outputSync();
      seen.push(
        ...new TextDecoder().decode(stdout).split("\n").filter((line) => line.includes(token)),
      );
    };
    let reads = 0;
    await using stub = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      (request) => {
        // curl is waiting for this answer: its command line is there to be read now.
        holders();
        assert.equal(request.headers.get("authorization"), `Bearer ${token}`);
        if (request.method === "POST") {
          return Response.json({ queued: true, id: "demo-1" }, { status: 202 });
        }
        reads++;
        return Response.json({ id: "demo-1", status: reads < 2 ? "running" : "success" });
      },
    );
    const out = await demo(`http://127.0.0.1:${stub.addr.port}`, { STATUS_ADMIN_TOKEN: token });
    assert.equal(out.code, 0, out.stderr);
    assert.ok(reads >= 2, out.stderr);
    assert.deepEqual(seen, []);
  },
});

Deno.test("the README names the settings that have a --no- flag, and only those", () => {
  // It called DAEMON, WAIT_REQUIRE_SIGNATURE and ACCEPT_V1_SIGNATURES "the on/off settings",
  // while LIVE_OUTPUT, on/off too, has no --no- flag (it takes true or false).
  const readme = Deno.readTextFileSync(`${root}README.md`).replaceAll(/\s+/g, " ");
  const sentence =
    /whose flag takes no value, ((?:`[A-Z0-9_]+`(?:, | and )?)+), also have a `--no-` flag/
      .exec(readme);
  assert.ok(sentence, "the README's sentence on --no- flags");
  const named = [...sentence[1].matchAll(/`([A-Z0-9_]+)`/g)].map((m) => m[1]).sort();
  const valueless = keys.filter((key) => SETTINGS[key].boolean).map((key) => SETTINGS[key].env);
  assert.deepEqual(named, valueless.sort());
});

Deno.test("the README's permission sets name every file and extra variable deno.json grants", () => {
  const config = JSON.parse(Deno.readTextFileSync(`${root}deno.json`));
  const readme = Deno.readTextFileSync(`${root}README.md`);
  const start = readme.indexOf("**Permission sets.**");
  assert.ok(start >= 0, "the README's paragraph on permission sets");
  const paragraph = readme.slice(start, readme.indexOf("\n\n", start));
  const settingVariables = new Set(keys.map((key) => SETTINGS[key].env));
  for (const [set, granted] of Object.entries<Record<string, unknown>>(config.permissions)) {
    const names = [
      ...[granted.read, granted.write].flatMap((paths) => Array.isArray(paths) ? paths : [])
        // The database's own files are named by their suffix: `status.db` (with its `-wal` ...).
        .map((path: string) => path.replace(/^status\.db(-\w+)$/, "$1"))
        // The daemon's rotated log files are named by the first and the last.
        .map((path: string) => path.replace(/^status\.log\.[2-4]$/, "status.log.1")),
      ...(Array.isArray(granted.env) ? granted.env : [])
        .filter((name: string) => !settingVariables.has(name)),
    ];
    for (const name of names) {
      assert.ok(
        paragraph.includes(`\`${name}\``),
        `-P=${set} grants ${name}, which the README omits`,
      );
    }
  }
});
