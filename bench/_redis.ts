/**
 * The reference: `redis-server` from Debian's packages, installed when missing, started on
 * loopback as a child with persistence off, stopped at the end.
 *
 * @module
 */
import { RespConnection } from "./_resp.ts";
import { baseEnv, type Child, type Children, sleep } from "./_proc.ts";

const decoder = new TextDecoder();

function run(command: string, args: string[]): { ok: boolean; output: string } {
  try {
    const out = new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { DEBIAN_FRONTEND: "noninteractive" },
    }).outputSync();
    return {
      ok: out.success,
      output: decoder.decode(out.stdout) + decoder.decode(out.stderr),
    };
  } catch (error) {
    return { ok: false, output: (error as Error).message };
  }
}

/** The `redis-server` binary, or why there is none. */
export type RedisBinary = { ok: true; path: string; version: string } | {
  ok: false;
  reason: string;
};

/**
 * Finds `redis-server`, installing Debian's package when it is missing and `install` is set
 * (as root: `apt-get install -y redis-server`, after `apt-get update` if that fails).
 *
 * @param install Whether to install it.
 * @returns The binary and its version, or the reason it is unavailable.
 */
export function ensureRedis(install: boolean): RedisBinary {
  const find = (): RedisBinary => {
    const which = run("bash", ["-c", "command -v redis-server"]);
    if (!which.ok) return { ok: false, reason: "redis-server is not installed" };
    const path = which.output.trim();
    const version = /v=(\S+)/.exec(run(path, ["--version"]).output)?.[1] ?? "unknown";
    return { ok: true, path, version };
  };
  const found = find();
  if (found.ok || !install) return found;
  if (Deno.uid() !== 0) {
    return { ok: false, reason: "redis-server is not installed and this is not root" };
  }
  if (!run("apt-get", ["install", "-y", "redis-server"]).ok) {
    run("apt-get", ["update"]);
    const second = run("apt-get", ["install", "-y", "redis-server"]);
    if (!second.ok) {
      return {
        ok: false,
        reason: `apt-get install redis-server failed: ${second.output.slice(-300)}`,
      };
    }
  }
  return find();
}

/**
 * Starts `redis-server` on loopback with persistence off (or, given `durableDir`, an append-only
 * file fsynced on every write) and room for `maxClients` clients, and
 * waits until it answers `PING`.
 *
 * @param children Where the process is registered (so it is always stopped).
 * @param binary The `redis-server` path.
 * @param port The port.
 * @param maxClients Clients it must accept.
 * @param logFile Where its output goes.
 * @param durableDir Where the append-only file goes; without it nothing is kept.
 * @returns The process.
 */
export async function startRedis(
  children: Children,
  binary: string,
  port: number,
  maxClients: number,
  logFile: string,
  durableDir?: string,
): Promise<Child> {
  // Durable: every write appended to a log and fsynced before it is answered, like our 202.
  const persistence = durableDir === undefined
    ? ["--appendonly", "no"]
    : ["--appendonly", "yes", "--appendfsync", "always", "--dir", durableDir];
  const child = children.spawn("redis-server", [
    binary,
    "--port",
    String(port),
    "--save",
    "",
    ...persistence,
    "--bind",
    "127.0.0.1",
    "--daemonize",
    "no",
    "--maxclients",
    String(maxClients),
    "--logfile",
    logFile,
  ], { env: baseEnv(), logFile });
  const deadline = Date.now() + 10_000;
  while (true) {
    try {
      using conn = await RespConnection.open(port);
      if ((await conn.command("PING")) === "PONG") return child;
    } catch (error) {
      if (child.exited || Date.now() > deadline) {
        await child.stop();
        throw new Error(`redis-server did not start (see ${logFile})`, { cause: error });
      }
    }
    await sleep(100);
  }
}
