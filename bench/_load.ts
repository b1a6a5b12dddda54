/**
 * Starting the load generator (`bench/load_waiters.ts`) as a child process and waiting until it
 * holds its waits.
 *
 * @module
 */
import { ROOT } from "./_dashboard.ts";
import { baseEnv, type Child, type Children } from "./_proc.ts";

/** What the load generator holds. */
export type LoadTarget =
  | {
    kind: "http";
    url: string;
    agentsFile: string;
    timeoutSecs: number;
  }
  | { kind: "redis"; port: number };

/**
 * Starts the load generator with `count` idle waiters and waits until it has sent them all.
 *
 * @param children Where the process is registered (so it is always stopped).
 * @param target The dashboard (with the agents file) or Redis.
 * @param count How many waiters.
 * @param logFile Where its standard error goes.
 * @returns The process; stop it with `closeStdin()` then `stop()`.
 */
export async function startWaiters(
  children: Children,
  target: LoadTarget,
  count: number,
  logFile: string,
): Promise<Child> {
  const args = target.kind === "http"
    ? [
      "--mode",
      "http",
      "--url",
      target.url,
      "--agents",
      target.agentsFile,
      "--timeout",
      String(target.timeoutSecs),
      // The first waits' timeouts spread over 1…timeoutSecs, as in a fleet in steady state.
      "--stagger",
    ]
    : ["--mode", "redis", "--port", String(target.port)];
  const child = spawnLoadGenerator(
    children,
    `load generator (${target.kind}, ${count})`,
    [...args, "--count", String(count)],
    { logFile },
  );
  try {
    await child.lines!.take(/"event":"ready"/, 180_000);
  } catch (error) {
    await child.stop();
    throw new Error(`the load generator did not get ready (see ${logFile})`, { cause: error });
  }
  return child;
}

/**
 * Stops a load generator: closes its standard input, then stops its process group.
 *
 * @param child The load generator.
 */
export async function stopWaiters(child: Child): Promise<void> {
  await child.closeStdin();
  await child.stop(10_000);
}

/**
 * Spawns `bench/load_waiters.ts` with its standard output piped (its JSON event lines) and its
 * standard input open (closing it stops it).
 *
 * @param children Where the process is registered (so it is always stopped).
 * @param name What it is, for messages.
 * @param args Its arguments (`--mode ...`).
 * @param options Its log file and environment additions.
 * @returns The process.
 */
export function spawnLoadGenerator(
  children: Children,
  name: string,
  args: readonly string[],
  options: { logFile: string; env?: Record<string, string> },
): Child {
  return children.spawn(name, [
    Deno.execPath(),
    "run",
    "--quiet",
    "--config",
    `${ROOT}/deno.json`,
    "--allow-net",
    "--allow-read",
    "--allow-env",
    `${ROOT}/bench/load_waiters.ts`,
    ...args,
  ], {
    env: { ...baseEnv(), ...options.env },
    logFile: options.logFile,
    readStdout: true,
    pipeStdin: true,
  });
}
