/**
 * The two formats of log lines: human-readable text and JSON, both redacted.
 *
 * @module
 */
import type { LogRecord } from "@logtape/logtape";
import { BIDI_CONTROLS } from "../protocol/schemas.ts";
import { visibleText } from "../protocol/visible_text.ts";
import { LEVEL_LABEL } from "./levels.ts";
import { redactString, redactValue } from "./redact.ts";

/** Output format of log lines. */
export type LogFormat = "text" | "json";

/** Templates cut at their placeholders (text, key, text, …, text), or `null`: LogTape cuts it. */
const templates = new Map<string, readonly string[] | null>();
/** Templates are the program's constants; more than this many distinct ones are not kept. */
const TEMPLATES_MAX = 1000;
const PLAIN_KEY = /^[A-Za-z_$][\w$]*$/;

/**
 * Cuts a template whose placeholders are all plain `{name}` keys, which LogTape fills with
 * `properties[name]`; anything else (escaped or unmatched braces, paths, `{*}`) gives `null`.
 */
function cutTemplate(template: string): readonly string[] | null {
  const parts: string[] = [];
  let start = 0;
  for (let open = template.indexOf("{"); open >= 0; open = template.indexOf("{", start)) {
    const close = template.indexOf("}", open + 1);
    if (close < 0) return null;
    const key = template.slice(open + 1, close);
    if (!PLAIN_KEY.test(key)) return null;
    parts.push(template.slice(start, open), key);
    start = close + 1;
  }
  parts.push(template.slice(start));
  for (let i = 0; i < parts.length; i += 2) if (/[{}]/.test(parts[i])) return null;
  return parts;
}

function templateOf(template: unknown): readonly string[] | null {
  if (typeof template !== "string") return null;
  let parts = templates.get(template);
  if (parts === undefined) {
    parts = cutTemplate(template);
    if (templates.size < TEMPLATES_MAX) templates.set(template, parts);
  }
  return parts;
}

function renderMessage(record: LogRecord): string {
  let text = "";
  // A plain template is filled from the properties here: LogTape's `message` would parse it again
  // for every record.
  const parts = templateOf(record.rawMessage);
  if (parts !== null) {
    const props = record.properties;
    for (let i = 0; i < parts.length; i++) {
      // Redacted by its name too: `{token}` in a message is as secret as the property `token`.
      text += i % 2 === 0 ? parts[i] : renderValue(redactValue(parts[i], props[parts[i]]));
    }
    return redactString(text);
  }
  let names = placeholderNames(record.rawMessage);
  if (names?.length !== (record.message.length - 1) / 2) names = null;
  for (let i = 0; i < record.message.length; i++) {
    const part = record.message[i];
    text += i % 2 === 0 ? String(part) : renderValue(redactValue(names?.[(i - 1) / 2] ?? "", part));
  }
  return redactString(text);
}

/**
 * The names of a template's placeholders in order (the last part of a path: `{req.token}` is
 * `token`), for the templates LogTape fills itself; `null` when they cannot be told apart.
 */
function placeholderNames(template: unknown): string[] | null {
  if (typeof template !== "string") return null;
  const names: string[] = [];
  for (const match of template.replaceAll(/\{\{|\}\}/g, "").matchAll(/\{([^{}]*)\}/g)) {
    names.push(match[1].trim().split(/[.[\]]/).filter(Boolean).at(-1) ?? "");
  }
  return names;
}

function renderValue(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Error) return value.message;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * Formats a record as one human-readable line:
 * `2026-01-12T10:00:00Z INFO Agent daemon starting command_id=cmd-1`.
 */
export function formatText(record: LogRecord): string {
  const props = redactValue("", record.properties) as Record<string, unknown>;
  let line = `${isoSeconds(record.timestamp)} ${LEVEL_LABEL[record.level]} ${
    escapeControls(renderMessage(record))
  }`;
  const category = record.category.slice(1).join(".");
  if (category === "audit") line += " audit=true";
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined) continue;
    const rendered = renderValue(value);
    line += ` ${escapeControls(key)}=${
      QUOTED.test(rendered) ? escapeControls(JSON.stringify(rendered)) : rendered
    }`;
  }
  return line;
}

/**
 * A property value written in quotes: spaces, quotes, `=`, a control character or a bidirectional
 * formatting character in it.
 */
const QUOTED = new RegExp(`[\\s"=\\p{Cc}\u2028\u2029]|${BIDI_CONTROLS.source}`, "u");
/**
 * Line breaks, control characters (ANSI escapes) and bidirectional formatting characters, which a
 * text line shows escaped.
 */
const CONTROLS = new RegExp(`[\\p{Cc}\u2028\u2029]|${BIDI_CONTROLS.source}`, "u");

/**
 * A text with its control characters (a tab aside), line separators and bidirectional formatting
 * characters written as `\n`, `\r`, `\uXXXX` (the protocol's `visibleText`): a record is one line,
 * and a value (a command's output, a client's input) cannot forge another line, move a terminal's
 * cursor or show the line in another order than its characters come.
 */
function escapeControls(text: string): string {
  return CONTROLS.test(text) ? visibleText(text) : text;
}

/**
 * Formats a record as one JSON line with `time`, `level`, `category`, `message` and properties;
 * every control, line-separator and bidirectional formatting character in it is a `\uXXXX`
 * escape.
 */
export function formatJson(record: LogRecord): string {
  const line: Record<string, unknown> = {
    time: new Date(record.timestamp).toISOString(),
    level: record.level,
    category: categoryText(record.category),
    message: renderMessage(record),
  };
  // The redacted properties after those four (a property of the same name takes its place).
  for (const [key, value] of Object.entries(record.properties)) {
    const redacted = redactValue(key, value, 1);
    if (key === "__proto__") {
      Object.defineProperty(line, key, { value: redacted, enumerable: true, writable: true });
    } else line[key] = redacted;
  }
  const text = JSON.stringify(line);
  return RAW_IN_JSON.test(text) ? text.replace(RAW_IN_JSON_ALL, jsonEscape) : text;
}

/**
 * What `JSON.stringify` leaves as it is but a reader of the line could obey: DEL and C1 controls
 * (U+009B is a terminal's CSI, U+0085 a line break to many line readers), line and paragraph
 * separators and bidirectional formatting characters. They only stand inside strings, where a
 * `\uXXXX` escape means the same character: the line reads back the same.
 */
const RAW_IN_JSON = new RegExp(`[\u007f-\u009f\u2028\u2029]|${BIDI_CONTROLS.source}`);
const RAW_IN_JSON_ALL = new RegExp(RAW_IN_JSON.source, "g");

function jsonEscape(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

/** Categories joined with dots, once per logger (a logger's category is one array). */
const categories = new WeakMap<readonly string[], string>();

function categoryText(category: readonly string[]): string {
  let text = categories.get(category);
  if (text === undefined) {
    text = category.join(".");
    categories.set(category, text);
  }
  return text;
}
