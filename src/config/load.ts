/**
 * Loads settings from flags, the environment, a `.env` file, a `config.json` file and defaults,
 * in that order of precedence, and validates them with the table of `settings.ts`.
 *
 * @module
 */
import { readTextFileBounded } from "../read_bounded.ts";
import { dirname, resolve } from "node:path";
import { parseEnv } from "node:util";
import type { z } from "zod";
import { ConfigError } from "../errors.ts";
import { notOwnPathProblem } from "../own_files.ts";
import { editDistance, nearest } from "./suggest.ts";
import { redactString } from "../log/redact.ts";
import {
  flagOf,
  jsonKeyOf,
  keysFor,
  reasonOf,
  type Role,
  type SettingKey,
  SETTINGS,
  type Settings,
} from "./settings.ts";

/** Options of {@link loadSettings}. */
export interface LoadOptions {
  /** The roles of the command being run; only their settings are read and validated. */
  roles: readonly Role[];
  /** Parsed flags keyed by camelCase setting name (as commander returns them). */
  flags?: Record<string, unknown>;
  /**
   * Read and validate only these settings of the roles (a command that needs one setting is not
   * stopped by a bad value of another).
   */
  only?: readonly SettingKey[];
  /**
   * Settings of the roles that the command never takes (`status up`'s `BIND`, `DB`, ...): where
   * each is set is told in {@link LoadedSettings.unread}, and its value is neither checked nor
   * read (another program's `DATABASE_URL=mysql2://...` does not stop the command).
   */
  unread?: readonly SettingKey[];
  /** `--config PATH`: a missing file named here is an error. */
  configPath?: string;
  /** `--env-file PATH`: a missing file named here is an error. */
  envFilePath?: string;
  /**
   * Directory in which the default `./.env` and `./config.json` are looked for.
   * @default {Deno.cwd()}
   */
  cwd?: string;
  /**
   * The environment; when absent the process environment is read where permitted.
   * Tests pass a plain object.
   */
  env?: Record<string, string | undefined>;
  /** Whether the program may read files; when absent asked of `Deno.permissions`. */
  canRead?: (path: string) => boolean;
}

/** What {@link loadSettings} found. */
export interface LoadedSettings {
  /** The validated settings. */
  settings: Settings;
  /** For each setting that is set, a description of where it came from. */
  sources: Partial<Record<SettingKey, string>>;
  /**
   * For each setting of {@link LoadOptions.unread}, or made unused by another (its `unusedWith`
   * in the settings table), that a source sets, that source.
   */
  unread: Partial<Record<SettingKey, string>>;
  /**
   * For each setting read from one source while sources after it in the precedence set it to
   * another value (or one that is not valid), those sources: which one won is not plain otherwise.
   */
  overridden: Partial<Record<SettingKey, string[]>>;
  /** Things the user should be told once at start-up (missing permissions). */
  notices: string[];
  /** Keys of `config.json` that are not settings of this program; ignored. */
  ignoredKeys: string[];
  /**
   * The ignored keys that are not keys of the original Status Panel config either (likely typos),
   * the first ten each with the nearest setting key when one is near.
   */
  unknownKeys: Array<{ key: string; suggestion?: string }>;
  /** Whether none of the command's variables could be read (no `--allow-env`). */
  envUnreadable: boolean;
  /** The command's variables that could not be read (not granted by `--allow-env=...`). */
  deniedVariables: string[];
  /** The default files (`.env`, `config.json`) that could not be read (no `--allow-read`). */
  unreadableFiles: string[];
  /** Files that were read. */
  files: string[];
  /**
   * How the `config.json` file is named in messages: the path given with `--config`, else
   * `config.json`.
   */
  configLabel: string;
  /** How the `.env` file is named in messages: the path given with `--env-file`, else `.env`. */
  envLabel: string;
  /**
   * Things the user must be warned of at start-up: a settings file holding a secret (a token,
   * a database password) that other users may read.
   */
  warnings: string[];
}

function permitted(desc: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(desc).state === "granted";
  } catch {
    return false;
  }
}

function defaultCanRead(path: string): boolean {
  return permitted({ name: "read", path });
}

function join(dir: string, file: string): string {
  return dir.endsWith("/") ? dir + file : `${dir}/${file}`;
}

/** The largest `.env` or `config.json` read; a settings file is a few kilobytes. */
export const MAX_SETTINGS_FILE_BYTES = 16 * 1024 * 1024;

/**
 * Whether a path is a named pipe (`mkfifo`): opening it waits until something writes to it, so a
 * program reading it at start would hang without a word. A pipe of the shell's
 * (`--env-file <(vault read ...)`) has its writer already and no path of its own: not one.
 *
 * @param path The file.
 * @returns `true` for a named pipe; `false` for anything else, or what cannot be looked at
 *   (opening it says why).
 */
export function isNamedPipe(path: string): boolean {
  try {
    if (!Deno.statSync(path).isFifo) return false;
    Deno.realPathSync(path);
    return true;
  } catch {
    return false;
  }
}

function refuseNamedPipe(path: string): void {
  if (!isNamedPipe(path)) return;
  throw new ConfigError(
    `${path} is a named pipe, not a file: reading it would wait until something writes to it`,
  );
}

/**
 * Refuses a settings file that another user may have put where it is read: one in a directory
 * every user may write (`/tmp`) that belongs to another user than this one and root, or is such a
 * user's symlink. Its `DASHBOARD_URL` would send this user's tokens to that user's server, and its
 * agent settings choose what commands may run. Not looked at when the directory, or this
 * process's uid, cannot be (as a database's owner, README "The sandbox").
 *
 * @param path The file.
 * @param label The file as the user knows it.
 * @throws {ConfigError} Naming the file, its owner and the directory.
 */
function refuseOtherUsersFile(path: string, label: string): void {
  const dir = dirname(resolve(path));
  // Not asked for: under --allow-read=config.json a look at its directory would prompt.
  if (!permitted({ name: "read", path: dir })) return;
  let mode: number | null;
  try {
    mode = Deno.statSync(dir).mode;
  } catch {
    return;
  }
  if (mode === null || (mode & 0o002) === 0) return;
  const problem = notOwnPathProblem(path, { symlink: "own" });
  if (problem === undefined) return;
  throw new ConfigError(
    `${label} is not read: ${problem}, in ${dir}, where every user may write (another user may ` +
      "have put it there to choose the dashboard that gets this user's tokens, or what commands " +
      "may run); remove it, or keep the settings files in a directory of your own",
  );
}

function readTextIfPresent(path: string): string | undefined {
  refuseNamedPipe(path);
  try {
    const text = readTextFileBounded(path, MAX_SETTINGS_FILE_BYTES);
    if (text !== undefined) return text;
    // `--config /dev/zero` or a log file named by mistake: not read until memory runs out.
    throw new ConfigError(
      `${path} is larger than ${MAX_SETTINGS_FILE_BYTES / 1024 / 1024} MiB; is it a settings ` +
        "file?",
    );
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    if (error instanceof Deno.errors.NotFound) {
      // A symlink that leads nowhere is a mistake, not an absent file: its settings (a token)
      // would be left out without a word.
      let target: string;
      try {
        target = Deno.readLinkSync(path);
      } catch {
        return undefined;
      }
      throw new ConfigError(`${path} is a symlink to ${target}, which does not exist`);
    }
    if (error instanceof Deno.errors.IsADirectory) {
      throw new ConfigError(`${path} is a directory, not a file`);
    }
    throw new ConfigError(`cannot read ${path}: ${(error as Error).message}`);
  }
}

/**
 * Whether a file read as UTF-8 was UTF-16 (PowerShell 5's `Out-File` and `>` write it): its byte
 * order mark reads as two replacement characters, and every ASCII character comes with a NUL.
 * Parsed, it would be an error quoting that noise.
 */
function isUtf16(text: string): boolean {
  return text.startsWith("\uFFFD\uFFFD") || text.includes("\u0000");
}

/** A byte order mark some editors put at the start of a file; not part of the first line. */
const BOM = "\uFEFF";

function withoutBom(text: string): string {
  return text.startsWith(BOM) ? text.slice(1) : text;
}

/**
 * A `.env` line as `node:util`'s `parseEnv` reads it: spaces or tabs, `export` and a space, the
 * name, spaces or tabs, `=`. Anything else it would drop or read under another name.
 */
const ENV_LINE = /^[ \t]*(?:export +)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*(.*)$/;

/**
 * A `.env` line that is not `NAME=value`, as its error shows it: up to its first `=` or `:`
 * (`AGENT_TOKEN: ...`, a YAML line), else its first word; what may be a value, a secret even (a
 * token pasted on a line of its own), is left out.
 */
function shownLine(line: string): string {
  const text = line.replace(/^[ \t]+|[ \t]+$/g, "");
  const at = text.search(/[=:]/);
  const head = at >= 0 ? text.slice(0, at + 1) : text.split(/[ \t]/, 1)[0];
  if (head === text) {
    return `a line of ${text.length} characters without "=" (not shown: it may be a secret)`;
  }
  return `${JSON.stringify(head.slice(0, 80) + "…")} (the rest is not shown)`;
}

/** Names the invisible or unusual characters of a line, for an error about it. */
function unusualCharacters(line: string): string {
  const odd = [...new Set([...line].filter((c) => !/[\x20-\x7e]/.test(c)))].slice(0, 3);
  if (odd.length === 0) return "";
  const names = odd.map((c) =>
    c === "\t" ? "a tab" : `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}`
  );
  return ` (it holds ${names.join(", ")}; use plain spaces, and one space after "export")`;
}

/**
 * Why `parseEnv` would read less of a value than its line holds, or `undefined` when it reads it
 * all: a `#` right after a character of an unquoted value starts a comment there (`ab#cd` is
 * `ab`), and a quoted value ends at its first closing quote unless the line ends with the quote
 * (`"web"-1` is `web`).
 */
function cutShort(value: string): string | undefined {
  const rest = value.replace(/[ \t]+$/, "");
  const quote = rest[0];
  if (quote === '"' || quote === "'" || quote === "`") {
    if (rest.length > 1 && rest.endsWith(quote)) return undefined;
    const after = rest.slice(rest.indexOf(quote, 1) + 1);
    if (/^[ \t]*(#|$)/.test(after)) return undefined;
    return `with more after its closing ${quote}, which would not be read; put the whole value ` +
      `inside the quotes`;
  }
  if (!/[^ \t]#/.test(rest)) return undefined;
  return "with a # right after other characters, where a comment starts: what follows it " +
    'would not be read; quote the value ("...") to keep the #, or put a space before it to ' +
    "begin a comment";
}

/**
 * Parses a `.env` file, rejecting lines that are not `NAME=value`, comments or blank. A byte
 * order mark at the start is skipped; a line the parser would not read as the `NAME=value` it
 * looks like (a non-breaking space before the name, a tab after `export`) is an error.
 *
 * @param text The file's contents.
 * @param label How the file is named in errors.
 * @param repeated Told of each variable set on more than one line (the last one is read).
 * @param whole Whether a variable's value must be read whole (a setting's): a line whose value
 *   the parser would cut short without a word (`TOKEN=ab#cd` reads `ab`, `ID="web"-1` reads
 *   `web`) is then an error. Other programs' variables are read as the parser reads them.
 * @param lineOf Filled with the line each variable is read from (its last).
 * @returns The variables.
 * @throws {ConfigError} On a malformed line, naming its number.
 */
export function parseEnvFile(
  text: string,
  label: string,
  repeated?: (name: string, lines: number[]) => void,
  whole: (name: string) => boolean = () => false,
  lineOf?: Map<string, number>,
): Record<string, string> {
  text = withoutBom(text);
  const lines = text.split(/\r?\n/);
  const names = new Map<string, number>();
  const setOn = new Map<string, number[]>();
  let openQuote: { quote: string; line: number; name: string } | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (openQuote) {
      if (line.includes(openQuote.quote)) openQuote = undefined;
      continue;
    }
    if (/^[ \t]*(#|$)/.test(line)) continue;
    const match = ENV_LINE.exec(line);
    if (!match && line.includes("\r")) {
      // A line break of classic Mac OS, or one cut in two: not one the parser breaks lines at,
      // and the rest of the line would read as the value.
      throw new ConfigError(
        `${label} line ${i + 1} holds a carriage return (\\r) that no line feed follows, which ` +
          "ends no line here; save the file with LF (or CRLF) line endings",
      );
    }
    if (!match) {
      throw new ConfigError(
        `${label} line ${i + 1} must be NAME=value, got ${shownLine(line)}${
          unusualCharacters(line.split("=")[0])
        }`,
      );
    }
    names.set(match[1], i + 1);
    setOn.set(match[1], [...setOn.get(match[1]) ?? [], i + 1]);
    const value = match[2];
    const quote = value[0];
    if ((quote === '"' || quote === "'" || quote === "`") && !value.slice(1).includes(quote)) {
      openQuote = { quote, line: i + 1, name: match[1] };
    } else if (whole(match[1])) {
      const cut = cutShort(value);
      if (cut !== undefined) {
        // The value is not quoted: it may be a secret.
        throw new ConfigError(`${label} line ${i + 1} sets ${match[1]} to a value ${cut}`);
      }
    }
  }
  if (openQuote) {
    // A quoted value may span lines, so everything after the quote would be read as its value.
    const { quote, line, name } = openQuote;
    throw new ConfigError(
      `${label} line ${line} opens a ${quote} quote in the value of ${name} that no later line ` +
        `closes; end the value with ${quote} (or remove the opening ${quote})`,
    );
  }
  const parsed = { ...parseEnv(text) } as Record<string, string>;
  for (const [name, line] of names) {
    if (!(name in parsed)) {
      throw new ConfigError(`${label} line ${line} sets ${name} in a way that is not read`);
    }
  }
  for (const [name, on] of setOn) if (on.length > 1) repeated?.(name, on);
  for (const [name, line] of names) lineOf?.set(name, line);
  return parsed;
}

/**
 * The keys of the top-level object of a valid JSON text that it holds more than once, with how
 * many times: `JSON.parse` keeps the last one without a word.
 *
 * @param text Valid JSON whose top level is an object.
 * @returns Each repeated key and its count, in the order they first appear.
 */
export function repeatedKeys(text: string): Map<string, number> {
  const counts = new Map<string, number>();
  let depth = 0;
  // A loop rather than a regular expression: a string of megabytes would overflow its stack.
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
    else if (c === '"') {
      const start = i;
      for (i++; text[i] !== '"'; i++) if (text[i] === "\\") i++;
      if (depth !== 1) continue;
      let after = i + 1;
      while (" \t\r\n".includes(text[after])) after++;
      if (text[after] !== ":") continue;
      const key = JSON.parse(text.slice(start, i + 1)) as string;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return new Map([...counts].filter(([, count]) => count > 1));
}

/**
 * Why a text that `JSON.parse` refused is not JSON, when it is something editors and other
 * programs' settings files allow: nothing in it, a comment, a comma after the last entry.
 * `JSON.parse` names only where it stopped ("Expected double-quoted property name ... line 3"),
 * which for a trailing comma is the line after it.
 *
 * @param text The refused text.
 * @returns What to say, or undefined for any other mistake.
 */
function jsonLeniency(text: string): string | undefined {
  if (text.trim() === "") return "is empty; write {} in it for no settings, or remove it";
  // A .env or a YAML file given with --config, or saved as config.json.
  const lines = text.split(/\r?\n/).filter((line) => !/^[ \t]*(#|$)/.test(line));
  if (lines.length === 0) return "holds only comments, which JSON does not allow; write {} in it";
  if (lines.every((line) => ENV_LINE.test(line))) {
    return "holds NAME=value lines, as a .env file does, not JSON; give it with --env-file, or " +
      'write it as JSON: {"agent_id": "web-1", ...}';
  }
  if (lines.every((line) => /^[ \t]*[A-Za-z_][A-Za-z0-9_-]*:([ \t]|$)/.test(line))) {
    return 'holds "key: value" lines, as YAML does, not JSON; write it as JSON: ' +
      '{"agent_id": "web-1", ...}';
  }
  let line = 1;
  let comma: number | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "\n") line++;
    else if (c === '"') {
      for (i++; i < text.length && text[i] !== '"' && text[i] !== "\n"; i++) {
        if (text[i] === "\\") i++;
      }
      if (text[i] === "\n") line++;
      comma = undefined;
    } else if (c === "/" && (text[i + 1] === "/" || text[i + 1] === "*")) {
      return `line ${line} has a comment, which JSON does not allow; remove it`;
    } else if (c === ",") comma = line;
    else if ((c === "}" || c === "]") && comma !== undefined) {
      return `line ${comma} has a comma after the last entry, which JSON does not allow; remove it`;
    } else if (!" \t\r".includes(c)) comma = undefined;
  }
  return undefined;
}

/**
 * Where and why `JSON.parse` refused a text, without the text: its message quotes the text around
 * an unexpected token (`..."t_token": abcSECRETt"...`), which may be a secret's first characters.
 */
function jsonFault(text: string, message: string): string {
  const positioned = /^(.*) in JSON at position \d+ \(line (\d+) column (\d+)\)$/s.exec(message);
  if (positioned) return `${positioned[1]} at line ${positioned[2]}, column ${positioned[3]}`;
  // V8 quotes up to 10 characters before the token and 10 from it, with "..." where it cut.
  const token = /^Unexpected token .*?, (\.\.\.)?"([\s\S]*)"(\.\.\.)? is not valid JSON$/.exec(
    message,
  );
  if (token) {
    const [, cutBefore, quoted, cutAfter] = token;
    const start = text.indexOf(quoted);
    if (start < 0) return "an unexpected character (a value that is not JSON: quote text)";
    const at = cutBefore ? start + 10 : cutAfter ? start + Math.max(0, quoted.length - 10) : start;
    const before = text.slice(0, at).split("\n");
    return `an unexpected character at line ${before.length}, column ${
      before[before.length - 1].length + 1
    } (a value that is not JSON: quote text)`;
  }
  // Anything else it may say is left out when it quotes the text.
  return message.includes('"') ? "it cannot be read as JSON" : message;
}

function parseConfigJson(text: string, label: string): Record<string, unknown> {
  let parsed: unknown;
  text = withoutBom(text);
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    const why = jsonLeniency(text);
    throw new ConfigError(
      why === undefined
        ? `${label} is not valid JSON: ${jsonFault(text, (error as Error).message)}`
        : `${label} ${why}`,
    );
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new ConfigError(`${label} must hold a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

function reason(error: z.ZodError): string {
  const why = reasonOf(error);
  return why === undefined ? "" : `: ${why}`;
}

function show(value: unknown): string {
  // JSON.parse reads 1e400 as Infinity, which JSON.stringify would show as null.
  if (typeof value === "number" && !Number.isFinite(value)) {
    return `${value} (a number beyond the range of a double)`;
  }
  // A URL's password (DATABASE_URL, DASHBOARD_URL) is not shown.
  if (typeof value === "string") return JSON.stringify(redactString(value));
  return JSON.stringify(value) ?? String(value);
}

/**
 * The shortest environment variable name taken for a setting's misspelt: shorter names (PORT, DB,
 * BIND) are a few edits from many other programs' variables.
 */
const MIN_TYPO_LENGTH = 8;

/** How many unknown `config.json` keys get a "did you mean" suggestion. */
const SUGGESTED_KEYS = 10;

/**
 * Loads and validates the settings of the given roles.
 *
 * Precedence: flags > environment > `.env` > `config.json` > defaults.
 *
 * @param options Roles, flags and where to look.
 * @returns The settings with their sources and start-up notices.
 * @throws {ConfigError} Naming the setting, where it came from and the bad value.
 */
export function loadSettings(options: LoadOptions): LoadedSettings {
  const keys = keysFor(options.roles).filter((key) => !options.only || options.only.includes(key));
  const cwd = options.cwd ?? Deno.cwd();
  const canRead = options.canRead ?? defaultCanRead;
  const notices: string[] = [];
  const files: string[] = [];
  const unreadableFiles: string[] = [];

  // Environment: every setting's variable, where permitted.
  let env: Record<string, string | undefined> = {};
  let envUnreadable = false;
  const deniedVariables: string[] = [];
  if (options.env) {
    env = options.env;
  } else {
    // Only this command's variables: a permission set that grants exactly them reads them all.
    for (const key of keys) {
      const name = SETTINGS[key].env;
      if (permitted({ name: "env", variable: name })) env[name] = Deno.env.get(name);
      else deniedVariables.push(name);
    }
    if (deniedVariables.length > 0 && deniedVariables.length === keys.length) {
      envUnreadable = true;
      notices.push(
        "environment variables are not read without --allow-env; " +
          "add --allow-env to configure by environment, or pass flags",
      );
    } else if (deniedVariables.length > 0) {
      notices.push(
        `environment variable${deniedVariables.length === 1 ? "" : "s"} ${
          deniedVariables.join(", ")
        } ${deniedVariables.length === 1 ? "is" : "are"} not read: --allow-env does not ` +
          "grant them; add them to --allow-env, or pass flags",
      );
    }
  }

  // Files: explicit paths must exist; default paths are optional.
  const readFile = (explicit: string | undefined, fallback: string, flag: string) => {
    const path = explicit ?? join(cwd, fallback);
    const label = explicit ?? fallback;
    if (!canRead(path)) {
      if (explicit) {
        throw new ConfigError(`cannot read ${label} without --allow-read (given by ${flag})`);
      }
      notices.push(`${label} is not read without --allow-read; add --allow-read to use it`);
      unreadableFiles.push(label);
      return undefined;
    }
    refuseOtherUsersFile(path, label);
    const text = readTextIfPresent(path);
    if (text === undefined && explicit) {
      throw new ConfigError(`${label} does not exist (given by ${flag})`);
    }
    if (text === undefined) return undefined;
    if (isUtf16(text)) {
      throw new ConfigError(
        `${label} is not UTF-8 text (it holds a UTF-16 byte order mark or NUL bytes, as a file ` +
          "saved as UTF-16 does): save it as UTF-8",
      );
    }
    files.push(path);
    return { text, label, path };
  };

  const envFile = readFile(options.envFilePath, ".env", "--env-file");
  const settingNames = new Set(Object.values(SETTINGS).map((spec) => spec.env));
  // Only the settings this command reads are held to more: a bad value of another is not its
  // business (status stop reads PID_FILE alone).
  const readNames = new Set(keys.map((key) => SETTINGS[key].env));
  const repeatedLines: string[] = [];
  const envFileLines = new Map<string, number>();
  const dotenv = envFile
    ? parseEnvFile(envFile.text, envFile.label, (name, lines) => {
      // Appending a setting to a .env that already has it: easy to miss which one is read.
      if (!settingNames.has(name)) {
        return;
      }
      repeatedLines.push(
        `${envFile.label} sets ${name} on lines ${lines.join(", ")}; the last one (line ` +
          `${lines.at(-1)}) is read`,
      );
    }, (name) =>
      readNames.has(name), envFileLines)
    : {};
  // A .env may hold other programs' variables too: only a name near a setting's is a likely typo
  // (POLLING_TIMEOUT for POLLING_TIMEOUT_SECS), whose setting would silently keep its default.
  const misspelt = envFile === undefined ? [] : Object.keys(dotenv)
    .filter((name) => !settingNames.has(name))
    .flatMap((name) => {
      const meant = nearest(name, settingNames);
      return meant === undefined ? [] : [
        `${envFile.label} sets ${name}, which is not a setting of status; it is ignored (did ` +
        `you mean ${meant}?)`,
      ];
    })
    .slice(0, SUGGESTED_KEYS);
  // The environment holds every program's variables: only a long name within two edits of a
  // setting's, in any case (DASHBORD_URL, AGENT_TOKN, dashboard_url), is a likely typo. Without
  // it the setting silently keeps its default. Read only where the whole environment may be (a permission set grants names).
  const environmentNames = options.env
    ? Object.keys(options.env)
    : permitted({ name: "env" })
    ? Object.keys(Deno.env.toObject())
    : [];
  const misspeltInEnvironment = environmentNames
    .filter((name) => name.length >= MIN_TYPO_LENGTH && !settingNames.has(name))
    .flatMap((name) => {
      const meant = [...settingNames].find((setting) =>
        setting.length >= MIN_TYPO_LENGTH && Math.abs(setting.length - name.length) <= 2 &&
        editDistance(name.toUpperCase(), setting) <= 2
      );
      return meant === undefined ? [] : [
        `the environment sets ${name}, which is not a setting of status; it is ignored (did ` +
        `you mean ${meant}?)`,
      ];
    })
    .slice(0, SUGGESTED_KEYS);
  const configFile = readFile(options.configPath, "config.json", "--config");
  const known = new Set(
    (Object.keys(SETTINGS) as SettingKey[]).map((k) => jsonKeyOf(SETTINGS[k].env)),
  );
  const json = configFile ? parseConfigJson(configFile.text, configFile.label) : {};
  const repeatedJsonKeys = configFile === undefined ? [] : [
    ...repeatedKeys(withoutBom(configFile.text)),
  ].filter(([key]) => known.has(key)).map(([key, count]) =>
    `${configFile.label} sets "${key}" ${count} times; the last one is read`
  );

  const ignoredKeys = Object.keys(json).filter((k) => !known.has(k));
  // Settings grouped under a key of their own ({"agent": {"agent_id": ...}}) are not read: each
  // would silently keep its default.
  const nested = ignoredKeys.filter((k) => !STATUS_PANEL_KEYS.has(k)).flatMap((key) => {
    const value = json[key];
    if (value === null || typeof value !== "object" || Array.isArray(value)) return [];
    const inside = Object.keys(value).filter((k) => known.has(k));
    return inside.length === 0 ? [] : [{ key, inside }];
  });
  const nestedWarnings = nested.slice(0, SUGGESTED_KEYS).map(({ key, inside }) => {
    const shown = key.length <= 64 ? key : `${key.slice(0, 48)}…`;
    const held = inside.slice(0, 5).map((k) => `"${k}"`).join(", ") +
      (inside.length > 5 ? ` and ${inside.length - 5} more` : "");
    return `${configFile!.label} key "${shown}" holds ${held}, which ${
      inside.length === 1 ? "is" : "are"
    } not read there: settings are read from the top level of ${configFile!.label} only; ` +
      `move ${inside.length === 1 ? "it" : "them"} out of "${shown}"`;
  });
  const nestedKeys = new Set(nested.map(({ key }) => key));
  const unknownKeys = ignoredKeys.filter((k) => !STATUS_PANEL_KEYS.has(k) && !nestedKeys.has(k))
    .map((key, i) => {
      // A suggestion for the first few only: a file of many unknown keys is summarized anyway.
      const suggestion = i < SUGGESTED_KEYS ? nearest(key, known) : undefined;
      return suggestion === undefined ? { key } : { key, suggestion };
    });

  const settings: Record<string, unknown> = {};
  const sources: Partial<Record<SettingKey, string>> = {};
  const overridden: Partial<Record<SettingKey, string[]>> = {};
  const unread: Partial<Record<SettingKey, string>> = {};
  for (const key of keys) {
    const spec = SETTINGS[key];
    const flagName = flagOf(spec.env);
    const layers: Array<[string, unknown]> = [
      [`flag ${flagName}`, options.flags?.[key]],
      ["the environment", env[spec.env]],
      [envFile?.label ?? ".env", dotenv[spec.env]],
      [configFile?.label ?? "config.json", json[jsonKeyOf(spec.env)]],
    ];
    const found = layers.find(([, value]) => value !== undefined);
    // A setting the command never takes, or one another makes unused: only where it is set is
    // told.
    const unusedWith = spec.unusedWith as SettingKey | undefined;
    const unused = unusedWith !== undefined && sources[unusedWith] !== undefined &&
      sources[unusedWith] !== "default";
    if (found && (unused || options.unread?.includes(key))) unread[key] = found[0];
    if (!found || unread[key] !== undefined) {
      if ("default" in spec) {
        settings[key] = spec.default;
        sources[key] = "default";
      }
      continue;
    }
    const [source, raw] = found;
    if (raw === null) {
      // config.json's null is no value of any setting: read as "unset", it left the setting at
      // its default (or a token unset: dev mode) without a word.
      throw new ConfigError(
        `${spec.env} from ${source} must be ${spec.expected}, got null; remove ` +
          `"${jsonKeyOf(spec.env)}" from ${source} to ${
            "default" in spec ? "use the default" : "leave it unset"
          }`,
      );
    }
    const result = spec.schema.safeParse(raw);
    if (!result.success && raw === "" && found === layers[2]) {
      // A line of .env.example uncommented as it is (`AGENT_TOKEN=`): its line and the two ways
      // out, rather than a value "of 0 characters" somewhere in the file.
      throw new ConfigError(
        `${source} line ${envFileLines.get(spec.env)} sets ${spec.env} to an empty value, and ` +
          `it must be ${spec.expected}: give it a value or remove the line to ${
            "default" in spec ? "use the default" : "leave it unset"
          }`,
        { cause: result.error },
      );
    }
    if (!result.success) {
      throw new ConfigError(
        `${spec.env} from ${source} must be ${spec.expected}, got ${
          spec.secret ? secretLength(raw) : spec.shown ? spec.shown(raw) : show(raw)
        }${spec.secret ? "" : reason(result.error)}${spec.advice ? `; ${spec.advice}` : ""}`,
        { cause: result.error },
      );
    }
    settings[key] = result.data;
    sources[key] = source;
    const read = JSON.stringify(result.data);
    const others = layers.slice(layers.indexOf(found) + 1).filter(([, value]) => {
      if (value === undefined) return false;
      const other = spec.schema.safeParse(value);
      return !other.success || JSON.stringify(other.data) !== read;
    }).map(([name]) => name);
    if (others.length > 0) overridden[key] = others;
  }
  checkBounds(settings, sources);
  const warnings = [
    ...repeatedLines,
    ...repeatedJsonKeys,
    ...nestedWarnings,
    ...misspelt,
    ...misspeltInEnvironment,
    readableSecrets(envFile, (name) => dotenv[name]),
    readableSecrets(configFile, (name) => json[jsonKeyOf(name)]),
  ].filter((warning): warning is string => warning !== undefined);
  return {
    settings: settings as Settings,
    sources,
    unread,
    overridden,
    notices,
    ignoredKeys,
    unknownKeys,
    envUnreadable,
    deniedVariables,
    unreadableFiles,
    files,
    configLabel: options.configPath ?? "config.json",
    envLabel: options.envFilePath ?? ".env",
    warnings,
  };
}

/**
 * A warning when a settings file holds a secret and its mode lets users other than its owner
 * read it (a token in a 0644 `.env` is every local user's).
 */
function readableSecrets(
  file: { label: string; path: string } | undefined,
  valueOf: (name: string) => unknown,
): string | undefined {
  if (file === undefined) return undefined;
  const held = Object.values(SETTINGS)
    .filter((spec) => spec.secret && valueOf(spec.env) !== undefined && valueOf(spec.env) !== null)
    .map((spec) => spec.env);
  // DB is a file path, or a postgres:// URL that may hold the same password as DATABASE_URL.
  const db = valueOf(SETTINGS.db.env);
  if (typeof db === "string" && /^\s*postgres(?:ql)?:\/\/[^/?#@]*?:[^/?#]+@/i.test(db)) {
    held.push(`${SETTINGS.db.env} (with a database password)`);
  }
  if (held.length === 0) return undefined;
  let mode: number | null;
  try {
    mode = Deno.statSync(file.path).mode;
  } catch {
    return undefined;
  }
  if (mode === null || (mode & 0o044) === 0) return undefined;
  const octal = (mode & 0o7777).toString(8).padStart(4, "0");
  return `${file.label} holds ${held.join(" and ")} and users other than its owner may read it ` +
    `(mode ${octal}); make it readable by its owner only: chmod 600 ${file.label}`;
}

/**
 * Pairs of settings where the first may not be above the second: a smaller maximum than the
 * value it bounds is a mistake, refused rather than silently capped.
 */
const BOUNDS: ReadonlyArray<[SettingKey, SettingKey]> = [
  ["pollingBackoffSecs", "pollingBackoffMaxSecs"],
  ["commandTimeoutSecs", "commandTimeoutMaxSecs"],
];

function checkBounds(
  settings: Record<string, unknown>,
  sources: Partial<Record<SettingKey, string>>,
): void {
  for (const [low, high] of BOUNDS) {
    const value = settings[low];
    const max = settings[high];
    if (typeof value !== "number" || typeof max !== "number" || value <= max) continue;
    const from = (key: SettingKey) => sources[key] === "default" ? "the default" : sources[key];
    const lowEnv = SETTINGS[low].env;
    const highEnv = SETTINGS[high].env;
    throw new ConfigError(
      `${lowEnv} (${value}, from ${from(low)}) must not be above ${highEnv} (${max}, from ` +
        `${from(high)}): lower ${lowEnv} or raise ${highEnv}`,
    );
  }
}

/**
 * Keys of the original Status Panel agent's `config.json`: a file written for it loads, and
 * these keys are ignored without a word.
 */
export const STATUS_PANEL_KEYS: ReadonlySet<string> = new Set([
  "apps_info",
  "container",
  "domain",
  "project",
  "reqdata",
  "ssl",
  "subdomains",
]);

/**
 * The error for a required setting that no source set, saying every way to set it, and, when
 * the environment could not be read, that this is why a variable that is set was not seen.
 *
 * @param loaded What {@link loadSettings} found.
 * @param key The missing setting.
 * @param role The role, for the permission set to suggest (`deno run -P=<role>`).
 * @returns The error to throw (exit code 2).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadSettings, missingSettingError } from "./load.ts";
 *
 * const loaded = loadSettings({ roles: ["agent"], env: {}, cwd: "/nonexistent" });
 * assert.match(missingSettingError(loaded, "agentId", "agent").message, /^AGENT_ID is not set:/);
 * ```
 */
export function missingSettingError(
  loaded:
    & Pick<LoadedSettings, "envUnreadable">
    & Partial<
      Pick<LoadedSettings, "unreadableFiles" | "deniedVariables" | "configLabel" | "envLabel">
    >,
  key: SettingKey,
  role: string,
): ConfigError {
  const spec = SETTINGS[key];
  const flag = `${flagOf(spec.env)} ${spec.placeholder ?? "<value>"}`;
  const unread: string[] = [];
  const envDenied = loaded.envUnreadable;
  const variableDenied = !envDenied && (loaded.deniedVariables ?? []).includes(spec.env);
  if (envDenied) unread.push("the environment (Deno was started without --allow-env)");
  if (variableDenied) unread.push(`${spec.env} (not granted by --allow-env)`);
  const files = loaded.unreadableFiles ?? [];
  if (files.length > 0) unread.push(`${files.join(" and ")} (without --allow-read)`);
  if (unread.length > 0) {
    const grants = [
      ...(envDenied ? [`--allow-env (or --allow-env=${spec.env})`] : []),
      ...(variableDenied ? [`${spec.env} to --allow-env`] : []),
      ...(files.length > 0 ? [`--allow-read=${files.join(",")}`] : []),
    ];
    return new ConfigError(
      `${spec.env} is not set, or is set where it could not be read: ${unread.join(" and ")} ` +
        `could not be read. Add ${grants.join(" and ")}, run with this repository's permission ` +
        `set (deno run -P=${role} main.ts), or pass ${flag}`,
    );
  }
  return new ConfigError(
    `${spec.env} is not set: give it with ${flag}, the ${spec.env} environment variable ` +
      `(or ${loaded.envLabel ?? ".env"}), or "${jsonKeyOf(spec.env)}" in ${
        loaded.configLabel ?? "config.json"
      }`,
  );
}

/** How a secret that was refused is shown: its length only, or what JSON type it is instead. */
function secretLength(value: unknown): string {
  if (typeof value !== "string") {
    const type = value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
    return `a JSON ${type}, not a string`;
  }
  return `a value of ${value.length} ${value.length === 1 ? "character" : "characters"}`;
}
