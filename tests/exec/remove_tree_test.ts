/**
 * A command's working directory is removed after it, whatever modes the command left inside.
 */
import assert from "node:assert/strict";
import { agentUid, Sandbox } from "../../src/exec/mod.ts";
import { removeTree } from "../../src/exec/remove_tree.ts";

/** The unprivileged user the probe runs as when the test runs as root. */
const NOBODY = 65534;

/** Runs the probe: as this user, or as nobody when this is root (root removes anything). */
async function probe(dir: string): Promise<{ uid: number; removed: boolean; error: string }> {
  const asRoot = agentUid() === 0;
  const denoDir = Deno.makeTempDirSync({ prefix: "status-remove-tree-deno-" });
  try {
    if (asRoot) {
      Deno.chownSync(dir, NOBODY, NOBODY);
      Deno.chownSync(denoDir, NOBODY, NOBODY);
    }
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-config",
        "--no-lock",
        "--allow-read",
        "--allow-write",
        "--allow-sys=uid",
        new URL("./_remove_tree_probe.ts", import.meta.url).pathname,
        dir,
      ],
      env: { DENO_DIR: denoDir, NO_COLOR: "1" },
      cwd: dir,
      ...(asRoot ? { uid: NOBODY, gid: NOBODY } : {}),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 0, stderr);
    return JSON.parse(new TextDecoder().decode(output.stdout));
  } finally {
    Deno.removeSync(denoDir, { recursive: true });
  }
}

/** Whether the probe's source can be read by nobody (a checkout under /root cannot). */
function readableByNobody(): boolean {
  if (agentUid() !== 0) return true;
  const path = new URL("./_remove_tree_probe.ts", import.meta.url).pathname;
  const parts = path.split("/").filter((part) => part !== "");
  for (let i = 0; i < parts.length; i++) {
    const mode = Deno.statSync(`/${parts.slice(0, i).join("/")}`).mode ?? 0o755;
    if ((mode & 0o001) === 0) return false;
  }
  return ((Deno.statSync(path).mode ?? 0o644) & 0o004) !== 0;
}

Deno.test({
  name: "an agent that is not root removes a command's directory that the command shut",
  ignore: !readableByNobody(),
  async fn() {
    const dir = Deno.makeTempDirSync({ prefix: "status-remove-tree-" });
    try {
      const ran = await probe(dir);
      assert.notEqual(ran.uid, 0);
      assert.deepEqual({ removed: ran.removed, error: ran.error }, { removed: true, error: null });
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

/** Runs the deep-tree probe under `prlimit` with `limits` (`--nofile=256`, say). */
async function deepProbe(
  depth: number,
  limits: string[],
): Promise<{ code: number; stderr: string; left?: string[]; error?: string | null }> {
  const dir = Deno.makeTempDirSync({ prefix: "status-deep-tree-" });
  try {
    const output = await new Deno.Command("prlimit", {
      args: [
        ...limits,
        Deno.execPath(),
        "run",
        "--no-config",
        "--no-lock",
        "--allow-read",
        "--allow-write",
        "--allow-sys=uid",
        new URL("./_deep_tree_probe.ts", import.meta.url).pathname,
        dir,
        String(depth),
      ],
      env: { NO_COLOR: "1", PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    const stdout = new TextDecoder().decode(output.stdout);
    return { code: output.code, stderr, ...(output.code === 0 ? JSON.parse(stdout) : {}) };
  } finally {
    // What a failed removal left: by rm, as Deno's own removal would abort this process.
    await new Deno.Command("rm", { args: ["-rf", "--", dir], stdout: "null" }).output();
  }
}

/** Whether `prlimit` (util-linux) may run. */
function prlimitRuns(): boolean {
  try {
    return new Deno.Command("prlimit", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

Deno.test({
  name: "a tree deeper than the open-file limit is removed",
  ignore: !prlimitRuns(),
  async fn() {
    // It failed with "Too many open files" (a descriptor per level) and stayed in /tmp for good.
    const ran = await deepProbe(400, ["--nofile=128"]);
    assert.equal(ran.code, 0, ran.stderr);
    assert.deepEqual({ left: ran.left, error: ran.error }, { left: [], error: null });
  },
});

Deno.test({
  name: "a tree deep enough to overflow a recursive removal's stack is removed, the agent lives",
  ignore: !prlimitRuns(),
  async fn() {
    // Deno.remove recurses a level per directory: the stack ran out first, and the process
    // aborted ("has overflowed its stack"), at every later start's sweep again.
    const ran = await deepProbe(12000, ["--stack=2097152"]);
    assert.equal(ran.code, 0, ran.stderr);
    assert.deepEqual({ left: ran.left, error: ran.error }, { left: [], error: null });
  },
});

/** A tree of `dirs` directories of `files` files each, in a new directory under /tmp. */
function tree(dirs: number, files: number): string {
  const root = Deno.makeTempDirSync({ prefix: "status-remove-tree-" });
  for (let d = 0; d < dirs; d++) {
    Deno.mkdirSync(`${root}/dir-${d}`);
    for (let f = 0; f < files; f++) {
      Deno.writeFileSync(`${root}/dir-${d}/file-${f}`, new Uint8Array());
    }
  }
  return root;
}

/** Whether `path` is there. */
function existsDir(path: string): boolean {
  try {
    return Deno.lstatSync(path).isDirectory;
  } catch {
    return false;
  }
}

/** The entries beside `path` whose names start with its own (the tree and what holds it). */
function besides(path: string): string[] {
  const name = path.slice(path.lastIndexOf("/") + 1);
  const parent = path.slice(0, path.lastIndexOf("/"));
  if (!existsDir(parent)) return [];
  return [...Deno.readDirSync(parent)].map((entry) => entry.name)
    .filter((entry) => entry.startsWith(name));
}

Deno.test("a big tree is removed in slices, pausing between them while entries are left", async () => {
  // It was one synchronous call: 300,000 files held the event loop (heartbeats, reports) 4 s.
  const root = tree(10, 100);
  const left: number[] = [];
  await removeTree(root, {
    sliceSize: 100,
    pause: () => {
      const [stage] = besides(root);
      left.push(stage === undefined ? 0 : [...Deno.readDirSync(`/tmp/${stage}`)].length);
      return Promise.resolve();
    },
  });
  assert.deepEqual(besides(root), [], "the tree and the directory it was moved into are gone");
  assert.ok(left.length >= 10, `paused ${left.length} times`);
  assert.ok(left.slice(0, 9).every((count) => count > 0), `entries left: ${left}`);
});

Deno.test("a command's directory is removed without holding up the event loop", async () => {
  await using sandbox = Sandbox.create({ cgroups: false });
  const cell = await sandbox.open();
  for (let f = 0; f < 2000; f++) Deno.writeFileSync(`${cell.cwd}/file-${f}`, new Uint8Array());
  const closing = cell.close();
  let ran = false;
  setTimeout(() => ran = true, 0);
  await closing;
  assert.ok(ran, "a timer ran while the directory was removed");
  assert.throws(() => Deno.lstatSync(cell.cwd!), Deno.errors.NotFound);
});

Deno.test("a symlink swapped in for a directory while the tree is removed is never followed", async () => {
  const victim = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "status-victim-" });
  Deno.writeTextFileSync(`${victim}/kept`, "not the command's\n");
  const root = tree(2, 3);
  let swapped = false;
  try {
    await removeTree(root, {
      sliceSize: 1,
      pause: () => {
        // As a process of the command still inside would: dir-1 (listed as a directory) becomes
        // a symlink to the victim, its contents moved aside, before it is moved and read.
        const [stage] = besides(root);
        const moved = `/tmp/${stage}/0`;
        if (!swapped && besides(`${moved}/dir-1`).length === 1) {
          swapped = true;
          Deno.renameSync(`${moved}/dir-1`, `${moved}/dir-1.real`);
          Deno.symlinkSync(victim, `${moved}/dir-1`);
        }
        return Promise.resolve();
      },
    });
    assert.ok(swapped, "the swap happened");
    assert.equal(Deno.readTextFileSync(`${victim}/kept`), "not the command's\n");
    assert.deepEqual(besides(root), []);
  } finally {
    Deno.removeSync(victim, { recursive: true });
  }
});

Deno.test("a command's result need not wait for the removal of its directory; the sandbox's close does", async () => {
  // The result waited for the whole removal: a command that left millions of files was
  // reported after its execution lease (its timeout + 60 s) had ended, and ran again. The runner
  // now waits for it only so long (removalWaitMs).
  const sandbox = Sandbox.create({ cgroups: false });
  try {
    const cell = await sandbox.open();
    for (let f = 0; f < 10; f++) Deno.writeFileSync(`${cell.cwd}/file-${f}`, new Uint8Array());
    await cell.stop();
    assert.throws(() => Deno.lstatSync(cell.cwd!), Deno.errors.NotFound, "moved aside at once");
    assert.equal(besides(cell.cwd!).length, 1, "and being removed when stop returned");
    await cell.removed;
    assert.deepEqual(besides(cell.cwd!), []);
    const second = await sandbox.open();
    for (let f = 0; f < 10; f++) Deno.writeFileSync(`${second.cwd}/file-${f}`, new Uint8Array());
    await second.stop();
    await sandbox.close();
    assert.deepEqual(besides(second.cwd!), [], "the sandbox's close waited for the removal");
  } finally {
    await sandbox.close();
  }
});

Deno.test("a tree with names that are not UTF-8 is removed", async () => {
  // Deno reads such a name with U+FFFD in place of its bytes and cannot name the entry again: the
  // removal by name found nothing, and the tree stayed.
  const root = Deno.makeTempDirSync({ prefix: "status-remove-tree-" });
  const made = await new Deno.Command("/bin/sh", {
    args: [
      "-c",
      `cd "$1" && d="$(printf 'd\\377')" && mkdir "$d" "$d/sub" && : > "$d/sub/f" && ` +
      `: > "$(printf 'f\\376')" && : > plain`,
      "sh",
      root,
    ],
  }).output();
  assert.ok(made.success);
  assert.equal([...Deno.readDirSync(root)].length, 3);
  await removeTree(root);
  assert.deepEqual(besides(root), []);
});

Deno.test("a restarted agent's sweep does not wait for the removal of what the previous run left", async () => {
  // The sweep removed the leftovers before the restarted agent sent the results the previous run
  // left, or ran anything: a tree of millions of files held them up for minutes.
  const tag = `test-${crypto.randomUUID().slice(0, 8)}`;
  const previous = Sandbox.create({ cgroups: false, tag });
  const cell = await previous.open();
  for (let f = 0; f < 10; f++) Deno.writeFileSync(`${cell.cwd}/file-${f}`, new Uint8Array());
  // The previous run was killed: its cell was never closed.
  const restarted = Sandbox.create({ cgroups: false, tag });
  try {
    await restarted.sweep();
    assert.throws(() => Deno.lstatSync(cell.cwd!), Deno.errors.NotFound, "moved aside at once");
    assert.equal(besides(cell.cwd!).length, 1, "and still being removed");
    await restarted.close();
    assert.throws(() => Deno.lstatSync(`/tmp/status-cmd-${tag}`), Deno.errors.NotFound);
  } finally {
    await restarted.close();
    await previous.close();
  }
});
