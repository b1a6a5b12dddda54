/**
 * Every setting of the program: its variable name, flag, default, meaning and validation.
 * One table drives the flags, the environment, `.env`, `config.json`, the README and the checks.
 *
 * @module
 */
import { z } from "zod";
import {
  AGENT_ID_PATTERN,
  AGENT_ID_RULE,
  DEPLOYMENT_HASH_PATTERN,
  DEPLOYMENT_HASH_RULE,
} from "../protocol/schemas.ts";
import * as defaults from "../defaults.ts";
import { LOG_LEVELS } from "../log/levels.ts";
import { parseLabels } from "../protocol/runs.ts";
import { allowedPrefixProblem, allowedProgramProblem } from "../exec/policy.ts";
import { MAX_PIDS_LIMIT, parseMemorySize } from "../exec/cgroup.ts";
import {
  AGENT_SECRET_ENV_NAMES,
  codeEnvReason,
  envFromAssignments,
  extraEnvBytes,
  MAX_ENV_STRING_BYTES,
  MAX_EXTRA_ENV_BYTES,
  tooLongTogether,
} from "../exec/env.ts";

/** Which part of the program reads a setting. */
export type Role = "agent" | "server" | "operator" | "exec" | "log";

/**
 * The reason a schema gave beyond "must be ...", when it gave one (a custom issue marked
 * `params: { reason: true }`, such as "label a is given twice").
 *
 * @param error The schema's error.
 * @returns The reason, or `undefined`.
 */
export function reasonOf(error: z.ZodError): string | undefined {
  const issue = error.issues.find((issue) =>
    issue.code === "custom" && (issue.params as { reason?: boolean } | undefined)?.reason
  );
  return issue?.message;
}

/** Describes one setting. */
export interface SettingSpec {
  /** Variable name, e.g. `POLLING_TIMEOUT_SECS`. */
  readonly env: string;
  /** Meaning, one line for `--help` and the README. */
  readonly description: string;
  /** The value used when no source sets it, already in its parsed form. */
  readonly default?: unknown;
  /** What a valid value is, completing "must be ...". */
  readonly expected: string;
  /** Parses a raw value (string from flags/env/.env, any JSON from config.json). */
  readonly schema: z.ZodType;
  /** Roles that read it; its flag is offered on their commands. */
  readonly roles: readonly Role[];
  /** A secret: never logged, never printed. */
  readonly secret?: boolean;
  /**
   * What to do about a value refused, said after the error: for a secret, whose value (and so
   * what is wrong with it) is never shown, where a good one comes from.
   */
  readonly advice?: string;
  /**
   * How a refused value is shown in the error, when parts of it may be secrets (the values of
   * `COMMAND_ENV`, which commands are given their credentials in); by default it is quoted whole.
   */
  readonly shown?: (value: unknown) => string;
  /** The flag takes no value (`--daemon`). */
  readonly boolean?: boolean;
  /**
   * A comma-separated list: its flag is given once, with every item in it (given twice, the
   * last would replace the first without a word).
   */
  readonly list?: boolean;
  /** Placeholder shown in `--help`, e.g. `<secs>`. */
  readonly placeholder?: string;
  /**
   * A setting that, when set from any source, makes this one go unused: this one is then neither
   * checked nor read (`DATABASE_URL` when `DB` is set, which may be another program's).
   */
  readonly unusedWith?: string;
}

const fromString = (v: unknown) => (typeof v === "string" ? v.trim() : v);

const wholeNumber = (min: number, max: number) =>
  z.preprocess(
    (v) => {
      const s = fromString(v);
      return typeof s === "string" && /^\d+$/.test(s) ? Number(s) : s;
    },
    z.number().int().min(min).max(max),
  );

/** The most seconds a duration setting may be: a year. */
const MAX_SECS = 86_400 * 365;

/** A whole number of seconds from `min` up to a year. */
const secs = (min: number) => wholeNumber(min, MAX_SECS);

/**
 * A secret token: 16 to 1024 printable ASCII characters. A space, a control or a non-ASCII
 * character could never be sent as `Authorization: Bearer <token>` (a header value ends at the
 * first space), so such a token would be refused on every request.
 */
const token = () => z.preprocess(fromString, z.string().min(16).max(1024).regex(/^[\x21-\x7e]+$/));

const TOKEN_RULE = "a token of 16 to 1024 printable ASCII characters, without spaces";

const SECS_ABOVE_0 = `a whole number of seconds from 1 to ${MAX_SECS} (a year)`;
const SECS_FROM_0 = `a whole number of seconds from 0 to ${MAX_SECS} (a year)`;

/** What {@link bool} reads, in any case: an error saying only "true or false" would be half true. */
const BOOL_RULE = "true or false (or yes/no, on/off, 1/0)";

const bool = z.preprocess((v) => {
  // config.json's 1 and 0, as the rule says: "live_output": 0.
  if (v === 1 || v === 0) return v === 1;
  const s = fromString(v);
  if (typeof s !== "string") return s;
  const lower = s.toLowerCase();
  if (["1", "true", "yes", "on"].includes(lower)) return true;
  // Not "": `LIVE_OUTPUT=` turned live output off without a word, where an empty value of any
  // other setting is refused.
  if (["0", "false", "no", "off"].includes(lower)) return false;
  return s;
}, z.boolean());

const list = z.preprocess(
  (v) => {
    if (typeof v === "string") {
      return v.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
    }
    // config.json's items are trimmed as the environment's are: "/tmp " would match no path.
    return Array.isArray(v) ? v.map(fromString) : v;
  },
  z.array(z.string().min(1)),
);

/**
 * Holds each item of a list setting to a rule of the exec policy, naming the first item refused
 * and why (with how to separate items when it holds a space): the policy refused it only when the
 * agent built its executor, in words that named neither the setting nor where it came from.
 */
function itemsBy(
  problemOf: (item: string) => string | undefined,
  items: string,
): (list: string[], ctx: z.RefinementCtx) => void {
  return (list, ctx) => {
    for (const item of list) {
      // An empty item is refused by the list's own rule.
      const problem = item === "" ? undefined : problemOf(item);
      if (problem === undefined) continue;
      const spaced = /\s/.test(item) ? `; separate ${items} with commas` : "";
      ctx.addIssue({
        code: "custom",
        message: `${JSON.stringify(item)} ${problem}${spaced}`,
        params: { reason: true },
      });
      return;
    }
  };
}

/**
 * A list as {@link list} reads it, for a schema that holds its items to more: what is no list (a
 * JSON object or number in config.json) is passed on as it is, for that schema to refuse with the
 * setting's own words. (`list.parse` threw out of `safeParse`: a raw zod dump, exit 1.)
 */
const listItems = (v: unknown) => {
  const read = list.safeParse(v);
  return read.success ? read.data : v;
};

/** A string's length in UTF-8 bytes, as the kernel counts an environment string. */
const utf8Bytes = (text: string) => new TextEncoder().encode(text).length;

/** A `COMMAND_ENV` item: `NAME=value`, the name captured. */
const ASSIGNMENT = /^([A-Za-z_][A-Za-z0-9_]*)=/;

/**
 * A `COMMAND_ENV` value as its error shows it: each item's name, its value hidden, and of an item
 * that is not `NAME=value` only its length.
 */
function namesOnly(value: unknown): string {
  const items = Array.isArray(value)
    ? value
    : typeof value === "string"
    ? value.split(",").map((item) => item.trim()).filter((item) => item !== "")
    : undefined;
  if (items === undefined) {
    return `a JSON ${value === null ? "null" : typeof value}, not a list (values not shown)`;
  }
  const shown = items.map((item) => {
    if (typeof item !== "string") return `(a JSON ${item === null ? "null" : typeof item})`;
    const name = ASSIGNMENT.exec(item);
    return name
      ? `${name[1]}=…`
      : `(${item.length} ${item.length === 1 ? "character" : "characters"} without NAME=)`;
  });
  return `${JSON.stringify(shown.join(","))} (values not shown)`;
}

/**
 * `config.json`'s labels as the text `AGENT_LABELS` holds, to be held to the same rules: an object
 * (`{"role": "web"}`) or an array (`["role=web"]`) of strings. Anything else is passed on as it is,
 * for the schema to refuse.
 */
function labelsText(v: unknown): unknown {
  if (Array.isArray(v)) return v.every((item) => typeof item === "string") ? v.join(",") : v;
  if (v === null || typeof v !== "object") return v;
  const entries = Object.entries(v);
  if (!entries.every(([, value]) => typeof value === "string")) return v;
  // Joined, {"role": "web,zone=eu"} would read as two labels.
  const comma = entries.find(([key, value]) => `${key}${value}`.includes(","));
  if (comma) {
    throw new TypeError(
      `label ${JSON.stringify(comma[0])} holds a comma in its key or value; give each label as ` +
        "a key of its own",
    );
  }
  return entries.map(([key, value]) => `${key}=${value}`).join(",");
}

const url = z.preprocess(
  fromString,
  z.string().superRefine((s, ctx) => {
    try {
      const u = new URL(s);
      if ((u.protocol === "http:" || u.protocol === "https:") && u.port !== "0") return;
      if (u.protocol === "http:" || u.protocol === "https:") {
        // `PORT=0` has the dashboard pick a free port; nothing listens on port 0 itself.
        ctx.addIssue({
          code: "custom",
          message: "port 0 is no port anything listens on; give the port the server listens on " +
            '(a dashboard started with PORT=0 prints it: "listening on http://...")',
          params: { reason: true },
        });
        return;
      }
    } catch {
      // refused below
    }
    // `localhost:5000` parses as a URL of the scheme "localhost:"; `127.0.0.1:5000` not at all.
    const schemeless = !/^[a-z][a-z0-9+.-]*:\/\//i.test(s) && URL.canParse(`http://${s}`);
    // `http://::1:5000`: which colon starts the port cannot be told without the brackets.
    const ipv6 = /^(?:https?:\/\/)?[0-9a-f]*:[0-9a-f]*:[0-9a-f:.]*(?:[/?#]|$)/i.test(s);
    // `http://host:99999` is an http:// URL that does not parse: say why, not only "http://".
    const port = /^https?:\/\/(?:[^/?#@]*@)?(?:\[[^\]]*\]|[^/?#:]*):(\d+)(?:[/?#]|$)/i.exec(s)?.[1];
    const why = schemeless
      ? `it has no scheme; give it as "http://${s}" (or https://)`
      : ipv6
      ? 'an IPv6 address goes in brackets, with the port after them: "http://[::1]:5000"'
      : port !== undefined && Number(port) > 65535
      ? `its port ${port} is above 65535`
      : undefined;
    ctx.addIssue({ code: "custom", message: why ?? "", params: { reason: why !== undefined } });
  }),
);

/**
 * The dashboard's URL: as {@link url}, without a user name or password. The agent and the
 * operator commands send an `Authorization` header of their own, and `fetch` would join the URL's
 * as Basic credentials to it (`Basic …, Bearer …`): the dashboard would refuse every request.
 */
const dashboardUrl = url.superRefine((s, ctx) => {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return; // told by `url`
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") return; // told by `url`
  // The URL parser drops or escapes these without a word: a space in the path would be sent as
  // `%20` (every request answered 404), a control character dropped.
  // deno-lint-ignore no-control-regex -- the control characters are what it finds
  const odd = /[\s\x00-\x1f\x7f]/.exec(s);
  if (odd) {
    ctx.addIssue({
      code: "custom",
      message: odd[0] === " "
        ? "it holds a space, which no URL does; leave it out (or write it as %20 in a path)"
        : `it holds the control character ${JSON.stringify(odd[0])}; leave it out`,
      params: { reason: true },
    });
    return;
  }
  // The base URL's query and fragment are never sent: status puts its own path and query on it.
  const extra = u.search || u.hash || (/[?#]/.exec(s)?.[0]);
  if (extra) {
    ctx.addIssue({
      code: "custom",
      message:
        `its ${extra.startsWith("#") ? "fragment" : "query"} ${
          JSON.stringify(extra)
        } would never be sent (status adds its own path and query to the base URL); give the ` +
        `base URL without it: ${JSON.stringify(u.origin + u.pathname)}`,
      params: { reason: true },
    });
    return;
  }
  if (u.username || u.password) {
    ctx.addIssue({
      code: "custom",
      message: "a user name or password in it would be sent in the Authorization header the " +
        "token needs, and every request refused; leave them out",
      params: { reason: true },
    });
  }
  // A URL copied from a curl example (`.../api/v1/commands`): the API's paths are added to it, so
  // every request would go to `/api/v1/.../api/v1/...` and be answered 404 (for `status result`,
  // "no command"). A path before `/api` is a proxy's prefix and stays, and so does one that only
  // goes on past `/api/` (`/api/fleet/`: a proxy's prefix too).
  const api = /\/api(?:\/v1(?:\/|$)|\/?$)/.exec(u.pathname);
  if (api) {
    ctx.addIssue({
      code: "custom",
      message: `its path holds ${JSON.stringify(u.pathname.slice(api.index))}, which status ` +
        "adds to the dashboard's base URL itself; give the base URL: " +
        JSON.stringify(u.origin + u.pathname.slice(0, api.index)),
      params: { reason: true },
    });
  }
});

const listenAddress = z.preprocess(
  fromString,
  z.string().regex(/^(?:\[?[^\]\s]*\]?:)?\d{1,5}$/).refine((s) =>
    Number(s.split(":").pop()) <= 65535
  ).superRefine((s, ctx) => {
    // `http://127.0.0.1:9100` matched as the host "http://127.0.0.1", which does not resolve.
    if (!s.includes("://")) return;
    ctx.addIssue({
      code: "custom",
      message: 'it is a URL; give HOST:PORT ("127.0.0.1:9100") or PORT alone',
      params: { reason: true },
    });
  }),
);

const text = (max = 4096) => z.preprocess(fromString, z.string().min(1).max(max));

/**
 * The address the dashboard listens on: an IP address or a host name, an IPv6 one with or without
 * its brackets (`[::1]`, as in a URL, is read as `::1`). A URL or a port in it is refused, saying
 * what to give: it reached the listener as a host name that does not resolve (and in dev mode was
 * said not to be a loopback address).
 */
const bindAddress = text(255).superRefine((s, ctx) => {
  const refuse = (message: string) =>
    ctx.addIssue({ code: "custom", message, params: { reason: true } });
  if (/\s/.test(s)) return refuse("it holds a space; give one address");
  const url = /^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? URL.parse(s) : undefined;
  if (url !== undefined) {
    return refuse(
      `it is a URL; give only its address${
        url?.hostname ? ` (${JSON.stringify(url.hostname.replace(/^\[(.*)\]$/, "$1"))})` : ""
      }, and its port with PORT (--port)`,
    );
  }
  const port = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d*)$/.exec(s);
  if (port) {
    const address = port[1] ?? port[2];
    return refuse(
      address === ""
        ? "it is a port; give it with PORT (--port), and an address here (or none for 127.0.0.1)"
        : `it holds a port; give the address alone (${
          JSON.stringify(address)
        }) and the port with PORT (--port)`,
    );
  }
}).transform((s) => s.replace(/^\[([^\]]*)\]$/, "$1"));

/**
 * A path setting. A leading `~` is the shell's: from `.env`, `config.json`, a quoted flag or
 * `--state-dir=~/x` it reaches the program as it is, and `~/st` would be a directory named `~`
 * in the working directory, made without a word.
 */
const path = text().superRefine((s, ctx) => {
  if (s.startsWith("~")) {
    ctx.addIssue({ code: "custom", message: TILDE_NOT_EXPANDED, params: { reason: true } });
    return;
  }
  // `STATE_DIR=$HOME/status` in .env or config.json: a folder named "$HOME", made without a word.
  // (A postgres:// URL of DB is no path: its password may hold a $.)
  const variable = /\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*/.exec(s);
  if (variable && !/^postgres(?:ql)?:\/\//i.test(s)) {
    ctx.addIssue({
      code: "custom",
      message: `${variable[0]} is not expanded here (only a shell expands it, and not in .env, ` +
        'config.json or single quotes); give the path in full, e.g. "/home/you/..."',
      params: { reason: true },
    });
  }
});

/** Why a path that starts with `~` is refused, and what to give instead. */
export const TILDE_NOT_EXPANDED = "a leading ~ is not expanded here (only a shell expands it, " +
  'and not after = or in quotes); give the path in full, e.g. "/home/you/...", or "./~..." for ' +
  "a name that starts with ~";

const SPECS = {
  dashboardUrl: {
    env: "DASHBOARD_URL",
    description:
      "Base URL of the dashboard the agent and operator commands talk to (no user, password, query or fragment in it)",
    default: defaults.DEFAULT_DASHBOARD_URL,
    expected: "an http:// or https:// URL",
    schema: dashboardUrl,
    roles: ["agent", "operator"],
    placeholder: "<url>",
  },
  agentId: {
    env: "AGENT_ID",
    description: "This agent's id (1–128 chars of A-Za-z0-9._:-)",
    expected: AGENT_ID_RULE,
    schema: z.preprocess(fromString, z.string().regex(AGENT_ID_PATTERN)),
    roles: ["agent"],
    placeholder: "<id>",
  },
  agentToken: {
    env: "AGENT_TOKEN",
    description:
      "This agent's secret token; requests are signed with it (unset: dev mode); as a flag it shows in the process list (a warning says so)",
    expected: TOKEN_RULE,
    schema: token(),
    roles: ["agent"],
    secret: true,
    advice: 'give the token "status agents add <id>" printed for this agent (or a new one from ' +
      '"status agents rotate <id>")',
    placeholder: "<token>",
  },
  deploymentHash: {
    env: "DEPLOYMENT_HASH",
    description: "Deployment this agent serves; commands for another deployment are not delivered",
    default: defaults.DEFAULT_DEPLOYMENT_HASH,
    expected: DEPLOYMENT_HASH_RULE,
    schema: z.preprocess(fromString, z.string().regex(DEPLOYMENT_HASH_PATTERN)),
    roles: ["agent"],
    placeholder: "<hash>",
  },
  agentLabels: {
    env: "AGENT_LABELS",
    description:
      "Labels of this agent (key=value,key=value), sent in its heartbeat; fan-out runs target them",
    expected: "key=value pairs separated by commas (keys: 1–63 of A-Za-z0-9._/-)",
    schema: z.preprocess(
      (v, ctx) => {
        try {
          const s = labelsText(fromString(v));
          if (typeof s !== "string") return s;
          return parseLabels(s);
        } catch (error) {
          // The reason ("label a is given twice") follows the error's "must be ...".
          ctx.addIssue({
            code: "custom",
            message: (error as Error).message,
            params: { reason: true },
          });
          return z.NEVER;
        }
      },
      z.record(z.string(), z.string()),
    ),
    roles: ["agent"],
    list: true,
    placeholder: "<k=v,...>",
  },
  pollingTimeoutSecs: {
    env: "POLLING_TIMEOUT_SECS",
    description:
      "How long one long-poll waits on the dashboard (this dashboard holds one for at most 120 s)",
    default: defaults.DEFAULT_POLLING_TIMEOUT_SECS,
    expected: SECS_ABOVE_0,
    schema: secs(1),
    roles: ["agent"],
    placeholder: "<secs>",
  },
  pollingBackoffSecs: {
    env: "POLLING_BACKOFF_SECS",
    description:
      "Back-off after a network error or 5xx: the first delay is a random time below this, the bound doubling at each failure in a row",
    default: defaults.DEFAULT_POLLING_BACKOFF_SECS,
    expected: SECS_ABOVE_0,
    schema: secs(1),
    roles: ["agent"],
    placeholder: "<secs>",
  },
  pollingBackoffMaxSecs: {
    env: "POLLING_BACKOFF_MAX_SECS",
    description: "Largest back-off bound: no delay is longer",
    default: defaults.DEFAULT_POLLING_BACKOFF_MAX_SECS,
    expected: SECS_ABOVE_0,
    schema: secs(1),
    roles: ["agent"],
    placeholder: "<secs>",
  },
  commandTimeoutSecs: {
    env: "COMMAND_TIMEOUT_SECS",
    description:
      "Deadline of a command without params.timeout_secs (the dashboard's execution lease is its own value + 60 s: give it the agents')",
    default: defaults.DEFAULT_COMMAND_TIMEOUT_SECS,
    expected: SECS_ABOVE_0,
    schema: secs(1),
    roles: ["agent", "exec", "server"],
    placeholder: "<secs>",
  },
  commandTimeoutMaxSecs: {
    env: "COMMAND_TIMEOUT_MAX_SECS",
    description: "Largest deadline a command may ask for with params.timeout_secs",
    default: defaults.DEFAULT_MAX_TIMEOUT_SECS,
    expected: SECS_ABOVE_0,
    schema: secs(1),
    roles: ["agent", "exec"],
    placeholder: "<secs>",
  },
  allowedPrograms: {
    env: "ALLOWED_PROGRAMS",
    description: "Programs commands may run: names or absolute paths, comma-separated",
    default: ["echo", "sleep", "ls", "tar", "gzip", "uname", "date", "df", "du"],
    expected: "a comma-separated list of program names or absolute paths",
    schema: list.superRefine(itemsBy(allowedProgramProblem, "programs")),
    roles: ["agent", "exec"],
    list: true,
    placeholder: "<list>",
  },
  allowedPathPrefixes: {
    env: "ALLOWED_PATH_PREFIXES",
    description: "Absolute-path arguments must lie under one of these, comma-separated",
    default: ["/tmp", "/var/tmp"],
    expected: "a comma-separated list of absolute paths",
    schema: z.preprocess(
      listItems,
      // "/tmp /var/tmp": one prefix, which no path lies under.
      z.array(z.string().regex(/^\/.*/)).superRefine(itemsBy(
        (prefix) => /\s\//.test(prefix) ? "holds a space before a /" : allowedPrefixProblem(prefix),
        "prefixes",
      )),
    ),
    roles: ["agent", "exec"],
    list: true,
    placeholder: "<list>",
  },
  commandEnv: {
    env: "COMMAND_ENV",
    description: "Extra NAME=value pairs for the environment of commands, comma-separated",
    default: [],
    expected: "a comma-separated list of NAME=value",
    schema: z.preprocess(
      (v, ctx) => {
        const items = listItems(v);
        if (!Array.isArray(items)) return items;
        const at = items.findIndex((item) => typeof item === "string" && !ASSIGNMENT.test(item));
        if (at < 0) {
          // Only config.json can hold one ("A=b\u0000c"): the executor refused it at start, in
          // words that named neither the setting nor where it came from.
          const nul = items.findIndex((item) => typeof item === "string" && item.includes("\0"));
          if (nul >= 0) {
            ctx.addIssue({
              code: "custom",
              message: `item ${nul + 1} sets ${
                ASSIGNMENT.exec(items[nul] as string)![1]
              } to a value holding a NUL character, which no environment string can hold`,
              params: { reason: true },
            });
            return z.NEVER;
          }
          // The executor refuses it too, at start, in words that named neither the setting nor
          // where it came from.
          const secret = items.findIndex((item) =>
            typeof item === "string" &&
            AGENT_SECRET_ENV_NAMES.has(ASSIGNMENT.exec(item)![1].toUpperCase())
          );
          const loader = items.findIndex((item) =>
            typeof item === "string" && codeEnvReason(ASSIGNMENT.exec(item)![1]) !== undefined
          );
          if (secret < 0 && loader < 0) {
            // Only config.json or .env can hold this much: the agent's own environment and
            // flags were started with no string longer than 128 KiB.
            const long = items.findIndex((item) =>
              typeof item === "string" && utf8Bytes(item) > MAX_ENV_STRING_BYTES
            );
            if (long >= 0) {
              const item = items[long] as string;
              ctx.addIssue({
                code: "custom",
                message:
                  `item ${long + 1} sets ${ASSIGNMENT.exec(item)![1]}, which is ${
                    utf8Bytes(item)
                  } bytes long as NAME=value (UTF-8), more than the ${MAX_ENV_STRING_BYTES} a ` +
                  "program may be started with",
                params: { reason: true },
              });
              return z.NEVER;
            }
            const strings = items.filter((item): item is string => typeof item === "string");
            const total = extraEnvBytes(envFromAssignments(strings));
            if (total <= MAX_EXTRA_ENV_BYTES) return items;
            ctx.addIssue({
              code: "custom",
              message: `its items ${tooLongTogether(total)}`,
              params: { reason: true },
            });
            return z.NEVER;
          }
          const refused = secret >= 0 ? secret : loader;
          const name = ASSIGNMENT.exec(items[refused] as string)![1];
          const why = secret >= 0 ? "an agent secret, which is never given to commands" : (
            `which is never given to commands: ${codeEnvReason(name)}`
          );
          ctx.addIssue({
            code: "custom",
            message: `item ${refused + 1} sets ${name}, ${why}`,
            params: { reason: true },
          });
          return z.NEVER;
        }
        ctx.addIssue({
          code: "custom",
          message: `item ${at + 1} is not NAME=value${
            typeof v === "string"
              ? " (a value holding a comma is cut there: the items are separated by commas)"
              : ""
          }`,
          params: { reason: true },
        });
        return z.NEVER;
      },
      z.array(z.string().regex(ASSIGNMENT)),
    ),
    // "DB_PASSWORD=ab,cd" is refused at "cd", which is half a password: no value is shown.
    shown: namesOnly,
    roles: ["agent", "exec"],
    list: true,
    placeholder: "<list>",
  },
  commandCwd: {
    env: "COMMAND_CWD",
    description:
      "Working directory of every command (default: a new empty one per command; never the agent's own or STATE_DIR; not their HOME)",
    expected: "a directory path",
    schema: path,
    roles: ["agent", "exec"],
    placeholder: "<dir>",
  },
  commandUser: {
    env: "COMMAND_USER",
    description:
      "User commands run as: a name, uid or uid:gid, with its own group only (default: nobody when the agent is root)",
    expected: "a user name, a uid or uid:gid",
    schema: z.preprocess(
      // config.json may give a uid as a JSON number (`"command_user": 1001`).
      (v) => typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? String(v) : fromString(v),
      z.string().regex(/^([A-Za-z_][A-Za-z0-9_.-]*\$?|\d+|\d+:\d+)$/),
    ),
    roles: ["agent"],
    placeholder: "<user>",
  },
  commandMaxProcesses: {
    env: "COMMAND_MAX_PROCESSES",
    description:
      "Most processes and threads one command may have at once, through its cgroup's pids.max (0 or unlimited: no limit; without a cgroup per command there is none)",
    default: defaults.DEFAULT_COMMAND_MAX_PROCESSES,
    expected: `a whole number from 0 to ${MAX_PIDS_LIMIT}, or unlimited (the same as 0)`,
    schema: z.preprocess(
      (v) => typeof v === "string" && v.trim().toLowerCase() === "unlimited" ? 0 : v,
      wholeNumber(0, MAX_PIDS_LIMIT),
    ),
    roles: ["agent"],
    placeholder: "<n>",
  },
  commandMaxMemory: {
    env: "COMMAND_MAX_MEMORY",
    description:
      "Most memory a command may use (2147483648 bytes: 2G), through its cgroup's memory.max (0 or unlimited: no limit; without a cgroup per command there is none)",
    default: defaults.DEFAULT_COMMAND_MAX_MEMORY,
    expected:
      "a size from 1M to 1024T: bytes, or a number with K, M, G or T (powers of 1024: 512M, 2G), or 0 or unlimited (no limit)",
    schema: z.preprocess(
      (v) => parseMemorySize(v) ?? v,
      z.number().int().refine((n) => parseMemorySize(n) === n),
    ),
    roles: ["agent"],
    placeholder: "<size>",
  },
  metricsIntervalSecs: {
    env: "METRICS_INTERVAL_SECS",
    description: "Interval of the metrics heartbeat",
    default: defaults.DEFAULT_METRICS_INTERVAL_SECS,
    expected: SECS_ABOVE_0,
    schema: secs(1),
    roles: ["agent"],
    placeholder: "<secs>",
  },
  metricsWebhook: {
    env: "METRICS_WEBHOOK",
    description:
      "URL the metrics heartbeat is also POSTed to, besides the dashboard (unset: the dashboard only)",
    expected: "an http:// or https:// URL",
    schema: url,
    roles: ["agent"],
    placeholder: "<url>",
  },
  metricsPort: {
    env: "METRICS_PORT",
    description:
      "Serve the agent's Prometheus metrics on GET /metrics at this PORT (on 127.0.0.1) or HOST:PORT",
    expected: "PORT or HOST:PORT with a port from 0 to 65535",
    schema: listenAddress,
    roles: ["agent"],
    placeholder: "<[host:]port>",
  },
  liveOutput: {
    env: "LIVE_OUTPUT",
    description: "Stream a running command's output to the dashboard (at least once a second)",
    default: true,
    expected: BOOL_RULE,
    schema: bool,
    roles: ["agent"],
    placeholder: "<true|false>",
  },
  stateDir: {
    env: "STATE_DIR",
    description: "Directory of the execution journal and the result outbox",
    default: defaults.DEFAULT_STATE_DIR,
    expected: "a directory path",
    schema: path,
    roles: ["agent"],
    placeholder: "<dir>",
  },
  shutdownGraceSecs: {
    env: "SHUTDOWN_GRACE_SECS",
    description:
      "On SIGTERM, SIGINT or SIGHUP, how long a running command may still run before it is stopped (and reported interrupted)",
    default: defaults.DEFAULT_SHUTDOWN_GRACE_SECS,
    expected: SECS_FROM_0,
    schema: secs(0),
    roles: ["agent"],
    placeholder: "<secs>",
  },
  daemon: {
    env: "DAEMON",
    description: "Run the agent in the background with a pid file",
    default: false,
    expected: BOOL_RULE,
    schema: bool,
    roles: ["agent"],
    boolean: true,
  },
  pidFile: {
    env: "PID_FILE",
    description: "Pid file of the daemon",
    default: "status.pid",
    expected: "a file path",
    schema: path,
    roles: ["agent"],
    placeholder: "<path>",
  },
  logFile: {
    env: "LOG_FILE",
    description: "Write logs to this rotating file (the daemon defaults to status.log)",
    expected: "a file path",
    schema: path,
    roles: ["log"],
    placeholder: "<path>",
  },
  logFormat: {
    env: "LOG_FORMAT",
    description: "text or json (default: text on a terminal, json otherwise)",
    expected: 'one of "text", "json"',
    // In any case, as LOG_LEVEL: LOG_FORMAT=JSON beside LOG_LEVEL=DEBUG.
    schema: z.preprocess((v) => {
      const s = fromString(v);
      return typeof s === "string" ? s.toLowerCase() : s;
    }, z.enum(["text", "json"])),
    roles: ["log"],
    placeholder: "<format>",
  },
  logLevel: {
    env: "LOG_LEVEL",
    description: `Lowest level logged: ${LOG_LEVELS.join(", ")}`,
    default: "info",
    expected: `one of ${LOG_LEVELS.map((level) => JSON.stringify(level)).join(", ")}`,
    schema: z.preprocess(
      (v) => (typeof v === "string" ? v.trim().toLowerCase().replace(/^warn$/, "warning") : v),
      z.enum(LOG_LEVELS),
    ),
    roles: ["log"],
    placeholder: "<level>",
  },
  port: {
    env: "PORT",
    description: "Port the dashboard listens on",
    default: defaults.DEFAULT_PORT,
    expected: "a port number from 0 to 65535",
    schema: wholeNumber(0, 65535),
    roles: ["server"],
    placeholder: "<port>",
  },
  bind: {
    env: "BIND",
    description: "Address the dashboard listens on",
    default: defaults.DEFAULT_BIND,
    expected: "an IP address or host name",
    schema: bindAddress,
    roles: ["server"],
    placeholder: "<addr>",
  },
  metricsBind: {
    env: "METRICS_BIND",
    description:
      "Also serve GET /metrics without the admin token on this PORT (on 127.0.0.1) or HOST:PORT",
    expected: "PORT or HOST:PORT with a port from 0 to 65535",
    schema: listenAddress,
    roles: ["server"],
    placeholder: "<[host:]port>",
  },
  offlineAfterSecs: {
    env: "OFFLINE_AFTER_SECS",
    description: "An agent with no open poll that was not seen for this long is offline",
    default: defaults.DEFAULT_OFFLINE_AFTER_SECS,
    expected: SECS_ABOVE_0,
    schema: secs(1),
    roles: ["server"],
    placeholder: "<secs>",
  },
  db: {
    env: "DB",
    description: "The dashboard's store: a SQLite file, or a postgres:// URL shared by instances",
    default: defaults.DEFAULT_DB,
    expected: "a file path or a postgres:// URL",
    schema: path,
    roles: ["server"],
    placeholder: "<path|url>",
  },
  databaseUrl: {
    env: "DATABASE_URL",
    description: "postgres:// URL of the store, used when DB/--db is not set",
    unusedWith: "db",
    expected: "a postgres://user:password@host:port/database URL",
    schema: z.preprocess(
      fromString,
      z.string().max(4096).regex(/^postgres(ql)?:\/\/\S+$/i, "not a postgres:// URL"),
    ),
    roles: ["server"],
    secret: true,
    placeholder: "<url>",
  },
  tlsCert: {
    env: "TLS_CERT",
    description: "PEM certificate file; with --tls-key the dashboard serves HTTPS",
    expected: "a file path",
    schema: path,
    roles: ["server"],
    placeholder: "<path>",
  },
  tlsKey: {
    env: "TLS_KEY",
    description: "PEM private key file for --tls-cert",
    expected: "a file path",
    schema: path,
    roles: ["server"],
    placeholder: "<path>",
  },
  statusAdminToken: {
    env: "STATUS_ADMIN_TOKEN",
    description: "Operator token of the dashboard's operator API (required outside dev mode)",
    expected: TOKEN_RULE,
    schema: token(),
    roles: ["server", "operator"],
    secret: true,
    advice: "make one with: openssl rand -base64 32 (give operators the dashboard's own)",
    placeholder: "<token>",
  },
  ackTimeoutSecs: {
    env: "ACK_TIMEOUT_SECS",
    description: "Delivery lease: a command not acked by then goes back to the queue",
    default: defaults.DEFAULT_ACK_TIMEOUT_SECS,
    expected: SECS_ABOVE_0,
    schema: secs(1),
    roles: ["server"],
    placeholder: "<secs>",
  },
  maxAttempts: {
    env: "MAX_ATTEMPTS",
    description: "Deliveries of one command before it is marked lost",
    default: defaults.DEFAULT_MAX_ATTEMPTS,
    expected: "a whole number from 1 to 100",
    schema: wholeNumber(1, 100),
    roles: ["server"],
    placeholder: "<n>",
  },
  rateLimitPerMinute: {
    env: "RATE_LIMIT_PER_MINUTE",
    description:
      "Requests a minute one agent may make to its own endpoints (token bucket; operators never use it)",
    default: defaults.DEFAULT_RATE_LIMIT_PER_MINUTE,
    expected: "a whole number from 1 to 1000000",
    schema: wholeNumber(1, 1_000_000),
    roles: ["server"],
    placeholder: "<n>",
  },
  headerTimeoutSecs: {
    env: "HEADER_TIMEOUT_SECS",
    description:
      "A connection that sends no complete request head (or idles between requests) this long is closed",
    default: defaults.DEFAULT_HEADER_TIMEOUT_SECS,
    expected: "a whole number from 1 to 300",
    schema: wholeNumber(1, 300),
    roles: ["server"],
    placeholder: "<secs>",
  },
  maxConnections: {
    env: "MAX_CONNECTIONS",
    description:
      "Most open connections (kept 128 under the open-files limit); beyond it, a new one replaces an idle one or is refused",
    default: defaults.DEFAULT_MAX_CONNECTIONS,
    expected: "a whole number from 1 to 1000000",
    schema: wholeNumber(1, 1_000_000),
    roles: ["server"],
    placeholder: "<n>",
  },
  operatorRateLimitPerMinute: {
    env: "OPERATOR_RATE_LIMIT_PER_MINUTE",
    description:
      "Requests a minute one operator address may make, enqueues included (token bucket)",
    default: defaults.DEFAULT_OPERATOR_RATE_LIMIT_PER_MINUTE,
    expected: "a whole number from 1 to 1000000",
    schema: wholeNumber(1, 1_000_000),
    roles: ["server"],
    placeholder: "<n>",
  },
  queueTtlSecs: {
    env: "QUEUE_TTL_SECS",
    description:
      "A command still queued this long after its enqueue expires (default of enqueue --ttl)",
    default: defaults.DEFAULT_QUEUE_TTL_SECS,
    expected: "a whole number of seconds from 1 to 2592000",
    schema: wholeNumber(1, 2_592_000),
    roles: ["server"],
    placeholder: "<secs>",
  },
  resultRetentionDays: {
    env: "RESULT_RETENTION_DAYS",
    description:
      "Delete commands final more than this many days ago, with their results and finished runs (0: keep all)",
    default: defaults.DEFAULT_RESULT_RETENTION_DAYS,
    expected: "a whole number of days from 0 (keep everything) to 3650",
    schema: wholeNumber(0, 3650),
    roles: ["server"],
    placeholder: "<days>",
  },
  waitRequireSignature: {
    env: "WAIT_REQUIRE_SIGNATURE",
    description: "Require a valid signature on GET …/wait too",
    default: false,
    expected: BOOL_RULE,
    schema: bool,
    roles: ["server"],
    boolean: true,
  },
  acceptV1Signatures: {
    env: "ACCEPT_V1_SIGNATURES",
    description: "Also accept the Status Panel agent's body-only v1 signatures",
    default: false,
    expected: BOOL_RULE,
    schema: bool,
    roles: ["server"],
    boolean: true,
  },
} as const satisfies Record<string, SettingSpec>;

/** The table of every setting, keyed by its camelCase name. */
export const SETTINGS: { readonly [K in SettingKey]: SettingSpec } = SPECS;

/** The camelCase name of a setting. */
export type SettingKey = keyof typeof SPECS;

/** The type of a setting's value: what its schema gives. */
type ValueOf<K extends SettingKey> = z.output<(typeof SPECS)[K]["schema"]>;

type HasDefault<K extends SettingKey> = (typeof SPECS)[K] extends { default: unknown } ? K : never;

/** Every setting after loading: those with a default are always present. */
export type Settings =
  & { -readonly [K in SettingKey as HasDefault<K>]: ValueOf<K> }
  & { -readonly [K in Exclude<SettingKey, HasDefault<SettingKey>>]?: ValueOf<K> };

/**
 * Turns a variable name into its flag: `DASHBOARD_URL` → `--dashboard-url`.
 *
 * @param env The variable name.
 * @returns The long flag.
 */
export function flagOf(env: string): string {
  return "--" + env.toLowerCase().replaceAll("_", "-");
}

/**
 * Turns a variable name into its `config.json` key: `DASHBOARD_URL` → `dashboard_url`.
 *
 * @param env The variable name.
 * @returns The snake_case key.
 */
export function jsonKeyOf(env: string): string {
  return env.toLowerCase();
}

/**
 * The settings a role reads, in table order.
 *
 * @param roles The roles of a command.
 * @returns Their keys.
 */
export function keysFor(roles: readonly Role[]): SettingKey[] {
  return (Object.keys(SPECS) as SettingKey[]).filter((key) =>
    SETTINGS[key].roles.some((r) => roles.includes(r))
  );
}
