/**
 * What every CLI command shares: setting flags generated from the settings table, loading the
 * settings of a command, and logging set-up from them.
 *
 * @module
 */
import { type Command, InvalidArgumentError, Option } from "@commander-js/extra-typings";
import {
  flagOf,
  keysFor,
  type LoadedSettings,
  loadSettings,
  missingSettingError,
  reasonOf,
  type Role,
  type SettingKey,
  SETTINGS,
  type Settings,
} from "../config/mod.ts";
import { dirname } from "node:path";
import { ConfigError, UsageError } from "../errors.ts";
import { isGranted } from "../permissions.ts";
import { sharedDirectoryProblem } from "../own_files.ts";
import { literal, logger, type LogRecordView, setupLogging } from "../log/mod.ts";
import { rawUserInfo, redactUrl } from "../log/redact.ts";
import type { Io } from "./io.ts";

/** Options every settings-reading command accepts besides its setting flags. */
export interface FileOptions {
  config?: string;
  envFile?: string;
}

/**
 * Parses the value of a flag that names a file (`--config`, `--env-file`, `--pid-file`).
 *
 * @param value The flag's value.
 * @param previous The value the flag was given before, if it was.
 * @returns The value.
 * @throws {InvalidArgumentError} When it is empty or only spaces: it names no file; or when the
 *   flag is given a second time: one file is read, and the first would be left without a word.
 */
export function parseFilePath(value: string, previous?: unknown): string {
  if (value.trim() === "") {
    throw new InvalidArgumentError("must be a file path, got an empty value");
  }
  if (typeof previous === "string") {
    throw new InvalidArgumentError(
      `comes after '${previous}' for the same flag: one file is read, not both; give the flag once`,
    );
  }
  return value;
}

/**
 * Makes the parser of a flag that takes one value and would otherwise keep the last of several
 * without a word (`status list --status failed --status lost` listed only the lost commands, as
 * if they were both).
 *
 * @param why Why one value: what the command does with it (`a list shows ... at a time`).
 * @param parse The value's own parser.
 * @returns The parser for commander, which refuses the flag given a second time.
 */
export function givenOnce<T>(
  why: string,
  parse: (value: string) => T,
): (value: string, previous: T | undefined) => T {
  return (value, previous) => {
    if (previous !== undefined) {
      throw new InvalidArgumentError(
        `comes after '${previous}' for the same flag: ${why}, and only the last would be read; ` +
          "give the flag once",
      );
    }
    return parse(value);
  };
}

/**
 * Adds `--config`, `--env-file` and one flag per setting of the given roles to a command.
 *
 * @param command The commander command.
 * @param roles The roles whose settings it reads.
 * @param except Settings of those roles that get no flag here (the command has its own, or
 *   never takes the setting).
 * @returns The same command.
 */
// deno-lint-ignore no-explicit-any
export function addSettingOptions<C extends Command<any, any, any>>(
  command: C,
  roles: readonly Role[],
  except: readonly SettingKey[] = [],
): C {
  command.option(
    "--config <path>",
    "read settings from this config.json (default ./config.json)",
    parseFilePath,
  );
  command.option(
    "--env-file <path>",
    "read settings from this .env file (default ./.env)",
    parseFilePath,
  );
  for (const key of keysFor([...roles, "log"]).filter((key) => !except.includes(key))) {
    const spec = SETTINGS[key];
    const flags = spec.boolean
      ? flagOf(spec.env)
      : `${flagOf(spec.env)} ${spec.placeholder ?? "<value>"}`;
    const option = new Option(flags, `${spec.description} [${spec.env}]`);
    if (!spec.boolean) {
      option.argParser((value: string, previous: unknown) => {
        if (spec.list && previous !== undefined) {
          // COMMAND_ENV's values are commands' credentials: its items are not repeated back.
          const items = spec.shown ? "<item>,<item>,..." : `${previous},${value}`;
          throw new UsageError(
            `${flagOf(spec.env)} is given more than once, and only the last one would be ` +
              `read; give it once, with every item separated by commas: ${flagOf(spec.env)} ` +
              items,
          );
        }
        const parsed = spec.schema.safeParse(value);
        if (!parsed.success && spec.secret) {
          // commander would quote the value: a secret is never printed.
          throw new UsageError(
            `${flagOf(spec.env)} must be ${spec.expected}, got a value of ${value.length} ` +
              (value.length === 1 ? "character" : "characters") +
              (spec.advice ? `; ${spec.advice}` : ""),
          );
        }
        if (!parsed.success) {
          const why = reasonOf(parsed.error);
          throw new InvalidArgumentError(`must be ${spec.expected}${why ? `: ${why}` : ""}`);
        }
        return value;
      });
    }
    // deno-lint-ignore no-explicit-any
    (command as any).addOption(option);
    if (spec.boolean) {
      // Without it, a setting turned on by the environment, .env or config.json could not be
      // turned off from the command line, against "flags > environment > ...".
      // deno-lint-ignore no-explicit-any
      (command as any).addOption(
        new Option(
          `--no-${flagOf(spec.env).slice(2)}`,
          `Turn ${spec.env} off, whatever the environment, .env or config.json say`,
        ),
      );
    }
  }
  return command;
}

/** Options of {@link loadCommandSettings}. */
export interface LoadCommandOptions {
  /**
   * Chooses the log file from the settings (`undefined`: standard error).
   * @default {(settings) => settings.logFile}
   */
  logFile?: (settings: Settings) => string | undefined;
  /** Which log records are written. */
  filter?: (record: LogRecordView) => boolean;
  /**
   * The command runs once and ends (`status agents --db`), though it reads a long-running role's
   * settings: a secret among its flags is not warned about (it has no other way to be given).
   */
  oneShot?: boolean;
  /**
   * Read and check only these settings of the roles (and the log's): a bad value of another one
   * does not stop the command.
   */
  only?: readonly SettingKey[];
  /**
   * Settings of the roles the command never takes: their values are neither checked nor read,
   * and where each is set is told in {@link LoadedSettings.unread}.
   */
  unread?: readonly SettingKey[];
}

/**
 * Loads the settings of a command from its parsed options, sets up logging from them and logs
 * the start-up notices.
 *
 * @param io Where the environment comes from ({@link Io.env}).
 * @param options The command's parsed options.
 * @param roles The roles whose settings it reads.
 * @param how The log file, a filter of log records, and whether the command runs once.
 * @returns The loaded settings.
 */
export function loadCommandSettings(
  io: Pick<Io, "env">,
  options: Record<string, unknown> & FileOptions,
  roles: readonly Role[],
  how: LoadCommandOptions = {},
): LoadedSettings {
  const { logFile = (settings: Settings) => settings.logFile, filter } = how;
  const loaded = loadSettings({
    roles: [...roles, "log"],
    only: how.only && [...how.only, ...keysFor(["log"])],
    unread: how.unread,
    flags: options,
    configPath: options.config,
    envFilePath: options.envFile,
    env: io.env && { ...io.env },
  });
  const s = loaded.settings;
  const file = logFile(s);
  const settingsFile = file === undefined
    ? undefined
    : loaded.files.find((read) => sameFile(read, file));
  if (settingsFile !== undefined) {
    // `--log-file .env`: every log line appended to it, the next start refuses the file.
    throw new ConfigError(
      `${describeFileSetting("LOG_FILE", loaded.sources.logFile, file!)} cannot be used: it is ` +
        `the settings file ${settingsFile}, which logs would be written into; give another path`,
    );
  }
  try {
    setupLogging({
      format: s.logFormat,
      level: s.logLevel,
      file,
      secrets: [s.agentToken, s.statusAdminToken, ...urlPasswords(s.db, s.databaseUrl)].filter((
        v,
      ): v is string => !!v),
      filter,
    });
  } catch (error) {
    if (file === undefined) throw error;
    throw new ConfigError(
      `${describeFileSetting("LOG_FILE", loaded.sources.logFile, file)} cannot be opened: ${
        fileProblem(error, file)
      }`,
      { cause: error },
    );
  }
  const log = logger("config");
  // Every command says once at start-up what it could not read and which flag would let it, as
  // it says what is wrong in config.json: a one-shot command too (status list, agents, health).
  // They quote names and paths a user wrote, braces and all: logged as they are.
  for (const notice of loaded.notices) log.info(literal(notice));
  for (const warning of loaded.warnings) log.warning(literal(warning));
  for (const file of loaded.files) log.debug("settings file read", { file });
  // A setting set in two sources with different values: an edit of .env or config.json that the
  // environment overrides changes nothing, and nothing said which one was read. (A flag is on the
  // command line itself: said at debug level.)
  for (const [key, under] of Object.entries(loaded.overridden) as Array<[SettingKey, string[]]>) {
    const source = loaded.sources[key]!;
    const message = `{setting} is read from {source}, not from {overridden}, which ${
      under.length === 1 ? "sets" : "set"
    } it to another value ({source} comes first)`;
    const properties = { setting: SETTINGS[key].env, source, overridden: under.join(" or ") };
    if (source.startsWith("flag ")) log.debug(message, properties);
    else log.info(message, properties);
  }
  // Every setting that is not its default, and where it came from (LOG_LEVEL=debug).
  for (const [key, source] of Object.entries(loaded.sources) as Array<[SettingKey, string]>) {
    if (source === "default") continue;
    log.debug("setting {setting} is {value}, from {source}", {
      setting: SETTINGS[key].env,
      value: shownSetting(key, s[key]),
      source,
    });
  }
  if (loaded.ignoredKeys.length > 0) {
    log.debug(literal(`${loaded.configLabel} keys ignored (not settings of this program)`), {
      keys: listOf(loaded.ignoredKeys),
    });
  }
  // A near miss is most likely a typo: the setting meant falls back to its default. Each is
  // warned about, however many other keys the file holds.
  for (const { key: fullKey, suggestion } of loaded.unknownKeys) {
    if (suggestion === undefined) continue;
    const key = shortKey(fullKey);
    log.warning(
      literal(
        `${loaded.configLabel} key "${key}" is not a setting of status; it is ignored (did you ` +
          `mean "${suggestion}"?)`,
      ),
      { key, suggestion },
    );
  }
  const unknown = loaded.unknownKeys.filter(({ suggestion }) => suggestion === undefined);
  if (unknown.length > UNKNOWN_KEYS_ONE_BY_ONE) {
    log.info(
      literal(
        `${loaded.configLabel} has ${unknown.length} keys that are not settings of status; they ` +
          `are ignored: ${listOf(unknown.map(({ key }) => key))}`,
      ),
      { count: unknown.length },
    );
  } else {
    for (const { key: fullKey } of unknown) {
      const key = shortKey(fullKey);
      log.info(
        literal(`${loaded.configLabel} key "${key}" is not a setting of status; it is ignored`),
        {
          key,
        },
      );
    }
  }
  // A secret given as a flag stands in the process's command line, which every local user and
  // every command the agent runs can read (/proc/<pid>/cmdline).
  const longRunning = !how.oneShot && (roles.includes("agent") || roles.includes("server"));
  for (const key of ["agentToken", "statusAdminToken", "databaseUrl", "db"] as const) {
    const source = loaded.sources[key];
    // A database URL (DATABASE_URL, or DB naming PostgreSQL) is a secret only with a password.
    const secret = key === "agentToken" || key === "statusAdminToken" ||
      urlPasswords(String(s[key] ?? "")).length > 0;
    if (source?.startsWith("flag ") && longRunning && secret) {
      log.warning(
        `${source.slice(5)} puts a secret in this process's command line, which every local ` +
          "user (and every command an agent runs) can read; set it in the environment, .env or " +
          "config.json (mode 0600) instead",
      );
    }
  }
  // (Not read at all by a command that reads only some of the agent's settings.)
  if (
    roles.includes("agent") && Array.isArray(s.allowedPrograms) && s.allowedPrograms.length === 0
  ) {
    log.warning(
      literal(
        `ALLOWED_PROGRAMS (from ${
          loaded.sources.allowedPrograms ?? "the default"
        }) is empty: this agent rejects every command. Name the programs commands may run, ` +
          "e.g. --allowed-programs echo,uname, or leave it unset for the default list",
      ),
    );
  }
  return loaded;
}

/**
 * A setting's value as the start-up log shows it: a secret not at all, `COMMAND_ENV` by its names
 * (its values are commands' credentials), a database URL without its password.
 */
function shownSetting(key: SettingKey, value: unknown): string {
  const spec = SETTINGS[key];
  if (spec.secret) return "(a secret, not shown)";
  if (spec.shown) return spec.shown(value);
  if (typeof value === "string") return redactUrl(value);
  return JSON.stringify(value) ?? String(value);
}

/** Up to this many unknown `config.json` keys are logged one line each; more in one line. */
const UNKNOWN_KEYS_ONE_BY_ONE = 5;

/** A key as logged: a very long one is cut, saying its length. */
function shortKey(key: string): string {
  return key.length <= 64 ? key : `${key.slice(0, 48)}… (${key.length} characters)`;
}

/** The first few keys, quoted and cut, and how many more. */
function listOf(keys: readonly string[]): string {
  const shown = keys.slice(0, 5).map((key) => `"${shortKey(key)}"`).join(", ");
  return keys.length > 5 ? `${shown} and ${keys.length - 5} more` : shown;
}

/**
 * How a file setting is named in errors: `LOG_FILE from flag --log-file (/var/log/x.log)`.
 *
 * @param env The setting's variable.
 * @param source Where it came from (`undefined`: a default of the command).
 * @param path The file.
 * @returns The phrase.
 */
export function describeFileSetting(env: string, source: string | undefined, path: string): string {
  return `${env} from ${source === undefined || source === "default" ? "the default" : source} ` +
    `(${path})`;
}

/** Whether two paths name the same existing file (through symlinks and relative paths too). */
function sameFile(a: string, b: string): boolean {
  try {
    const [x, y] = [Deno.statSync(a), Deno.statSync(b)];
    return x.ino !== null && x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}

/**
 * Says in a few words why a file could not be opened or created.
 *
 * @param error What opening it threw.
 * @param path The file.
 * @returns E.g. "the directory /nonexistent does not exist".
 */
export function fileProblem(error: unknown, path: string): string {
  if (error instanceof Deno.errors.NotFound) {
    try {
      Deno.statSync(dirname(path));
    } catch {
      return `the directory ${dirname(path)} does not exist`;
    }
    try {
      Deno.lstatSync(path);
      return "it leads to a folder that does not exist (a link?)";
    } catch {
      // No link: a folder that takes no new files (/proc, /sys).
      return `${dirname(path)} does not let a file be made in it`;
    }
  }
  if (error instanceof Deno.errors.IsADirectory) return "it is a directory, not a file";
  if (error instanceof Deno.errors.NotADirectory) {
    return `${dirname(path)} (or a folder above it) is not a directory`;
  }
  if (error instanceof Deno.errors.NotCapable) {
    // A device or a file of /proc or /sys (/dev/full, /dev/stderr): Deno opens one only under
    // --allow-all, and it would not be taken anyway (a log file must be a regular file).
    if (/requires all access/i.test((error as Error).message)) {
      return `${path} is a device or system file, not a regular file; give the path of a file`;
    }
    // Opening it also looks at it (lstat, fstat), which Deno allows only with read access.
    return /requires read access/i.test((error as Error).message)
      ? `not permitted without --allow-read (it is read as well as written: --allow-read=${path})`
      : "not permitted without --allow-write";
  }
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  return (error as Error).message;
}

/**
 * Checks before a daemon starts that a file it will create can be: its directory exists, and
 * the path is not a directory. The daemon's own start-up errors would otherwise go where nobody
 * reads them.
 *
 * @param env The setting's variable.
 * @param source Where it came from.
 * @param path The file.
 * @throws {ConfigError} Naming the setting, its source and the problem.
 */
export function checkFileLocation(env: string, source: string | undefined, path: string): void {
  const name = describeFileSetting(env, source, path);
  const missing = (["read", "write"] as const).filter((kind) => !isGranted({ name: kind, path }));
  if (missing.length > 0) {
    throw new ConfigError(
      `${name} cannot be created: not permitted without ${
        missing.map((kind) => `--allow-${kind}`).join(" and ")
      } (the daemon reads and writes it: --allow-read=${path} --allow-write=${path})`,
    );
  }
  let problem: string | undefined;
  try {
    const info = Deno.statSync(path);
    if (info.isDirectory) problem = "it is a directory, not a file";
    // Opening one waits until something reads or writes it: the daemon would hang at start.
    if (info.isFifo) problem = "it is a named pipe, not a file";
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) return; // Not ours to judge: the daemon says.
    // A look that is not granted would prompt on a terminal (--allow-read=status.pid alone).
    if (!isGranted({ name: "read", path: dirname(path) })) return;
    try {
      if (!Deno.statSync(dirname(path)).isDirectory) {
        problem = `${dirname(path)} is not a directory`;
      }
    } catch (error) {
      if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
        problem = `the directory ${dirname(path)} does not exist`;
      }
    }
  }
  if (problem !== undefined) throw new ConfigError(`${name} cannot be created: ${problem}`);
}

/**
 * Checks at start a directory setting that every command (`COMMAND_CWD`) or the agent's state
 * (`STATE_DIR`) will use, so that a wrong one fails now, not once per command.
 *
 * @param loaded The loaded settings.
 * @param key `commandCwd` (must exist) or `stateDir` (is created when missing).
 * @throws {ConfigError} Naming the setting and its source, when the path is not a directory, or
 *   (`commandCwd`) does not exist, or (`stateDir`) belongs to another user or every user may
 *   write in it.
 */
export function checkDirectorySetting(
  loaded: LoadedSettings,
  key: "commandCwd" | "stateDir",
): void {
  const path = loaded.settings[key];
  if (path === undefined) return;
  // Without --allow-read there: not ours to judge here (the agent says what it can do), and a
  // look would prompt on a terminal.
  if (!isGranted({ name: "read", path })) return;
  const name = describeFileSetting(SETTINGS[key].env, loaded.sources[key], path);
  let problem: string | undefined;
  try {
    if (!Deno.statSync(path).isDirectory) problem = "it is not a directory";
  } catch (error) {
    if (error instanceof Deno.errors.NotADirectory) {
      problem = "a part of the path above it is not a directory";
    } else if (error instanceof Deno.errors.NotFound) {
      if (key === "commandCwd") problem = "the directory does not exist";
    } else if (error instanceof Deno.errors.PermissionDenied) {
      problem = "permission denied";
    }
    // Without --allow-read: not ours to judge here; the agent says what it can do.
  }
  if (problem === undefined && key === "stateDir") {
    const shared = sharedDirectoryProblem(path);
    // What to do is not plain from the reason alone (the data directory of status up says it too).
    if (shared !== undefined) {
      problem = `${shared} (another user could read or change the agent's journal and results); ` +
        "give it a directory of its own, or a path that does not exist yet (it is created, mode " +
        "0700)";
    }
  }
  if (problem !== undefined) throw new ConfigError(`${name} cannot be used: ${problem}`);
}

/** The passwords in database URLs (kept out of logs). */
function urlPasswords(...urls: (string | undefined)[]): string[] {
  const out: string[] = [];
  for (const url of urls) {
    if (!url || !/^postgres(ql)?:\/\//i.test(url)) continue;
    // Written with @ / ? # unencoded, the password meant runs on to the URL's last @.
    const raw = rawUserInfo(url.trim())?.password;
    if (raw !== undefined) out.push(raw);
    try {
      const password = decodeURIComponent(new URL(url).password);
      if (password && raw === undefined) out.push(password);
    } catch {
      // not a URL the parser takes: only what is written is hidden
    }
  }
  return out;
}

/**
 * The store a server-side command opens: `--db`/`DB` when set anywhere, else `DATABASE_URL` when
 * set, else the default SQLite file.
 *
 * @param loaded The loaded settings.
 * @returns A SQLite path or a `postgres://` URL.
 * @throws {ConfigError} When `DB` is a bare name (`postgres`, `mysql`, `1`): what another
 *   program's `DB` variable holds, or a database's kind, not a file status should make.
 */
export function storeLocation(loaded: LoadedSettings): string {
  const { settings, sources } = loaded;
  if (sources.db === "default" || sources.db === undefined) {
    return settings.databaseUrl ?? settings.db;
  }
  // Without a / or a . it was a SQLite file of that name made in the working directory without
  // a word, taking the place of DATABASE_URL too: `DB=postgres` of another program's.
  if (/^[^/.:\\]+$/.test(settings.db)) {
    throw new ConfigError(
      `DB from ${sources.db} is ${JSON.stringify(settings.db)}, a bare name, not a SQLite file ` +
        "path or a postgres:// URL (DB is a name other programs' settings use too); give a path " +
        `(${JSON.stringify(`./${settings.db}`)} for a SQLite file of that name) or a postgres:// ` +
        `URL, or unset DB${
          loaded.unread.databaseUrl === undefined
            ? ""
            : " (DATABASE_URL, which is set, is used when DB is not)"
        }`,
    );
  }
  return settings.db;
}

/**
 * The setting {@link storeLocation} took the store from, for errors:
 * `DATABASE_URL from the environment`, `DB from flag --db`, `DB from the default`.
 *
 * @param loaded The loaded settings.
 * @returns The phrase.
 */
export function storeSetting(loaded: LoadedSettings): string {
  const { settings, sources } = loaded;
  const fromDb = (sources.db !== "default" && sources.db !== undefined) ||
    settings.databaseUrl === undefined;
  const source = fromDb ? sources.db : sources.databaseUrl;
  return `${fromDb ? "DB" : "DATABASE_URL"} from ${
    source === undefined || source === "default" ? "the default" : source
  }`;
}

/**
 * Whether an error (or one of its causes) says that an address to listen on is taken.
 *
 * @param error What listening threw.
 * @returns True when another socket holds the address.
 */
export function isAddrInUse(error: unknown): boolean {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    if (e instanceof Deno.errors.AddrInUse || /address (is )?already in use/i.test(e.message)) {
      return true;
    }
  }
  return false;
}

/**
 * Why an operator command has no admin token, when `STATUS_ADMIN_TOKEN` may be set where Deno
 * was not allowed to read it (the environment without `--allow-env`, `.env` or `config.json`
 * without `--allow-read`): said when the dashboard refuses a request without one.
 *
 * @param loaded The command's settings.
 * @returns The reason, or `undefined` when the token was given or everything could be read.
 */
export function noAdminTokenReason(loaded: LoadedSettings): string | undefined {
  const unread = loaded.envUnreadable || loaded.deniedVariables.includes("STATUS_ADMIN_TOKEN") ||
    loaded.unreadableFiles.length > 0;
  if (loaded.settings.statusAdminToken !== undefined || !unread) return undefined;
  return "the dashboard is not in dev mode, and " +
    missingSettingError(loaded, "statusAdminToken", "operator").message;
}
