/**
 * The operating system as the first wall: commands run as an unprivileged user in a directory of
 * their own, and every process they start is found and stopped (a cgroup per command). These
 * tests need root (as here and in CI); elsewhere they are skipped with one message.
 *
 * The reproductions of issue 9 item 2 each have a step: a file list (`tar -T`), a symlink inside
 * an allowed directory (`tar -h`, `du -L`), a relative path naming the agent's own files, and a
 * symlink swapped between the check and the exec.
 */
import assert from "node:assert/strict";
import {
  agentUid,
  cgroup2Mount,
  checkPolicy,
  CommandRunner,
  createPolicy,
  ownCgroupPath,
  type ProcessRecord,
  resolveUser,
  runCommand,
  Sandbox,
} from "../../src/exec/mod.ts";
import {
  describeMemorySize,
  enableDomain,
  enableMemory,
  enablePids,
  homeOf,
  oomKills,
  ownCgroupOf,
  parseMemorySize,
  pidsMaxEvents,
  pidsV1Mount,
  pidsV1Path,
  probeBelow,
  probeCgroups,
  startWatchdog,
  v1Mount,
  v1Path,
  writeText,
} from "../../src/exec/cgroup.ts";
import { inheritedDescriptors, startedElsewhen } from "../../src/exec/sandbox.ts";
import { spawnCli } from "../_cli.ts";
import { DEFAULT_CHILD_PATH } from "../../src/exec/env.ts";
import { cgroupsOfRuns } from "./_cgroup_runs.ts";
import { alive, runOnFakeClock, runsHereOrUnderAllowAll, survivors } from "./helpers.ts";
import { createExecutor } from "../../src/agent/executor.ts";
import { captureLogs } from "../agent/_helpers.ts";

const here = runsHereOrUnderAllowAll(import.meta.filename!);
const isRoot = agentUid() === 0;
const ignore = !here || !isRoot;
if (here && !isRoot) console.log("sandbox tests skipped: they need root (commands switch user)");

const policyWith = (...programs: string[]) => createPolicy({ extraPrograms: programs });

/** A root-only directory outside the allowed prefixes with a secret file in it. */
function secretDir(): { dir: string; marker: string } & Disposable {
  const dir = Deno.makeTempDirSync({ dir: "/var/cache", prefix: "status-secret-" });
  const marker = `secret-${crypto.randomUUID()}`;
  Deno.writeTextFileSync(`${dir}/${marker}`, `content of ${marker}\n`, { mode: 0o600 });
  Deno.chmodSync(dir, 0o700);
  return { dir, marker, [Symbol.dispose]: () => Deno.removeSync(dir, { recursive: true }) };
}

/** A directory under /tmp that the command user may enter. */
function box(): { dir: string } & Disposable {
  const dir = Deno.makeTempDirSync({ dir: "/tmp", prefix: "status-box-" });
  Deno.chmodSync(dir, 0o755);
  return { dir, [Symbol.dispose]: () => Deno.removeSync(dir, { recursive: true }) };
}

/** An executable `/bin/sh` script any user may run, in a directory of its own under /tmp. */
function script(body: string): { path: string } & Disposable {
  const dir = box();
  const path = `${dir.dir}/script.sh`;
  Deno.writeTextFileSync(path, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  Deno.chmodSync(path, 0o755);
  return { path, [Symbol.dispose]: () => dir[Symbol.dispose]() };
}

Deno.test({
  name: "the watchdog runs without the agent's environment (its token, its PATH)",
  ignore: !here,
  fn: async () => {
    // It inherited it all: AGENT_TOKEN in its /proc/<pid>/environ, and the script's cat looked up
    // on the agent's PATH, as root.
    const saved = Deno.env.get("AGENT_TOKEN");
    Deno.env.set("AGENT_TOKEN", "token-the-watchdog-must-not-hold");
    const base = Deno.makeTempDirSync({ prefix: "status-watchdog-env-" });
    const watchdog = startWatchdog(base);
    try {
      assert.ok(watchdog);
      const environ = Deno.readTextFileSync(`/proc/${watchdog.child.pid}/environ`);
      assert.deepEqual(environ.split("\0").filter((v) => v !== ""), [`PATH=${DEFAULT_CHILD_PATH}`]);
    } finally {
      if (saved === undefined) Deno.env.delete("AGENT_TOKEN");
      else Deno.env.set("AGENT_TOKEN", saved);
      if (watchdog) {
        await watchdog.writer.close();
        watchdog.child.ref();
        await watchdog.child.status;
      }
      Deno.removeSync(base, { recursive: true });
    }
  },
});

Deno.test({ name: "resolveUser reads names, uids and uid:gid", ignore: !here }, () => {
  const passwd = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/sbin/nologin\n";
  assert.deepEqual(resolveUser("nobody", passwd), { name: "nobody", uid: 65534, gid: 65534 });
  assert.deepEqual(resolveUser("65534", passwd), { name: "65534", uid: 65534, gid: 65534 });
  assert.deepEqual(resolveUser("12:34", passwd), { name: "12:34", uid: 12, gid: 34 });
  assert.throws(() => resolveUser("nosuchuser", passwd), /not a user of this machine/);
});

Deno.test({ name: "resolveUser refuses ids no process can run with", ignore: !here }, () => {
  // Accepted, every command failed to spawn with "Invalid argument (os error 22)".
  const passwd = "nobody:x:65534:65534::/:/sbin/nologin\n";
  assert.deepEqual(resolveUser("4294967294", passwd).uid, 4294967294);
  assert.throws(
    () => resolveUser("4294967295", passwd),
    /^TypeError: COMMAND_USER "4294967295" is not a user commands can run as: uid 4294967295 is beyond 4294967294$/,
  );
  assert.throws(() => resolveUser("99999999999", passwd), /uid 99999999999 is beyond/);
  assert.throws(() => resolveUser("65534:4294967296", passwd), /gid 4294967296 is beyond/);
});

Deno.test({ name: "cgroup2Mount and ownCgroupPath read /proc/self texts", ignore: !here }, () => {
  const hybrid = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n" +
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n";
  assert.equal(cgroup2Mount(hybrid), "/sys/fs/cgroup/unified");
  assert.equal(cgroup2Mount("32 31 0:29 / /x rw - cgroup cgroup rw,cpu\n"), undefined);
  assert.equal(
    ownCgroupPath("1:cpu:/\n0::/system.slice/status.service\n"),
    "/system.slice/status.service",
  );
  // Read while another agent of the process has moved it into a command's cgroup or a probe.
  assert.equal(ownCgroupOf("/system.slice/status.service"), "/system.slice/status.service");
  assert.equal(ownCgroupOf("/svc/status-ab12/cmd-77-3-9f8e7d6c"), "/svc");
  assert.equal(ownCgroupOf("/status-ab12/probe-77"), "/");
  assert.equal(ownCgroupOf("/svc/status-ab12/other"), "/svc/status-ab12/other");
});

Deno.test({
  name: "two agents on two threads of one process: every command in its own cgroup",
  ignore,
  fn: async () => {
    const probe = Sandbox.create({ tag: `probe-${crypto.randomUUID().slice(0, 8)}` });
    const withCgroups = probe.killMode === "cgroup";
    await probe.close();
    if (!withCgroups) {
      console.log("skipped: no cgroups here");
      return;
    }
    const runs = 80;
    const worker = new Worker(new URL("./_cgroup_worker.ts", import.meta.url), { type: "module" });
    try {
      const other = new Promise<Awaited<ReturnType<typeof cgroupsOfRuns>>>((resolve, reject) => {
        worker.onmessage = (event) => resolve(event.data);
        worker.onerror = (event) => reject(new Error(event.message));
      });
      const tag = crypto.randomUUID().slice(0, 8);
      worker.postMessage({ tag: `${tag}-w`, runs });
      const here = await cgroupsOfRuns(`${tag}-m`, runs);
      const there = await other;
      assert.deepEqual([here, there].map((r) => r.failed), [0, 0]);
      assert.deepEqual(
        [here, there].map((r) => r.misplaced),
        [0, 0],
        `commands in another cgroup, e.g. ${here.example ?? there.example}`,
      );
    } finally {
      worker.terminate();
    }
  },
});

Deno.test({
  name: "a command user cannot rename its working directory: it lies in one of the agent's own",
  ignore,
  fn: async () => {
    const tag = `test-${crypto.randomUUID().slice(0, 8)}`;
    const sandbox = Sandbox.create({ cgroups: false, tag });
    // As a process of the command user would, from outside the command (here: the command).
    using mover = script(
      `mv "$PWD" "$PWD.moved" 2>/dev/null && echo moved; pwd; stat -c '%u %a' ..`,
    );
    const parent = `/tmp/status-cmd-${tag}`;
    try {
      const result = await runCommand(mover.path, { policy: policyWith(mover.path), sandbox });
      assert.equal(result.status, "success", result.error ?? "");
      assert.ok(!result.stdout.includes("moved"), result.stdout);
      const [pwd, parentInfo] = result.stdout.trim().split("\n");
      assert.equal(pwd.slice(0, pwd.lastIndexOf("/")), parent);
      assert.equal(parentInfo, "0 711", "the agent's; others may enter, not list or rename");
      assert.throws(() => Deno.lstatSync(parent), Deno.errors.NotFound, "gone with the command");
    } finally {
      await sandbox.close();
    }
  },
});

Deno.test({
  name: "a root agent's commands run as nobody, own group only, in a new empty directory",
  ignore,
  fn: async () => {
    const sandbox = Sandbox.create({ cgroups: false });
    using probe = script(`id -u; id -g; id -G; pwd; ls -A; echo "$HOME"`);
    try {
      assert.deepEqual(sandbox.user, resolveUser("nobody"));
      const result = await runCommand(probe.path, { policy: policyWith(probe.path), sandbox });
      assert.equal(result.status, "success", result.error ?? "");
      const [uid, gid, groups, pwd, ...rest] = result.stdout.trimEnd().split("\n");
      const nobody = resolveUser("nobody");
      assert.equal(Number(uid), nobody.uid);
      assert.equal(Number(gid), nobody.gid);
      assert.equal(groups, String(nobody.gid), "no supplementary groups");
      assert.match(pwd, /^\/tmp\/status-cmd-/);
      assert.notEqual(pwd, Deno.cwd());
      assert.deepEqual(rest, [pwd], "the directory is empty and HOME is it");
      await assert.rejects(() => Deno.stat(pwd), Deno.errors.NotFound, "removed afterwards");
    } finally {
      await sandbox.close();
    }
  },
});

Deno.test({
  name: "COMMAND_CWD may not be or hold the agent's directory or its state directory",
  ignore,
  fn: () => {
    using dir = box();
    Deno.mkdirSync(`${dir.dir}/state`);
    assert.throws(
      () => Sandbox.create({ cwd: dir.dir, protectedDirs: [`${dir.dir}/state`], cgroups: false }),
      /COMMAND_CWD .* holds the agent's own directory/,
    );
    assert.throws(
      () => Sandbox.create({ cwd: Deno.cwd(), protectedDirs: [Deno.cwd()], cgroups: false }),
      TypeError,
    );
  },
});

Deno.test({
  name: "issue 9 reproductions: the rules refuse the escapes and the OS refuses the rest",
  ignore,
  fn: async (t) => {
    const sandbox = Sandbox.create({ cgroups: false });
    using secret = secretDir();
    using tmp = box();
    const policy = policyWith("cat");
    try {
      await t.step("a file list (tar -T, --files-from) is refused", async () => {
        Deno.writeTextFileSync(`${tmp.dir}/list.txt`, `${secret.dir}/${secret.marker}\n`);
        for (
          const line of [
            `tar cf - -T ${tmp.dir}/list.txt`,
            `tar cf - --files-from=${tmp.dir}/list.txt`,
            `tar -cf - --files-fr ${tmp.dir}/list.txt`,
            `tar cTf ${tmp.dir}/list.txt -`,
            `du --files0-from=${tmp.dir}/list.txt`,
          ]
        ) {
          const result = await runCommand(line, { policy, sandbox });
          assert.equal(result.status, "rejected", line);
          assert.match(result.error ?? "", /reads the names of the files to use from a file/);
        }
      });

      await t.step("following a symlink inside an allowed directory is refused", async () => {
        Deno.symlinkSync(secret.dir, `${tmp.dir}/etc`);
        for (
          const line of [
            `tar -chf - ${tmp.dir}`,
            `tar chf - ${tmp.dir}`,
            `tar --dereference -cf - ${tmp.dir}`,
            `du -L -a ${tmp.dir}`,
            `du --deref -a ${tmp.dir}`,
            `ls -RL ${tmp.dir}`,
            `gzip -rf ${tmp.dir}`,
          ]
        ) {
          const result = await runCommand(line, { policy, sandbox });
          assert.equal(result.status, "rejected", line);
          assert.match(result.error ?? "", /follows symbolic links/);
        }
        // Without dereferencing, the link itself is archived, not what it points to.
        const plain = await runCommand(`tar -cf - ${tmp.dir}`, { policy, sandbox });
        assert.equal(plain.status, "success", plain.error ?? "");
        assert.ok(!plain.stdout.includes(`content of ${secret.marker}`));
        // A path through the link is refused by the rules.
        const through = await runCommand(`ls ${tmp.dir}/etc/`, { policy, sandbox });
        assert.equal(through.status, "rejected");
      });

      await t.step("relative paths do not reach the agent's own files", async () => {
        // The agent's working directory holds a .env with its token.
        const agentDir = Deno.makeTempDirSync({ dir: "/var/cache", prefix: "status-agent-" });
        try {
          Deno.writeTextFileSync(`${agentDir}/.env`, "AGENT_TOKEN=s3cret-token\n");
          const sandboxed = await runCommand("tar cf - .env", { policy, sandbox });
          assert.equal(sandboxed.status, "failed");
          assert.ok(!sandboxed.stdout.includes("s3cret-token"));
          // Without a sandbox, in the agent's own directory, the rules refuse the path.
          const unconfined = await runCommand("tar cf - .env", { policy, cwd: agentDir });
          assert.equal(unconfined.status, "rejected");
          assert.match(unconfined.error ?? "", /relative to the working directory, outside/);
          assert.equal(
            checkPolicy(["echo", "hello"], policy, { cwd: agentDir }).ok,
            true,
            "a word that names nothing there is not a path",
          );
        } finally {
          Deno.removeSync(agentDir, { recursive: true });
        }
      });

      await t.step("what the rules let through, the OS still refuses", async () => {
        // Inside an allowed prefix but owned by root: the rules accept, nobody may not read.
        const hidden = `${tmp.dir}/hidden`;
        Deno.mkdirSync(hidden, { mode: 0o700 });
        Deno.writeTextFileSync(`${hidden}/${secret.marker}`, secret.marker, { mode: 0o600 });
        const listed = await runCommand(`ls ${hidden}`, { policy, sandbox });
        assert.equal(listed.status, "failed");
        assert.match(listed.stderr, /Permission denied/);
        const read = await runCommand(`cat ${hidden}/${secret.marker}`, { policy, sandbox });
        assert.equal(read.status, "failed");
        assert.ok(!read.stdout.includes(secret.marker));
      });

      await t.step("a symlink swapped between the check and the exec", async () => {
        // Two ready-made links renamed over each other while ls runs: the check sees the safe
        // target, the program may meet the secret one; the OS refuses nobody either way.
        const safe = `${tmp.dir}/safe`;
        Deno.mkdirSync(safe, { mode: 0o755 });
        Deno.writeTextFileSync(`${safe}/harmless`, "");
        Deno.symlinkSync(safe, `${tmp.dir}/link`);
        // Swapped by another process, so that the swaps really interleave with the runs.
        using swap = script(
          `cd ${tmp.dir}\nwhile [ ! -e stop ]; do ln -sfn ${secret.dir} l1 && mv -T l1 link; ` +
            `ln -sfn ${safe} l2 && mv -T l2 link; done`,
        );
        const swapper = new Deno.Command(swap.path, { stdout: "null", stderr: "null" }).spawn();
        let accepted = 0;
        // At least 60 runs, and on a busy machine on until the swapper has had its turn.
        const deadline = Date.now() + 20_000;
        try {
          for (let run = 0; run < 60 || (accepted === 0 && Date.now() < deadline); run++) {
            const result = await runCommand(`ls ${tmp.dir}/link/`, { policy, sandbox });
            if (result.status !== "rejected") accepted++;
            assert.ok(!result.stdout.includes(secret.marker), `run ${run} listed the secret`);
          }
        } finally {
          // Stopped between two swaps, so that no ln or mv outlives it.
          Deno.writeTextFileSync(`${tmp.dir}/stop`, "");
          await swapper.status;
        }
        assert.ok(accepted > 0, "some runs passed the check while the link was swapped");
      });
    } finally {
      await sandbox.close();
    }
  },
});

const cgroupSandbox = async () => {
  const sandbox = Sandbox.create({ tag: `test-${crypto.randomUUID().slice(0, 8)}` });
  if (sandbox.killMode !== "cgroup") {
    await sandbox.close();
    console.log(`cgroup tests skipped: ${sandbox.describe()}`);
    return undefined;
  }
  return sandbox;
};

/** A command that starts a grandchild in a new session (out of its process group). */
const ESCAPER = "setsid sleep 60 & echo $!; sleep 60";

function pidOf(stdout: string): number {
  const pid = Number(stdout.trim().split("\n")[0]);
  assert.ok(Number.isSafeInteger(pid) && pid > 1, `no pid in ${JSON.stringify(stdout)}`);
  return pid;
}

Deno.test({
  name: "a cgroup per command stops processes that left the process group",
  ignore,
  fn: async (t) => {
    const sandbox = await cgroupSandbox();
    if (!sandbox) return;
    using escaper = script(ESCAPER);
    using quick = script("setsid sleep 60 & echo $!");
    const policy = policyWith(escaper.path, quick.path);
    try {
      await t.step("at the deadline", async () => {
        const run = runOnFakeClock(escaper.path, { policy, sandbox, timeoutSecs: 1 });
        await run.ready("\n");
        run.clock.advance(900);
        const result = await run.result;
        assert.equal(result.status, "timeout");
        assert.deepEqual(await survivors([pidOf(result.stdout)]), []);
      });
      await t.step("on cancel", async () => {
        const cancel = new AbortController();
        const run = runOnFakeClock(escaper.path, {
          policy,
          sandbox,
          signal: cancel.signal,
          cancelGraceMs: 200,
        });
        await run.ready("\n");
        run.clock.advance(300);
        cancel.abort();
        const result = await run.result;
        assert.equal(result.status, "cancelled");
        assert.deepEqual(await survivors([pidOf(result.stdout)]), []);
      });
      await t.step("when the command itself ends first", async () => {
        const result = await runCommand(quick.path, { policy, sandbox });
        assert.equal(result.status, "success");
        assert.deepEqual(await survivors([pidOf(result.stdout)]), []);
      });
      await t.step("when the agent dies, its watchdog stops what it left", async () => {
        const tag = `test-${crypto.randomUUID().slice(0, 8)}`;
        const agent = new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "--allow-all",
            new URL("./_watchdog_probe.ts", import.meta.url).pathname,
            tag,
            escaper.path,
          ],
          stdout: "piped",
          stderr: "inherit",
          stdin: "null",
        }).spawn();
        const reader = agent.stdout.getReader();
        const { pid, grandchild, record } = JSON.parse(
          new TextDecoder().decode((await reader.read()).value),
        );
        reader.releaseLock();
        assert.deepEqual(await alive([pid, grandchild]), [pid, grandchild].sort((a, b) => a - b));
        agent.kill("SIGKILL");
        await agent.status;
        await agent.stdout.cancel();
        assert.deepEqual(await survivors([pid, grandchild], 3000), []);
        // The restarted agent knows the watchdog stopped it: it did not end on its own.
        const restarted = Sandbox.create({ tag });
        try {
          assert.equal(await restarted.stopLeftover(record), "stopped");
          // And removes the working directory the dead agent left.
          const parent = `/tmp/status-cmd-${tag}`;
          assert.notDeepEqual([...Deno.readDirSync(parent)], [], "the dead agent left one");
          await restarted.sweep();
          await restarted.close();
          assert.throws(() => Deno.lstatSync(parent), Deno.errors.NotFound);
        } finally {
          await restarted.close();
        }
      });
      await t.step("the command cannot move itself out of its cgroup", async () => {
        const home = sandbox.cgroupHome!;
        using mover = script(`echo $$ > ${home.own}/cgroup.procs && echo moved`);
        const result = await runCommand(mover.path, { policy: policyWith(mover.path), sandbox });
        assert.ok(!result.stdout.includes("moved"));
      });
    } finally {
      await sandbox.close();
    }
  },
});

Deno.test({
  name: "a restarted agent finds what a command left by its record, and sweeps its cgroups",
  ignore,
  fn: async () => {
    const tag = `test-${crypto.randomUUID().slice(0, 8)}`;
    const first = Sandbox.create({ tag });
    if (first.killMode !== "cgroup") {
      await first.close();
      console.log(`cgroup tests skipped: ${first.describe()}`);
      return;
    }
    // Two commands spawned as a crashed agent would have left them.
    const cells = [await first.open(), await first.open()];
    const children = cells.map((cell) =>
      cell.spawn("/bin/sh", {
        args: ["-c", ESCAPER],
        stdout: "piped",
        stderr: "null",
        stdin: "null",
      })
    );
    const grandchildren: number[] = [];
    for (const child of children) {
      const reader = child.stdout.getReader();
      const { value } = await reader.read();
      reader.releaseLock();
      grandchildren.push(pidOf(new TextDecoder().decode(value)));
    }
    const record = cells[0].record()!;
    assert.equal(record.cgroup, cells[0].cgroup);

    const second = Sandbox.create({ tag });
    try {
      assert.equal(await second.stopLeftover(record), "stopped");
      assert.deepEqual(await survivors([children[0].pid, grandchildren[0]]), []);
      assert.equal(await second.stopLeftover(record), "ended", "gone after the stop");
      assert.equal(await second.sweep(), 1, "the second cell was still running");
      assert.deepEqual(await survivors([children[1].pid, grandchildren[1]]), []);
      for (const cell of cells) {
        assert.throws(() => Deno.statSync(cell.cwd!), Deno.errors.NotFound, "its directory went");
      }
    } finally {
      for (const child of children) {
        await child.stdout.cancel();
        await child.status;
      }
      for (const cell of cells) await cell.close();
      await second.close();
      await first.close();
    }
  },
});

Deno.test({
  name: "a second sandbox of the same tag, closed unused, leaves the first one's commands alone",
  ignore,
  fn: async () => {
    // A second agent on the same state directory (refused its lock), or the parent of a daemon,
    // makes a sandbox of the running agent's tag and closes it again.
    const tag = `test-${crypto.randomUUID().slice(0, 8)}`;
    const first = Sandbox.create({ tag });
    if (first.killMode !== "cgroup") {
      await first.close();
      console.log(`cgroup tests skipped: ${first.describe()}`);
      return;
    }
    using sleeper = script("echo ready; sleep 60");
    const policy = createPolicy({
      extraPrograms: [sleeper.path, "cat"],
      allowedPathPrefixes: ["/proc/self"],
    });
    const cancel = new AbortController();
    try {
      const run = runOnFakeClock(sleeper.path, {
        policy,
        sandbox: first,
        signal: cancel.signal,
        cancelGraceMs: 0,
      });
      await run.ready("ready");
      const second = Sandbox.create({ tag });
      await second.close();
      // The first one's command still runs: only a cancel ends it.
      cancel.abort();
      const result = await run.result;
      assert.equal(result.status, "cancelled", JSON.stringify(result));
      // Its directory of cgroups, removed while empty by the second one's close, is made again.
      const again = Sandbox.create({ tag });
      await again.close();
      const next = await runCommand("cat /proc/self/cgroup", { policy, sandbox: first });
      assert.equal(next.status, "success", JSON.stringify(next));
      assert.match(next.stdout, new RegExp(`^0::.*/status-${tag}/cmd-`, "m"), "in a cgroup");
    } finally {
      cancel.abort();
      await first.close();
    }
  },
});

Deno.test({
  name: "a restarted agent leaves alone a cgroup its journal names that is not one of its own",
  ignore,
  fn: async () => {
    const tag = `test-${crypto.randomUUID().slice(0, 8)}`;
    const sandbox = Sandbox.create({ tag });
    if (sandbox.killMode !== "cgroup") {
      await sandbox.close();
      console.log(`cgroup tests skipped: ${sandbox.describe()}`);
      return;
    }
    const cell = await sandbox.open();
    const child = cell.spawn("/bin/true", { stdin: "null", stdout: "null", stderr: "null" });
    const record = cell.record()!;
    await child.status;
    await cell.close();
    // Another program's cgroup beside this agent's, with a process in it.
    const other = `${sandbox.cgroupHome!.own}/other-${tag}`;
    Deno.mkdirSync(other);
    const sleeper = new Deno.Command("sleep", { args: ["60"], stdin: "null" }).spawn();
    try {
      Deno.writeTextFileSync(`${other}/cgroup.procs`, String(sleeper.pid));
      for (
        const cgroup of [
          other,
          `${other}/cmd-1-1-abcdef01`,
          `${sandbox.cgroupHome!.base}/../other-${tag}`,
          `${sandbox.cgroupHome!.base}/cmd-1-1-abcdef01/../../other-${tag}`,
        ]
      ) {
        assert.equal(await sandbox.stopLeftover({ ...record, cgroup }), "unknown", cgroup);
      }
      assert.deepEqual(await alive([sleeper.pid]), [sleeper.pid], "its process still runs");
      assert.equal(await sandbox.stopLeftover(record), "ended", "its own cgroup is looked at");
    } finally {
      sleeper.kill("SIGKILL");
      await sleeper.status;
      Deno.removeSync(other);
      await sandbox.close();
    }
  },
});

Deno.test({
  name: "without cgroups or /proc a leftover process group is found with ps, a reused pid is not",
  ignore,
  fn: async () => {
    using twice = script("sleep 60 & sleep 60");
    const sandbox = Sandbox.create({ cgroups: false });
    const cells = [await sandbox.open(), await sandbox.open()];
    const children = cells.map((cell) =>
      cell.spawn(twice.path, { stdout: "null", stderr: "null", stdin: "null" })
    );
    try {
      const records = cells.map((cell) => {
        const { start_ticks: _ticks, ...withoutProc } = cell.record()!;
        return withoutProc;
      });
      // A record whose spawn time does not match the group leader's start: another group.
      const reused = { ...records[1], spawned_at_ms: records[1].spawned_at_ms! - 3600_000 };
      assert.equal(await sandbox.stopLeftover(reused), "ended");
      assert.deepEqual(await alive([children[1].pid]), [children[1].pid], "left alone");
      assert.equal(await sandbox.stopLeftover(records[0]), "stopped");
      assert.deepEqual(await survivors([children[0].pid]), []);
    } finally {
      for (const cell of cells) await cell.close();
      for (const child of children) await child.status;
      await sandbox.close();
    }
  },
});

/**
 * A leftover as a restarted agent finds it: a process group of two sleeps spawned by a sandbox
 * without cgroups, with its process record; stopped and closed after `fn`.
 */
async function withLeftoverGroup(
  fn: (sandbox: Sandbox, record: ProcessRecord, pid: number) => Promise<void>,
): Promise<void> {
  using twice = script("sleep 60 & sleep 60");
  const sandbox = Sandbox.create({ cgroups: false });
  const cell = await sandbox.open();
  const child = cell.spawn(twice.path, { stdout: "null", stderr: "null", stdin: "null" });
  try {
    await fn(sandbox, (await cell.recordSoon())!, child.pid);
  } finally {
    await cell.close();
    await child.status;
    await sandbox.close();
  }
}

Deno.test({
  name: "with /proc, a group whose leader started at another time than recorded is not killed",
  ignore,
  // Its members that started after the recorded time were killed: a pid used again by a new
  // group leader (after a wrap of pids, or a reboot) lost its whole group.
  fn: () =>
    withLeftoverGroup(async (sandbox, record, pid) => {
      assert.ok(record.start_ticks !== undefined && record.start_ticks > 0, "read from /proc");
      const earlier = { ...record, start_ticks: record.start_ticks! - 1 };
      assert.equal(await sandbox.stopLeftover(earlier), "ended");
      assert.deepEqual(await alive([pid]), [pid], "left alone");
      assert.equal(await sandbox.stopLeftover(record), "stopped");
      assert.deepEqual(await survivors([pid]), []);
    }),
});

Deno.test({
  name: "a leftover's processes that moved to a process group of their own are stopped too",
  ignore,
  // bash's job control (`set -m`) puts a background job in a group of its own, in the command's
  // session: after a restart only the group was killed, and the job ran on.
  fn: async (t) => {
    using jobs = script(`exec /bin/bash -c 'set -m; sleep 60 & echo $!; wait'`);
    for (const withProc of [true, false]) {
      await t.step(
        withProc ? "its start time recorded" : "only its spawn time recorded",
        async () => {
          const sandbox = Sandbox.create({ cgroups: false });
          const cell = await sandbox.open();
          const child = cell.spawn(jobs.path, { stdout: "piped", stderr: "null", stdin: "null" });
          const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
          let stray = 0;
          try {
            stray = Number((await lines.read()).value?.trim());
            assert.ok(stray > 1, "the job's pid");
            const record = (await cell.recordSoon())!;
            const { start_ticks: _ticks, ...withoutProc } = record;
            assert.equal(await sandbox.stopLeftover(withProc ? record : withoutProc), "stopped");
            assert.deepEqual(await survivors([stray, child.pid], 5000), []);
          } finally {
            await lines.cancel();
            if (stray > 1 && (await alive([stray])).length > 0) Deno.kill(stray, "SIGKILL");
            await cell.close();
            await child.status;
            await sandbox.close();
          }
        },
      );
    }
  },
});

Deno.test({
  name: "a record of another boot names nothing to kill: the command is reported gone with it",
  ignore,
  // After a reboot the recorded pid may lead another program's group (its members started after
  // the recorded time, or it has no leader): that group was killed.
  fn: () =>
    withLeftoverGroup(async (sandbox, record, pid) => {
      const boot = Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim();
      assert.equal(record.boot_id, boot, "the boot is recorded");
      const otherBoot = { ...record, boot_id: "00000000-0000-4000-8000-000000000000" };
      assert.equal(await sandbox.stopLeftover(otherBoot), "rebooted");
      assert.deepEqual(await alive([pid]), [pid], "left alone");
      const { boot_id: _boot, ...olderRecord } = record;
      assert.equal(await sandbox.stopLeftover(olderRecord), "stopped", "no boot: looked at");
      assert.deepEqual(await survivors([pid]), []);
    }),
});

Deno.test({
  name: "two untagged sandboxes of one process: the start of one never sweeps the other's command",
  ignore: !here,
  fn: async () => {
    const first = Sandbox.create({ cgroups: false });
    const second = Sandbox.create({ cgroups: false });
    const cell = await first.open();
    try {
      assert.ok(cell.cwd && cell.ownDir, "the command has a directory of its own");
      await second.sweep();
      assert.ok(Deno.statSync(cell.cwd).isDirectory, "the running command's directory is kept");
    } finally {
      await cell.close();
      await first.close();
      await second.close();
    }
  },
});

Deno.test({
  name: "programs are looked up on the PATH directories the command user can enter",
  ignore,
  fn: async () => {
    const sandbox = Sandbox.create({ cgroups: false });
    // A root-only directory first on the agent's PATH, holding an `echo` the command user could
    // not start (as /root/.pyenv/shims does on a root agent).
    using secret = secretDir();
    Deno.writeTextFileSync(`${secret.dir}/echo`, "#!/bin/sh\necho private\n", { mode: 0o755 });
    Deno.chmodSync(`${secret.dir}/echo`, 0o755);
    const readEnv = (name: string) => name === "PATH" ? `${secret.dir}:/usr/bin:/bin` : undefined;
    const result = await runCommand("echo public", { policy: policyWith(), sandbox, readEnv });
    assert.equal(result.status, "success", result.error ?? "");
    assert.equal(result.stdout, "public\n");
    assert.ok(!result.program?.startsWith(secret.dir), result.program ?? "");
    // The command's own PATH leaves that directory out too.
    const path = await runCommand("printenv PATH", {
      policy: policyWith("printenv"),
      sandbox,
      readEnv,
    });
    assert.equal(path.stdout, "/usr/bin:/bin\n");
  },
});

Deno.test({
  name: "a PATH set in COMMAND_ENV loses the directories the command user may change",
  ignore,
  fn: async () => {
    // COMMAND_ENV=PATH=/srv/drop:/usr/bin with /srv/drop the command user's own: a command (as
    // nobody) could leave an `echo` there, and every later "echo" ran it.
    const sandbox = Sandbox.create({ cgroups: false });
    const user = sandbox.user!;
    using mine = box();
    const drop = `${mine.dir}/drop`;
    Deno.mkdirSync(drop, { mode: 0o755 });
    Deno.writeTextFileSync(`${drop}/echo`, "#!/bin/sh\necho planted\n", { mode: 0o755 });
    Deno.chmodSync(`${drop}/echo`, 0o755);
    Deno.chownSync(drop, user.uid, user.gid);
    // One the command user cannot enter stays: the operator named it, and nothing runs from it.
    using secret = secretDir();
    const PATH = `${drop}:${secret.dir}:/usr/bin:/bin`;
    const policy = policyWith("printenv");
    const runner = new CommandRunner({ policy, sandbox, extraEnv: { PATH } });
    const echo = await runner.run("echo public");
    assert.equal(echo.stdout, "public\n", echo.error ?? "");
    assert.ok(!echo.program?.startsWith(drop), echo.program ?? "");
    const path = await runner.run("printenv PATH");
    assert.equal(path.stdout, `${secret.dir}:/usr/bin:/bin\n`);
    assert.deepEqual(runner.pathLeftOut, [drop]);
    // The agent's own PATH: the same directory is named too (it was left out without a word).
    const readEnv = (name: string) => name === "PATH" ? PATH : undefined;
    assert.deepEqual(new CommandRunner({ policy, sandbox, readEnv }).pathLeftOut, [drop]);
  },
});

Deno.test("a sandbox that may not create directories runs commands in its work root, and checks relative arguments there", async (t) => {
  const probe = async (line: string, prefixes: string) => {
    const output = await new Deno.Command(Deno.execPath(), {
      // No --allow-write: the sandbox cannot give commands a directory of their own.
      args: [
        "run",
        "--allow-read",
        "--allow-run",
        "--allow-env",
        "--allow-sys",
        new URL("./_no_dirs_probe.ts", import.meta.url).pathname,
        line,
        prefixes,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).output();
    assert.equal(output.code, 0);
    return JSON.parse(new TextDecoder().decode(output.stdout)) as {
      where: string;
      status: string;
      error: string | null;
      stdout: string;
      stderr: string;
    };
  };
  await t.step("a relative path names a file of /tmp, not of /", async () => {
    // Run in "/", `date -f etc/hostname` printed each line of /etc/hostname as an invalid date.
    const hostname = Deno.readTextFileSync("/etc/hostname").trim();
    const ran = await probe("date -f etc/hostname", "/tmp,/var/tmp");
    assert.match(
      ran.where,
      /in \/tmp itself \(no directory of their own: grant --allow-write=\/tmp\)/,
    );
    assert.equal(ran.status, "failed");
    assert.match(ran.stderr, /etc\/hostname: No such file or directory/);
    assert.ok(!ran.stderr.includes(hostname), ran.stderr);
  });
  await t.step(
    "a relative argument naming a file there is checked against the prefixes",
    async () => {
      const file = Deno.makeTempFileSync({ dir: "/tmp", prefix: "status-no-dirs-" });
      try {
        const name = file.slice("/tmp/".length);
        const ran = await probe(`ls ${name}`, "/var/tmp");
        assert.equal(ran.status, "rejected");
        assert.equal(
          ran.error,
          `path "${name}" is ${file} relative to the working directory, outside the allowed ` +
            `prefixes (/var/tmp)`,
        );
      } finally {
        Deno.removeSync(file);
      }
    },
  );
});

Deno.test({
  name: "a command's directory is given to its user last: a swap for a symlink then chmods nothing",
  ignore,
  fn: async () => {
    // The command user may rename a directory it owns in /tmp (sticky) and leave a symlink in its
    // place: whatever root did to the path after the chown would land on the symlink's target.
    const victimDir = Deno.makeTempDirSync({ dir: "/var/cache", prefix: "status-victim-" });
    const victim = `${victimDir}/file`;
    Deno.writeTextFileSync(victim, "root's\n");
    Deno.chmodSync(victim, 0o644);
    const sandbox = Sandbox.create({ cgroups: false });
    const chown = Deno.chown;
    let swapped: string | undefined;
    Deno.chown = async (path, uid, gid) => {
      await chown(path, uid, gid);
      const dir = String(path);
      swapped = `${dir}.moved`;
      Deno.renameSync(dir, swapped);
      Deno.symlinkSync(victim, dir);
    };
    try {
      const cell = await sandbox.open();
      await cell.close();
      assert.ok(swapped, "the directory was given to the command user");
      assert.equal(Deno.statSync(victim).mode! & 0o777, 0o644, "the victim's mode is unchanged");
    } finally {
      Deno.chown = chown;
      if (swapped) Deno.removeSync(swapped, { recursive: true });
      await sandbox.close();
      Deno.removeSync(victimDir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a program the root agent finds but the command user cannot reach is named with why",
  ignore,
  fn: async () => {
    // It said 'program "/root/bin/tool" could not be started: Failed to spawn ...: Permission
    // denied' though the agent (root) could run it: nothing said the command user is the one.
    const dir = Deno.makeTempDirSync({ dir: "/tmp", prefix: "status-closed-bin-" });
    const tool = `${dir}/tool`;
    Deno.writeTextFileSync(tool, "#!/bin/sh\necho ran\n");
    Deno.chmodSync(tool, 0o755);
    Deno.chmodSync(dir, 0o700);
    try {
      await using sandbox = Sandbox.create({ cgroups: false });
      const policy = createPolicy({ allowedPrograms: [tool] });
      // The start-up line says so before any command fails.
      assert.match(
        sandbox.describe(["echo", tool]),
        new RegExp(
          "; ALLOWED_PROGRAMS that nobody cannot run \\(their commands fail\\): " +
            `${tool} \\(${dir} is mode 0700, owner uid 0, group gid 0\\)$`,
        ),
      );
      const result = await runCommand(tool, { policy, sandbox });
      assert.equal(result.status, "failed");
      assert.equal(result.start_failure, "not_executable");
      assert.equal(
        result.error,
        `program "${tool}" cannot be run by the command user nobody (uid 65534, gid 65534): ` +
          `${dir} is mode 0700, owner uid 0, group gid 0`,
      );
      // Its own mode, when the directory is open.
      Deno.chmodSync(dir, 0o755);
      Deno.chmodSync(tool, 0o744);
      assert.equal(
        (await runCommand(tool, { policy, sandbox })).error,
        `program "${tool}" cannot be run by the command user nobody (uid 65534, gid 65534): ` +
          `${tool} is mode 0744, owner uid 0, group gid 0`,
      );
      Deno.chmodSync(tool, 0o755);
      assert.equal((await runCommand(tool, { policy, sandbox })).stdout, "ran\n");
      assert.doesNotMatch(sandbox.describe([tool]), /cannot run/);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a root agent's command in COMMAND_CWD gets a new empty HOME of its own, not the agent's",
  ignore,
  fn: async (t) => {
    // HOME was the agent's own (/root): closed to nobody, so a tool writing under ~ failed. Then
    // it was COMMAND_CWD, shared: one command's ~/.curlrc or ~/.gitconfig, left there, was read
    // and obeyed by the next one's curl or git.
    const dir = Deno.makeTempDirSync({ dir: "/tmp", prefix: "status-fixed-" });
    Deno.chmodSync(dir, 0o777);
    using probe = script(
      `pwd; echo "$HOME"; stat -c '%U %a' "$HOME"; ls -A "$HOME"; ` +
        `echo 'url = http://evil.example' > "$HOME/.curlrc"`,
    );
    try {
      await using sandbox = Sandbox.create({ cwd: dir, cgroups: false });
      await t.step("each command its own, owned by nobody, removed after it", async () => {
        const homes: string[] = [];
        for (let run = 0; run < 2; run++) {
          const result = await runCommand(probe.path, { policy: policyWith(probe.path), sandbox });
          assert.equal(result.status, "success", result.error ?? "");
          const [pwd, home, owner, ...listed] = result.stdout.trimEnd().split("\n");
          assert.equal(pwd, dir, "the working directory is still COMMAND_CWD");
          assert.match(home, /^\/tmp\/status-cmd-[^/]+\/home-/);
          assert.equal(owner, "nobody 700");
          assert.deepEqual(listed, [], "empty: the first command's .curlrc is not there");
          assert.throws(() => Deno.lstatSync(home), Deno.errors.NotFound, "removed afterwards");
          homes.push(home);
        }
        assert.notEqual(homes[0], homes[1]);
        assert.deepEqual([...Deno.readDirSync(dir)], [], "nothing was left in COMMAND_CWD");
      });
      await t.step("a HOME set in COMMAND_ENV wins, and none is made", async () => {
        const home = Deno.makeTempDirSync({ dir: "/tmp", prefix: "status-given-home-" });
        Deno.chmodSync(home, 0o755);
        try {
          const result = await runCommand(`${probe.path}`, {
            policy: policyWith(probe.path),
            sandbox,
            extraEnv: { HOME: home },
          });
          assert.equal(result.stdout.split("\n")[1], home);
          await using cell = await sandbox.open({ home: false });
          assert.equal(cell.home, undefined);
        } finally {
          Deno.removeSync(home, { recursive: true });
        }
      });
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a COMMAND_CWD the command user cannot enter is named, not the program",
  ignore,
  fn: async () => {
    // It said 'program "/usr/bin/echo" could not be started: ... Permission denied' (and
    // start_failure "not_executable") for every command, and the start-up line said nothing.
    const dir = Deno.makeTempDirSync({ dir: "/tmp", prefix: "status-closed-" });
    Deno.chmodSync(dir, 0o700);
    try {
      await using sandbox = Sandbox.create({ cwd: dir, cgroups: false });
      assert.match(
        sandbox.describe(),
        new RegExp(
          `in ${dir} \\(COMMAND_CWD, which nobody cannot enter, so no command starts: ${dir} is ` +
            "mode 0700, owner uid 0, group gid 0\\)",
        ),
      );
      const result = await runCommand("echo hi", { policy: createPolicy({}), sandbox });
      assert.equal(result.status, "failed");
      assert.equal(result.start_failure, "spawn_failed");
      assert.equal(
        result.error,
        `working directory "${dir}" cannot be entered by the command user nobody (uid 65534, ` +
          `gid 65534): ${dir} is mode 0700, owner uid 0, group gid 0`,
      );
      // One it may enter runs as before.
      Deno.chmodSync(dir, 0o711);
      assert.equal(
        (await runCommand("echo hi", { policy: createPolicy({}), sandbox })).stdout,
        "hi\n",
      );
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a root agent refused a cgroup is told why, not to run as root",
  ignore,
  fn: () => {
    // A root agent in a container (a read-only cgroup file system) read "...; run as root or as
    // a systemd service with Delegate=yes". /sys refuses a directory even to root.
    assert.equal(
      probeBelow("/sys", "test-refused"),
      "cannot create /sys/status-test-refused (Operation not permitted (os error 1): mkdir " +
        "'/sys/status-test-refused')",
    );
    assert.match(
      String(probeBelow("/etc/passwd", "test-refused")),
      /^cannot create \/etc\/passwd\/status-test-refused \(Not a directory[^;]*$/,
    );
  },
});

Deno.test("the start-up line says a non-root agent needs capabilities for COMMAND_USER", async () => {
  // It said "commands run as nobody (uid 65534, ...)" and nothing else, while without
  // CAP_SETUID and CAP_SETGID every command failed to start.
  await using sandbox = Sandbox.create({ user: "65534:65534", agentUid: 1000, cgroups: false });
  assert.ok(
    sandbox.describe().startsWith(
      "commands run as 65534:65534 (uid 65534, gid 65534, no supplementary groups; the agent " +
        "is not root (uid 1000): running as COMMAND_USER 65534:65534 needs the CAP_SETUID and " +
        "CAP_SETGID capabilities, without which no command starts), ",
    ),
    sandbox.describe(),
  );
});

Deno.test("the start-up line says once why commands run as the agent's own user", async (t) => {
  // It said "commands run as the agent's own user (cannot tell ...: commands run as the agent's
  // own user; ...)" and "(the agent is not root: commands run as its own user (uid 1000))".
  for (
    const [what, agentUid, why] of [
      [
        "the uid unknown",
        null,
        /^cannot tell whether the agent runs as root \(grant --allow-sys=uid\); set COMMAND_USER/,
      ],
      ["not root", 1000, /^the agent is not root \(uid 1000\)$/],
    ] as const
  ) {
    await t.step(what, async () => {
      await using sandbox = Sandbox.create({ agentUid, cgroups: false });
      assert.match(sandbox.userNote ?? "", why);
      const said = sandbox.describe();
      assert.equal(said.split("own user").length, 2, said);
    });
  }
});

Deno.test("a root agent whose COMMAND_USER is root is warned that commands keep its power", async (t) => {
  // It was an info line, "commands run as the agent's own user (COMMAND_USER is that user)".
  for (const user of ["root", "0", "0:0"]) {
    await t.step(user, async () => {
      await using sandbox = Sandbox.create({ user, agentUid: 0, cgroups: false });
      assert.equal(sandbox.user, undefined);
      const [warning, ...more] = sandbox.warnings();
      assert.deepEqual(more, []);
      assert.match(warning, new RegExp(`^commands run as root \\(COMMAND_USER ${user} is root\\)`));
      assert.match(warning, /set COMMAND_USER to an unprivileged user/);
      assert.match(sandbox.describe(), new RegExp(`own user \\(COMMAND_USER ${user} is root\\)`));
    });
  }
  await t.step("a command user in root's group is warned of too", async () => {
    // It ran as uid 65534 in group 0, which reads what root's group may, and nothing said so.
    for (const user of ["65534:0", "1000:0"]) {
      await using sandbox = Sandbox.create({ user, agentUid: 0, cgroups: false });
      assert.deepEqual(sandbox.warnings(), [
        `commands run in group root (COMMAND_USER ${user}, gid 0): they can read and write ` +
        "what root's group may (files of mode 0640 or 0660 owned by root:root, say); give " +
        "COMMAND_USER a group of its own (uid:gid)",
      ]);
    }
  });
  await t.step("no warning for nobody, nor for an agent that is not root", async () => {
    await using byDefault = Sandbox.create({ agentUid: 0, cgroups: false });
    assert.deepEqual(byDefault.warnings(), []);
    await using own = Sandbox.create({ user: "1000", agentUid: 1000, cgroups: false });
    assert.deepEqual(own.warnings(), []);
  });
});

Deno.test({
  name: "descriptors the agent inherited, which every command gets, are named at start-up",
  ignore: !here,
  fn: async (t) => {
    await t.step("read from fdinfo's flags", () => {
      const proc = Deno.makeTempDirSync({ prefix: "status-proc-self-" });
      try {
        Deno.mkdirSync(`${proc}/fdinfo`);
        Deno.mkdirSync(`${proc}/fd`);
        const flags: Record<string, string> = {
          "0": "0100000",
          "1": "0100001",
          "2": "0100001",
          "3": "02000002",
          "7": "0100000",
          "9": "0100001",
          "12": "02004002",
        };
        for (const [fd, value] of Object.entries(flags)) {
          Deno.writeTextFileSync(
            `${proc}/fdinfo/${fd}`,
            `pos:\t0\nflags:\t${value}\nmnt_id:\t16\n`,
          );
        }
        Deno.symlinkSync("/etc/hostname", `${proc}/fd/7`);
        assert.deepEqual(inheritedDescriptors(proc), [
          { fd: 7, target: "/etc/hostname" },
          { fd: 9, target: undefined },
        ]);
        assert.equal(inheritedDescriptors(`${proc}/missing`), undefined);
      } finally {
        Deno.removeSync(proc, { recursive: true });
      }
    });
    await t.step("this process's own files are not among them", () => {
      using file = Deno.openSync(import.meta.filename!);
      const held = inheritedDescriptors();
      assert.ok(held !== undefined);
      assert.ok(held.every(({ target }) => target !== import.meta.filename), JSON.stringify(held));
      assert.ok(file.statSync().isFile);
    });
    await t.step("the agent's start-up log names one its parent left open", async () => {
      // The shell that starts the agent leaves descriptor 7 open on a file: every command the
      // agent runs gets it, whoever it runs as, and nothing said so.
      const dir = Deno.makeTempDirSync({ dir: "/tmp", prefix: "status-fd-" });
      const secret = `${dir}/secret`;
      Deno.writeTextFileSync(secret, "secret\n", { mode: 0o600 });
      try {
        await using up = spawnCli(["up", "--port", "0", "--data-dir", `${dir}/data`], {
          perms: ["--allow-all"],
          cwd: dir,
          prefix: ["/bin/sh", "-c", 'exec 7<"$0"; exec "$@"', secret],
        });
        await up.waitForLog(/^sandbox: file descriptors .*every command gets them too/);
        const warning = String(
          up.logs().find((record) => /^sandbox: file descriptors/.test(String(record.message)))
            ?.message,
        );
        assert.ok(warning.includes(`7 (${secret})`), warning);
        assert.match(warning, /exec (\d+<&- )*7<&-/);
        up.kill("SIGTERM");
        await up.exited();
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
    });
  },
});

Deno.test("an agent whose commands may run as root is warned, also when it cannot tell its own uid", async (t) => {
  // Under the README's foreground flags (no --allow-sys=uid) a root agent ran commands as root,
  // and only the info line said it could not tell.
  await t.step("the uid unknown", async () => {
    await using sandbox = Sandbox.create({ agentUid: null, cgroups: false });
    assert.deepEqual(sandbox.warnings(), [
      "cannot tell whether the agent runs as root (grant --allow-sys=uid): if it does, commands " +
      "run as root too, and can read the agent's token and state and change anything on this " +
      "machine; grant --allow-sys=uid (a root agent then runs them as nobody), or set COMMAND_USER",
    ]);
  });
  await t.step("nor when COMMAND_USER names root", async () => {
    // An agent that is not root (with CAP_SETUID) or cannot tell, given COMMAND_USER=0:65534,
    // ran commands as root without a word; given root, it spoke of root's group only.
    for (const [user, agentUid] of [["0:65534", 1000], ["root", 1000], ["0", null]] as const) {
      await using sandbox = Sandbox.create({ user, agentUid, cgroups: false });
      assert.deepEqual(sandbox.warnings(), [
        `commands run as root (COMMAND_USER ${user}, uid 0): they can read the agent's token ` +
        "and state and change anything on this machine; set COMMAND_USER to an unprivileged user",
      ]);
    }
  });
  await t.step("not when COMMAND_USER is set", async () => {
    await using sandbox = Sandbox.create({ user: "65534:65534", agentUid: null, cgroups: false });
    assert.deepEqual(sandbox.warnings(), []);
  });
});

Deno.test({
  name: "the README's foreground agent is warned of what its flags leave out of the sandbox",
  ignore: !here,
  fn: async () => {
    // It ran commands as root (when started by root) and let a path through a symlink under /tmp
    // lead anywhere, the agent's own config.json included, saying so only in an info line.
    const readme = Deno.readTextFileSync(new URL("../../README.md", import.meta.url));
    const row = readme.split("\n").find((line) => line.startsWith("| agent (foreground)"))!;
    const words = /`(deno run [^`]*)`/.exec(row)![1].split(/\s+/);
    const perms = words.filter((word) => word.startsWith("--allow-"));
    const args = words.slice(words.indexOf("main.ts") + 1);
    const dir = Deno.makeTempDirSync({ prefix: "status-foreground-" });
    try {
      Deno.writeTextFileSync(
        `${dir}/config.json`,
        JSON.stringify({ agent_id: "fg-1", dashboard_url: "http://127.0.0.1:9" }),
      );
      await using agent = spawnCli([...args, "--log-format", "json"], { perms, cwd: dir });
      await agent.waitForLog("Agent daemon starting");
      await agent.waitForLog(/^sandbox: the path rules cannot resolve symbolic links/);
      const warnings = agent.logs().filter((record) => record.level === "warning")
        .map((record) => String(record.message));
      assert.ok(
        warnings.includes(
          "sandbox: the path rules cannot resolve symbolic links under /tmp, /var/tmp (Deno may " +
            "not read there): a path through a symbolic link there may lead anywhere, the " +
            "agent's own files included; grant --allow-read=/tmp,/var/tmp",
        ),
        warnings.join("\n"),
      );
      assert.ok(
        warnings.some((w) => w.startsWith("sandbox: cannot tell whether the agent runs as root")),
        warnings.join("\n"),
      );
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "the pids controller is turned on above the commands' cgroups, or the reason is told",
  ignore: !here,
  fn: async (t) => {
    // Nothing set pids.max: a command that could fork (sh, xargs -P, find -exec, a program
    // re-invoking itself) started processes until the machine had no pid left.
    const tree = (own: [string, string], base: [string, string]) => {
      const dir = Deno.makeTempDirSync({ prefix: "status-pids-" });
      const home = { own: dir, base: `${dir}/status-t` };
      Deno.mkdirSync(home.base);
      for (const [path, [controllers, enabled]] of [[home.own, own], [home.base, base]] as const) {
        Deno.writeTextFileSync(`${path}/cgroup.controllers`, controllers);
        Deno.writeTextFileSync(`${path}/cgroup.subtree_control`, enabled);
      }
      return { home, [Symbol.dispose]: () => Deno.removeSync(dir, { recursive: true }) };
    };
    await t.step("turned on where it is off", () => {
      using fake = tree(["cpu io memory pids\n", "\n"], ["cpu pids\n", ""]);
      assert.equal(enablePids(fake.home), undefined);
      for (const dir of [fake.home.own, fake.home.base]) {
        assert.equal(Deno.readTextFileSync(`${dir}/cgroup.subtree_control`), "+pids");
      }
    });
    await t.step("left alone where it is on", () => {
      using fake = tree(["memory pids\n", "memory pids\n"], ["pids\n", "pids\n"]);
      assert.equal(enablePids(fake.home), undefined);
      assert.equal(
        Deno.readTextFileSync(`${fake.home.own}/cgroup.subtree_control`),
        "memory pids\n",
      );
    });
    await t.step("not available (a cgroup v1 hierarchy holds it): said, nothing written", () => {
      using fake = tree(["hugetlb\n", "\n"], ["", ""]);
      assert.equal(
        enablePids(fake.home),
        `it is not available in ${fake.home.own} (a cgroup v1 hierarchy holds it, or the ` +
          "cgroup above does not pass it down)",
      );
      assert.equal(Deno.readTextFileSync(`${fake.home.own}/cgroup.subtree_control`), "\n");
    });
    await t.step("a cgroup v1 hierarchy holding it is found (a hybrid system)", () => {
      const hybrid = "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n" +
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
      assert.equal(pidsV1Mount(hybrid), "/sys/fs/cgroup/pids");
      assert.equal(pidsV1Mount("41 31 0:38 / /x rw - cgroup2 cgroup2 rw\n"), undefined);
      assert.equal(pidsV1Mount("39 31 0:36 / /x rw - cgroup cgroup rw,pidsx\n"), undefined);
      assert.equal(
        pidsV1Path("9:name=systemd:/\n8:pids:/system.slice/s.service\n0::/\n"),
        "/system.slice/s.service",
      );
      assert.equal(pidsV1Path("4:memory:/a\n0::/\n"), undefined);
    });
    await t.step("the forks a limit refused are read from pids.events", () => {
      using fake = tree(["", ""], ["", ""]);
      assert.equal(pidsMaxEvents(fake.home.base), 0);
      Deno.writeTextFileSync(`${fake.home.base}/pids.events`, "max 17\n");
      assert.equal(pidsMaxEvents(fake.home.base), 17);
    });
  },
});

Deno.test({
  name: "the start-up line says how many processes a command may have, or why there is no limit",
  ignore: !here,
  fn: async (t) => {
    await t.step("without a cgroup there is none", async () => {
      await using sandbox = Sandbox.create({ cgroups: false });
      assert.equal(sandbox.processLimit, undefined);
      assert.match(
        sandbox.describe(),
        /; no limit on their processes \(COMMAND_MAX_PROCESSES needs a cgroup of their own\);/,
      );
    });
    await t.step("0 turns it off", async () => {
      await using sandbox = Sandbox.create({ cgroups: false, maxProcesses: 0 });
      assert.match(
        sandbox.describe(),
        /; no limit on their processes \(COMMAND_MAX_PROCESSES is 0\);/,
      );
    });
    await t.step("a value the kernel would not take is refused", () => {
      for (const bad of [-1, 1.5, 4194305, Number.NaN]) {
        assert.throws(() => Sandbox.create({ cgroups: false, maxProcesses: bad }), {
          name: "RangeError",
          message: "COMMAND_MAX_PROCESSES must be a whole number from 0 (no limit) to 4194304, " +
            `got ${bad}`,
        });
      }
    });
    if (!isRoot) return;
    await t.step("with a cgroup: the limit, or why the cgroup cannot set one", async () => {
      await using sandbox = Sandbox.create({ tag: `test-${crypto.randomUUID().slice(0, 8)}` });
      if (sandbox.killMode !== "cgroup") return;
      if (sandbox.processLimit === undefined) {
        assert.match(
          sandbox.describe(),
          /; no limit on their processes \(COMMAND_MAX_PROCESSES needs the pids controller of cgroup v2, and it (is not available|cannot be turned on) in \//,
        );
      } else {
        assert.equal(sandbox.processLimit, 4096);
        // On a hybrid system (as here) the limit is set in cgroup v1's pids hierarchy.
        const v1 = sandbox.pidsV1Home
          ? `, in cgroup v1's pids hierarchy under ${sandbox.pidsV1Home.base}`
          : "";
        assert.ok(
          sandbox.describe().includes(
            `; at most 4096 processes and threads each (pids.max${v1}: a fork beyond fails)`,
          ),
          sandbox.describe(),
        );
      }
    });
  },
});

Deno.test({
  name: "a command's forks beyond COMMAND_MAX_PROCESSES fail, and it is reported as it ended",
  ignore,
  fn: async () => {
    const sandbox = Sandbox.create({
      tag: `test-${crypto.randomUUID().slice(0, 8)}`,
      maxProcesses: 10,
    });
    try {
      if (sandbox.processLimit === undefined) {
        console.log(`process limit tests skipped: ${sandbox.describe()}`);
        return;
      }
      // The agent's own threads counted while it was in the cgroup for the spawn: a limit set
      // before would have refused the spawn itself.
      // The limit itself is set a moment after the spawn (before it, one with room for the
      // agent's threads): the script waits that moment out, which a busy machine may stretch.
      using bomb = script(
        "sleep 0.5; for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do " +
          "sleep 60 & echo $!; done; wait",
      );
      const result = await runCommand(bomb.path, { policy: policyWith(bomb.path), sandbox });
      const started = result.stdout.trim().split("\n").map(Number);
      assert.ok(started.length > 0 && started.length < 10, result.stdout);
      assert.equal(result.status, "failed", JSON.stringify(result));
      assert.notEqual(result.exit_code, 0);
      assert.match(result.stderr, /fork/i);
      assert.match(
        result.error ?? "",
        /^exited with code \d+; \d+ of its attempts to start a process or thread failed at its limit of 10 \(COMMAND_MAX_PROCESSES\)$/,
      );
      assert.deepEqual(await survivors(started), []);
      // The next command is not held to what the last one started.
      const next = await runCommand("echo fine", { policy: createPolicy({}), sandbox });
      assert.equal(next.status, "success");
      assert.equal(next.error, null);
    } finally {
      await sandbox.close();
    }
  },
});

Deno.test({
  name: "the memory controller is turned on above the commands' cgroups, or the reason is told",
  ignore: !here,
  fn: async (t) => {
    // Nothing limited a command's memory: one that allocated without end took the server's, and
    // the OOM killer could pick the agent or the dashboard.
    const tree = (own: [string, string], base: [string, string]) => {
      const dir = Deno.makeTempDirSync({ prefix: "status-memory-" });
      const home = { own: dir, base: `${dir}/status-t` };
      Deno.mkdirSync(home.base);
      for (const [path, [controllers, enabled]] of [[home.own, own], [home.base, base]] as const) {
        Deno.writeTextFileSync(`${path}/cgroup.controllers`, controllers);
        Deno.writeTextFileSync(`${path}/cgroup.subtree_control`, enabled);
      }
      return { home, [Symbol.dispose]: () => Deno.removeSync(dir, { recursive: true }) };
    };
    await t.step("turned on where it is off, and the agent stays where it is", () => {
      using fake = tree(["cpu io memory pids\n", "\n"], ["memory pids\n", ""]);
      assert.equal(enableMemory(fake.home), undefined);
      for (const dir of [fake.home.own, fake.home.base]) {
        assert.equal(Deno.readTextFileSync(`${dir}/cgroup.subtree_control`), "+memory");
      }
      assert.equal(homeOf(fake.home.own), fake.home.own);
    });
    await t.step("left alone where it is on", () => {
      using fake = tree(["memory pids\n", "memory pids\n"], ["memory\n", "memory\n"]);
      assert.equal(enableMemory(fake.home), undefined);
      assert.equal(
        Deno.readTextFileSync(`${fake.home.own}/cgroup.subtree_control`),
        "memory pids\n",
      );
    });
    await t.step("not available (a cgroup v1 hierarchy holds it): said, nothing written", () => {
      using fake = tree(["pids\n", "\n"], ["", ""]);
      assert.equal(
        enableMemory(fake.home),
        `it is not available in ${fake.home.own} (a cgroup v1 hierarchy holds it, or the ` +
          "cgroup above does not pass it down)",
      );
      assert.equal(Deno.readTextFileSync(`${fake.home.own}/cgroup.subtree_control`), "\n");
    });
    await t.step("a cgroup v1 memory hierarchy is found (a hybrid system, as here)", () => {
      const hybrid = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n" +
        "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n";
      assert.equal(v1Mount(hybrid, "memory"), "/sys/fs/cgroup/memory");
      assert.equal(v1Mount(hybrid, "pids"), "/sys/fs/cgroup/pids");
      assert.equal(v1Mount("35 31 0:32 / /x rw - cgroup cgroup rw,memoryx\n", "memory"), undefined);
      assert.equal(
        v1Path("8:pids:/\n4:memory:/process_api/d716\n0::/\n", "memory"),
        "/process_api/d716",
      );
      assert.equal(v1Path("8:pids:/a\n0::/\n", "memory"), undefined);
    });
    await t.step("the OOM killer's kills are read from memory.events or memory.oom_control", () => {
      using fake = tree(["", ""], ["", ""]);
      assert.equal(oomKills(fake.home.base), 0);
      Deno.writeTextFileSync(
        `${fake.home.base}/memory.oom_control`,
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
      );
      assert.equal(oomKills(fake.home.base), 3);
      Deno.writeTextFileSync(
        `${fake.home.base}/memory.events`,
        "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n",
      );
      assert.equal(oomKills(fake.home.base), 2);
    });
    await t.step("sizes are read as systemd's MemoryMax= reads them, and said back", () => {
      const M = 1024 ** 2;
      assert.equal(parseMemorySize("512M"), 512 * M);
      assert.equal(parseMemorySize("1.5g"), 1536 * M);
      assert.equal(parseMemorySize("2 GiB"), 2048 * M);
      assert.equal(parseMemorySize(M), M);
      assert.equal(parseMemorySize("unlimited"), 0);
      for (const bad of ["512", M - 1, "1.5", "2X", "-1M", 2.5, "", null]) {
        assert.equal(parseMemorySize(bad), undefined, String(bad));
      }
      assert.equal(describeMemorySize(2 * 1024 * M), "2G");
      assert.equal(describeMemorySize(1536 * M), "1536M");
      assert.equal(describeMemorySize(1_000_000_000), "1000000000 bytes");
    });
  },
});

Deno.test({
  name: "cgroup v2's no-internal-processes rule: the agent moves into a leaf, or says who is there",
  ignore,
  fn: async (t) => {
    // The memory controller, a domain controller, is refused (EBUSY) in the agent's own cgroup
    // while the agent is in it (a systemd service's cgroup, a container's): no command got a
    // memory limit. This machine's cgroup v2 has no memory controller (cgroup v1 holds it);
    // hugetlb, a domain controller too, stands in for it.
    const mount = cgroup2Mount(Deno.readTextFileSync("/proc/self/mountinfo"));
    const path = ownCgroupPath(Deno.readTextFileSync("/proc/self/cgroup"));
    if (!mount || !path) return;
    const own = `${mount}${path === "/" ? "" : path}`;
    const controllers = Deno.readTextFileSync(`${own}/cgroup.controllers`).split(/\s+/);
    if (!controllers.includes("hugetlb")) {
      console.log("no-internal-processes test skipped: no hugetlb controller in cgroup v2");
      return;
    }
    const passed = Deno.readTextFileSync(`${own}/cgroup.subtree_control`).split(/\s+/)
      .includes("hugetlb");
    if (!passed) writeText(`${own}/cgroup.subtree_control`, "+hugetlb");
    const test = `${own}/status-nip-${crypto.randomUUID().slice(0, 8)}`;
    const home = { own: test, base: `${test}/status-t` };
    Deno.mkdirSync(home.base, { recursive: true });
    let sleeper: Deno.ChildProcess | undefined;
    try {
      writeText(`${test}/cgroup.procs`, String(Deno.pid));
      await t.step("another process in the cgroup: said, nothing moved", async () => {
        sleeper = new Deno.Command("sleep", { args: ["60"] }).spawn();
        try {
          assert.equal(
            enableDomain(home, "hugetlb"),
            `it cannot be turned on in ${test}, which holds other processes than the agent ` +
              `(${sleeper.pid}): cgroup v2 passes it down only from a cgroup that holds no ` +
              "processes; run the agent in a cgroup of its own",
          );
          assert.equal(homeOf(test), test);
          assert.ok(readProcs(test).includes(Deno.pid));
        } finally {
          sleeper.kill("SIGKILL");
          await sleeper.status;
        }
      });
      await t.step("the agent alone: it moves into a leaf and the controller is on", () => {
        assert.equal(enableDomain(home, "hugetlb"), undefined);
        const leaf = `${test}/status.agent`;
        assert.equal(homeOf(test), leaf);
        assert.deepEqual(readProcs(test), []);
        assert.ok(readProcs(leaf).includes(Deno.pid));
        for (const dir of [test, home.base]) {
          assert.match(Deno.readTextFileSync(`${dir}/cgroup.subtree_control`), /\bhugetlb\b/);
        }
        // Another agent of this process finds the same own cgroup, and its probe moves it back
        // to the leaf, not into the cgroup it may no longer hold.
        const self = ownCgroupPath(Deno.readTextFileSync("/proc/self/cgroup"))!;
        assert.equal(`${mount}${ownCgroupOf(self)}`, test);
        const other = probeBelow(test, "t2");
        assert.equal(typeof other, "object", String(other));
        assert.ok(readProcs(leaf).includes(Deno.pid));
      });
      await t.step("an agent started in the leaf goes back there, not to its own", () => {
        // A process its parent left in the leaf (it moved there for the memory controller) was
        // moved back into its own cgroup after its probe, which cgroup v2 refuses: no cgroups.
        const fresh = `${own}/status-nip-${crypto.randomUUID().slice(0, 8)}`;
        Deno.mkdirSync(`${fresh}/status.agent`, { recursive: true });
        try {
          writeText(`${fresh}/status.agent/cgroup.procs`, String(Deno.pid));
          writeText(`${fresh}/cgroup.subtree_control`, "+hugetlb");
          const found = probeCgroups("t3");
          assert.deepEqual(found, { own: fresh, base: `${fresh}/status-t3` });
          assert.equal(homeOf(fresh), `${fresh}/status.agent`);
          assert.ok(readProcs(`${fresh}/status.agent`).includes(Deno.pid));
        } finally {
          writeText(`${own}/cgroup.procs`, String(Deno.pid));
          removeCgroups(fresh);
        }
      });
      await t.step("its own watchdog beside it moves into the leaf with it", async () => {
        // A watchdog started while others shared the cgroup (a --daemon's parent) stayed there:
        // counted as another process, it kept the controller off once they had ended.
        const fresh = `${own}/status-nip-${crypto.randomUUID().slice(0, 8)}`;
        const freshHome = { own: fresh, base: `${fresh}/status-t4` };
        Deno.mkdirSync(freshHome.base, { recursive: true });
        let watchdog: Deno.ChildProcess | undefined;
        try {
          writeText(`${fresh}/cgroup.procs`, String(Deno.pid));
          watchdog = new Deno.Command("sleep", { args: ["60"] }).spawn();
          assert.match(
            String(enableDomain(freshHome, "hugetlb")),
            /other processes than the agent/,
          );
          assert.equal(enableDomain(freshHome, "hugetlb", [watchdog.pid]), undefined);
          const leaf = `${fresh}/status.agent`;
          assert.equal(homeOf(fresh), leaf);
          assert.deepEqual(readProcs(fresh), []);
          assert.deepEqual(readProcs(leaf).sort(), [Deno.pid, watchdog.pid].sort());
        } finally {
          writeText(`${own}/cgroup.procs`, String(Deno.pid));
          watchdog?.kill("SIGKILL");
          await watchdog?.status;
          removeCgroups(fresh);
        }
      });
    } finally {
      writeText(`${own}/cgroup.procs`, String(Deno.pid));
      removeCgroups(test);
      if (!passed) writeText(`${own}/cgroup.subtree_control`, "-hugetlb");
    }
  },
});

Deno.test({
  name:
    "a memory controller refused for processes that have since ended (a --daemon's parent) is turned on before a later command",
  ignore,
  fn: async () => {
    // The daemon's agent probed while its parent was still in its cgroup: it found "other
    // processes", and its commands ran with no memory limit for good. Needs the memory
    // controller in cgroup v2 (not here: cgroup v1 holds it).
    const mount = cgroup2Mount(Deno.readTextFileSync("/proc/self/mountinfo"));
    const path = ownCgroupPath(Deno.readTextFileSync("/proc/self/cgroup"));
    if (!mount || !path) return;
    const own = `${mount}${ownCgroupOf(path) === "/" ? "" : ownCgroupOf(path)}`;
    const controllers = Deno.readTextFileSync(`${own}/cgroup.controllers`).split(/\s+/);
    if (!controllers.includes("memory")) {
      console.log("memory controller retry test skipped: no memory controller in cgroup v2");
      return;
    }
    using logs = captureLogs();
    const passed = Deno.readTextFileSync(`${own}/cgroup.subtree_control`).split(/\s+/)
      .includes("memory");
    if (!passed) writeText(`${own}/cgroup.subtree_control`, "+memory");
    const test = `${own}/status-daemon-${crypto.randomUUID().slice(0, 8)}`;
    Deno.mkdirSync(test);
    let parent: Deno.ChildProcess | undefined;
    let sandbox: Sandbox | undefined;
    try {
      writeText(`${test}/cgroup.procs`, String(Deno.pid));
      parent = new Deno.Command("sleep", { args: ["60"] }).spawn();
      sandbox = Sandbox.create({ tag: `test-${crypto.randomUUID().slice(0, 8)}` });
      assert.equal(sandbox.memoryLimit, undefined);
      assert.match(
        sandbox.describe(),
        new RegExp(
          `which holds other processes than the agent \\(${parent.pid}\\).*; the agent tries ` +
            "again before each command, and logs when the other processes have ended and it is on\\)",
        ),
      );
      // A command while the parent is still there runs as before, without a limit (its
      // watchdog starts in the agent's cgroup).
      const first = await sandbox.open();
      await first.close();
      assert.equal(sandbox.memoryLimit, undefined);
      parent.kill("SIGKILL");
      await parent.status;
      const next = await sandbox.open();
      try {
        assert.equal(sandbox.memoryLimit, 2 * 1024 ** 3);
        assert.ok(Deno.statSync(`${next.cgroup}/memory.max`).isFile);
        assert.deepEqual(readProcs(test), []);
        assert.ok(readProcs(`${test}/status.agent`).includes(Deno.pid));
        assert.ok(logs.has(/the other processes of the agent's cgroup have ended/));
        assert.match(
          sandbox.describe(),
          /; at most 2G of memory each \(memory\.max; the agent moved/,
        );
      } finally {
        await next.close();
      }
    } finally {
      try {
        parent?.kill("SIGKILL");
      } catch {
        // ended
      }
      await parent?.status;
      await sandbox?.close();
      writeText(`${own}/cgroup.procs`, String(Deno.pid));
      removeCgroups(test);
      if (!passed) writeText(`${own}/cgroup.subtree_control`, "-memory");
    }
  },
});

/** Removes a cgroup and every cgroup below it (empty ones: the test moved itself out first). */
function removeCgroups(dir: string): void {
  for (const entry of Deno.readDirSync(dir)) {
    if (entry.isDirectory) removeCgroups(`${dir}/${entry.name}`);
  }
  Deno.removeSync(dir);
}

/** The processes of a cgroup. */
function readProcs(cgroup: string): number[] {
  return Deno.readTextFileSync(`${cgroup}/cgroup.procs`).split("\n").filter((l) => l !== "")
    .map(Number);
}

Deno.test({
  name: "the start-up line says how much memory a command may use, or why there is no limit",
  ignore: !here,
  fn: async (t) => {
    await t.step("without a cgroup there is none", async () => {
      await using sandbox = Sandbox.create({ cgroups: false });
      assert.equal(sandbox.memoryLimit, undefined);
      assert.match(
        sandbox.describe(),
        /; no limit on their memory \(COMMAND_MAX_MEMORY needs a cgroup of their own\)$/,
      );
    });
    await t.step("0 turns it off", async () => {
      await using sandbox = Sandbox.create({ cgroups: false, maxMemory: 0 });
      assert.match(sandbox.describe(), /; no limit on their memory \(COMMAND_MAX_MEMORY is 0\)$/);
    });
    await t.step("a value the kernel would not take is refused", () => {
      for (const bad of [-1, 1.5, 4096, 1024 ** 5 + 1, Number.NaN]) {
        assert.throws(() => Sandbox.create({ cgroups: false, maxMemory: bad }), {
          name: "RangeError",
          message: "COMMAND_MAX_MEMORY must be 0 (no limit) or a whole number of bytes from " +
            `1048576 to 1125899906842624, got ${bad}`,
        });
      }
    });
    if (!isRoot) return;
    await t.step("with a cgroup: the limit, or why the cgroup cannot set one", async () => {
      await using sandbox = Sandbox.create({ tag: `test-${crypto.randomUUID().slice(0, 8)}` });
      if (sandbox.killMode !== "cgroup") return;
      if (sandbox.memoryLimit === undefined) {
        assert.match(
          sandbox.describe(),
          /; no limit on their memory \(COMMAND_MAX_MEMORY needs the memory controller of cgroup v2, and it (is not available|cannot be turned on) in \//,
        );
      } else {
        assert.equal(sandbox.memoryLimit, 2 * 1024 ** 3);
        // On a hybrid system (as here) the limit is set in cgroup v1's memory hierarchy.
        const where = sandbox.memoryV1Home
          ? `memory.limit_in_bytes, in cgroup v1's memory hierarchy under ${sandbox.memoryV1Home.base}`
          : "memory.max";
        assert.ok(
          sandbox.describe().includes(
            `; at most 2G of memory each (${where}: the kernel's OOM killer ends a process past it)`,
          ),
          sandbox.describe(),
        );
      }
    });
  },
});

Deno.test({
  name: "a command past COMMAND_MAX_MEMORY is killed and reported out of memory",
  ignore,
  fn: async () => {
    const sandbox = Sandbox.create({
      tag: `test-${crypto.randomUUID().slice(0, 8)}`,
      maxMemory: 32 * 1024 ** 2,
    });
    try {
      if (sandbox.memoryLimit === undefined) {
        console.log(`memory limit tests skipped: ${sandbox.describe()}`);
        return;
      }
      // A string of the size asked for, in MiB, held in memory (perl is everywhere Debian is).
      using hog = script(`exec perl -e '$x = "a" x ($ARGV[0] * 1048576); print length($x)' "$1"`);
      const policy = policyWith(hog.path);
      const result = await runCommand(`${hog.path} 256`, { policy, sandbox });
      assert.equal(result.status, "failed", JSON.stringify(result));
      assert.equal(result.signal, "SIGKILL");
      assert.equal(result.stdout, "");
      assert.equal(
        result.error,
        "terminated by signal SIGKILL; out of memory: 1 of its processes was killed for going " +
          "past its memory limit of 32M (COMMAND_MAX_MEMORY)",
      );
      // Below the limit a command runs as ever, and is not held to what the last one used.
      const fits = await runCommand(`${hog.path} 8`, { policy, sandbox });
      assert.equal(fits.status, "success", JSON.stringify(fits));
      assert.equal(fits.stdout, String(8 * 1048576));
      assert.equal(fits.error, null);
    } finally {
      await sandbox.close();
    }
  },
});

Deno.test({
  name:
    "an executor refused for a setting checked after its sandbox was made leaves no cgroup behind",
  ignore,
  async fn() {
    // An extra variable a program loads code from (or a deadline out of range) is refused by the
    // runner, made after the sandbox: the agent's directory of command cgroups (status-<tag>) and
    // its pids group stayed, one more for each refused start of `status agent` or runAgent.
    const stateDir = await Deno.makeTempDir({ prefix: "status-refused-" });
    const tag = Sandbox.tagOf(stateDir);
    try {
      const probe = Sandbox.create({ tag: `${tag}-probe` });
      const home = probe.cgroupHome;
      await probe.close();
      assert.ok(home, "cgroups are usable here (root, --allow-all)");
      for (const commandEnv of [["LD_PRELOAD=/tmp/x.so"], ["BASH_ENV=/tmp/x"]]) {
        assert.throws(() => createExecutor({ stateDir, commandEnv }), TypeError);
        assert.throws(
          () => createExecutor({ stateDir, defaultTimeoutSecs: -1 }),
          RangeError,
        );
        // Its close is asynchronous; a macrotask later it has run.
        await new Promise((resolve) => setTimeout(resolve, 0));
        assert.throws(() => Deno.statSync(`${home.own}/status-${tag}`), Deno.errors.NotFound);
        const v1 = pidsV1Mount(Deno.readTextFileSync("/proc/self/mountinfo"));
        const ownV1 = pidsV1Path(Deno.readTextFileSync("/proc/self/cgroup"));
        if (v1 !== undefined && ownV1 !== undefined) {
          assert.throws(
            () => Deno.statSync(`${v1}${ownV1 === "/" ? "" : ownV1}/status-${tag}`),
            Deno.errors.NotFound,
          );
        }
      }
    } finally {
      await Deno.remove(stateDir, { recursive: true });
    }
  },
});

Deno.test("a command's first process is told from a later one by ps's etimes across a wall clock step", async (t) => {
  // ps's etimes counts from the boot; the spawn was timed by the wall clock alone, so a step of
  // it (NTP, date -s) while the command ran made its own first process "another, newer one":
  // where /proc is closed, the strays of its session were left running past the deadline.
  const spawnedAtMs = Date.UTC(2026, 0, 12, 10, 0, 0);
  const spawn = { spawnedAtMs, spawnedAtMonoMs: 5_000 };
  const ran = 100_000;
  await t.step("the wall clock stepped back or forward an hour: the same process", () => {
    for (const stepMs of [-3_600_000, 3_600_000]) {
      const now = { wallMs: spawnedAtMs + ran + stepMs, monoMs: 5_000 + ran };
      assert.equal(startedElsewhen(100, spawn, now), false, String(stepMs));
    }
  });
  await t.step("the machine slept (the monotonic clock stood): the same process", () => {
    const now = { wallMs: spawnedAtMs + ran + 600_000, monoMs: 5_000 + ran };
    assert.equal(startedElsewhen(700, spawn, now), false);
  });
  await t.step("a process that started 30 s after the spawn is another, by either clock", () => {
    const now = { wallMs: spawnedAtMs + ran - 3_600_000, monoMs: 5_000 + ran };
    assert.equal(startedElsewhen(70, spawn, now), true);
    assert.equal(
      startedElsewhen(70, { spawnedAtMs }, { wallMs: spawnedAtMs + ran, monoMs: 0 }),
      true,
    );
  });
  await t.step("without a spawn time nothing tells", () => {
    assert.equal(startedElsewhen(70, {}, { wallMs: spawnedAtMs, monoMs: 0 }), false);
  });
});
