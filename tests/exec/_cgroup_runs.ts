/**
 * Commands of an agent on a thread of the test process, for the test of two agents on two threads.
 *
 * @module
 */
import { createPolicy, runCommand, Sandbox } from "../../src/exec/mod.ts";

/**
 * Runs `cat /proc/self/cgroup` `runs` times in a sandbox tagged `tag`.
 *
 * @returns How many ran elsewhere than in a command cgroup of that tag, and one such path.
 */
export async function cgroupsOfRuns(
  tag: string,
  runs: number,
): Promise<{ misplaced: number; example?: string; failed: number }> {
  const sandbox = Sandbox.create({ tag });
  const policy = createPolicy({ extraPrograms: ["cat"], allowedPathPrefixes: ["/proc/self"] });
  let misplaced = 0;
  let failed = 0;
  let example: string | undefined;
  try {
    for (let i = 0; i < runs; i++) {
      const result = await runCommand("cat /proc/self/cgroup", { policy, sandbox });
      if (result.status !== "success") {
        failed++;
        continue;
      }
      const path = result.stdout.split("\n").find((l) => l.startsWith("0::"))?.slice(3) ?? "";
      if (!path.includes(`/status-${tag}/cmd-`)) {
        misplaced++;
        example ??= path;
      }
    }
  } finally {
    await sandbox.close();
  }
  return { misplaced, example, failed };
}
