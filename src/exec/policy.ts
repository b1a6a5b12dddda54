/**
 * The execution policy: which programs may run and which absolute paths their arguments may name.
 *
 * @module
 */
import { checkOptionNames } from "../options.ts";
import type { Checked } from "./parse.ts";
import { isGranted } from "../permissions.ts";
import { curlGlobExpansions, MAX_CURL_GLOB_EXPANSIONS } from "./curl_glob.ts";

/**
 * What the agent may run. Build one with {@link defaultPolicy} or {@link createPolicy}.
 *
 * The allowlist is only as strong as its weakest program: a program that runs other programs
 * (`env`, `xargs`, `find -exec`, `nice`, `timeout`, `sudo`, interpreters such as `python`)
 * lets a command run anything, so allow such programs only on purpose.
 */
export interface ExecPolicy {
  /**
   * Programs that may run: bare names (looked up on `PATH`) or absolute paths.
   * @default {DEFAULT_ALLOWED_PROGRAMS}
   */
  allowedPrograms: string[];
  /**
   * Absolute directories that absolute-path arguments must lie under, compared by path segment.
   * @default {DEFAULT_ALLOWED_PATH_PREFIXES}
   */
  allowedPathPrefixes: string[];
  /**
   * Absolute paths of the agent's own files and directories (its state directory, its settings
   * files): an argument may not name them or anything under them, also where they lie under an
   * allowed prefix and also through a symbolic link; tar may not name a directory that holds one
   * either.
   * @default {[]}
   */
  protectedPaths?: string[];
}

/** Programs allowed when nothing is configured (docs/protocol.md §5). */
export const DEFAULT_ALLOWED_PROGRAMS: readonly string[] = Object.freeze([
  "echo",
  "sleep",
  "ls",
  "tar",
  "gzip",
  "uname",
  "date",
  "df",
  "du",
]);

/** Directories absolute-path arguments may name when nothing is configured. */
export const DEFAULT_ALLOWED_PATH_PREFIXES: readonly string[] = Object.freeze(["/tmp", "/var/tmp"]);

/**
 * Shells (and shell-like interpreters of command strings): refused unless they are named on the
 * allowlist themselves, by name or by absolute path.
 */
export const SHELLS: ReadonlySet<string> = new Set([
  "sh",
  "bash",
  "zsh",
  "dash",
  "ksh",
  "mksh",
  "ash",
  "csh",
  "tcsh",
  "fish",
  "busybox",
]);

/**
 * Options refused for a program even when it is allowed, because they walk around the path
 * rules: options that run another program, read a list of file names from a file (whose names
 * the rules never see), or follow symbolic links met inside a directory (which the rules cannot
 * check before the program runs). Long options match by unambiguous prefix, as GNU getopt does.
 */
interface OptionRules {
  /** Long options (`--name`), with why each is refused. */
  long: Record<string, string>;
  /** Short option letters, with why each is refused. */
  short: Record<string, string>;
  /** Long options that are harmless although they begin a refused one (an exact match wins). */
  harmless?: ReadonlySet<string>;
  /** Whether a first argument without a dash is a bundle of options (`tar cf`). */
  oldStyleBundle?: boolean;
}

const RUNS = "runs other programs";
const FILE_LIST = "reads the names of the files to use from a file";
const FOLLOWS = "follows symbolic links";
const MEMBER_NAMES = 'keeps absolute and ".." member names, which these rules never see';
const CONFIG_FILE = "reads more of its options from a file, which these rules never see";
const TOP_LEVEL =
  "extracts into a directory named by its value or by the archive (which these rules never see)";

const TAR_RULES: OptionRules = {
  long: {
    "--to-command": RUNS,
    "--checkpoint-action": RUNS,
    "--use-compress-program": RUNS,
    "--info-script": RUNS,
    "--new-volume-script": RUNS,
    "--rsh-command": RUNS,
    "--rmt-command": RUNS,
    "--files-from": FILE_LIST,
    "--dereference": FOLLOWS,
    "--absolute-names": MEMBER_NAMES,
    "--one-top-level": TOP_LEVEL,
  },
  short: { I: RUNS, F: RUNS, T: FILE_LIST, h: FOLLOWS, P: MEMBER_NAMES },
  // Exact names that begin a refused one: `--file` (not `--files-from`), `--checkpoint`.
  harmless: new Set(["--checkpoint", "--file"]),
  oldStyleBundle: true,
};

const LS_RULES: OptionRules = {
  long: {
    "--dereference": FOLLOWS,
    "--dereference-command-line": FOLLOWS,
    "--dereference-command-line-symlink-to-dir": FOLLOWS,
  },
  short: { L: FOLLOWS, H: FOLLOWS },
};

const GZIP_RULES: OptionRules = {
  // --force makes gzip follow symbolic links (and overwrite files); --recursive follows the
  // symbolic links to directories that it meets inside the ones it was given.
  long: { "--force": FOLLOWS, "--recursive": FOLLOWS },
  short: { f: FOLLOWS, r: FOLLOWS },
};

/**
 * curl's options (on no default allowlist): `-K` would take `data = "@/etc/shadow"` from a file,
 * `--engine /tmp/x.so` loads (and runs) a library a command downloaded there, and
 * `--proto-default file` makes `localhost/etc/shadow` a `file:` URL, read as no path.
 */
const CURL_RULES: OptionRules = {
  long: {
    "--config": CONFIG_FILE,
    "--engine": "loads and runs the library it names (OpenSSL's dynamic engine)",
    "--proto-default": "makes a URL without a scheme a file: URL (`--proto-default file " +
      "localhost/etc/shadow`), whose path these rules never see",
  },
  short: { K: CONFIG_FILE },
  // `--proto` (the protocols allowed) begins `--proto-default`.
  harmless: new Set(["--proto"]),
};

/**
 * wget's options (on no default allowlist): a `--config` file holds settings such as
 * `post_file = /etc/shadow`, and `--use-askpass` runs the program it names (one a command
 * extracted into `/tmp` with tar, say); its `-e 'use_askpass = ...'` setting is refused apart
 * (see {@link WGET_ASKPASS}).
 */
const WGET_RULES: OptionRules = {
  long: { "--config": CONFIG_FILE, "--use-askpass": RUNS },
  short: {},
};

/**
 * wget's setting that runs a program, as `-e` or `--execute` give it (`-e 'use_askpass = /tmp/x'`,
 * `-euse_askpass=x`, `--execute=use_askpass=x`): wget ignores case, `_` and `-` in a setting's
 * name, and so does the check (which takes them out before it looks for this). A setting is
 * `name = value`: a URL or a file name that only holds the words (`.../use-askpass.html`) is none.
 */
const WGET_ASKPASS = /^(?:[a-z0-9]*e|[a-z]*=)?\s*useaskpass\s*=/i;

/**
 * grep's options (on no default allowlist): `-R` follows every symbolic link it meets in the
 * directories it searches (`grep -R root /tmp` read `/etc/shadow` through a link to `/etc`);
 * `-r` follows only those given, which the rules check.
 */
const GREP_RULES: OptionRules = {
  long: { "--dereference-recursive": FOLLOWS },
  short: { R: FOLLOWS },
};

/** Base names of gzip and of the programs that run it with their arguments. */
const GZIPS: ReadonlySet<string> = new Set(["gzip", "gunzip", "zcat", "uncompress"]);

/** Per program (by base name): the options refused. */
const OPTION_RULES: Readonly<Record<string, OptionRules>> = {
  tar: TAR_RULES,
  gtar: TAR_RULES,
  bsdtar: TAR_RULES,
  du: {
    long: {
      "--files0-from": FILE_LIST,
      "--dereference": FOLLOWS,
      "--dereference-args": FOLLOWS,
    },
    short: { L: FOLLOWS, D: FOLLOWS, H: FOLLOWS },
  },
  ls: LS_RULES,
  // coreutils' ls under other names, with its options.
  dir: LS_RULES,
  vdir: LS_RULES,
  gzip: GZIP_RULES,
  curl: CURL_RULES,
  wget: WGET_RULES,
  grep: GREP_RULES,
  // grep under other names (scripts that run `grep -E` and `grep -F` with their arguments).
  egrep: GREP_RULES,
  fgrep: GREP_RULES,
  // gzip under other names (scripts that run `gzip -d` and `gzip -cd` with their arguments).
  gunzip: GZIP_RULES,
  zcat: GZIP_RULES,
  uncompress: GZIP_RULES,
};

/** Base names of the programs whose arguments {@link tarOperands} reads. */
const TARS: ReadonlySet<string> = new Set(["tar", "gtar", "bsdtar"]);

/** A variable an allowed program reads as more of its command line (see {@link OPTION_VARIABLES}). */
interface OptionVariable {
  /** Base names of the programs that read it. */
  readers: ReadonlySet<string>;
  /** What it could do, for the refusal. */
  example: string;
  /** The options it may hold, each harmless however it is read (`undefined`: none may). */
  harmless?: ReadonlySet<string>;
}

/**
 * gzip's options that change neither what it reads nor what it writes: compression levels, the
 * `--rsyncable` layout, leaving out the stored name, and quiet.
 */
const HARMLESS_GZIP_OPTIONS: ReadonlySet<string> = new Set([
  ..."123456789".split("").map((level) => `-${level}`),
  "--fast",
  "--best",
  "--rsyncable",
  "-n",
  "--no-name",
  "-q",
  "--quiet",
]);

/**
 * Variables of a command's environment that a program reads as more of its command line, where
 * these rules never see them: GNU tar puts `TAR_OPTIONS` before its arguments
 * (`TAR_OPTIONS=--to-command=sh` runs a shell for every member it extracts, `--dereference`
 * follows every symbolic link) and takes `TAPE` as its archive when given no `-f`; gzip reads
 * `GZIP` the same way (gzip 1.10 and later take only some options from it, `-N` among them; older
 * ones take `-f`, `-r` and `-S` too), so only options that change neither what it reads nor what
 * it writes may be given there (`GZIP=-9`). grep 3.5 and older read `GREP_OPTIONS` so; wget takes
 * settings from the files `WGETRC` and `SYSTEM_WGETRC` name, curl from the `.curlrc` of
 * `CURL_HOME` (or of `XDG_CONFIG_HOME`), as from the `--config` and `-K` files the option rules
 * refuse on the command line.
 */
const OPTION_VARIABLES: Readonly<Record<string, OptionVariable>> = {
  TAR_OPTIONS: {
    readers: new Set(["tar", "gtar"]),
    example: "TAR_OPTIONS=--to-command=... would run a program for every member extracted",
  },
  TAPE: {
    readers: new Set(["tar", "gtar", "bsdtar"]),
    example:
      "TAPE is the archive of a tar given no -f: TAPE=/etc/x would have tar c write there, " +
      "TAPE=host:file reach another host through rsh",
  },
  GZIP: {
    readers: GZIPS,
    example: "GZIP=-N would name what it decompresses after the name stored in the file, and an " +
      "older gzip takes -f and -r there too",
    harmless: HARMLESS_GZIP_OPTIONS,
  },
  GREP_OPTIONS: {
    readers: new Set(["grep", "egrep", "fgrep"]),
    example: "grep 3.5 and older put it before their arguments: GREP_OPTIONS=-R would follow " +
      "every symbolic link",
  },
  WGETRC: {
    readers: new Set(["wget"]),
    example: "wget obeys the file it names as it would --config's: post_file = /etc/shadow " +
      "in it would send that file",
  },
  SYSTEM_WGETRC: {
    readers: new Set(["wget"]),
    example: "wget obeys the file it names as it would --config's: post_file = /etc/shadow " +
      "in it would send that file",
  },
  CURL_HOME: {
    readers: new Set(["curl"]),
    example: "curl obeys the .curlrc of the directory it names as it would -K's file: " +
      "upload-file = /etc/shadow in it would send that file",
  },
  XDG_CONFIG_HOME: {
    readers: new Set(["curl"]),
    example: "curl obeys the .curlrc of the directory it names as it would -K's file: " +
      "upload-file = /etc/shadow in it would send that file",
  },
};

/**
 * Why a variable may not be among the commands' extra variables (`COMMAND_ENV`) under this
 * allowlist, or `undefined`: an allowed program would read it as options the rules never see.
 *
 * @param name The variable's name.
 * @param value Its value.
 * @param allowedPrograms The allowlist.
 * @returns The reason, naming the variable and the programs.
 */
export function optionVariableReason(
  name: string,
  value: string,
  allowedPrograms: readonly string[],
): string | undefined {
  if (!Object.hasOwn(OPTION_VARIABLES, name)) return undefined;
  const variable = OPTION_VARIABLES[name];
  const readers = allowedPrograms.filter((program) => variable.readers.has(basename(program)));
  if (readers.length === 0) return undefined;
  const harmless = variable.harmless;
  if (harmless && value.split(/[ \t]+/).every((word) => word === "" || harmless.has(word))) {
    return undefined;
  }
  const allowed = harmless ? ` (only ${[...harmless].join(" ")} may be given there)` : "";
  return `Extra environment variable "${name}" is never given to commands while ` +
    `${readers.join(", ")} may run: it is read as part of every command line, where the option ` +
    `and path rules never see it (${variable.example}); give what it holds on the command ` +
    `line${allowed}`;
}

/** GNU tar's short options that take a value (`-C dir`, `-f archive`, `-b 20`, ...). */
const TAR_VALUE_LETTERS: ReadonlySet<string> = new Set("bCfFgHIKLNTVX");

/** Letters of tar's operations that read or write members in a directory: extract, compare. */
const TAR_UNPACK_LETTERS: ReadonlySet<string> = new Set("xd");

/** tar's long options of those operations (`--extract`, `--get`, `--diff`, `--compare`). */
const TAR_UNPACK_OPTIONS: readonly string[] = ["--extract", "--get", "--diff", "--compare"];

/**
 * tar's long options whose value is a file it writes (besides `--file`), with the length of
 * their shortest abbreviation.
 */
const TAR_FILE_OPTIONS: readonly (readonly [string, number])[] = [
  ["--listed-incremental", "--liste".length],
  ["--index-file", "--ind".length],
  ["--volno-file", "--vo".length],
];

/** tar's options that rename members, refused when it extracts or compares them. */
const TAR_RENAME_OPTIONS: readonly string[] = ["--transform", "--xform"];

/** What {@link tarOperands} reads from a tar command line. */
export interface TarOperands {
  /** The `-C`/`--directory` values, in order. */
  directories: string[];
  /** The `-f`/`--file` values, in order. */
  archives: string[];
  /**
   * The files tar writes by name besides its members, which it creates when they do not exist:
   * the archives, the `-g`/`--listed-incremental`, `--index-file` and `--volno-file` values.
   */
  files: string[];
  /** Whether tar is asked to extract (`x`, `--extract`, `--get`) or compare (`d`, `--diff`). */
  unpacks: boolean;
  /**
   * Whether tar extracts or compares members in the working directory: it is asked to extract
   * (`x`, `--extract`, `--get`) or compare (`d`, `--diff`, `--compare`), and no `-C` comes
   * before the first argument that may be a member name (GNU tar puts each named member in the
   * directory of the `-C` before it, a pattern such as `--wildcards 'x*'` included).
   */
  unpacksInWorkingDirectory: boolean;
  /**
   * Where the first `-C` is surely read as one: the index of the argument that gives it, or the
   * number of arguments when there is none. A `-C` after `--`, or right after a long option
   * without `=` (which may take it as its value), is not sure: it may be a member name or a value.
   * The relative arguments after it name members under a `-C` directory, or option values.
   */
  firstDirectoryAt: number;
  /**
   * Whether `--force-local` (or an abbreviation of it) is surely read as an option: not the
   * value of a short option, not after `--`, and not right after a long option without `=`
   * (which may take it as its value: `--exclude --force-local` excludes files of that name, and
   * an archive `host:file` is then still reached through rsh).
   */
  forceLocal: boolean;
}

/**
 * The directories (`-C`, `--directory`) and archives (`-f`, `--file`) a tar command line names,
 * in order, and where its members lie (see {@link TarOperands}), as GNU tar reads them: a first
 * argument without a dash is a bundle whose letters that take a value take the arguments after
 * it, in order; a letter that takes a value ends a dash bundle, its value being the rest of the
 * bundle or the next argument; `--dir`… is `--directory` (any prefix of at least that length),
 * and a long operation counts from its second letter (`--ge` is `--get`). `--` does not end the
 * reading, since it may be the value of the option before it (`--exclude --`), after which tar
 * still reads options. Where the reading is unsure (a long option's value given as the next
 * argument, a file named like an option after `--`), what follows is still read as options, and
 * may also be a member name: at worst a directory too many is checked.
 */
export function tarOperands(args: readonly string[]): TarOperands {
  const directories: string[] = [];
  const archives: string[] = [];
  const files: string[] = [];
  let unpacks = false;
  let nameFirst = false;
  let afterDashes = false;
  let firstDirectoryAt: number | undefined;
  let forceLocal = false;
  const mayBeName = () => {
    if (directories.length === 0) nameFirst = true;
  };
  // `at`: the index of the argument that gives the option.
  const take = (letter: string, value: string | undefined, at: number) => {
    if (value === undefined) return;
    if (letter === "C") {
      const before = at > 0 ? args[at - 1] : "";
      const unsure = afterDashes || (before.startsWith("--") && !before.includes("="));
      if (firstDirectoryAt === undefined && !unsure) firstDirectoryAt = at;
      directories.push(value);
    } else if (letter === "f") archives.push(value);
    if (letter === "f" || letter === "g") files.push(value);
  };
  let i = 0;
  if (args.length > 0 && !args[0].startsWith("-")) {
    let next = 1;
    for (const letter of args[0]) {
      if (TAR_UNPACK_LETTERS.has(letter)) unpacks = true;
      if (TAR_VALUE_LETTERS.has(letter)) take(letter, args[next++], 0);
    }
    i = Math.max(next, 1);
  }
  for (; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      afterDashes = true;
      continue;
    }
    if (afterDashes || !arg.startsWith("-") || arg === "-") mayBeName();
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = eq < 0 ? arg : arg.slice(0, eq);
      if (name.length >= 4 && TAR_UNPACK_OPTIONS.some((option) => option.startsWith(name))) {
        unpacks = true;
      }
      if (eq < 0 && name.length >= 6 && "--force-local".startsWith(name) && !afterDashes) {
        const before = i > 0 ? args[i - 1] : "";
        if (!before.startsWith("--") || before.includes("=")) forceLocal = true;
      }
      const letter = name.length >= 5 && "--directory".startsWith(name)
        ? "C"
        : name === "--file"
        ? "f"
        : undefined;
      if (letter !== undefined) take(letter, eq < 0 ? args[i + 1] : arg.slice(eq + 1), i);
      if (letter !== undefined && eq < 0) i++;
      // The other files it writes by name; a value given as the next argument is still read on.
      const minimum = TAR_FILE_OPTIONS.find(([option]) => option.startsWith(name))?.[1];
      if (minimum !== undefined && name.length >= minimum) {
        const value = eq < 0 ? args[i + 1] : arg.slice(eq + 1);
        if (value !== undefined) files.push(value);
      }
    } else if (arg.startsWith("-") && arg.length > 1) {
      for (let k = 1; k < arg.length; k++) {
        if (TAR_UNPACK_LETTERS.has(arg[k])) unpacks = true;
        if (!TAR_VALUE_LETTERS.has(arg[k])) continue;
        const rest = arg.slice(k + 1);
        take(arg[k], rest !== "" ? rest : args[i + 1], i);
        if (rest === "") i++;
        break;
      }
    }
  }
  return {
    directories,
    archives,
    files,
    unpacks,
    unpacksInWorkingDirectory: unpacks && (directories.length === 0 || nameFirst),
    firstDirectoryAt: firstDirectoryAt ?? args.length,
    forceLocal,
  };
}

/**
 * The suffixes a gzip or tar command line names: gzip's `-S`/`--suffix` (the compressed file is
 * each file's name plus it) and tar's `--suffix` (a backup's name). Read generously: a value
 * given as the next argument is also read as an option itself, and `--` ends nothing (it may be
 * a value), so at worst a suffix too many is found.
 */
export function suffixValues(program: string, args: readonly string[]): string[] {
  const suffixes: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = eq < 0 ? arg : arg.slice(0, eq);
      if (name.length < 4 || !"--suffix".startsWith(name)) continue;
      const value = eq < 0 ? args[i + 1] : arg.slice(eq + 1);
      if (value !== undefined) suffixes.push(value);
    } else if (GZIPS.has(program) && arg.startsWith("-")) {
      // gzip's short options that take a value: -S (the suffix) and -b (bits).
      for (let k = 1; k < arg.length; k++) {
        if (arg[k] !== "S" && arg[k] !== "b") continue;
        const value = k + 1 < arg.length ? arg.slice(k + 1) : args[i + 1];
        if (arg[k] === "S" && value !== undefined) suffixes.push(value);
        break;
      }
    }
  }
  return suffixes;
}

/** Whether an argument is `--transform` or `--xform`, abbreviated or not, with or without `=`. */
function isTarRenameOption(arg: string): boolean {
  const name = arg.split("=", 1)[0];
  return name.length >= 4 && TAR_RENAME_OPTIONS.some((option) => option.startsWith(name));
}

/** What {@link gzipOperands} reads from a gzip command line. */
interface GzipOperands {
  /** The files it is given (not `-`, its standard input). */
  files: string[];
  /** The `-S`/`--suffix` values. */
  suffixes: string[];
  /** The `-N`/`--name` option as written, when given. */
  nameOption: string | undefined;
}

/**
 * The files, suffixes and `-N` of a gzip command line, as its getopt reads them: `-S` and `-b`
 * take a value (the rest of their bundle or the next argument), and so do `--suffix` and
 * `--bits`, also abbreviated; after `--` every argument is a file.
 */
function gzipOperands(args: readonly string[]): GzipOperands {
  const files: string[] = [];
  const suffixes: string[] = [];
  let nameOption: string | undefined;
  let afterDashes = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (afterDashes || !arg.startsWith("-")) {
      if (arg !== "" && arg !== "-") files.push(arg);
    } else if (arg === "--") {
      afterDashes = true;
    } else if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = eq < 0 ? arg : arg.slice(0, eq);
      if (name.length >= 4 && "--name".startsWith(name)) nameOption ??= name;
      const takesValue = name.length >= 4 &&
        ["--suffix", "--bits"].some((option) => option.startsWith(name));
      if (!takesValue) continue;
      const value = eq < 0 ? args[++i] : arg.slice(eq + 1);
      if (value !== undefined && "--suffix".startsWith(name)) suffixes.push(value);
    } else {
      for (let k = 1; k < arg.length; k++) {
        if (arg[k] === "N") nameOption ??= "-N";
        if (arg[k] !== "S" && arg[k] !== "b") continue;
        const value = k + 1 < arg.length ? arg.slice(k + 1) : args[++i];
        if (arg[k] === "S" && value !== undefined) suffixes.push(value);
        break;
      }
    }
  }
  return { files, suffixes, nameOption };
}

/**
 * The suffixes gzip strips when it decompresses, and adds in turn to a name it is given that does
 * not exist (`gzip -d x` reads `x.gz`), besides one given with `-S`.
 */
const GZIP_SUFFIXES: readonly string[] = [".gz", "-gz", ".z", "-z", "_z", ".Z", ".tgz", ".taz"];

/**
 * The files gzip may read or write for `path`: its name plus a suffix (what it writes when
 * compressing, with `-S` or `.gz`, and what it reads when decompressing a name that does not
 * exist), its name less a suffix it ends with (what it writes when decompressing; `.tgz` and
 * `.taz` give `.tar`). All of them, whatever gzip is asked to do.
 */
function gzipFilesFor(path: string, suffixes: readonly string[]): string[] {
  const all = [...suffixes.filter((suffix) => suffix !== ""), ...GZIP_SUFFIXES];
  const files = all.map((suffix) => path + suffix);
  for (const suffix of all) {
    if (!path.endsWith(suffix) || path.length === suffix.length) continue;
    const stem = path.slice(0, -suffix.length);
    files.push(suffix === ".tgz" || suffix === ".taz" ? `${stem}.tar` : stem);
  }
  return files;
}

/**
 * Why curl's arguments may not be given as they are, or `undefined`: an `--expand-` option (curl
 * 8.3 and later put `{{name}}` variables, such as `--variable d=.`, into its value, making a path
 * these rules never see), or the write-out (`-w`, `--write-out`) to a file: since curl 8.3 its
 * `%output{/path}` (or `%output{>>/path}`) writes the rest of it to that file, which these rules do
 * not check, and `-w @file` reads the format, and any `%output{...}` in it, from a file they never
 * see. A `-w` anywhere in a bundle (`-sw`) takes the rest of the bundle or the next argument.
 */
function curlWriteOutReason(args: readonly string[]): string | undefined {
  // curl 8.3 and later: `--expand-url 'file:///tmp/{{d}}{{d}}/etc/shadow'`, with `--variable d=.`.
  const expand = args.find((arg) => arg.startsWith("--expand"));
  if (expand !== undefined) {
    return `option "${expand.split("=", 1)[0]}" of curl puts the values of its variables ` +
      `({{name}}) into its argument, which these rules then never see, and is not allowed`;
  }
  const output = args.find((arg) => /%output\{/i.test(arg));
  if (output !== undefined) {
    return `argument "${output}" of curl holds "%output{", which writes to the file it names ` +
      `(curl 8.3 and later), and is not allowed`;
  }
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const name = arg.split("=", 1)[0];
    const bundle = /^-[A-Za-z0-9]*w(.*)$/.exec(arg);
    const value = name.length >= 4 && "--write-out".startsWith(name)
      ? args[i + 1]
      : bundle && !arg.startsWith("--")
      ? bundle[1] || args[i + 1]
      : undefined;
    if (value?.startsWith("@")) {
      return `write-out "${value}" of curl reads its format from a file, whose "%output{...}" ` +
        `(which writes to the file it names) these rules never see, and is not allowed`;
    }
  }
  return undefined;
}

/**
 * A short option bundle of curl that holds `--next` (`-:`, `-sL:`): only its options that take no
 * value may come before the `:`; after any other letter (`-uuser:password`, `-xhost:port`) the
 * rest is that option's value.
 */
const CURL_NEXT_IN_BUNDLE = /^-[0-46#aBfgGhIijJklLMnNOpqRsSvVZ]*:/;

/**
 * Whether curl's URL globbing is off for all its URLs: `-g` or `--globoff` is its first argument
 * (no option's value), and no `--next` (`-:`), which begins URLs with globbing on again, nor a
 * `--no-globoff` follows.
 */
function curlGlobOff(args: readonly string[]): boolean {
  if (args[0] !== "-g" && args[0] !== "--globoff") return false;
  return !args.some((arg) =>
    CURL_NEXT_IN_BUNDLE.test(arg) || (arg.length >= 4 && "--next".startsWith(arg)) ||
    (arg.length >= 6 && "--no-globoff".startsWith(arg.split("=", 1)[0]))
  );
}

/** An archive name GNU tar opens on another host through `rsh`/`ssh`: `host:file`, `user@host:file`. */
function isRemoteArchive(name: string): boolean {
  const colon = name.indexOf(":");
  return colon > 0 && !name.slice(0, colon).includes("/");
}

const PROGRAM_NAME = /^[A-Za-z0-9._+-]+$/;

/**
 * Why the policy refuses an allowed program (as `ALLOWED_PROGRAMS` names it), or `undefined` for
 * one it takes: a bare name, or an absolute path without a `..` segment.
 *
 * @param program The program.
 * @returns What completes `Allowed program "…"`, or `undefined`.
 */
export function allowedProgramProblem(program: string): string | undefined {
  if (program.startsWith("/")) return hasDotDot(program) ? 'has a ".." segment' : undefined;
  return PROGRAM_NAME.test(program)
    ? undefined
    : "must be a bare name (A-Z a-z 0-9 . _ + -) or an absolute path";
}

/**
 * Why the policy refuses an allowed path prefix (as `ALLOWED_PATH_PREFIXES` names it), or
 * `undefined` for one it takes: an absolute path without a `..` segment.
 *
 * @param prefix The prefix.
 * @returns What completes `Allowed path prefix "…"`, or `undefined`.
 */
export function allowedPrefixProblem(prefix: string): string | undefined {
  if (!prefix.startsWith("/")) return "must be an absolute path";
  return hasDotDot(prefix) ? 'has a ".." segment' : undefined;
}

/**
 * Returns the default policy: {@link DEFAULT_ALLOWED_PROGRAMS} and
 * {@link DEFAULT_ALLOWED_PATH_PREFIXES}.
 *
 * @returns A fresh policy the caller may change.
 *
 * @example The default allowlist
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultPolicy } from "./policy.ts";
 *
 * assert.ok(defaultPolicy().allowedPrograms.includes("echo"));
 * assert.deepEqual(defaultPolicy().allowedPathPrefixes, ["/tmp", "/var/tmp"]);
 * ```
 */
export function defaultPolicy(): ExecPolicy {
  return {
    allowedPrograms: [...DEFAULT_ALLOWED_PROGRAMS],
    allowedPathPrefixes: [...DEFAULT_ALLOWED_PATH_PREFIXES],
  };
}

/** Input of {@link createPolicy}: lists or comma-separated strings, as config and env give them. */
export interface PolicyInput {
  /**
   * Allowed programs: an array, or a comma-separated string such as the `ALLOWED_PROGRAMS`
   * variable.
   * @default {DEFAULT_ALLOWED_PROGRAMS}
   */
  allowedPrograms?: readonly string[] | string;
  /**
   * Allowed path prefixes: an array, or a comma-separated string such as the
   * `ALLOWED_PATH_PREFIXES` variable.
   * @default {DEFAULT_ALLOWED_PATH_PREFIXES}
   */
  allowedPathPrefixes?: readonly string[] | string;
  /** Programs added to the allowlist (e.g. from repeated `--allow` flags). */
  extraPrograms?: readonly string[];
  /** The agent's own files and directories, absolute (see {@link ExecPolicy.protectedPaths}). */
  protectedPaths?: readonly string[];
}

function splitList(name: string, value: readonly string[] | string): string[] {
  if (typeof value === "string") return value.split(",").map((item) => item.trim()).filter(Boolean);
  if (!Array.isArray(value) || !value.every((item) => typeof item === "string")) {
    throw new TypeError(
      `${name} must be an array of strings or a comma-separated string, got ${
        JSON.stringify(value) ?? String(value)
      }`,
    );
  }
  return value.map((item) => item.trim()).filter((item) => item !== "");
}

/**
 * Validates and normalises a policy from configuration values.
 *
 * @param input Allowed programs and prefixes; missing ones take the defaults.
 * @returns The policy, without duplicates, prefixes normalised (no trailing `/`).
 * @throws {TypeError} When `input` has a key that is not one of its options, a program is neither
 * a bare name nor an absolute path, or a prefix is
 * not an absolute path, or either contains a `..` segment, or a list is neither an array of
 * strings nor a comma-separated string; the message quotes the value.
 *
 * @example From an environment variable plus a flag
 * ```ts
 * import assert from "node:assert/strict";
 * import { createPolicy } from "./policy.ts";
 *
 * const policy = createPolicy({ allowedPrograms: "echo, /usr/bin/uptime", extraPrograms: ["ls"] });
 * assert.deepEqual(policy.allowedPrograms, ["echo", "/usr/bin/uptime", "ls"]);
 * ```
 */
export function createPolicy(input: PolicyInput = {}): ExecPolicy {
  if (input === null || typeof input !== "object") {
    throw new TypeError(`createPolicy's input must be an object, got ${JSON.stringify(input)}`);
  }
  checkOptionNames("createPolicy", input, {
    allowedPrograms: true,
    allowedPathPrefixes: true,
    extraPrograms: true,
    protectedPaths: true,
  });
  const programs = [
    ...splitList("allowedPrograms", input.allowedPrograms ?? DEFAULT_ALLOWED_PROGRAMS),
    ...splitList("extraPrograms", input.extraPrograms ?? []),
  ];
  for (const program of programs) {
    const problem = allowedProgramProblem(program);
    if (problem) throw new TypeError(`Allowed program "${program}" ${problem}`);
  }
  const prefixes = splitList(
    "allowedPathPrefixes",
    input.allowedPathPrefixes ?? DEFAULT_ALLOWED_PATH_PREFIXES,
  );
  for (const prefix of prefixes) {
    const problem = allowedPrefixProblem(prefix);
    if (problem) throw new TypeError(`Allowed path prefix "${prefix}" ${problem}`);
  }
  const protectedPaths = [...input.protectedPaths ?? []];
  for (const path of protectedPaths) {
    if (typeof path !== "string" || !path.startsWith("/") || hasDotDot(path)) {
      throw new TypeError(`Protected path "${path}" must be an absolute path without ".."`);
    }
  }
  return {
    allowedPrograms: unique(programs.map((p) => p.startsWith("/") ? normalizePath(p) : p)),
    allowedPathPrefixes: unique(prefixes.map(normalizePath)),
    ...(protectedPaths.length > 0
      ? { protectedPaths: unique(protectedPaths.map(normalizePath)) }
      : {}),
  };
}

/**
 * The allowed path prefixes under which the path rules cannot resolve symbolic links: Deno may not
 * read there (no `--allow-read` for them). A symbolic link under one (`/tmp/link` to `/etc`, to the
 * agent's own directory) then leads a command's path anywhere without the rules seeing it, and
 * only the lexical checks stand.
 *
 * @param policy The policy.
 * @returns Those prefixes, in the policy's order; none when every one may be read.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultPolicy, unresolvablePrefixes } from "./policy.ts";
 *
 * // Under --allow-read (as here) the rules see every symlink.
 * assert.deepEqual(unresolvablePrefixes(defaultPolicy()), []);
 * ```
 */
export function unresolvablePrefixes(policy: ExecPolicy): string[] {
  return policy.allowedPathPrefixes.filter((prefix) => !isGranted({ name: "read", path: prefix }));
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}

/** Collapses repeated `/` and `.` segments and drops a trailing `/` (keeps `/` itself). */
export function normalizePath(path: string): string {
  const segments = path.split("/").filter((s) => s !== "" && s !== ".");
  return (path.startsWith("/") ? "/" : "") + segments.join("/");
}

function hasDotDot(path: string): boolean {
  return path.split("/").includes("..");
}

function basename(path: string): string {
  const parts = path.split("/").filter((s) => s !== "");
  return parts[parts.length - 1] ?? "";
}

/**
 * Whether `path` is `prefix` or lies below it, compared by whole segments (`/tmp/x` is under
 * `/tmp`, `/tmpx` is not). Both must be normalised absolute paths.
 */
export function isUnderPrefix(path: string, prefix: string): boolean {
  if (prefix === "/") return true;
  return path === prefix || path.startsWith(prefix + "/");
}

/** How the program of an accepted command is to be found. */
export type ProgramRef =
  /** A bare name, looked up on `PATH`. */
  | { kind: "name"; name: string }
  /** An absolute path, run as is. */
  | { kind: "path"; path: string };

/** An accepted command: its argv and how to find its program. */
export interface AcceptedCommand {
  /** The argv, `argv[0]` as given. */
  argv: string[];
  /** How to find the program. */
  program: ProgramRef;
}

/** Options of {@link checkPolicy}. */
export interface CheckPolicyOptions {
  /**
   * The `PATH` the command will run with, used to decide whether an absolute program path is the
   * same file as an allowed name.
   * @default {""}
   */
  searchPath?: string;
  /**
   * The working directory the command will run in; relative arguments resolved against it are
   * checked like absolute ones. Unset: relative arguments are not checked (a command's own new
   * directory holds nothing to protect).
   */
  cwd?: string;
}

/**
 * Checks an argv against a policy.
 *
 * Program rules:
 * - a bare name is allowed when it is on the allowlist as a name (it is then looked up on
 *   `PATH`), or when an absolute allowlist entry has that base name (that entry is run);
 * - an absolute path is allowed when it is on the allowlist, or when its base name is an allowed
 *   name that resolves on `PATH` to the very same file (after symlinks): `/bin/echo` is allowed
 *   with `echo` only if `echo` on `PATH` is that file;
 * - a relative path (`./x`, `bin/x`) or one with a `..` segment is refused;
 * - shells ({@link SHELLS}) are allowed only when named on the allowlist themselves.
 *
 * Argument rules:
 * - any `..` path segment is refused, in an argument or in an option's value (`--file=../x`);
 * - an absolute path (an argument, the value of `--opt=/path` or of an operand `name=/path` as
 *   dd takes them, the path attached to a short option as in `-f/path`, and in any of them the
 *   file of `@/path` as curl and bsdtar read it, of `</path`, each file of curl's lists
 *   `@/a,"/b";type=x`, the file of curl's `name@/path`, the value of wget's `-e 'name = /path'`,
 *   or the path of a `file:` URL, percent-decoded; for curl, in each URL its globbing makes of an
 *   argument, see {@link curlGlobExpansions})
 *   must lie under an allowed prefix, compared by segment;
 * - a path under a prefix must not leave it through a symlink (the deepest existing ancestor is
 *   resolved when read permission allows, and a dangling symlink is followed to its target, which
 *   a program creates through it);
 * - a relative argument that names an existing entry of the working directory is checked like
 *   the absolute path it resolves to, also one that begins with a dash (`date -f -x` reads the
 *   file `-x`), and so is a relative value attached to an option (`--file=name`, `-fname`: each
 *   rest of a short option bundle counts) or to an operand (`dd if=name`), and the file of
 *   `@name` in any of them;
 * - options that walk around these rules are refused even when the program is allowed: tar's
 *   that run other programs (`--to-command`, `--use-compress-program`, `-I`, `-F`, ...), options
 *   that read file names from a file (tar `-T`/`--files-from`, du `--files0-from`) and options
 *   that read more options from a file (curl `-K`/`--config`, wget `--config`), wget's
 *   `--use-askpass` (and its `-e use_askpass=...` setting), which runs a program, curl's
 *   `--engine` (which loads a library) and `--proto-default` (a `file:` URL without `file:`),
 *   curl's `-w` holding `%output{` or read from a file (`-w @file`) and its `--expand-` options
 *   (variables put into a value), options
 *   that follow symbolic links inside directories (tar `-h`, du `-L`/`-D`/`-H`, ls `-L`/`-H`,
 *   gzip `-f`/`-r`, grep `-R`), tar's `-P` (absolute member names) and `--one-top-level` (a directory to
 *   extract into, named by its value or by the archive), by exact name, unambiguous prefix or
 *   inside a bundle (`-chf`, `tar chf`), also after `--` (which an option may take as its value:
 *   `tar --exclude -- --to-command=...`);
 * - tar's `--transform` and `--xform` are refused when it extracts or compares: they choose the
 *   names of the files it writes or reads there, which the rules never see;
 * - gzip's `-S`/`--suffix` and tar's backup `--suffix` may not hold a `/` (see
 *   {@link suffixValues});
 * - gzip: the files it reads or writes beside each file it is given (its name plus a suffix, or
 *   less it) may not be one of the agent's own paths, nor may a file given with `-N` (which
 *   names what it decompresses from the name stored in the file) lie beside one;
 * - tar: it may not extract or compare without a `-C` before its member names in a working
 *   directory outside the prefixes (it writes or reads there, as `tar cf - .` would), nor be
 *   given there a relative archive, `-g`, `--index-file` or `--volno-file` (it creates them);
 * - tar: relative arguments are checked under each `-C` directory too (see {@link tarOperands}),
 *   and an archive on another host (`host:file`) is refused unless `--force-local` is given
 *   where tar surely reads it as an option (see {@link TarOperands.forceLocal});
 * - the agent's own paths ({@link ExecPolicy.protectedPaths}) and what lies in them are refused,
 *   as written, after symbolic links and as another hard link to one of their files, and so
 *   are the programs allowed by absolute path (a command that changed one would choose what
 *   later commands run); tar, which reads or writes everything in a directory it
 *   is given, may not name a directory that holds one either (an absolute argument or option
 *   value; a relative one in the working directory, `.` being the working directory itself,
 *   up to the first `-C`; a `-C` directory or a member under it), nor extract or compare in a
 *   working directory that holds one without a `-C` before its member names. `ls`, `du` and
 *   `df` may name such a directory: they show names and sizes, not contents.
 *
 * These rules are the second line: they cannot see what a program does with a path after the
 * check (a symlink swapped in between) or the names it reads from elsewhere (an archive's members),
 * so the operating system (an unprivileged user, see `sandbox.ts`) must be the first.
 *
 * @param argv The argv from {@link parseCommandLine}.
 * @param policy The policy.
 * @param options The `PATH` and working directory the command will run with.
 * @returns The accepted command, or a reason such as
 * `program "rm" is not on the allowlist (allowed: echo, sleep)`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkPolicy, defaultPolicy } from "./policy.ts";
 *
 * assert.equal(checkPolicy(["ls", "/tmp/x"], defaultPolicy()).ok, true);
 * assert.deepEqual(checkPolicy(["ls", "/tmpx"], defaultPolicy()), {
 *   ok: false,
 *   reason: `path "/tmpx" is outside the allowed prefixes (/tmp, /var/tmp)`,
 * });
 * ```
 */
export function checkPolicy(
  argv: readonly string[],
  policy: ExecPolicy,
  options: CheckPolicyOptions = {},
): Checked<AcceptedCommand> {
  return new PolicyChecker(policy).check(argv, options);
}

/**
 * A policy prepared once for many commands, as an executor keeps it: the allowlist split into
 * names and paths, the prefixes normalised, their real paths resolved when first needed (once),
 * and the `PATH` lookups of bare names cached. A cached lookup is used while the file it found is
 * still an executable regular file, and looked up again otherwise. The checks are those of
 * {@link checkPolicy}; the policy is copied, so changing it afterwards changes nothing here.
 *
 * @example Check and resolve many commands with one checker
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultPolicy, PolicyChecker } from "./policy.ts";
 *
 * const checker = new PolicyChecker(defaultPolicy());
 * const checked = checker.check(["echo", "hi"]);
 * assert.ok(checked.ok);
 * const found = checker.resolve(checked.value.program, "/usr/bin:/bin");
 * assert.ok(found.ok && found.path.endsWith("/echo"));
 * assert.equal(checker.check(["rm", "/tmp/x"]).ok, false);
 * ```
 */
export class PolicyChecker {
  /** The allowlist as configured (for messages). */
  readonly #allowed: readonly string[];
  /** Allowed bare names. */
  readonly #names: ReadonlySet<string>;
  /** Allowed absolute program paths, normalised. */
  readonly #paths: readonly string[];
  /** Allowed path prefixes, normalised. */
  readonly #prefixes: readonly string[];
  /** The real path of each prefix (in the order of `#prefixes`), resolved on first need. */
  #realPrefixes: readonly string[] | undefined;
  /**
   * The agent's own paths, normalised, and the allowed programs given by absolute path: a command
   * that changed one (`tar -x -C` into its directory, under a prefix) would choose what later
   * commands run.
   */
  readonly #protected: readonly string[];
  /** The allowed programs given by absolute path and their real paths, resolved on first need. */
  #programFiles: ReadonlySet<string> | undefined;
  /**
   * The own files (the own paths that are regular files and the files in those that are
   * directories) by device, then inode: read once per check and device when an argument names a
   * file of that device with more than one link.
   */
  #ownInodes: Map<number, ReadonlyMap<number, string>> | undefined;
  /** The agent's own paths and their real paths, resolved on first need. */
  #withRealProtected: readonly string[] | undefined;
  /** The last path resolved in the check under way, see {@link PolicyChecker.#realPathOf}. */
  #resolved: { path: string; real: string | undefined } | undefined;
  /** `PATH` lookups that found an executable file: `searchPath \0 name` → its path. */
  readonly #found = new Map<string, string>();

  /**
   * Prepares a policy.
   *
   * @param policy The policy (from {@link createPolicy} or {@link defaultPolicy}).
   */
  constructor(policy: ExecPolicy) {
    this.#allowed = [...policy.allowedPrograms];
    this.#names = new Set(this.#allowed.filter((p) => !p.startsWith("/")));
    this.#paths = this.#allowed.filter((p) => p.startsWith("/")).map(normalizePath);
    this.#prefixes = policy.allowedPathPrefixes.map(normalizePath);
    this.#protected = [...(policy.protectedPaths ?? []).map(normalizePath), ...this.#paths];
  }

  /**
   * Checks an argv, as {@link checkPolicy} does.
   *
   * @param argv The argv from {@link parseCommandLine}.
   * @param options The `PATH` and working directory the command will run with.
   * @returns The accepted command, or the reason it is refused.
   */
  check(argv: readonly string[], options: CheckPolicyOptions = {}): Checked<AcceptedCommand> {
    if (argv.length === 0) return { ok: false, reason: "command line is empty" };
    this.#resolved = undefined;
    this.#ownInodes = undefined;
    const program = this.#checkProgram(argv[0], options.searchPath ?? "");
    if (!program.ok) return program;
    const programName = program.value.kind === "name"
      ? program.value.name
      : basename(program.value.path);
    const args = argv.slice(1);
    const tar = TARS.has(programName) ? tarOperands(args) : undefined;
    // tar reads or writes all that a directory it names holds: no holder of the agent's own paths.
    const holder = tar ? programName : undefined;
    const cwdNames = options.cwd === undefined ? undefined : namesOnce(options.cwd);
    for (let i = 0; i < args.length; i++) {
      // After tar's first -C, a relative argument names a member under it (or an option's value).
      const cwdHolder = tar && i < tar.firstDirectoryAt ? holder : undefined;
      const reason = this.#checkArgument(
        args[i],
        options.cwd,
        cwdNames,
        holder,
        cwdHolder,
        programName === "wget",
      );
      if (reason) return { ok: false, reason };
    }
    if (programName === "curl" && !curlGlobOff(args)) {
      const reason = this.#checkCurlGlobs(args, options.cwd, cwdNames);
      if (reason) return { ok: false, reason };
    }
    if (programName === "curl") {
      const reason = curlWriteOutReason(args);
      if (reason) return { ok: false, reason };
    }
    const rules = Object.hasOwn(OPTION_RULES, programName) ? OPTION_RULES[programName] : undefined;
    if (rules) {
      const reason = checkOptions(programName, args, rules);
      if (reason) return { ok: false, reason };
    }
    if (programName === "wget") {
      const setting = args.find((arg) => WGET_ASKPASS.test(arg.replace(/[-_]/g, "")));
      if (setting !== undefined) {
        return {
          ok: false,
          reason: `setting "${setting}" of wget runs other programs and is not allowed`,
        };
      }
    }
    if (TARS.has(programName) || GZIPS.has(programName)) {
      const slashed = suffixValues(programName, args).find((s) => s.includes("/"));
      if (slashed !== undefined) {
        return {
          ok: false,
          reason: `suffix "${slashed}" of ${programName} holds a "/" and is not allowed: ` +
            `${programName} writes each file's name plus the suffix, which could then lie in ` +
            `another directory (through a symbolic link) that these rules never see`,
        };
      }
    }
    if (tar) {
      const reason = this.#checkTar(programName, args, options.cwd, tar);
      if (reason) return { ok: false, reason };
    }
    if (GZIPS.has(programName)) {
      const reason = this.#checkGzipOutputs(programName, args, options.cwd);
      if (reason) return { ok: false, reason };
    }
    return { ok: true, value: { argv: [...argv], program: program.value } };
  }

  /**
   * What tar's own options change about the paths: an archive on another host, the working
   * directory it extracts into, and the directories (`-C`) that its member names are relative
   * to. Each relative argument is checked as a path under every such directory (and each
   * directory under the ones before it, since a relative `-C` is taken from the one before), so
   * `-C /tmp link/file` cannot leave the prefixes through `/tmp/link`. None of these may hold the
   * agent's own paths (a relative argument in the working directory was checked for that before
   * the first `-C`, see {@link TarOperands.firstDirectoryAt}).
   */
  #checkTar(
    program: string,
    args: string[],
    cwd: string | undefined,
    { directories, archives, files, unpacks, unpacksInWorkingDirectory, forceLocal }: TarOperands,
  ): string | undefined {
    const rename = unpacks ? args.find(isTarRenameOption) : undefined;
    if (rename !== undefined) {
      return `option "${rename.split("=", 1)[0]}" of ${program} renames the members it extracts ` +
        `or compares, to names these rules never see (which may lead through a symbolic link), ` +
        `and is not allowed with -x or -d`;
    }
    const remote = forceLocal ? undefined : archives.find(isRemoteArchive);
    if (remote !== undefined) {
      return `archive "${remote}" of ${program} names another host (${program} would run rsh or ` +
        `ssh to reach it) and is not allowed; a local file whose name has a colon needs ` +
        `--force-local, where no option before it can take it as its value`;
    }
    const outside = (path: string) => !this.#prefixes.some((p) => isUnderPrefix(path, p));
    if (unpacksInWorkingDirectory && cwd) {
      const place = normalizePath(cwd);
      const shown = `the working directory ${place}, where ${program} extracts or compares ` +
        `without a -C before its member names,`;
      // It writes there (or reads, comparing) as a relative argument would name it.
      if (outside(place)) {
        return `${shown} is outside the allowed prefixes (${this.#prefixes.join(", ") || "none"})`;
      }
      if (this.#escapesThroughSymlink(place)) {
        return `${shown} leaves the allowed prefixes through a symbolic link`;
      }
      const reason = this.#ownPathReason(shown, place, program);
      if (reason) return reason;
    }
    if (cwd && outside(normalizePath(cwd))) {
      // A relative name that does not exist is no path, but tar creates these files.
      const created = files.find((file) => file !== "" && file !== "-" && !file.startsWith("/"));
      if (created !== undefined) {
        return `file "${created}" of ${program} is ${normalizePath(`${cwd}/${created}`)} ` +
          `relative to the working directory, outside the allowed prefixes ` +
          `(${this.#prefixes.join(", ") || "none"}): ${program} may create it there`;
      }
    }
    if (directories.length === 0) return undefined;
    const bases: string[] = cwd ? [normalizePath(cwd)] : [];
    for (const directory of directories) {
      if (hasDotDot(directory)) return `path "${directory}" has a ".." segment`;
      const places = directory.startsWith("/")
        ? [normalizePath(directory)]
        : bases.map((base) => normalizePath(`${base}/${directory}`));
      for (const place of places) {
        if (outside(place)) {
          if (!directory.startsWith("/") && !entryExists(place)) continue;
          return `directory "${directory}" of ${program} is ${place}, outside the allowed ` +
            `prefixes (${this.#prefixes.join(", ") || "none"})`;
        }
        if (this.#escapesThroughSymlink(place)) {
          return `directory "${directory}" of ${program} leaves the allowed prefixes through a ` +
            `symbolic link`;
        }
        const shown = `directory "${directory}" of ${program} (${place})`;
        const own = this.#ownPathReason(shown, place, program);
        if (own) return own;
      }
      bases.push(...places);
    }
    // Those that begin with a dash too: after `--` they are member names (`-- -l/file`).
    const members = args.filter((arg) => arg !== "" && !arg.startsWith("/"));
    for (const member of members) {
      for (const [index, base] of bases.entries()) {
        const path = normalizePath(`${base}/${member}`);
        if (!outside(path) && this.#escapesThroughSymlink(path)) {
          return `path "${member}" is ${path} after ${program}'s -C, and leaves the allowed ` +
            `prefixes through a symbolic link`;
        }
        if (outside(path)) continue;
        const shown = `path "${member}" after ${program}'s -C (${path})`;
        const own = this.#ownPathReason(shown, path, cwd && index === 0 ? undefined : program);
        if (own) return own;
      }
    }
    return undefined;
  }

  /**
   * What curl's URL globbing makes of its arguments (see {@link curlGlobExpansions}): each URL
   * it expands one to is checked as an argument (`file:///tmp/{x,..}/etc/passwd` read
   * `/etc/passwd`); one it expands to too many, or that curl's versions may read differently, is
   * refused, and so is a `#1` (an output file named after what a glob matched) where a glob is.
   * Every argument is taken for a URL (which of them are option values is curl's business).
   */
  #checkCurlGlobs(
    args: string[],
    cwd: string | undefined,
    cwdNames: (() => ReadonlySet<string> | undefined) | undefined,
  ): string | undefined {
    const globOff = 'give -g (--globoff) as its first argument (and no --next) to pass "{", "[" ' +
      'and "#" as written';
    let globbed = false;
    for (const arg of args) {
      const expanded = curlGlobExpansions(arg);
      if (expanded === undefined) {
        return `argument "${arg}" of curl is a URL glob ({...} or [...]) that curl would expand ` +
          `to more than ${MAX_CURL_GLOB_EXPANSIONS} URLs or that curl's versions read ` +
          `differently, which these rules cannot check; ${globOff}`;
      }
      if (expanded.globs > 0) globbed = true;
      for (const expansion of expanded.urls) {
        if (expansion === arg) continue;
        const reason = this.#checkArgument(expansion, cwd, cwdNames, undefined, undefined);
        if (reason) return `${reason} (curl expands "${arg}" to "${expansion}"; ${globOff})`;
      }
    }
    const template = globbed ? args.find((arg) => /#\d/.test(arg)) : undefined;
    if (template !== undefined) {
      return `argument "${template}" of curl names a file after what a URL glob matched ` +
        `(#1, ...), which these rules never see; ${globOff}`;
    }
    return undefined;
  }

  /**
   * What gzip (or `gunzip`, `zcat`, `uncompress`, which run it with their arguments, as `program`)
   * reads or writes beside each file it is given (see {@link gzipOperands}): its name plus a
   * suffix, or less it (see {@link gzipFilesFor}), may not be one of the agent's own paths; and
   * with `-N`, which names what it decompresses from the name stored in the file, the file may not
   * lie beside one of them. A relative file is taken in the working directory, and left out
   * without one (a command's own new directory holds nothing to protect).
   */
  #checkGzipOutputs(program: string, args: string[], cwd: string | undefined): string | undefined {
    if (this.#protected.length === 0) return undefined;
    const { files, suffixes, nameOption } = gzipOperands(args);
    for (const file of files) {
      if (!file.startsWith("/") && !cwd) continue;
      const path = normalizePath(file.startsWith("/") ? file : `${cwd}/${file}`);
      for (const beside of gzipFilesFor(path, suffixes)) {
        const reason = this.#ownPathReason(
          `the file ${program} reads or writes for "${file}" (${beside})`,
          beside,
        );
        if (reason) return reason;
      }
      if (nameOption === undefined) continue;
      const dir = path.slice(0, path.lastIndexOf("/")) || "/";
      const dirs = [dir, realPathOfExisting(dir) ?? dir];
      this.#withRealProtected ??= this.#withReal(this.#protected);
      const own = this.#withRealProtected.find((own) =>
        dirs.includes(own.slice(0, own.lastIndexOf("/")) || "/")
      );
      if (own !== undefined) {
        this.#programFiles ??= new Set(this.#withReal(this.#paths));
        const what = this.#programFiles.has(own)
          ? `the allowed program ${own}`
          : `the agent's own ${own} (its state or settings)`;
        return `path "${file}" lies beside ${what}, and ` +
          `${program}'s ${nameOption} writes there under the name stored in the file, which these ` +
          `rules never see`;
      }
    }
    return undefined;
  }

  /** The paths and, where it differs, the real path of each, for {@link #withRealProtected}. */
  #withReal(paths: readonly string[]): string[] {
    return paths.flatMap((path) => {
      const real = realPathOfExisting(path);
      return real === undefined || real === path ? [path] : [path, real];
    });
  }

  /**
   * Finds the file a program reference runs, as {@link resolveProgram} does, from the cache when
   * the file found before is still an executable regular file.
   *
   * @param program The program from {@link PolicyChecker.check}.
   * @param searchPath A `PATH`-style list of directories.
   * @returns The absolute path, or `not_found` / `not_executable` with a reason.
   */
  resolve(program: ProgramRef, searchPath: string): Resolution {
    if (program.kind === "path") return resolveProgram(program, searchPath);
    const key = `${searchPath}\0${program.name}`;
    const cached = this.#found.get(key);
    if (cached !== undefined) {
      const info = statIfExists(cached);
      if (info !== "unknown" && info?.isFile && isExecutable(info)) {
        return { ok: true, path: cached };
      }
      this.#found.delete(key);
    }
    const found = resolveProgram(program, searchPath);
    // Only a file that was seen is cached (without read permission the name comes back as is).
    if (found.ok && found.path.startsWith("/")) this.#found.set(key, found.path);
    return found;
  }

  #notAllowed(program: string): Checked<ProgramRef> {
    if (SHELLS.has(basename(program))) {
      return {
        ok: false,
        reason: `program "${program}" is not allowed (shells must be allowed explicitly)`,
      };
    }
    const allowed = this.#allowed.length ? this.#allowed.join(", ") : "none";
    return {
      ok: false,
      reason: `program "${program}" is not on the allowlist (allowed: ${allowed})`,
    };
  }

  #checkProgram(program: string, searchPath: string): Checked<ProgramRef> {
    if (hasDotDot(program)) {
      return { ok: false, reason: `program "${program}" has a ".." segment` };
    }
    if (!program.includes("/")) {
      if (this.#names.has(program)) return { ok: true, value: { kind: "name", name: program } };
      const byPath = this.#paths.find((p) => basename(p) === program);
      if (byPath) return { ok: true, value: { kind: "path", path: byPath } };
      return this.#notAllowed(program);
    }
    if (!program.startsWith("/")) {
      return {
        ok: false,
        reason: `program "${program}" must be a bare name or an absolute path`,
      };
    }
    const path = normalizePath(program);
    if (this.#paths.includes(path)) return { ok: true, value: { kind: "path", path } };
    const name = basename(path);
    if (this.#names.has(name)) {
      const found = this.resolve({ kind: "name", name }, searchPath);
      // The file found on PATH is what runs, not the path given: a symlink given (/tmp/x/echo)
      // could be pointed elsewhere between this check and the spawn.
      if (found.ok && sameFile(found.path, path)) {
        return { ok: true, value: { kind: "path", path: found.path } };
      }
    }
    return this.#notAllowed(program);
  }

  /**
   * Why one argument may not be given, `undefined` when it may. `holder` is tar's name when a
   * directory that holds one of the agent's own paths may not be named either, and `cwdHolder`
   * the same for a relative argument taken in the working directory; `settings` when the program
   * takes settings written `name = value` (wget's `-e`).
   */
  #checkArgument(
    arg: string,
    cwd: string | undefined,
    cwdNames: (() => ReadonlySet<string> | undefined) | undefined,
    holder: string | undefined,
    cwdHolder: string | undefined,
    settings = false,
  ): string | undefined {
    const prefixes = this.#prefixes;
    const allowed = () => prefixes.length ? prefixes.join(", ") : "none";
    for (const candidate of pathCandidates(arg, settings)) {
      if (hasDotDot(candidate)) return `path "${candidate}" has a ".." segment`;
      if (candidate.startsWith("/")) {
        const path = normalizePath(candidate);
        if (!prefixes.some((prefix) => isUnderPrefix(path, prefix))) {
          return `path "${candidate}" is outside the allowed prefixes (${allowed()})`;
        }
        if (this.#escapesThroughSymlink(path)) {
          return `path "${candidate}" leaves the allowed prefixes through a symbolic link`;
        }
        const own = this.#ownPathReason(`path "${candidate}"`, path, holder);
        if (own) return own;
      } else if (cwd && candidate === arg && arg !== "") {
        // One that begins with a dash too: an option's value given as the next argument may
        // (`date -f -x` reads the file "-x"), and so may a file name after `--`.
        const path = normalizePath(`${cwd}/${arg}`);
        if (!prefixes.some((prefix) => isUnderPrefix(path, prefix))) {
          // A relative argument naming something of the working directory outside the prefixes
          // (the agent's own files when it runs in its own directory) is a path like any other.
          if (entryExists(path)) {
            return `path "${arg}" is ${path} relative to the working directory, outside the ` +
              `allowed prefixes (${allowed()})`;
          }
        } else if (this.#escapesThroughSymlink(path)) {
          return `path "${arg}" leaves the allowed prefixes through a symbolic link`;
        } else {
          const own = this.#ownPathReason(`path "${arg}" (${path})`, path, cwdHolder);
          if (own) return own;
        }
      }
    }
    if (cwd) {
      for (const value of attachedRelativeValues(arg, settings)) {
        const reason = this.#checkAttachedValue(arg, value, cwd, cwdNames?.(), holder);
        if (reason) return reason;
      }
    }
    return undefined;
  }

  /**
   * Checks a relative value attached to an option (`--file=name`, `-fname`) or an operand
   * (`if=name`) as a relative argument is checked: refused when it names an existing entry of the
   * working directory outside the prefixes, or leaves the prefixes through a symbolic link. A
   * value whose first segment does not exist there cannot lead anywhere, and is not resolved
   * further; the names of the working directory, when it could be listed, tell that without a
   * system call (a bundle of 4096 letters has 256 rests, each a failed lstat otherwise).
   */
  #checkAttachedValue(
    arg: string,
    value: string,
    cwd: string,
    cwdNames: ReadonlySet<string> | undefined,
    holder: string | undefined,
  ): string | undefined {
    const first = value.split("/", 1)[0];
    if (cwdNames && first !== "." && first !== ".." && !cwdNames.has(first)) return undefined;
    const path = lexicalPath(`${cwd}/${value}`);
    const shown = `path "${value}" of "${arg}"`;
    if (!this.#prefixes.some((prefix) => isUnderPrefix(path, prefix))) {
      if (!entryExists(path)) return undefined;
      const allowed = this.#prefixes.length ? this.#prefixes.join(", ") : "none";
      return `${shown} is ${path} relative to the working directory, outside the allowed ` +
        `prefixes (${allowed})`;
    }
    if (!entryExists(lexicalPath(`${cwd}/${first}`))) return undefined;
    if (this.#escapesThroughSymlink(path)) {
      return `${shown} leaves the allowed prefixes through a symbolic link`;
    }
    return this.#ownPathReason(`${shown} (${path})`, path, holder);
  }

  /**
   * {@link realPathOfExisting}, once per path and check: the symlink and own-path checks of one
   * argument ask for the same path in turn. Forgotten at the start of every check.
   */
  #realPathOf(path: string): string | undefined {
    if (this.#resolved?.path !== path) {
      this.#resolved = { path, real: realPathOfExisting(path) };
    }
    return this.#resolved.real;
  }

  /**
   * Why `path`, shown as `shown`, may not be named: it is one of the agent's own paths or lies in
   * one, or, when `holder` names a program that reads or writes everything a directory holds
   * (tar), it holds one. Compared by segment, as written and once the symbolic links of its
   * existing part are resolved, in one pass over the own paths each; `undefined` when none.
   */
  #ownPathReason(shown: string, path: string, holder?: string): string | undefined {
    if (this.#protected.length === 0) return undefined;
    const related = (named: string) => (own: string) =>
      isUnderPrefix(named, own) || (holder !== undefined && isUnderPrefix(own, named));
    const reason = (named: string, own: string | undefined) => {
      if (own === undefined) return undefined;
      this.#programFiles ??= new Set(this.#withReal(this.#paths));
      const program = this.#programFiles.has(own);
      if (holder === undefined || isUnderPrefix(named, own)) {
        return program ? programPathReason(shown, own) : ownPathReason(shown, own);
      }
      return program
        ? `${shown} holds the allowed program ${own}, and ${holder} may not be given a directory ` +
          `that holds one: it reads or writes everything in it, and later commands run ${own}`
        : holdsOwnPathReason(shown, own, holder);
    };
    const lexical = this.#protected.find(related(path));
    if (lexical) return reason(path, lexical);
    const resolved = this.#realPathOf(path);
    if (resolved === undefined) return undefined;
    this.#withRealProtected ??= this.#withReal(this.#protected);
    return reason(resolved, this.#withRealProtected.find(related(resolved))) ??
      this.#hardLinkReason(shown, resolved);
  }

  /**
   * Why `path` may not be named when it is another link to one of the own paths that are files,
   * or to a file in one of them (a hard link under a prefix to the agent's `config.json`, which
   * any local user may make where the kernel does not protect hard links, or to a report in its
   * state directory, which a command of a non-root agent may make with tar, its user being the
   * agent's): the same file under another name. A directory that holds such a link is not looked
   * into.
   */
  #hardLinkReason(shown: string, path: string): string | undefined {
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(path);
    } catch {
      return undefined;
    }
    if (!info.isFile || info.ino === null || (info.nlink ?? 1) < 2) return undefined;
    this.#ownInodes ??= new Map();
    let inodes = this.#ownInodes.get(info.dev);
    if (inodes === undefined) {
      inodes = ownFileInodes(this.#protected, info.dev);
      this.#ownInodes.set(info.dev, inodes);
    }
    const own = inodes.get(info.ino);
    if (own === undefined) return undefined;
    this.#programFiles ??= new Set(this.#withReal(this.#paths));
    const what = this.#programFiles.has(own)
      ? `the allowed program ${own}, which later commands run`
      : `the agent's own ${own} (its state or settings)`;
    return `${shown} is a hard link to ${what}, and commands may not touch it`;
  }

  /**
   * Resolves the deepest existing ancestor of `path` (written under a prefix) and tells whether
   * the result lies outside every prefix, and outside where the prefixes it was written under
   * lead themselves (a prefix that is a symlink, `/data` to `/mnt/data`). Where another prefix
   * leads counts for paths under that one alone: a prefix made a symlink to `/` (one that did not
   * exist, in a directory commands or other users may write) otherwise let a symlink under any
   * prefix lead anywhere. Without read permission nothing can be resolved and the lexical check
   * stands.
   */
  #escapesThroughSymlink(path: string): boolean {
    const resolved = this.#realPathOf(path);
    if (resolved === undefined || resolved === path) return false;
    const real = this.#realPrefixes ??= this.#prefixes.map((prefix) =>
      realPathOfExisting(prefix) ?? prefix
    );
    return !this.#prefixes.some((prefix, i) =>
      isUnderPrefix(resolved, prefix) ||
      (isUnderPrefix(path, prefix) && isUnderPrefix(resolved, real[i]))
    );
  }
}

/**
 * The regular files of device `dev` among `paths` and in the directories among them (all the way
 * down, symbolic links not followed), by inode, each with the path it was found at. A directory of
 * another device is not entered: no hard link crosses devices (a mount of `dev` inside it is not
 * looked for). What cannot be read is left out.
 */
function ownFileInodes(paths: readonly string[], dev: number): Map<number, string> {
  const inodes = new Map<number, string>();
  const visit = (path: string, info: Deno.FileInfo) => {
    if (info.dev !== dev || info.ino === null) return;
    if (info.isFile) {
      if (!inodes.has(info.ino)) inodes.set(info.ino, path);
      return;
    }
    if (!info.isDirectory) return;
    try {
      for (const entry of Deno.readDirSync(path)) {
        if (!entry.isFile && !entry.isDirectory) continue;
        const inside = `${path}/${entry.name}`;
        visit(inside, Deno.lstatSync(inside));
      }
    } catch {
      // Unreadable, or changed while it was read: what was seen is kept.
    }
  };
  for (const path of paths) {
    try {
      visit(path, Deno.statSync(path));
    } catch {
      // Not there (yet), or not readable.
    }
  }
  return inodes;
}

function ownPathReason(shown: string, own: string): string {
  return `${shown} is the agent's own ${own} or lies in it (its state or settings), which ` +
    `commands may not touch`;
}

function programPathReason(shown: string, program: string): string {
  return `${shown} is the allowed program ${program}, which commands may not touch: later ` +
    `commands run it`;
}

function holdsOwnPathReason(shown: string, own: string, program: string): string {
  return `${shown} holds the agent's own ${own} (its state or settings), and ${program} may not ` +
    `be given a directory that holds them: it reads or writes everything in it`;
}

function sameFile(a: string, b: string): boolean {
  try {
    return Deno.realPathSync(a) === Deno.realPathSync(b);
  } catch {
    return false;
  }
}

/**
 * The candidate paths an argument names: itself, an option's `=value` or an operand's
 * (`dd if=/path`), a short option's path (`-f/path`, `-d@/path`), and in each of them a file read
 * by `@/path` (as curl takes `-d @/path` and `-F name=@/path`, bsdtar `@/archive`) or by `</path`
 * (curl's `-F 'name=</path'`), the files of curl's lists (see {@link readFiles}), the file of
 * curl's `name@/path` (`--data-urlencode`), for a program that takes settings (`settings`:
 * wget's `-e 'post_file = /path'`) the value of a setting after any `=` without the spaces around
 * it, or a path named by a `file:` URL (`file:///path`, also percent-decoded as the program
 * decodes it). An absolute argument is one path, `=` or not.
 */
function pathCandidates(arg: string, settings: boolean): string[] {
  const candidates = [arg];
  if (arg.startsWith("/")) return candidates;
  const eq = arg.indexOf("=");
  if (eq >= 0) candidates.push(arg.slice(eq + 1));
  // wget's `-e 'post_file = /path'` takes the value of its setting without the spaces around it,
  // and so does `--execute=post_file=/path`, an option whose value is such a setting.
  const second = settings && eq >= 0 && arg.startsWith("-") ? arg.indexOf("=", eq + 1) : -1;
  for (const at of [eq, second]) {
    // Spaced so only in a setting: elsewhere (grep 'url = /api', curl -d 'a = /b') it is text.
    const value = at >= 0 ? arg.slice(at + 1) : "";
    const shown = settings ? value.trim() : value;
    if (shown.startsWith("/")) candidates.push(shown);
  }
  // curl's `--data-urlencode name@/path` (and `--variable`): an `@` before any `=`.
  const at = arg.indexOf("@");
  if (at > 0 && (eq < 0 || at < eq) && !arg.startsWith("-")) candidates.push(arg.slice(at));
  const attached = /^-[A-Za-z0-9]+@?(\/.*)$/.exec(arg);
  if (attached) candidates.push(attached[1]);
  for (const candidate of [...candidates]) {
    // `<` reads a file only after a name (`-F 'name=</path'`): data that begins with it is XML.
    if (candidate.startsWith("@") || (candidate.startsWith("<") && candidate !== arg)) {
      candidates.push(...readFiles(candidate.slice(1)).filter((file) => file.startsWith("/")));
    }
    const url = /^file:(?:\/\/[^/]*)?(\/.*)$/i.exec(candidate);
    if (url) candidates.push(url[1], percentDecoded(url[1]));
  }
  return candidates;
}

/**
 * The files named after an `@` or a `<` that reads them: the rest itself, and each name in curl's
 * lists (`-F 'f=@/a,/b'` sends both), quoted (`@"/path"`) or followed by parameters
 * (`@/path;type=text/plain`), `-F 'f=</path'` sending the file's text. Cut at every `,`, `;` and
 * `"`: at worst a name too many is checked.
 */
function readFiles(rest: string): string[] {
  return [rest, ...rest.split(/[,;"]/)].filter((file) => file !== "");
}

/** A URL's path as a program decodes it (`%2e%2e` is `..`); as it is when it cannot be decoded. */
function percentDecoded(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

/** The longest file name (one path segment) Linux accepts, in bytes. */
const NAME_MAX = 255;

/**
 * The relative paths an option may be given attached to it: the value of `--opt=value` or of an
 * operand `name=value` (`dd if=name`), and for a short option bundle every rest after one of its
 * letters (`-fname` is `-f name` to date and tar, `-la` takes no value; which letters take one
 * depends on the program, so each rest counts), and in each the file of `@name` (`-d@name`,
 * `f=@name`, `@name`); for a program that takes settings (`settings`: wget's `-e 'name = value'`),
 * an operand's value without the spaces around it. A rest whose first segment is longer than a
 * file name can be is left out: it names nothing.
 */
function attachedRelativeValues(arg: string, settings: boolean): string[] {
  const values: string[] = [];
  const keep = (value: string) => {
    if (value === "" || value.startsWith("/")) return;
    // A file read by `@name` (curl's `-d @name`, `-F f=@name`, bsdtar's `@archive`) or by
    // `<name` (curl's `-F 'f=<name'`), and the names of curl's lists (`@a,b`, `@"a";type=x`).
    if (value.startsWith("@") || value.startsWith("<")) {
      for (const file of readFiles(value.slice(1))) if (file !== value) keep(file);
    }
    if (value.split("/", 1)[0].length > NAME_MAX) return;
    values.push(value);
  };
  if (arg.startsWith("--")) {
    const eq = arg.indexOf("=");
    if (eq > 2) keep(arg.slice(eq + 1));
  } else if (!arg.startsWith("-")) {
    const eq = arg.indexOf("=");
    if (eq > 0 && !arg.startsWith("/")) {
      keep(settings ? arg.slice(eq + 1).trim() : arg.slice(eq + 1));
    }
    if (arg.startsWith("@")) keep(arg.slice(1));
    // curl's `--data-urlencode name@file`: an `@` before any `=`.
    const at = arg.indexOf("@");
    if (at > 0 && (eq < 0 || at < eq) && !arg.startsWith("/")) keep(arg.slice(at));
  } else {
    // The letters hold no "/", so a rest starting more than NAME_MAX letters before their end
    // has a first segment too long; those are not even cut out.
    const end = /^-([A-Za-z0-9]*)/.exec(arg)![1].length + 1;
    for (let k = Math.max(2, end - NAME_MAX); k <= end && k < arg.length; k++) keep(arg.slice(k));
  }
  return values;
}

/** An absolute path with `.` and `..` segments resolved by name, as the kernel would without symlinks. */
function lexicalPath(path: string): string {
  const segments: string[] = [];
  for (const segment of path.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") segments.pop();
    else segments.push(segment);
  }
  return "/" + segments.join("/");
}

/** The names in a directory, listed on first call only; `undefined` when it cannot be listed. */
function namesOnce(dir: string): () => ReadonlySet<string> | undefined {
  let names: ReadonlySet<string> | undefined | null = null;
  return () => {
    if (names === null) {
      try {
        names = new Set(Array.from(Deno.readDirSync(dir), (entry) => entry.name));
      } catch {
        names = undefined;
      }
    }
    return names;
  };
}

/** Whether a directory entry exists (a dangling symlink counts); `false` when unreadable. */
function entryExists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** How many symbolic links {@link realPathOfExisting} follows, as the kernel does (ELOOP). */
const MAX_SYMLINKS = 40;

/**
 * The real path of `path`: its deepest existing part with the symbolic links resolved, and the
 * rest as written; `undefined` when it cannot be read. A dangling symbolic link on the way is
 * followed to its target too: a program that creates the path (`tar cf link`) creates the target.
 */
function realPathOfExisting(path: string, links = 0): string | undefined {
  const rest: string[] = [];
  let current = path;
  for (;;) {
    try {
      // Not asked for: a read that is not granted would prompt on a terminal, at every command.
      if (!isGranted({ name: "read", path: current })) throw new Deno.errors.NotCapable();
      const real = Deno.realPathSync(current);
      return normalizePath([real, ...rest].join("/"));
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable) return undefined;
      if (current === "/" || current === "") return undefined;
      const cut = current.lastIndexOf("/");
      const parent = cut <= 0 ? "/" : current.slice(0, cut);
      const target = danglingTarget(current);
      if (target !== undefined) {
        if (links >= MAX_SYMLINKS) return undefined;
        // Relative to the link's directory; ".." in it is resolved by realPathSync, on the disk.
        const followed = target.startsWith("/") ? target : `${parent}/${target}`;
        return realPathOfExisting([followed, ...rest].join("/"), links + 1);
      }
      rest.unshift(current.slice(cut + 1));
      current = parent;
    }
  }
}

/** The target of a symbolic link, or `undefined` when `path` is none (or cannot be read). */
function danglingTarget(path: string): string | undefined {
  try {
    return Deno.lstatSync(path).isSymlink ? Deno.readLinkSync(path) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Finds a refused option among `args`. `--` does not end the search: the option before it may
 * take it as its value (`tar --exclude -- --to-command=...` runs the command), so every argument
 * that reads as a refused option is refused, also after `--`, where it may name a file.
 */
function checkOptions(program: string, args: string[], rules: OptionRules): string | undefined {
  let afterDashes = false;
  const refuse = (option: string, why: string) =>
    `option "${option}" of ${program} ${why} and is not allowed` +
    (afterDashes ? ` (also after "--", which the option before it may take as its value)` : "");
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      afterDashes = true;
      continue;
    }
    if (arg.startsWith("--")) {
      const name = arg.split("=", 1)[0];
      if (name.length <= 2 || rules.harmless?.has(name) || Object.hasOwn(rules.long, name)) {
        if (Object.hasOwn(rules.long, name)) return refuse(name, rules.long[name]);
        continue;
      }
      // GNU getopt accepts any unambiguous abbreviation, so a prefix counts too.
      const refused = Object.keys(rules.long).find((option) => option.startsWith(name));
      if (refused) return refuse(name, rules.long[refused]);
    } else if (arg.startsWith("-") || (i === 0 && rules.oldStyleBundle)) {
      // Short options may be bundled (`-chf`), and tar reads a first argument without a dash
      // as bundled options too (`tar chf ...`); refuse any bundle holding a refused letter.
      const letters = /^-?([A-Za-z0-9]*)/.exec(arg)![1];
      for (const letter of letters) {
        if (Object.hasOwn(rules.short, letter)) return refuse(`-${letter}`, rules.short[letter]);
      }
    }
  }
  return undefined;
}

/** Where a bare program name was found on `PATH`, or why it was not. */
export type Resolution =
  | { ok: true; path: string }
  | { ok: false; kind: "not_found" | "not_executable"; reason: string };

function statIfExists(path: string): Deno.FileInfo | undefined | "unknown" {
  // Not asked for: a read that is not granted would prompt on a terminal, at every command.
  if (!isGranted({ name: "read", path })) return "unknown";
  try {
    return Deno.statSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) return "unknown";
    return undefined;
  }
}

function isExecutable(info: Deno.FileInfo): boolean {
  return info.mode === null || (info.mode & 0o111) !== 0;
}

/**
 * Finds the file a program reference runs: a bare name is looked up in the absolute directories
 * of `searchPath` (relative entries such as `.` are skipped), the first executable regular file
 * wins; an absolute path must be an executable regular file. Without read permission the name or
 * path is returned unchecked and spawning reports any problem.
 *
 * @param program The program from {@link checkPolicy}.
 * @param searchPath A `PATH`-style list of directories.
 * @returns The absolute path, or `not_found` / `not_executable` with a reason.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveProgram } from "./policy.ts";
 *
 * const found = resolveProgram({ kind: "name", name: "no-such-program" }, "/usr/bin:/bin");
 * assert.equal(found.ok, false);
 * ```
 */
export function resolveProgram(program: ProgramRef, searchPath: string): Resolution {
  if (program.kind === "path") {
    const info = statIfExists(program.path);
    if (info === "unknown") return { ok: true, path: program.path };
    if (!info) {
      return { ok: false, kind: "not_found", reason: `program "${program.path}" does not exist` };
    }
    if (!info.isFile) {
      return {
        ok: false,
        kind: "not_executable",
        reason: `program "${program.path}" is not a regular file`,
      };
    }
    if (!isExecutable(info)) {
      return {
        ok: false,
        kind: "not_executable",
        reason: `program "${program.path}" is not executable (no execute permission)`,
      };
    }
    return { ok: true, path: program.path };
  }
  let notExecutable: string | undefined;
  const dirs = searchPath.split(":").filter((dir) => dir.startsWith("/"));
  for (const dir of dirs) {
    const candidate = normalizePath(`${dir}/${program.name}`);
    const info = statIfExists(candidate);
    if (info === "unknown") return { ok: true, path: program.name };
    if (!info || !info.isFile) continue;
    if (isExecutable(info)) return { ok: true, path: candidate };
    notExecutable ??= candidate;
  }
  if (notExecutable) {
    return {
      ok: false,
      kind: "not_executable",
      reason: `program "${program.name}" was found at ${notExecutable} but is not executable`,
    };
  }
  return {
    ok: false,
    kind: "not_found",
    reason: `program "${program.name}" was not found on PATH (${dirs.join(":") || "empty"})`,
  };
}
