/**
 * A strict reader of the Prometheus text exposition format 0.0.4, for tests: it throws at the
 * first line a scraper could misread, rather than reading it the lenient way
 * `parse-prometheus-text-format` does.
 *
 * It checks metric and label names, `HELP` and `TYPE` (at most once per family, before its
 * samples), label values' escapes (`\\`, `\"` and `\n` only), duplicate label names and series,
 * the samples of a family kept together, values as Prometheus writes them (`NaN`, `+Inf`, `-Inf`
 * or a number), counters neither negative nor `NaN`, and histograms' buckets: an `le` each,
 * cumulative, ending in `+Inf` equal to `_count`.
 *
 * @module
 */

/** One sample line, read. */
export interface StrictSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** One family: its type, help and samples. */
export interface StrictFamily {
  name: string;
  type: string;
  help: string | undefined;
  samples: StrictSample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

function readValue(text: string, where: string): number {
  if (text === "NaN") return NaN;
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (!NUMBER.test(text)) throw new Error(`${where}: value ${JSON.stringify(text)} is no float`);
  return Number(text);
}

/** Reads `{a="b",c="d"}` at the start of `text`; returns the labels and what follows. */
function readLabels(text: string, where: string): [Record<string, string>, string] {
  const labels: Record<string, string> = {};
  let i = 1;
  while (true) {
    if (text[i] === "}") return [labels, text.slice(i + 1)];
    const equals = text.indexOf("=", i);
    if (equals < 0) throw new Error(`${where}: label without =`);
    const name = text.slice(i, equals);
    if (!LABEL_NAME.test(name) || name.startsWith("__")) {
      throw new Error(`${where}: label name ${JSON.stringify(name)}`);
    }
    if (name in labels) throw new Error(`${where}: label ${name} twice`);
    if (text[equals + 1] !== '"') throw new Error(`${where}: label ${name} value not quoted`);
    let value = "";
    let j = equals + 2;
    for (;; j++) {
      const c = text[j];
      if (c === undefined) throw new Error(`${where}: label ${name} value not closed`);
      if (c === '"') break;
      if (c === "\n") throw new Error(`${where}: raw newline in label ${name}`);
      if (c === "\\") {
        const next = text[++j];
        if (next === "\\") value += "\\";
        else if (next === '"') value += '"';
        else if (next === "n") value += "\n";
        else throw new Error(`${where}: escape \\${next} in label ${name}`);
      } else value += c;
    }
    labels[name] = value;
    i = j + 1;
    if (text[i] === ",") i++;
    else if (text[i] !== "}") throw new Error(`${where}: expected , or } after label ${name}`);
  }
}

/** The family a sample name belongs to, given the types declared so far. */
function familyOf(name: string, types: Map<string, string>): string {
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!name.endsWith(suffix)) continue;
    const base = name.slice(0, -suffix.length);
    const type = types.get(base);
    if (type === "histogram" || (type === "summary" && suffix !== "_bucket")) return base;
  }
  return name;
}

/**
 * Reads an exposition strictly.
 *
 * @param text The body of a scrape.
 * @returns Its families, by name.
 * @throws {Error} At the first line that breaks a rule, naming it.
 */
export function parseStrict(text: string): Map<string, StrictFamily> {
  if (text !== "" && !text.endsWith("\n")) throw new Error("the exposition ends without a newline");
  const families = new Map<string, StrictFamily>();
  const types = new Map<string, string>();
  const series = new Set<string>();
  const closed = new Set<string>();
  let current: string | undefined;
  const family = (name: string) => {
    let found = families.get(name);
    if (!found) {
      found = { name, type: "untyped", help: undefined, samples: [] };
      families.set(name, found);
    }
    return found;
  };
  const lines = text.split("\n");
  lines.pop();
  lines.forEach((line, index) => {
    const where = `line ${index + 1} ${JSON.stringify(line.slice(0, 120))}`;
    if (line.trim() === "") return;
    if (line.includes("\r")) throw new Error(`${where}: carriage return`);
    if (line.startsWith("#")) {
      const match = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!match) return; // a comment
      const [, keyword, name, rest = ""] = match;
      if (!METRIC_NAME.test(name)) throw new Error(`${where}: metric name`);
      const f = family(name);
      if (f.samples.length > 0) throw new Error(`${where}: ${keyword} after samples`);
      if (keyword === "HELP") {
        if (f.help !== undefined) throw new Error(`${where}: HELP twice`);
        if (/\\[^\\n]|\\$/.test(rest.replace(/\\\\/g, ""))) throw new Error(`${where}: escape`);
        f.help = rest.replace(/\\(\\|n)/g, (_, c) => c === "n" ? "\n" : "\\");
      } else {
        if (types.has(name)) throw new Error(`${where}: TYPE twice`);
        if (!TYPES.has(rest)) throw new Error(`${where}: type ${JSON.stringify(rest)}`);
        types.set(name, rest);
        f.type = rest;
      }
      return;
    }
    const nameMatch = /^[^{ ]+/.exec(line);
    const name = nameMatch?.[0] ?? "";
    if (!METRIC_NAME.test(name)) throw new Error(`${where}: metric name`);
    let rest = line.slice(name.length);
    let labels: Record<string, string> = {};
    if (rest.startsWith("{")) [labels, rest] = readLabels(rest, where);
    const fields = rest.trim().split(/ +/);
    if (!rest.startsWith(" ") || fields.length < 1 || fields.length > 2) {
      throw new Error(`${where}: expected a value (and a timestamp)`);
    }
    const value = readValue(fields[0], where);
    const base = familyOf(name, types);
    if (base !== current) {
      if (closed.has(base)) throw new Error(`${where}: samples of ${base} not together`);
      if (current !== undefined) closed.add(current);
      current = base;
    }
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (series.has(key)) throw new Error(`${where}: series twice`);
    series.add(key);
    const f = family(base);
    if (f.type === "counter" && (Number.isNaN(value) || value < 0)) {
      throw new Error(`${where}: counter ${value}`);
    }
    f.samples.push({ name, labels, value });
  });
  for (const f of families.values()) if (f.type === "histogram") checkHistogram(f);
  return families;
}

function checkHistogram(f: StrictFamily): void {
  const groups = new Map<string, { buckets: Array<[number, number]>; count?: number }>();
  for (const sample of f.samples) {
    const { le, ...rest } = sample.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    let group = groups.get(key);
    if (!group) groups.set(key, group = { buckets: [] });
    if (sample.name === `${f.name}_bucket`) {
      if (le === undefined) throw new Error(`${f.name}: a bucket without le`);
      group.buckets.push([readValue(le, `${f.name} le`), sample.value]);
    } else if (sample.name === `${f.name}_count`) group.count = sample.value;
    else if (sample.name !== `${f.name}_sum`) throw new Error(`${f.name}: sample ${sample.name}`);
    if (sample.name !== `${f.name}_sum` && Number.isNaN(sample.value)) {
      throw new Error(`${f.name}: NaN in ${sample.name}`);
    }
  }
  for (const [key, group] of groups) {
    const where = `${f.name}${key}`;
    if (group.buckets.length === 0) throw new Error(`${where}: no buckets`);
    for (let i = 1; i < group.buckets.length; i++) {
      const [le, n] = group.buckets[i];
      const [lePrev, nPrev] = group.buckets[i - 1];
      if (!(le > lePrev)) throw new Error(`${where}: le not increasing`);
      if (n < nPrev) throw new Error(`${where}: buckets not cumulative`);
    }
    const last = group.buckets.at(-1)!;
    if (last[0] !== Infinity) throw new Error(`${where}: no +Inf bucket`);
    if (group.count === undefined || group.count !== last[1]) {
      throw new Error(`${where}: _count ${group.count} is not the +Inf bucket ${last[1]}`);
    }
  }
}
