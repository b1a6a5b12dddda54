/**
 * The agent's executor under exactly the permission flags of `examples/status-panel.service`
 * (the README's narrowest flags): deadlines stop the command's whole process group, with a
 * cgroup and without one. Needs root (the service runs as root) and `mkfifo`.
 */
import assert from "node:assert/strict";
import { agentUid } from "../../src/exec/mod.ts";

const root = new URL("../../", import.meta.url).pathname;
const ignore = agentUid() !== 0;
if (ignore) console.log("narrow flags test skipped: the service runs the agent as root");

/** The `--allow-*` flags of the unit's ExecStart, exactly as written there. */
export function serviceFlags(): string[] {
  const unit = Deno.readTextFileSync(`${root}examples/status-panel.service`);
  const execStart = /^ExecStart=((?:.*\\\n)*.*)$/m.exec(unit)![1].replace(/\\\n/g, " ");
  return execStart.split(/\s+/).filter((word) => word.startsWith("--allow-"));
}

/** Live processes of a process group (asks `ps`: Deno reads /proc only under -A). */
async function groupMembers(pgid: number): Promise<number[]> {
  const output = await new Deno.Command("ps", {
    args: ["-e", "-o", "pid=,pgid=,stat="],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(output.stdout).split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter(([pid, group, stat]) => pid && Number(group) === pgid && !stat.startsWith("Z"))
    .map(([pid]) => Number(pid));
}

Deno.test({
  name: "under the service's narrowest flags a deadline stops the command's whole group",
  ignore,
  fn: async (t) => {
    const flags = serviceFlags();
    assert.ok(flags.some((flag) => /^--allow-run=.*\bkill\b/.test(flag)), flags.join(" "));
    const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "status-narrow-" });
    await Deno.chmod(dir, 0o755);
    const fifo = `${dir}/archive.tgz`;
    const made = await new Deno.Command("mkfifo", { args: ["-m", "0666", fifo] }).output();
    assert.equal(made.code, 0);
    // Holds the fifo open for writing, so that the gzip tar starts blocks on it for good.
    const holder = new Deno.Command("sh", {
      args: ["-c", `exec sleep 600 > ${fifo}`],
      stdin: "null",
    }).spawn();
    try {
      for (const mode of ["cgroups", "no-cgroups"]) {
        await t.step(mode, async () => {
          const output = await new Deno.Command(Deno.execPath(), {
            args: [
              "run",
              "--no-prompt",
              ...flags,
              `${root}tests/agent/_narrow_probe.ts`,
              `tar -tzf ${fifo}`,
              "2",
              mode,
            ],
            cwd: root,
            stdin: "null",
            stdout: "piped",
            stderr: "piped",
          }).output();
          const stderr = new TextDecoder().decode(output.stderr);
          assert.equal(output.code, 0, stderr);
          const { describe, pid, outcome } = JSON.parse(new TextDecoder().decode(output.stdout));
          // Deno opens /proc and /sys only under --allow-all: the narrow flags signal the group.
          assert.match(describe, /stopped by signalling their process group/);
          assert.match(describe, /commands run as nobody/);
          assert.ok(pid > 1);
          assert.equal(outcome.status, "timeout", outcome.error);
          // SIGTERM at 90 %; on a loaded machine its end may be seen only after the SIGKILL at
          // 100 % went out too (then the log says both). A time of whole seconds is written
          // without decimals ("at 2 s").
          assert.match(
            outcome.error,
            /^deadline of 2 s: SIGTERM was sent at 1\.\d+ s \(90 % of it\); (it had not stopped, so SIGKILL was sent at 2(\.\d+)? s; )?it ended by SIG(TERM|KILL) at \d(\.\d+)? s$/,
          );
          assert.equal(outcome.result.exit_code, null);
          assert.deepEqual(await groupMembers(pid), [], "gzip, started by tar, was stopped too");
        });
      }
      await t.step("a restarted agent stops the group its previous run left", async () => {
        const output = await new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "--no-prompt",
            ...flags,
            `${root}tests/agent/_narrow_probe.ts`,
            "",
            "0",
            "leftover",
          ],
          cwd: root,
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).output();
        assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
        const stdout = new TextDecoder().decode(output.stdout);
        const { record, outcome, signal } = JSON.parse(stdout);
        assert.equal(record.start_ticks, undefined, "no /proc under these flags");
        assert.equal(outcome, "stopped", stdout);
        assert.equal(signal, "SIGKILL", stdout);
      });
    } finally {
      holder.kill("SIGKILL");
      await holder.status;
      await Deno.remove(dir, { recursive: true });
    }
  },
});
