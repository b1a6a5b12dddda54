/**
 * `deno task test`: the test files in parallel threads of one process (`test:parallel`) and, at
 * the same time in a process of their own, the doc examples and the tests that need their process
 * to themselves (`test:serial`: a memory bound on the process, cgroups), with one PostgreSQL
 * cluster for both when PostgreSQL is installed and no server is named. The parallel phase
 * prints as it goes; the serial one's output follows it, whole. The exit code is the parallel
 * phase's when it failed, else the serial one's.
 *
 * Both tasks set `MAX_CONNECTIONS=2000`: a dashboard a test starts in the test process itself
 * counts its free descriptors by opening them up to `MAX_CONNECTIONS` + 128 (Deno lets it read
 * `/proc/self/limits` only under `--allow-all`), and with the default 20,000 against a limit of
 * 20,000 that took every descriptor of the process for a moment, failing an open in another
 * test's thread.
 *
 * @module
 */
import { PG_CLUSTER_AVAILABLE, type PgCluster, startCluster, TEST_URL_VARIABLE } from "./_pg.ts";

const deno = Deno.execPath();
const task = (name: string, output: "inherit" | "piped") =>
  new Deno.Command(deno, { args: ["task", name], stdout: output, stderr: output }).spawn();

/** Everything a child writes to stdout and stderr, in the order it arrives. */
async function collect(child: Deno.ChildProcess): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) chunks.push(chunk);
  };
  await Promise.all([drain(child.stdout), drain(child.stderr)]);
  return chunks;
}

async function writeAll(chunks: Uint8Array[]): Promise<void> {
  const writer = Deno.stdout.writable.getWriter();
  try {
    for (const chunk of chunks) await writer.write(chunk);
  } finally {
    writer.releaseLock();
  }
}

/**
 * One throw-away PostgreSQL cluster for the test files that need one, started before they are,
 * as CI does (`STATUS_TEST_DATABASE_URL`): without it each such file starts a cluster of its own
 * when it begins, late in the run. Nothing when the variable is set or PostgreSQL is missing.
 */
async function sharedCluster(): Promise<PgCluster | undefined> {
  if (Deno.env.get(TEST_URL_VARIABLE) || !PG_CLUSTER_AVAILABLE) return undefined;
  try {
    const cluster = await startCluster();
    Deno.env.set(TEST_URL_VARIABLE, cluster.url);
    return cluster;
  } catch (error) {
    console.warn(`no shared PostgreSQL cluster (each test file starts its own): ${error}`);
    return undefined;
  }
}

const cluster = await sharedCluster();
for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  Deno.addSignalListener(signal, () => {
    cluster?.destroySync();
    Deno.exit(code);
  });
}
const serial = task("test:serial", "piped");
const serialOutput = collect(serial);
const parallel = await task("test:parallel", "inherit").status;
await writeAll([
  new TextEncoder().encode("\ntest:serial (ran at the same time, in a process of its own):\n"),
]);
await writeAll(await serialOutput);
const serialStatus = await serial.status;
await cluster?.destroy();
Deno.exit(parallel.code !== 0 ? parallel.code : serialStatus.code);
