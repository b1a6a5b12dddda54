/**
 * Small test file systems (a tmpfs mounted for a test), and freeing space on them, for the
 * full-disk and tmpfs tests.
 *
 * @module
 */
import { dirname } from "node:path";
import { until } from "./_until.ts";

/** KiB available on the file system holding `dir` (from `df`). */
async function availableKiB(dir: string): Promise<number> {
  const output = await new Deno.Command("df", { args: ["-k", "--output=avail", dir] }).output();
  return Number(new TextDecoder().decode(output.stdout).trim().split("\n").at(-1));
}

/**
 * Removes a file and waits until its space is back. A removed file's space is freed only when its
 * last descriptor closes, and a process that another test thread is spawning holds a copy of every
 * descriptor open at that moment until its program starts: a write right after the removal can
 * still find the disk full.
 */
export async function removeAndWaitForSpace(path: string): Promise<void> {
  const kiB = Math.floor(Deno.statSync(path).size / 1024);
  Deno.removeSync(path);
  await until(
    async () => await availableKiB(dirname(path)) >= kiB,
    `the space of ${path} is free`,
    10_000,
    50,
  );
}

async function run(command: string, args: string[]): Promise<boolean> {
  try {
    const output = await new Deno.Command(command, { args, stdout: "null", stderr: "null" })
      .output();
    return output.success;
  } catch {
    return false;
  }
}

/** Mounts a tmpfs of `sizeKiB` at a new directory, or returns `null` where that is not allowed. */
export async function smallDisk(
  sizeKiB: number,
): Promise<{ dir: string } & AsyncDisposable | null> {
  const dir = await Deno.makeTempDir({ prefix: "status-disk-" });
  if (!(await run("mount", ["-t", "tmpfs", "-o", `size=${sizeKiB}k`, "tmpfs", dir]))) {
    await Deno.remove(dir, { recursive: true });
    return null;
  }
  return {
    dir,
    async [Symbol.asyncDispose]() {
      // Busy for a moment while a process another test thread is spawning holds a copy of a
      // descriptor on it (until its program starts); detached lazily if it stays busy.
      for (let tries = 0; !(await run("umount", [dir])); tries++) {
        if (tries === 20) {
          await run("umount", ["-l", dir]);
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await Deno.remove(dir, { recursive: true });
    },
  };
}
