/**
 * The permission flags a re-spawned daemon gets: those of the running program, narrowed to what
 * the daemon needs.
 *
 * @module
 */
import { isGranted } from "../permissions.ts";

/** Paths, hosts, programs and variables the daemon needs, to narrow its permission flags. */
export interface PermissionNeeds {
  /** Paths it reads (config file, `.env`, state directory, pid file, `/proc/stat`, ...). */
  read?: string[];
  /** Paths it writes (state directory, log file and its directory, pid file). */
  write?: string[];
  /** Hosts (`host:port`) it connects to. */
  net?: string[];
  /** Programs it runs. */
  run?: string[];
  /** Environment variables it reads. */
  env?: string[];
  /** System information kinds it reads (`loadavg`, `systemMemoryInfo`, ...). */
  sys?: string[];
}

/**
 * Rebuilds the `--allow-*` flags of the running program from `Deno.permissions`: a permission
 * granted in full becomes `--allow-<name>`; otherwise each needed item that is granted is listed
 * (`--allow-read=<a>,<b>`), so the daemon gets no more than the program had.
 *
 * @param needs The items to ask about where a permission is not granted in full.
 * @returns The flags.
 */
export function permissionFlags(needs: PermissionNeeds = {}): string[] {
  const flags: string[] = [];
  const narrow = (name: string, items: string[], granted: (item: string) => boolean) => {
    const list = [...new Set(items)].filter((item) => !item.includes(",") && granted(item));
    if (list.length > 0) flags.push(`--allow-${name}=${list.join(",")}`);
  };
  const full = (name: Deno.PermissionName) => isGranted({ name } as Deno.PermissionDescriptor);
  // Everything granted (-A): keep -A, which alone lets the agent use /proc and cgroups.
  const everything: Deno.PermissionName[] = ["read", "write", "net", "run", "env", "sys", "ffi"];
  if (everything.every(full)) return ["--allow-all"];
  if (full("read")) flags.push("--allow-read");
  else narrow("read", needs.read ?? [], (path) => isGranted({ name: "read", path }));
  if (full("write")) flags.push("--allow-write");
  else narrow("write", needs.write ?? [], (path) => isGranted({ name: "write", path }));
  if (full("net")) flags.push("--allow-net");
  else narrow("net", needs.net ?? [], (host) => isGranted({ name: "net", host }));
  if (full("run")) flags.push("--allow-run");
  else narrow("run", needs.run ?? [], (command) => isGranted({ name: "run", command }));
  if (full("env")) flags.push("--allow-env");
  else narrow("env", needs.env ?? [], (variable) => isGranted({ name: "env", variable }));
  if (full("sys")) flags.push("--allow-sys");
  else {
    narrow(
      "sys",
      needs.sys ?? [],
      (kind) => isGranted({ name: "sys", kind: kind as Deno.SysPermissionDescriptor["kind"] }),
    );
  }
  if (full("ffi")) flags.push("--allow-ffi");
  return flags;
}
