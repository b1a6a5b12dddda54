/**
 * Turns a command line (a delivered command's `name`) into an argv without a shell.
 *
 * Splitting follows shell-like quoting (`shell-quote`), but anything a shell would interpret
 * beyond quoting is refused: operators, redirections, globs, substitutions, variables, comments,
 * backticks, newlines and leading `VAR=value` assignments; so is whatever `shell-quote` would split
 * differently from a shell (Unicode whitespace outside quotes). Nothing is expanded, ever: a `~`
 * or braces (`{a,b}`), which a shell would expand, reach the program as written.
 *
 * @module
 */
import { parse, type ParseEntry } from "shell-quote";

/** The longest command line accepted, in characters (docs/protocol.md §2: a `name` of 1–4096). */
export const MAX_COMMAND_LINE_LENGTH = 4096;
/** The most arguments a command may have, not counting the program itself. */
export const MAX_ARGS = 16;
/** The longest single argument (or program name), in characters. */
export const MAX_ARG_LENGTH = 4096;

/**
 * Beyond this many characters a command line is refused before it is split at all, so that a
 * hostile line cannot cost time. It leaves room for the per-argument limits to be reported.
 */
const HARD_LIMIT = (MAX_ARGS + 1) * (MAX_ARG_LENGTH + 3);

/** The outcome of checking a command: accepted with a value, or refused with a reason. */
export type Checked<T> = { ok: true; value: T } | { ok: false; reason: string };

const REDIRECTIONS = new Set([">", ">>", "<", ">&", "<&", "<<<", "<<", ">|", "&>", "&>>"]);
const PROCESS_SUBSTITUTIONS = new Set(["<(", ">("]);
const ENV_ASSIGNMENT = /^[A-Za-z_][A-Za-z0-9_]*=/;

function reject<T>(reason: string): Checked<T> {
  return { ok: false, reason };
}

function describeChar(char: string): string {
  return `U+${char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}`;
}

/**
 * Whitespace that `shell-quote` splits on outside quotes (JavaScript's `\s`) and a shell does not:
 * everything but space and tab (newlines and the other control characters are refused anyway).
 */
const UNICODE_SPACE = /[^\S \t]/;

/** Looks at the raw text for what must never appear, quoted or not. */
function scanRaw(line: string): string | undefined {
  if (!line.isWellFormed()) {
    const lone = [...line].find((char) => /^[\uD800-\uDFFF]$/.test(char))!;
    return `lone surrogate ${describeChar(lone)} is not allowed (the command line is not ` +
      "valid Unicode)";
  }
  for (let i = 0; i < line.length; i++) {
    const char = line[i];
    if (char === "\n" || char === "\r") return "newline is not allowed";
    if (char === "`") return "backtick is not allowed";
    if (char === "$") {
      const next = line[i + 1];
      if (next === "(") return `command substitution "$(" is not allowed`;
      if (next === "{") return `variable expansion "\${" is not allowed`;
      return `variable expansion "$" is not allowed`;
    }
    const code = char.charCodeAt(0);
    if (code < 0x20 && char !== "\t" || code === 0x7f) {
      return `control character ${describeChar(char)} is not allowed`;
    }
  }
  return undefined;
}

/**
 * Follows quoting the way a POSIX shell does, to find unterminated quotes, a trailing backslash
 * and unquoted glob characters (`shell-quote` accepts the first two silently and does not treat
 * `[` as a glob), and the unquoted `#` inside a word, which a shell passes as it is and
 * `shell-quote` takes for a comment (`a#b` became `a` and a comment).
 *
 * @returns Why the line is refused, or the indexes of the `#` inside words.
 */
function scanQuoting(line: string): string | number[] {
  let quote: "'" | '"' | undefined;
  let inWord = false;
  const hashes: number[] = [];
  for (let i = 0; i < line.length; i++) {
    const char = line[i];
    if (quote === "'") {
      if (char === "'") quote = undefined;
    } else if (quote === '"') {
      if (char === "\\") i++;
      else if (char === '"') quote = undefined;
    } else if (char === "\\") {
      if (i === line.length - 1) return "trailing backslash is not allowed";
      i++;
      if (UNICODE_SPACE.test(line[i])) return unquotedSpace(line[i]);
    } else if (char === "'" || char === '"') {
      quote = char;
    } else if (char === "*" || char === "?" || char === "[") {
      return `glob "${char}" is not allowed`;
    } else if (UNICODE_SPACE.test(char)) {
      return unquotedSpace(char);
    } else if (char === " " || char === "\t") {
      inWord = false;
      continue;
    } else if (char === "#" && inWord) {
      // A comment begins only where a word does (operators, which end one, are refused anyway).
      hashes.push(i);
    }
    inWord = true;
  }
  if (quote) return `unterminated quote ${quote} is not allowed`;
  return hashes;
}

/** `shell-quote` would split there (also after a backslash), where a shell keeps the character. */
function unquotedSpace(char: string): string {
  return `whitespace ${describeChar(char)} outside quotes is not allowed (a shell would not ` +
    "split there; quote it)";
}

function describeOperator(op: string): string {
  if (REDIRECTIONS.has(op)) return `redirection "${op}" is not allowed`;
  if (PROCESS_SUBSTITUTIONS.has(op)) return `process substitution "${op}" is not allowed`;
  return `shell operator "${op}" is not allowed`;
}

/**
 * Splits a command line into an argv with shell-like quoting, refusing everything a shell would
 * interpret beyond quoting.
 *
 * Refused, with a reason that names what was found: shell operators (`; | & && || ( )`),
 * redirections (`> >> < 2>&1`), process substitution, unquoted globs (`* ? [`), `$` in any
 * form (variables, `$(…)`), backticks, newlines and other control characters, whitespace other
 * than space and tab outside quotes (`shell-quote` splits on a no-break space, a shell does not),
 * a lone UTF-16 surrogate (the program would get U+FFFD instead), comments (a word that begins
 * with `#`; a `#` inside a word, `a#b`, is passed as written, as a shell passes it),
 * unterminated quotes, a trailing backslash, a leading `VAR=value`, more than {@link MAX_ARGS}
 * arguments, an argument or program name longer than {@link MAX_ARG_LENGTH} characters, and a
 * line longer than {@link MAX_COMMAND_LINE_LENGTH} characters. `$` and backticks are refused even
 * inside single quotes, where a shell would keep them literal: the line is never given to a
 * shell, but the rule stays simple to state and to audit.
 *
 * @param line The command line, e.g. a delivered command's `name`.
 * @returns `{ ok: true, value: argv }` with `argv[0]` the program, or `{ ok: false, reason }`.
 *
 * @example Splitting and refusing
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCommandLine } from "./parse.ts";
 *
 * assert.deepEqual(parseCommandLine(`echo "hello world" 'a;b'`), {
 *   ok: true,
 *   value: ["echo", "hello world", "a;b"],
 * });
 * assert.deepEqual(parseCommandLine("echo hi; rm -rf /"), {
 *   ok: false,
 *   reason: `shell operator ";" is not allowed`,
 * });
 * ```
 */
export function parseCommandLine(line: string): Checked<string[]> {
  if (typeof line !== "string") return reject("command line is not a string");
  if (line.length > HARD_LIMIT) {
    return reject(
      `command line is ${line.length} characters long (at most ${MAX_COMMAND_LINE_LENGTH})`,
    );
  }
  if (line.trim() === "") return reject("command line is empty");

  const raw = scanRaw(line);
  if (raw) return reject(raw);
  const quoting = scanQuoting(line);
  if (typeof quoting === "string") return reject(quoting);
  // Escaped, a "#" inside a word reaches the program as written, as a shell passes it.
  const text = quoting.reduceRight((text, i) => `${text.slice(0, i)}\\${text.slice(i)}`, line);

  const variables: string[] = [];
  let entries: ParseEntry[];
  try {
    entries = parse(text, (key: string) => {
      variables.push(key);
      return "";
    });
  } catch (error) {
    return reject(`command line could not be split: ${(error as Error).message}`);
  }
  if (variables.length > 0) return reject(`variable expansion "$${variables[0]}" is not allowed`);

  const argv: string[] = [];
  for (const entry of entries) {
    if (typeof entry === "string") {
      argv.push(entry);
    } else if ("comment" in entry) {
      return reject(
        `comment "#" is not allowed (a word that begins with "#" is one; quote it to pass it)`,
      );
    } else if (entry.op === "glob") {
      // scanQuoting found no unquoted glob character, so this is an escaped one (`\*`), which
      // shell-quote still reports as a glob; its pattern is the literal word.
      argv.push(entry.pattern);
    } else {
      return reject(describeOperator(entry.op));
    }
  }

  if (argv.length === 0) return reject("command line is empty");
  if (ENV_ASSIGNMENT.test(argv[0])) {
    const shown = argv[0].length > 64 ? argv[0].slice(0, 64) + "…" : argv[0];
    return reject(`environment assignment "${shown}" is not allowed`);
  }
  if (argv[0] === "") return reject("program name is empty");
  if (argv[0].length > MAX_ARG_LENGTH) {
    return reject(
      `program name is ${argv[0].length} characters long (at most ${MAX_ARG_LENGTH})`,
    );
  }
  const args = argv.length - 1;
  if (args > MAX_ARGS) return reject(`too many arguments: ${args} (at most ${MAX_ARGS})`);
  for (let i = 1; i < argv.length; i++) {
    if (argv[i].length > MAX_ARG_LENGTH) {
      return reject(
        `argument ${i} is ${argv[i].length} characters long (at most ${MAX_ARG_LENGTH})`,
      );
    }
  }
  if (line.length > MAX_COMMAND_LINE_LENGTH) {
    return reject(
      `command line is ${line.length} characters long (at most ${MAX_COMMAND_LINE_LENGTH})`,
    );
  }
  return { ok: true, value: argv };
}
