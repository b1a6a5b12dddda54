/**
 * PostgreSQL for the tests: a throw-away cluster (initdb in a temporary directory, as an
 * unprivileged user when run as root, on a free loopback port) started from the binaries in
 * `/usr/lib/postgresql/<version>/bin`, or the server named by `STATUS_TEST_DATABASE_URL` (CI).
 * Each test gets a database of its own.
 *
 * Without both, the PostgreSQL tests are skipped with one message.
 *
 * @module
 */
import postgres from "postgres";
import { PG_MIGRATIONS } from "../src/store/_pg_migrations.ts";

/** The variable naming a server for the tests (a superuser URL; CI sets it). */
export const TEST_URL_VARIABLE = "STATUS_TEST_DATABASE_URL";

/** The directory of `initdb`/`pg_ctl`, or `null`. */
export function findPgBin(): string | null {
  const roots = ["/usr/lib/postgresql"];
  for (const root of roots) {
    let versions: string[];
    try {
      versions = [...Deno.readDirSync(root)].map((e) => e.name);
    } catch {
      continue;
    }
    versions.sort((a, b) => Number(b) - Number(a));
    for (const version of versions) {
      const bin = `${root}/${version}/bin`;
      try {
        Deno.statSync(`${bin}/initdb`);
        Deno.statSync(`${bin}/pg_ctl`);
        return bin;
      } catch {
        // not this one
      }
    }
  }
  return null;
}

function envUrl(): string | undefined {
  try {
    return Deno.env.get(TEST_URL_VARIABLE) || undefined;
  } catch {
    return undefined;
  }
}

/** Whether PostgreSQL tests can run here. */
export const PG_AVAILABLE: boolean = envUrl() !== undefined || findPgBin() !== null;
/** Whether a private cluster can be started (tests that restart the server need one). */
export const PG_CLUSTER_AVAILABLE: boolean = findPgBin() !== null;

let skipSaid = false;
/** `true` (and says why, once) when the PostgreSQL tests must be skipped. */
export function pgIgnore(needsCluster = false): boolean {
  const ignore = needsCluster ? !PG_CLUSTER_AVAILABLE : !PG_AVAILABLE;
  if (ignore && !skipSaid) {
    skipSaid = true;
    console.warn(
      `PostgreSQL tests skipped: set ${TEST_URL_VARIABLE} to a superuser URL, or install ` +
        `PostgreSQL (no initdb/pg_ctl in /usr/lib/postgresql/*/bin)`,
    );
  }
  return ignore;
}

function isRoot(): boolean {
  try {
    return Deno.uid() === 0;
  } catch {
    return false;
  }
}

/** The unprivileged user a cluster runs as when the tests run as root. */
function clusterUser(): { name: string; uid: number; gid: number } | null {
  if (!isRoot()) return null;
  for (const name of ["postgres", "nobody"]) {
    const out = new Deno.Command("id", { args: ["-u", name], stdout: "piped", stderr: "null" })
      .outputSync();
    const gid = new Deno.Command("id", { args: ["-g", name], stdout: "piped", stderr: "null" })
      .outputSync();
    if (out.success && gid.success) {
      const text = (b: Uint8Array) => Number(new TextDecoder().decode(b).trim());
      return { name, uid: text(out.stdout), gid: text(gid.stdout) };
    }
  }
  throw new Error("running as root, but neither user postgres nor nobody exists for initdb");
}

function command(user: string | null, program: string, args: string[]): Deno.Command {
  return user
    ? new Deno.Command("runuser", {
      args: ["-u", user, "--", program, ...args],
      stdout: "piped",
      stderr: "piped",
    })
    : new Deno.Command(program, { args, stdout: "piped", stderr: "piped" });
}

async function run(user: string | null, program: string, args: string[]): Promise<void> {
  const out = await command(user, program, args).output();
  if (!out.success) {
    const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
    throw new Error(`${program} ${args.join(" ")} failed:\n${text}`);
  }
}

/** A free TCP port on loopback (free when asked; a race is possible but harmless). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** A throw-away PostgreSQL cluster. */
export interface PgCluster extends AsyncDisposable {
  /** Superuser URL of its `postgres` database. */
  url: string;
  /** The loopback port. */
  port: number;
  /** Its data directory. */
  dir: string;
  /** Stops the server (fast shutdown: connections are cut). */
  stop(mode?: "fast" | "immediate"): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  destroy(): Promise<void>;
  /** Stops it and removes its directory, synchronously (at process exit). */
  destroySync(): void;
}

/**
 * Starts a throw-away cluster.
 *
 * @param options `durable`: keep PostgreSQL's default durability (fsync, synchronous commit), for
 *   the benchmark; tests run without it.
 * @returns The running cluster; dispose it to remove it.
 * @throws {Error} When the binaries are missing or initdb/pg_ctl fail.
 */
export async function startCluster(options: { durable?: boolean } = {}): Promise<PgCluster> {
  const bin = findPgBin();
  if (!bin) throw new Error("no PostgreSQL binaries in /usr/lib/postgresql/*/bin");
  const user = clusterUser();
  const dir = await Deno.makeTempDir({ prefix: "status-pg-" });
  if (user) await Deno.chown(dir, user.uid, user.gid);
  const data = `${dir}/data`;
  await run(user?.name ?? null, `${bin}/initdb`, [
    "-D",
    data,
    "-U",
    "status",
    "--auth=trust",
    "--no-sync",
    "-E",
    "UTF8",
    "--locale=C",
  ]);
  const port = freePort();
  const settings = [
    `-p ${port}`,
    `-k ${dir}`,
    "-c listen_addresses=127.0.0.1",
    "-c max_connections=200",
    ...(options.durable
      ? []
      : ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]),
  ].join(" ");
  const pgCtl = (args: string[]) => run(user?.name ?? null, `${bin}/pg_ctl`, args);
  const start = () => pgCtl(["-D", data, "-l", `${dir}/log`, "-o", settings, "-w", "start"]);
  const stop = (mode: "fast" | "immediate" = "fast") =>
    pgCtl(["-D", data, "-m", mode, "-w", "stop"]);
  await start();
  let destroyed = false;
  const cluster: PgCluster = {
    url: `postgres://status@127.0.0.1:${port}/postgres`,
    port,
    dir,
    stop,
    start,
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      await stop("immediate").catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
    destroySync() {
      if (destroyed) return;
      destroyed = true;
      command(user?.name ?? null, `${bin}/pg_ctl`, ["-D", data, "-m", "immediate", "-w", "stop"])
        .outputSync();
      try {
        Deno.removeSync(dir, { recursive: true });
      } catch {
        // already gone
      }
    },
    [Symbol.asyncDispose]: () => cluster.destroy(),
  };
  return cluster;
}

let shared: Promise<string> | undefined;
/** The cluster started for the ordinary tests, once started (none with `STATUS_TEST_DATABASE_URL`). */
let sharedCluster: PgCluster | undefined;

/** The server for ordinary tests: `STATUS_TEST_DATABASE_URL`, or one cluster per test process. */
function serverUrl(): Promise<string> {
  shared ??= (async () => {
    const url = envUrl();
    if (url) return url;
    const cluster = await startCluster();
    sharedCluster = cluster;
    globalThis.addEventListener("unload", () => cluster.destroySync());
    return cluster.url;
  })();
  return shared;
}

/**
 * The Unix socket of the ordinary tests' server: the directory it listens in and its port, or
 * `null` when it is `STATUS_TEST_DATABASE_URL`'s (whose socket, if any, is not known).
 */
export async function testSocket(): Promise<{ dir: string; port: number } | null> {
  await serverUrl();
  return sharedCluster ? { dir: sharedCluster.dir, port: sharedCluster.port } : null;
}

/** A test database: its URL and how to drop it. */
export type TestDatabase = { url: string; drop(): Promise<void> } & AsyncDisposable;

/**
 * Makes an empty database on the test server (or on `cluster`).
 *
 * @param cluster A private cluster; default the shared test server.
 * @param options What follows `CREATE DATABASE <name>` (a collation, say).
 * @returns Its URL, and a disposer that drops it.
 */
export function testDatabase(cluster?: PgCluster, options = ""): Promise<TestDatabase> {
  return createDatabase(cluster?.url, options ? ` ${options}` : "");
}

let migrated: Promise<string> | undefined;

/**
 * Makes a database with the store's schema already in it, on the shared test server: a copy of
 * a template that holds the current migrations (made once, kept on the server under a name that
 * changes with them; much faster than migrating each database).
 *
 * @param migrate Opens and closes a store on a URL, which migrates its database.
 * @returns Its URL, and a disposer that drops it.
 */
export async function migratedTestDatabase(
  migrate: (url: string) => Promise<void>,
): Promise<TestDatabase> {
  migrated ??= migratedTemplate(migrate);
  return createDatabase(undefined, ` TEMPLATE ${await migrated}`);
}

/** The template's name; made (migrated under another name, then renamed) when missing. */
async function migratedTemplate(migrate: (url: string) => Promise<void>): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(JSON.stringify(PG_MIGRATIONS)),
  );
  const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const name = `status_test_template_${hex.slice(0, 16)}`;
  const base = await serverUrl();
  const admin = postgres(base, { max: 1, onnotice: () => {} });
  try {
    const exists = async () =>
      (await admin`SELECT 1 FROM pg_database WHERE datname = ${name}`).length > 0;
    if (await exists()) return name;
    // Made under a name of its own, then renamed: another test process may be doing the same.
    const draft = await createDatabase(base, "");
    await migrate(draft.url);
    const draftName = new URL(draft.url).pathname.slice(1);
    try {
      await admin.unsafe(`ALTER DATABASE ${draftName} RENAME TO ${name}`);
    } catch (error) {
      await draft.drop();
      if (!(await exists())) throw error;
    }
    return name;
  } finally {
    await admin.end();
  }
}

async function createDatabase(clusterUrl: string | undefined, options: string) {
  const base = clusterUrl ?? await serverUrl();
  const name = `status_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const admin = postgres(base, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE ${name}${options}`);
  } finally {
    await admin.end();
  }
  const url = new URL(base);
  url.pathname = `/${name}`;
  const drop = async () => {
    const sql = postgres(base, { max: 1, onnotice: () => {} });
    try {
      await sql.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    } catch {
      // the server is gone (a test stopped it): nothing to drop
    } finally {
      await sql.end({ timeout: 1 });
    }
  };
  return { url: url.toString(), drop, [Symbol.asyncDispose]: drop };
}
