/**
 * The environment a command runs with: built from nothing, never inherited, never holding an
 * agent secret.
 *
 * @module
 */
import { MAX_ARGS, MAX_COMMAND_LINE_LENGTH } from "./parse.ts";
import { isGranted } from "../permissions.ts";

/** `PATH` given to commands when the agent may not read its own. */
export const DEFAULT_CHILD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/** `HOME` given to commands when the agent may not read its own. */
export const DEFAULT_CHILD_HOME = "/";
/** `LANG` given to commands when the agent may not read its own. */
export const DEFAULT_CHILD_LANG = "C.UTF-8";

/** Variables of the agent that hold secrets; never passed to a command, not even as extras. */
export const AGENT_SECRET_ENV_NAMES: ReadonlySet<string> = new Set([
  "AGENT_TOKEN",
  "AGENT_TOKENS",
  "STATUS_ADMIN_TOKEN",
  "STATUS_AGENT_TOKENS",
]);

/**
 * Variables that make every dynamically linked program load code from where they name, whatever
 * it was asked to run: the dynamic loader's (`LD_PRELOAD` and `LD_AUDIT` load a library into it,
 * `LD_LIBRARY_PATH` finds its libraries first in other directories) and glibc's `GCONV_PATH`
 * (character set converters). Never given to commands: with one of them, a library a command left
 * under an allowed prefix (`tar x`) runs in every later command, whatever the allowlist says.
 */
export const LOADER_ENV_NAMES: ReadonlySet<string> = new Set([
  "LD_PRELOAD",
  "LD_AUDIT",
  "LD_LIBRARY_PATH",
  "GCONV_PATH",
]);

/**
 * Why a loader variable ({@link LOADER_ENV_NAMES}) is never given to commands, to follow
 * `… is never given to commands: `.
 */
export const LOADER_ENV_REASON = "every program's dynamic loader (or C library) reads it and " +
  "loads code from where it names, which the allowlist never sees (a library a command left " +
  "under an allowed prefix would run in every later command); set it in a wrapper script that " +
  "ALLOWED_PROGRAMS names by absolute path";

/**
 * Variables that make a shell or an interpreter load code from where they name, with the program
 * that reads them and what it does: bash (a wrapper script named in `ALLOWED_PROGRAMS`, and every
 * program that is a bash script) runs the file `BASH_ENV` names first; python, node, perl, ruby
 * and java (a script of theirs, run by name or by a wrapper) load modules, or options that load
 * them, from theirs; git runs its commands from `GIT_EXEC_PATH` and obeys the settings files
 * `GIT_CONFIG_GLOBAL` and `GIT_CONFIG_SYSTEM` name (which name programs it runs); php reads the
 * php.ini of `PHPRC` and `PHP_INI_SCAN_DIR` (`auto_prepend_file` runs a file). Never given to commands, as {@link LOADER_ENV_NAMES} are not: a file a
 * command left under an allowed prefix would run in every later command that starts that
 * program, whatever the allowlist says.
 */
const CODE_ENV: Readonly<Record<string, readonly [reader: string, does: string]>> = {
  BASH_ENV: ["bash", "bash runs the file it names before every script (a wrapper script's too)"],
  PYTHONPATH: ["python", "python looks for its modules first in the directories it names"],
  PYTHONHOME: ["python", "python takes its standard library from the directory it names"],
  PYTHONSTARTUP: ["python", "an interactive python runs the file it names"],
  PYTHONUSERBASE: [
    "python",
    "python runs the .pth files of the site-packages under the directory it names",
  ],
  PYTHONPYCACHEPREFIX: ["python", "python loads compiled modules from the directory it names"],
  NODE_OPTIONS: ["node", "node takes options from it (--require, --import load a module)"],
  NODE_PATH: ["node", "node looks for modules in the directories it names"],
  PERL5OPT: ["perl", "perl takes options from it (-M loads a module, -I adds a directory)"],
  PERL5LIB: ["perl", "perl looks for its modules first in the directories it names"],
  PERLLIB: ["perl", "perl looks for its modules first in the directories it names"],
  RUBYOPT: ["ruby", "ruby takes options from it (-r loads a library, -I adds a directory)"],
  RUBYLIB: ["ruby", "ruby looks for its libraries first in the directories it names"],
  JAVA_TOOL_OPTIONS: ["java", "java takes options from it (-javaagent: loads a jar)"],
  JDK_JAVA_OPTIONS: ["java", "java takes options from it (-javaagent: loads a jar)"],
  _JAVA_OPTIONS: ["java", "java takes options from it (-javaagent: loads a jar)"],
  GIT_EXEC_PATH: ["git", "git runs its commands (git-<name>) from the directory it names"],
  GIT_CONFIG_GLOBAL: [
    "git",
    "git obeys the file it names as its settings, which name programs it runs " +
    "(core.sshCommand, core.fsmonitor, core.hooksPath)",
  ],
  GIT_CONFIG_SYSTEM: [
    "git",
    "git obeys the file it names as its settings, which name programs it runs " +
    "(core.sshCommand, core.fsmonitor, core.hooksPath)",
  ],
  PHPRC: [
    "php",
    "php reads its php.ini from where it names (auto_prepend_file runs a file before every script)",
  ],
  PHP_INI_SCAN_DIR: [
    "php",
    "php reads the .ini files of the directories it names (auto_prepend_file runs a file " +
    "before every script)",
  ],
};

/**
 * Why a variable is never given to commands because a program loads code from where it names
 * ({@link LOADER_ENV_NAMES}, and a shell's or an interpreter's: `BASH_ENV`, `PYTHONPATH`,
 * `NODE_OPTIONS`, `PERL5LIB`, `RUBYOPT`, ...), to follow `… is never given to commands: `; or
 * `undefined` for another variable. Names are matched as written, as the programs read them.
 *
 * @param name The variable's name.
 * @returns The reason, pointing to a wrapper script, or `undefined`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { codeEnvReason } from "./env.ts";
 *
 * assert.match(codeEnvReason("BASH_ENV")!, /^bash runs the file it names/);
 * assert.equal(codeEnvReason("TZ"), undefined);
 * ```
 */
export function codeEnvReason(name: string): string | undefined {
  if (LOADER_ENV_NAMES.has(name)) return LOADER_ENV_REASON;
  if (!Object.hasOwn(CODE_ENV, name)) return undefined;
  const [reader, does] = CODE_ENV[name];
  return `${does}, which the allowlist never sees (a file a command left under an allowed ` +
    `prefix would run in every later command that starts ${reader}); set it in a wrapper ` +
    "script that ALLOWED_PROGRAMS names by absolute path";
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The longest `NAME=value` a program may be started with, in bytes: Linux refuses any longer
 * argument or environment string (`MAX_ARG_STRLEN`, 32 pages of 4 KiB, its NUL included), and
 * every command then failed with "Argument list too long".
 */
export const MAX_ENV_STRING_BYTES = 32 * 4096 - 1;

/**
 * What Linux lets a program's arguments and environment take together, in bytes, under the usual
 * 8 MiB stack limit (`ulimit -s`: a quarter of it); each string counts its UTF-8 bytes, its NUL
 * and its pointer.
 */
export const MAX_EXEC_BYTES = 2 * 1024 * 1024;

/** The longest path Linux takes (`PATH_MAX`, its NUL included). */
const PATH_MAX = 4096;

/**
 * The most a command's own arguments take of {@link MAX_EXEC_BYTES}: the file executed (`setsid`,
 * or the program) and argv (`setsid`, `--`, the program's path, and a command line of at most
 * {@link MAX_COMMAND_LINE_LENGTH} UTF-16 units, 3 UTF-8 bytes each at most, cut into at most
 * {@link MAX_ARGS} arguments), with their NULs and pointers.
 */
const COMMAND_ARGS_BYTES = 3 * PATH_MAX + 3 * MAX_COMMAND_LINE_LENGTH + MAX_ARGS +
  (MAX_ARGS + 3) * 8;

/** What `PATH`, `HOME` and `LANG` are given of {@link MAX_EXEC_BYTES}, `PATH_MAX` each. */
const BASE_ENV_BYTES = 3 * (PATH_MAX + 8);

/**
 * The most bytes the extra variables (`COMMAND_ENV`) may take together, each as `NAME=value` in
 * UTF-8 with its NUL and pointer ({@link extraEnvBytes}): {@link MAX_EXEC_BYTES} less what the
 * command's own arguments, `PATH`, `HOME` and `LANG` may take. More, and every command failed with
 * "Argument list too long".
 */
export const MAX_EXTRA_ENV_BYTES = MAX_EXEC_BYTES - COMMAND_ARGS_BYTES - BASE_ENV_BYTES;

/**
 * What extra variables take of a program's start, as Linux counts it: each `NAME=value` in UTF-8,
 * its NUL and its pointer.
 *
 * @param extra The variables.
 * @returns The bytes.
 */
export function extraEnvBytes(extra: Readonly<Record<string, string>>): number {
  const encoder = new TextEncoder();
  let bytes = 0;
  for (const [name, value] of Object.entries(extra)) {
    bytes += encoder.encode(`${name}=${value}`).length + 1 + 8;
  }
  return bytes;
}

/** Reads one variable of the agent's environment, or `undefined`. */
export type EnvReader = (name: string) => string | undefined;

/**
 * Reads a variable of the agent's own environment only when `--allow-env` grants it, so that a
 * missing permission never throws `NotCapable`.
 *
 * @param name The variable.
 * @returns Its value, or `undefined` when unset or not readable.
 */
export function readAgentEnv(name: string): string | undefined {
  try {
    if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
      return undefined;
    }
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/**
 * Checks configured extra variables: valid names, no NUL in values, no agent secret by name
 * ({@link AGENT_SECRET_ENV_NAMES}) or by value (any of `secretValues`), none that makes a program
 * load code from where it names ({@link codeEnvReason}: `LD_PRELOAD`, `BASH_ENV`, `PYTHONPATH`,
 * ...), none longer than {@link MAX_ENV_STRING_BYTES}, and not more than
 * {@link MAX_EXTRA_ENV_BYTES} together.
 *
 * @param extra The configured extras.
 * @param secretValues Secret values (e.g. the agent token) no extra may carry.
 * @throws {TypeError} Naming the offending variable (never its value).
 */
export function validateExtraEnv(
  extra: Readonly<Record<string, string>>,
  secretValues: readonly string[] = [],
): void {
  for (const [name, value] of Object.entries(extra)) {
    if (!ENV_NAME.test(name)) {
      throw new TypeError(`Extra environment variable name "${name}" is not valid`);
    }
    if (typeof value !== "string" || value.includes("\0")) {
      throw new TypeError(`Extra environment variable "${name}" must be a string without NUL`);
    }
    if (AGENT_SECRET_ENV_NAMES.has(name.toUpperCase())) {
      throw new TypeError(
        `Extra environment variable "${name}" is an agent secret and is never given to commands`,
      );
    }
    const bytes = new TextEncoder().encode(`${name}=${value}`).length;
    if (bytes > MAX_ENV_STRING_BYTES) {
      throw new TypeError(
        `Extra environment variable "${name}" is ${bytes} bytes long as NAME=value (UTF-8), ` +
          `more than the ${MAX_ENV_STRING_BYTES} a program may be started with`,
      );
    }
    const loads = codeEnvReason(name);
    if (loads !== undefined) {
      throw new TypeError(
        `Extra environment variable "${name}" is never given to commands: ${loads}`,
      );
    }
    if (secretValues.some((secret) => secret !== "" && value.includes(secret))) {
      throw new TypeError(
        `Extra environment variable "${name}" holds an agent secret and is never given to commands`,
      );
    }
  }
  const total = extraEnvBytes(extra);
  if (total > MAX_EXTRA_ENV_BYTES) {
    throw new TypeError(`Extra environment variables ${tooLongTogether(total)}`);
  }
}

/**
 * Why extra variables of `total` bytes ({@link extraEnvBytes}) are refused, to follow their
 * subject (`… take`).
 *
 * @param total What they take.
 * @returns The clause.
 */
export function tooLongTogether(total: number): string {
  return `take ${total} bytes together (each as NAME=value in UTF-8, with its NUL and pointer), ` +
    `more than the ${MAX_EXTRA_ENV_BYTES} a command's environment may take beside its arguments, ` +
    "PATH, HOME and LANG: Linux starts no program whose arguments and environment take more " +
    "than 2 MiB (under the usual 8 MiB stack limit), and every command would fail";
}

/**
 * Turns `NAME=value` items (the `COMMAND_ENV` setting) into an object of extra variables.
 *
 * @param items Items such as `TZ=UTC`; the value may contain `=` and be empty.
 * @returns The variables, later items winning.
 * @throws {TypeError} When an item has no `=` or an invalid name, quoting the name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { envFromAssignments } from "./env.ts";
 *
 * assert.deepEqual(envFromAssignments(["TZ=UTC", "A=b=c"]), { TZ: "UTC", A: "b=c" });
 * ```
 */
export function envFromAssignments(items: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const item of items) {
    const eq = item.indexOf("=");
    const name = eq < 0 ? item : item.slice(0, eq);
    if (eq < 0 || !ENV_NAME.test(name)) {
      throw new TypeError(`Environment item "${name}" must have the form NAME=value`);
    }
    env[name] = item.slice(eq + 1);
  }
  return env;
}

/**
 * The absolute entries of a `PATH`: a relative one (`.`, or an empty one, which also means the
 * working directory) would let a program that runs another by name (`tar -z` runs `gzip`) run a
 * file of the command's working directory instead, such as one a local user left in `/tmp`.
 *
 * @param path A `PATH`.
 * @returns Its absolute entries, or `undefined` when it has none.
 */
function absoluteEntries(path: string | undefined): string | undefined {
  const kept = (path ?? "").split(":").filter((dir) => dir.startsWith("/"));
  return kept.length > 0 ? kept.join(":") : undefined;
}

/**
 * Builds a command's environment from nothing: `PATH` (its absolute entries), `HOME` and `LANG`
 * from the agent's own environment when readable (else {@link DEFAULT_CHILD_PATH},
 * {@link DEFAULT_CHILD_HOME}, {@link DEFAULT_CHILD_LANG}), then the extras (a `PATH` among them
 * also keeps its absolute entries only).
 *
 * @param extra Configured extra variables, already checked with {@link validateExtraEnv}.
 * @param read Reads the agent's variables; for tests.
 * @returns The complete environment (to be used with `clearEnv: true`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { buildChildEnv } from "./env.ts";
 *
 * const env = buildChildEnv({ TZ: "UTC" }, () => undefined);
 * assert.deepEqual(Object.keys(env), ["PATH", "HOME", "LANG", "TZ"]);
 * ```
 */
export function buildChildEnv(
  extra: Readonly<Record<string, string>> = {},
  read: EnvReader = readAgentEnv,
): Record<string, string> {
  const env: Record<string, string> = {
    PATH: absoluteEntries(read("PATH")) ?? DEFAULT_CHILD_PATH,
    HOME: read("HOME") || DEFAULT_CHILD_HOME,
    LANG: read("LANG") || DEFAULT_CHILD_LANG,
  };
  for (const [name, value] of Object.entries(extra)) {
    if (!AGENT_SECRET_ENV_NAMES.has(name.toUpperCase())) env[name] = value;
  }
  // A PATH among the extras (COMMAND_ENV) keeps its absolute entries only, as the agent's does.
  if (Object.hasOwn(extra, "PATH")) env.PATH = absoluteEntries(env.PATH) ?? DEFAULT_CHILD_PATH;
  return env;
}

/**
 * The `PATH` the agent's own helper programs (`ps`, `kill`, `df`) are looked up on and run with:
 * the absolute entries of its own `PATH` that no other user may write or rename (else
 * {@link DEFAULT_CHILD_PATH}), as commands get it. A `ps` that another user, or a command, put in
 * `.` or in `/tmp` would otherwise run as the agent (root).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { helperPath } from "./env.ts";
 *
 * assert.equal(helperPath(() => ".:/usr/bin"), "/usr/bin");
 * ```
 *
 * @param read Reads the agent's variables; for tests.
 * @returns The `PATH`.
 */
export function helperPath(read: EnvReader = readAgentEnv): string {
  return pathOthersCannotWrite(absoluteEntries(read("PATH")) ?? DEFAULT_CHILD_PATH);
}

/** Reads a file's owner and mode; for tests. `undefined` when it cannot be read. */
export type OwnerReader = (path: string) => { uid: number; gid: number; mode: number } | undefined;

function readOwner(path: string): { uid: number; gid: number; mode: number } | undefined {
  // Not asked for: under a narrow --allow-read a look would prompt on a terminal.
  if (!isGranted({ name: "read", path })) return undefined;
  try {
    const info = Deno.statSync(path);
    if (info.uid === null || info.gid === null || info.mode === null) return undefined;
    return { uid: info.uid, gid: info.gid, mode: info.mode };
  } catch {
    return undefined;
  }
}

/**
 * The entries of a `PATH` that a command user can search and cannot change: every directory on
 * the way must let that user through (the owner's, the group's or the others' execute bit, as the
 * kernel decides for a user without supplementary groups), and none may be that user's own (its
 * owner may change its mode) or writable by it (its group's or the others' write bit: the entry
 * itself, or one on the way without the sticky bit, whose entries it could rename). An agent
 * running as root would otherwise find a program under its own home (`/root/.pyenv/shims`) that
 * the command, run as `nobody`, may not start, or one a command (as `nobody`) had put in a
 * directory of `nobody`'s for the next command to run under an allowed name. Entries that cannot
 * be read are kept (the spawn then says what is wrong); when nothing is left,
 * {@link DEFAULT_CHILD_PATH}'s usable entries are used.
 *
 * @param path The agent's `PATH`.
 * @param user Who the commands run as.
 * @param owner Reads a directory's owner and mode; for tests.
 * @returns The `PATH` for that user.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pathForUser } from "./env.ts";
 *
 * const dirs: Record<string, { uid: number; gid: number; mode: number }> = {
 *   "/": { uid: 0, gid: 0, mode: 0o755 },
 *   "/root": { uid: 0, gid: 0, mode: 0o700 },
 *   "/root/bin": { uid: 0, gid: 0, mode: 0o755 },
 *   "/usr": { uid: 0, gid: 0, mode: 0o755 },
 *   "/usr/bin": { uid: 0, gid: 0, mode: 0o755 },
 * };
 * const nobody = { uid: 65534, gid: 65534 };
 * assert.equal(pathForUser("/root/bin:/usr/bin", nobody, (p) => dirs[p]), "/usr/bin");
 * ```
 */
export function pathForUser(
  path: string,
  user: { uid: number; gid: number },
  owner: OwnerReader = readOwner,
): string {
  const kept = path.split(":").filter((dir) => entryProblem(dir, user, owner) === undefined);
  if (kept.length > 0) return kept.join(":");
  return DEFAULT_CHILD_PATH.split(":").filter((dir) => entryProblem(dir, user, owner) === undefined)
    .join(":") || DEFAULT_CHILD_PATH;
}

/**
 * The entries of a `PATH` set for commands (`COMMAND_ENV`) that the command user cannot change:
 * as {@link pathForUser}, but those it cannot search are kept (the operator named them; a program
 * there is then not found). A command would otherwise leave a program in a directory of its
 * user's (or one that user may write) for the next command to run under an allowed name. When
 * nothing is left, {@link DEFAULT_CHILD_PATH}'s usable entries are used.
 *
 * @param path A `PATH` of absolute entries.
 * @param user Who the commands run as.
 * @param owner Reads a directory's owner and mode; for tests.
 * @returns The `PATH` without the entries that user may write.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pathUserCannotWrite } from "./env.ts";
 *
 * const dirs: Record<string, { uid: number; gid: number; mode: number }> = {
 *   "/": { uid: 0, gid: 0, mode: 0o755 },
 *   "/srv": { uid: 0, gid: 0, mode: 0o755 },
 *   "/srv/nobody": { uid: 65534, gid: 65534, mode: 0o755 },
 *   "/root": { uid: 0, gid: 0, mode: 0o700 },
 *   "/usr": { uid: 0, gid: 0, mode: 0o755 },
 *   "/usr/bin": { uid: 0, gid: 0, mode: 0o755 },
 * };
 * const nobody = { uid: 65534, gid: 65534 };
 * const path = pathUserCannotWrite("/srv/nobody:/root:/usr/bin", nobody, (p) => dirs[p]);
 * assert.equal(path, "/root:/usr/bin");
 * ```
 */
export function pathUserCannotWrite(
  path: string,
  user: { uid: number; gid: number },
  owner: OwnerReader = readOwner,
): string {
  const kept = path.split(":").filter((dir) => entryProblem(dir, user, owner) !== "writable");
  return kept.length > 0 ? kept.join(":") : pathForUser(DEFAULT_CHILD_PATH, user, owner);
}

/**
 * Whether a command user may change a directory: it is that user's own, or that user may write
 * it, or rename it (a directory on the way it may write without the sticky bit), after symbolic
 * links; as {@link pathForUser} decides. `false` when that cannot be told, or when the user cannot
 * reach it.
 *
 * @param dir An absolute directory.
 * @param user The command user.
 * @param owner Reads a directory's owner and mode; for tests.
 * @param realPath Resolves symbolic links; for tests.
 * @returns Whether it may.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { userMayChange } from "./env.ts";
 *
 * const dirs: Record<string, { uid: number; gid: number; mode: number }> = {
 *   "/": { uid: 0, gid: 0, mode: 0o755 },
 *   "/srv": { uid: 0, gid: 0, mode: 0o755 },
 *   "/srv/work": { uid: 65534, gid: 65534, mode: 0o755 },
 * };
 * const nobody = { uid: 65534, gid: 65534 };
 * assert.equal(userMayChange("/srv/work", nobody, (p) => dirs[p], (p) => p), true);
 * assert.equal(userMayChange("/srv", nobody, (p) => dirs[p], (p) => p), false);
 * ```
 */
export function userMayChange(
  dir: string,
  user: { uid: number; gid: number },
  owner: OwnerReader = readOwner,
  realPath: (path: string) => string = realPathOrSelf,
): boolean {
  return entryProblem(realPath(dir), user, owner) === "writable";
}

/**
 * Why a `PATH` entry does not suit a command user (see {@link pathForUser}): `"unsearchable"`
 * (relative, or a directory on the way does not let that user through) or `"writable"` (that
 * user owns it, or may write or rename it); `undefined` when it suits. An entry that cannot be
 * read suits.
 */
function entryProblem(
  dir: string,
  user: { uid: number; gid: number },
  owner: OwnerReader,
): "unsearchable" | "writable" | undefined {
  if (!dir.startsWith("/")) return "unsearchable";
  const parts = dir.split("/").filter((part) => part !== "");
  for (let i = 0; i <= parts.length; i++) {
    const info = owner("/" + parts.slice(0, i).join("/"));
    if (info === undefined) return undefined;
    const own = info.uid === user.uid;
    const bit = own ? 0o100 : info.gid === user.gid ? 0o010 : 0o001;
    if ((info.mode & bit) === 0) return "unsearchable";
    // Root owns what a root command user could change anyway.
    if (own && user.uid !== 0) return "writable";
    const writes = (info.mode & (bit << 1)) !== 0;
    if (writes && !own && (i === parts.length || (info.mode & 0o1000) === 0)) return "writable";
  }
  return undefined;
}

/**
 * The entries of a `PATH` that no other user can put a program into: not writable by every user,
 * and not inside a directory every user may rename entries of (writable without the sticky bit).
 * A program found in `/tmp/bin` (or a `gzip` that `tar -z` runs from there) would be whatever a
 * local user left there. Entries that cannot be read are kept; when nothing is left,
 * {@link DEFAULT_CHILD_PATH} is used.
 *
 * @param path A `PATH` of absolute entries.
 * @param owner Reads a directory's owner and mode; for tests.
 * @param realPath Resolves symbolic links; for tests.
 * @returns The `PATH` without such entries.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pathOthersCannotWrite } from "./env.ts";
 *
 * const dirs: Record<string, { uid: number; gid: number; mode: number }> = {
 *   "/": { uid: 0, gid: 0, mode: 0o755 },
 *   "/tmp": { uid: 0, gid: 0, mode: 0o1777 },
 *   "/tmp/bin": { uid: 1000, gid: 1000, mode: 0o755 },
 *   "/usr": { uid: 0, gid: 0, mode: 0o755 },
 *   "/usr/bin": { uid: 0, gid: 0, mode: 0o755 },
 * };
 * const path = pathOthersCannotWrite("/tmp:/tmp/bin:/usr/bin", (p) => dirs[p], (p) => p);
 * assert.equal(path, "/tmp/bin:/usr/bin");
 * ```
 */
export function pathOthersCannotWrite(
  path: string,
  owner: OwnerReader = readOwner,
  realPath: (path: string) => string = realPathOrSelf,
): string {
  const kept = path.split(":").filter((dir) => !everyoneMayReplace(dir, owner, realPath));
  return kept.join(":") || DEFAULT_CHILD_PATH;
}

/**
 * Whether every user may put something of their own at `path`: it is writable by every user (a
 * directory: anyone adds a program; a file: anyone changes it), or a directory on the way (after
 * symbolic links) is and is not sticky, so that anyone may rename what is in it. `false` when that
 * cannot be told.
 *
 * @param path A directory or a file.
 * @param owner Reads an entry's owner and mode; for tests.
 * @param realPath Resolves symbolic links; for tests.
 * @returns Whether anyone may replace what is there.
 */
export function everyoneMayReplace(
  path: string,
  owner: OwnerReader = readOwner,
  realPath: (path: string) => string = realPathOrSelf,
): boolean {
  // The directories on the way to where it leads (a symlink /opt/tools to /srv/open/tools).
  const parts = realPath(path).split("/").filter((part) => part !== "");
  for (let i = 0; i <= parts.length; i++) {
    const info = owner("/" + parts.slice(0, i).join("/"));
    if (info === undefined) return false;
    const everyoneWrites = (info.mode & 0o002) !== 0;
    if (everyoneWrites && (i === parts.length || (info.mode & 0o1000) === 0)) return true;
  }
  return false;
}

function realPathOrSelf(path: string): string {
  if (!isGranted({ name: "read", path })) return path;
  try {
    return Deno.realPathSync(path);
  } catch {
    return path;
  }
}
