/**
 * curl's URL globbing, as far as the path rules need it: curl expands `{a,b}` sets and `[1-3]` or
 * `[a-c]` ranges in its URLs (`file:///tmp/{x,..}/etc/passwd` is `file:///tmp/../etc/passwd`,
 * `{file,x}:///etc/passwd` is `file:///etc/passwd`), so the rules check each URL it makes.
 *
 * @module
 */

/** The most URLs one argument may expand to and still be checked, one by one. */
export const MAX_CURL_GLOB_EXPANSIONS = 256;

/**
 * What curl's globbing makes of one argument: the texts it expands to (the argument itself when
 * it holds no glob) and how many globs it holds (which `#1`, `#2`, ... of `-o` name), or
 * `undefined` when it makes more than {@link MAX_CURL_GLOB_EXPANSIONS} or
 * holds what curl's versions may read differently (a nested or unclosed set, a malformed range):
 * the caller then cannot check it.
 *
 * Read as curl reads a URL: `\` before `{ [ } ]` makes it a literal; `[]` and an IPv6 address
 * (`[::1]`) are literal; a set's elements are separated by `,`, `\` in it makes any character a
 * literal, and a name may open it (`{<name>a,b}`, curl 8.x; read both ways); a range is
 * `[a-z]`, `[0-9]` or `[001-100]`, with an optional `:step`.
 *
 * @param arg An argument of curl.
 * @returns The expansions and the number of globs, or `undefined`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { curlGlobExpansions } from "./curl_glob.ts";
 *
 * assert.deepEqual(curlGlobExpansions("/tmp/{a,..}/x"), {
 *   urls: ["/tmp/a/x", "/tmp/../x"],
 *   globs: 1,
 * });
 * assert.deepEqual(curlGlobExpansions("http://[::1]:80/"), { urls: ["http://[::1]:80/"], globs: 0 });
 * assert.equal(curlGlobExpansions("{a,{b}}"), undefined);
 * ```
 */
export function curlGlobExpansions(arg: string): { urls: string[]; globs: number } | undefined {
  const parts: string[][] = [];
  let literal = "";
  let count = 1;
  const add = (alternatives: string[]) => {
    parts.push([literal]);
    literal = "";
    parts.push(alternatives);
    count *= alternatives.length;
  };
  for (let i = 0; i < arg.length; i++) {
    const char = arg[i];
    if (char === "\\" && "{[}]".includes(arg[i + 1] ?? "")) {
      literal += arg[++i];
    } else if (char === "}" || char === "]") {
      return undefined;
    } else if (char === "[") {
      const end = arg.indexOf("]", i);
      if (end < 0) return undefined;
      const inside = arg.slice(i + 1, end);
      if (inside === "" || IPV6.test(inside)) {
        literal += arg.slice(i, end + 1);
      } else {
        const range = rangeValues(inside);
        if (range === undefined) return undefined;
        add(range);
      }
      i = end;
    } else if (char === "{") {
      const set = setValues(arg, i + 1);
      if (set === undefined) return undefined;
      add(set.values);
      i = set.end;
    } else {
      literal += char;
    }
    if (count > MAX_CURL_GLOB_EXPANSIONS) return undefined;
  }
  parts.push([literal]);
  let urls = [""];
  for (const alternatives of parts) {
    urls = urls.flatMap((head) => alternatives.map((tail) => head + tail));
  }
  return { urls, globs: (parts.length - 1) / 2 };
}

/** An IPv6 address in brackets as curl leaves it alone: hex digits, dots and two colons or more. */
const IPV6 = /^(?=(?:[^:]*:){2})[0-9A-Fa-f:.]+(?:%[0-9A-Za-z._~-]+)?$/;

/**
 * The elements of a set whose text begins at `start` (behind `{`), and the index of its `}`. A set
 * that begins with a name (`{<n>a,b}`) gives its elements with the name (as curl before 8.x reads
 * it, `<n>a`) and without (as curl 8.x does, `a`).
 */
function setValues(arg: string, start: number): { values: string[]; end: number } | undefined {
  const set = elements(arg, start);
  const named = /^<[^>]{1,64}>/.exec(arg.slice(start));
  if (set === undefined || !named) return set;
  const unnamed = elements(arg, start + named[0].length);
  return unnamed && { values: [...set.values, ...unnamed.values], end: set.end };
}

/** The elements of a set as written from `i` to its `}`, and the index of the `}`. */
function elements(arg: string, i: number): { values: string[]; end: number } | undefined {
  const values: string[] = [];
  let element = "";
  for (; i < arg.length; i++) {
    const char = arg[i];
    if (char === "{" || char === "[" || char === "]") return undefined;
    if (char === "\\" && i + 1 < arg.length) {
      element += arg[++i];
    } else if (char === "," || char === "}") {
      values.push(element);
      element = "";
      if (char === "}") {
        return values.length === 1 && values[0] === "" ? undefined : { values, end: i };
      }
    } else {
      element += char;
    }
    if (values.length > MAX_CURL_GLOB_EXPANSIONS) return undefined;
  }
  return undefined;
}

/** The values of a range `a-z`, `0-9` or `01-10`, with an optional `:step`. */
function rangeValues(inside: string): string[] | undefined {
  const letters = /^([A-Za-z])-([A-Za-z])(?::(\d+))?$/.exec(inside);
  const digits = /^(\d+)-(\d+)(?::(\d+))?$/.exec(inside);
  const match = letters ?? digits;
  if (!match) return undefined;
  const step = match[3] === undefined ? 1 : Number(match[3]);
  const [min, max] = letters
    ? [match[1].charCodeAt(0), match[2].charCodeAt(0)]
    : [Number(match[1]), Number(match[2])];
  if (!(step >= 1) || min > max || (max - min) / step + 1 > MAX_CURL_GLOB_EXPANSIONS) {
    return undefined;
  }
  const width = !letters && match[1].startsWith("0") ? match[1].length : 0;
  const values: string[] = [];
  for (let value = min; value <= max; value += step) {
    values.push(letters ? String.fromCharCode(value) : String(value).padStart(width, "0"));
  }
  return values;
}
