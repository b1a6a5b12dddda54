/**
 * A command's working directory is removed after it, whatever modes the command left inside.
 */
import assert from "node:assert/strict";
import { agentUid } from "../../src/exec/mod.ts";

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
