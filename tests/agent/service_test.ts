/**
 * `examples/status-panel.service` passes `systemd-analyze verify` once the deno path is put in
 * the way the README and the unit's own comment say (`DENO=$(command -v deno) && sed ...`).
 */
import assert from "node:assert/strict";

const root = new URL("../../", import.meta.url).pathname;

function hasSystemdAnalyze(): boolean {
  try {
    new Deno.Command("systemd-analyze", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync();
    return true;
  } catch {
    return false;
  }
}

const ignore = !hasSystemdAnalyze();
if (ignore) console.log("service unit test skipped: systemd-analyze is not installed");

Deno.test({
  name: "the systemd unit passes systemd-analyze verify with the deno path put in",
  ignore,
  fn: async () => {
    const unit = Deno.readTextFileSync(`${root}examples/status-panel.service`);
    const readme = Deno.readTextFileSync(`${root}README.md`);
    const install =
      'DENO=$(command -v deno) && sed "s|@DENO@|$DENO|" examples/status-panel.service';
    assert.ok(unit.includes(install), "the unit says how to put the path in");
    assert.ok(readme.includes(install), "the README says how to put the path in");
    assert.ok(!unit.includes("/usr/local/bin/deno"));
    assert.match(unit, /^Delegate=yes$/m);
    const dir = await Deno.makeTempDir({ prefix: "status-unit-" });
    try {
      const path = `${dir}/status-panel.service`;
      await Deno.writeTextFile(path, unit.replaceAll("@DENO@", Deno.execPath()));
      const verified = await new Deno.Command("systemd-analyze", {
        args: ["verify", path],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const said = new TextDecoder().decode(verified.stderr) +
        new TextDecoder().decode(verified.stdout);
      assert.equal(verified.code, 0, said);
      assert.ok(!said.includes("status-panel.service"), said);
      // Left as shipped, the placeholder is refused: the test can fail.
      await Deno.writeTextFile(path, unit);
      const raw = await new Deno.Command("systemd-analyze", {
        args: ["verify", path],
        stdout: "null",
        stderr: "null",
      }).output();
      assert.notEqual(raw.code, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("the README's install line of the unit writes no unit where no deno is on the PATH", async (t) => {
  // It was sed "s|@DENO@|$(command -v deno)|": where Deno ran through npx alone, that wrote a unit
  // whose ExecStart= began with " run", and said nothing.
  const readme = Deno.readTextFileSync(`${root}README.md`);
  const line = readme.split("\n").find((l) => l.includes("examples/status-panel.service >"));
  assert.ok(line, "the README's install line");
  const dir = await Deno.makeTempDir({ prefix: "status-unit-install-" });
  try {
    const script = line.replace("/etc/systemd/system/", `${dir}/`);
    const bin = `${dir}/bin`;
    Deno.mkdirSync(bin);
    // A PATH with sed and no deno.
    const sed = new TextDecoder().decode(
      (await new Deno.Command("sh", { args: ["-c", "command -v sed"], stdout: "piped" }).output())
        .stdout,
    ).trim();
    Deno.symlinkSync(sed, `${bin}/sed`);
    const install = (path: string) =>
      new Deno.Command("/bin/sh", {
        args: ["-c", script],
        cwd: root,
        env: { PATH: path },
        clearEnv: true,
        stdout: "null",
        stderr: "null",
      }).output();
    await t.step("no deno: it fails and writes nothing", async () => {
      const out = await install(bin);
      assert.notEqual(out.code, 0);
      assert.throws(() => Deno.statSync(`${dir}/status-panel.service`), Deno.errors.NotFound);
    });
    await t.step("a deno on the PATH: its absolute path is put in", async () => {
      Deno.symlinkSync(Deno.execPath(), `${bin}/deno`);
      const out = await install(bin);
      assert.equal(out.code, 0);
      const unit = Deno.readTextFileSync(`${dir}/status-panel.service`);
      assert.match(unit, new RegExp(`^ExecStart=${bin}/deno run `, "m"));
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the README's narrowest agent flags are the unit's, paths aside", () => {
  const unit = Deno.readTextFileSync(`${root}examples/status-panel.service`);
  const readme = Deno.readTextFileSync(`${root}README.md`);
  const flagsOf = (text: string) =>
    new Map(
      text.replace(/\\\n/g, " ").split(/\s+/).filter((w) => w.startsWith("--allow-")).map((w) => {
        const [name, value = ""] = w.split("=");
        return [name, value.split(",")] as const;
      }),
    );
  const block = /```sh\n(deno run --allow-net=DASHBOARD_HOST:PORT[\s\S]*?)```/.exec(readme);
  assert.ok(block, "the README shows the narrowest agent flags");
  const documented = flagsOf(block[1]);
  const shipped = flagsOf(/^ExecStart=((?:.*\\\n)*.*)$/m.exec(unit)![1]);
  assert.deepEqual([...documented.keys()].sort(), [...shipped.keys()].sort());
  for (const name of ["--allow-run", "--allow-sys"]) {
    assert.deepEqual(documented.get(name), shipped.get(name), name);
  }
  // The fixed paths agree; STATE_DIR and CONFIG_DIR are the unit's own directories.
  for (const name of ["--allow-read", "--allow-write"]) {
    const fixed = (list: readonly string[] = []) =>
      list.filter((p) => /^\/(etc\/passwd|tmp|var\/tmp)$/.test(p));
    assert.deepEqual(fixed(documented.get(name)), fixed(shipped.get(name)), name);
  }
});
