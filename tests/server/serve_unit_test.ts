/**
 * `examples/status-serve.service`, the dashboard's systemd unit: it passes `systemd-analyze verify`
 * once the deno path is put in, and `status serve` started with exactly its `deno run` flags and
 * arguments (its directory and port aside) serves, on SQLite in its directory and on PostgreSQL,
 * without saying that a permission is missing.
 */
import assert from "node:assert/strict";
import { ROOT, spawnCli } from "../_cli.ts";
import { pgIgnore, testDatabase } from "../_pg.ts";
import { tempDir, waitForListenUrl } from "../e2e/helpers.ts";

const UNIT = `${ROOT}/examples/status-serve.service`;
const DIR = "/var/lib/status-serve";
const ADMIN = "admin-token-0123456789abcdef";

function hasSystemdAnalyze(): boolean {
  try {
    new Deno.Command("systemd-analyze", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync();
    return true;
  } catch {
    return false;
  }
}

/** The unit's `deno run` flags and the program's arguments, its directory as `dir`. */
function execStart(dir: string): { flags: string[]; args: string[] } {
  const unit = Deno.readTextFileSync(UNIT);
  const line = /^ExecStart=((?:.*\\\n)*.*)$/m.exec(unit)![1].replace(/\\\n/g, " ");
  const words = line.split(/\s+/).filter((word) => word !== "").map((word) =>
    word.replaceAll(DIR, dir)
  );
  assert.equal(words[0], "@DENO@");
  assert.equal(words[1], "run");
  const main = words.indexOf("/opt/status/main.ts");
  assert.ok(main > 0, line);
  return { flags: words.slice(2, main), args: words.slice(main + 1) };
}

Deno.test({
  name: "the dashboard's systemd unit passes systemd-analyze verify with the deno path put in",
  ignore: !hasSystemdAnalyze(),
  fn: async () => {
    const unit = Deno.readTextFileSync(UNIT);
    assert.ok(
      unit.includes(
        'DENO=$(command -v deno) && sed "s|@DENO@|$DENO|" examples/status-serve.service',
      ),
    );
    await using dir = tempDir("status-serve-unit-");
    const path = `${dir.path}/status-serve.service`;
    await Deno.writeTextFile(path, unit.replaceAll("@DENO@", Deno.execPath()));
    const verified = await new Deno.Command("systemd-analyze", {
      args: ["verify", path],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const said = new TextDecoder().decode(verified.stderr) +
      new TextDecoder().decode(verified.stdout);
    assert.equal(verified.code, 0, said);
    assert.ok(!said.includes("status-serve.service"), said);
  },
});

/** Starts `status serve` as the unit does, in `dir`, on port 0; checks it serves and lacks nothing. */
async function serveAsTheUnit(dir: string, env: Record<string, string>): Promise<void> {
  const { flags, args } = execStart(dir);
  const port = args.indexOf("--port");
  assert.ok(port > 0, args.join(" "));
  args[port + 1] = "0";
  await using proc = spawnCli([...args, "--log-format", "json"], {
    perms: flags,
    cwd: dir,
    env: { STATUS_ADMIN_TOKEN: ADMIN, ...env },
  });
  const url = (await waitForListenUrl(proc)).replace("0.0.0.0", "127.0.0.1");
  const health = await fetch(`${url}/health`);
  const body = await health.json();
  assert.equal(health.status, 200, JSON.stringify(body));
  assert.equal(body.store.status, "ok");
  const metrics = await fetch(`${url}/metrics`, {
    headers: { Authorization: `Bearer ${ADMIN}` },
  });
  assert.equal(metrics.status, 200);
  await metrics.body?.cancel();
  proc.child.kill("SIGTERM");
  const status = await proc.exited(30_000);
  assert.equal(status.code, 0, proc.stderr.text);
  // Nothing it would do was skipped for a permission (the descriptors' count included).
  assert.doesNotMatch(proc.stderr.text, /--allow-|permission|needs read access/i);
}

Deno.test("status serve with the unit's flags serves alone on SQLite in its directory", async () => {
  await using dir = tempDir("status-serve-unit-");
  await serveAsTheUnit(dir.path, {});
  assert.ok(Deno.statSync(`${dir.path}/status.db`).isFile);
});

Deno.test({
  name: "status serve with the unit's flags serves on PostgreSQL (DATABASE_URL)",
  ignore: pgIgnore(),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using db = await testDatabase();
    await using dir = tempDir("status-serve-unit-");
    await serveAsTheUnit(dir.path, { DATABASE_URL: db.url });
  },
});
