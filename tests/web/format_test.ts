import assert from "node:assert/strict";
import {
  agentState,
  BIDI_OVERRIDE,
  formatAgo,
  formatDuration,
  formatHeartbeat,
  formatTime,
  isFinal,
  ONLINE_GRACE_MS,
  outputView,
  statusTone,
  TERMINAL_SEQUENCE,
} from "../../src/server/web/format.ts";
import { AgentsPage } from "../../src/server/web/pages.tsx";

const NOW = Date.UTC(2026, 0, 12, 10, 0, 0);
const iso = (ms: number) => new Date(ms).toISOString();

Deno.test("agent state: the API's, else waiting, online between polls or while running, offline", () => {
  const base = { id: "a", waiting: false, last_seen_at: iso(NOW - 1000) };
  assert.equal(agentState({ ...base, waiting: true }, NOW), "waiting");
  assert.equal(agentState(base, NOW), "online");
  assert.equal(
    agentState({ ...base, last_seen_at: iso(NOW - ONLINE_GRACE_MS - 1) }, NOW),
    "offline",
  );
  assert.equal(agentState({ ...base, last_seen_at: null }, NOW), "offline");
  assert.equal(
    agentState({ ...base, last_seen_at: iso(NOW - 600_000), running: { id: "c1" } }, NOW),
    "online",
  );
  // The dashboard's verdict wins when the API gives one.
  assert.equal(agentState({ ...base, waiting: true, state: "online" }, NOW), "online");
  assert.equal(agentState({ ...base, state: "offline" }, NOW), "offline");
});

Deno.test("heartbeat figures as one line; missing figures are left out", () => {
  assert.equal(
    formatHeartbeat({
      cpu_percent: 12.4,
      memory: { used_percent: 40.6 },
      disk: { used_percent: 71 },
      load_avg: [0.1, 0.25, 1],
    }),
    "CPU 12 % · memory 41 % · disk 71 % · load 0.10 0.25 1.00",
  );
  assert.equal(formatHeartbeat({ memory: { used_percent: 3 } }), "memory 3 %");
  assert.equal(formatHeartbeat({}), "—");
  assert.equal(formatHeartbeat(null), "—");
});

Deno.test("times, ages and durations", () => {
  assert.equal(formatTime("2026-01-12T10:00:05.120Z"), "2026-01-12 10:00:05 UTC");
  assert.equal(formatTime(null), "—");
  assert.equal(formatAgo(iso(NOW - 12_000), NOW), "12 s ago");
  assert.equal(formatAgo(iso(NOW - 180_000), NOW), "3 min ago");
  assert.equal(formatAgo(iso(NOW - 7_200_000), NOW), "2 h ago");
  assert.equal(formatAgo(null, NOW), "never");
  assert.equal(formatDuration(0.004), "0.00 s");
  assert.equal(formatDuration(12.34), "12.3 s");
  assert.equal(formatDuration(125), "2 min 5 s");
  assert.equal(formatDuration(179.6), "3 min 0 s");
  assert.equal(formatDuration(239.5), "4 min 0 s");
  assert.equal(formatDuration(null), "—");
});

Deno.test("statuses: final or not, and their colour", () => {
  for (const status of ["queued", "delivered", "running"]) assert.equal(isFinal(status), false);
  for (const status of ["success", "failed", "cancelled", "lost", "expired"]) {
    assert.equal(isFinal(status), true, status);
  }
  assert.equal(statusTone("success"), "ok");
  assert.equal(statusTone("failed"), "bad");
  assert.equal(statusTone("cancelled"), "warn");
  assert.equal(statusTone("running"), "busy");
  assert.equal(statusTone("queued"), "idle");
});

Deno.test("output: terminal colour, cursor and title codes are left out of the page", () => {
  const text = "\x1b[1;32mok\x1b[0m \x1b[2K\x1b[10;5Hdone\x1b]0;title\x07 \x1b(Bend\x1b7\n";
  const view = outputView(text, undefined, 0);
  assert.equal(view.head, "ok done end\n");
  assert.equal(view.terminalCodes, true);
  // Also in output that is not UTF-8 and on both sides of a cut.
  const binary = outputView(btoa("\x1b[31mred\xff\x1b[0m"), "base64", 0);
  assert.equal(binary.head, "red\uFFFD");
  assert.equal(binary.terminalCodes, true);
  const cut = outputView("\x1b[31maa\n[status: 9 bytes dropped here]\nbb\x1b[0m\n", undefined, 9);
  assert.deepEqual([cut.head, cut.tail], ["aa\n", "bb\n"]);
  // A lone escape or text that only looks like a code stays.
  assert.equal(outputView("[31m \x1b\n", undefined, 0).head, "[31m \x1b\n");
  // The page's script leaves out the same codes from live output.
  const script = Deno.readTextFileSync(
    new URL("../../src/server/web/static/console.js", import.meta.url),
  );
  assert.ok(
    script.includes(`/${TERMINAL_SEQUENCE.source}/g`),
    "the script has the same expression",
  );
});

Deno.test("output: NUL bytes are shown as a symbol, not dropped by the page", () => {
  // The HTML parser drops a NUL: tar's or du -0's fields ran together with nothing in between.
  const view = outputView("a\0b\0\n", undefined, 0);
  assert.equal(view.head, "a\u2400b\u2400\n");
  assert.equal(view.nulBytes, true);
  const cut = outputView("a\n[status: 9 bytes dropped here]\n\0\n", undefined, 9);
  assert.deepEqual([cut.head, cut.tail, cut.nulBytes], ["a\n", "\u2400\n", true]);
  assert.equal(outputView(btoa("\0\xff"), "base64", 0).head, "\u2400\uFFFD");
  assert.equal(outputView("plain\n", undefined, 0).nulBytes, false);
});

Deno.test("output: bidirectional overrides and isolates show as escapes; the marks of right-to-left text stay", () => {
  // `ls` listing a file named so: the page showed it as `reportexe.pdf`.
  const view = outputView("report\u202efdp.exe\n\u2066x\u2069\n", undefined, 0);
  assert.equal(view.head, "report\\u202efdp.exe\n\\u2066x\\u2069\n");
  assert.equal(view.bidiOverrides, true);
  const cut = outputView("a\n[status: 9 bytes dropped here]\n\u202d\n", undefined, 9);
  assert.deepEqual([cut.tail, cut.bidiOverrides], ["\\u202d\n", true]);
  const hebrew = "\u05e9\u05dc\u05d5\u05dd\u200f 1\n";
  assert.deepEqual([
    outputView(hebrew, undefined, 0).head,
    outputView(hebrew, undefined, 0).bidiOverrides,
  ], [hebrew, false]);
  // The page's script shows live output so too.
  const script = Deno.readTextFileSync(
    new URL("../../src/server/web/static/console.js", import.meta.url),
  );
  assert.ok(script.includes(`/${BIDI_OVERRIDE.source}/g`), "the script has the same expression");
});

Deno.test("output: cut in the middle of the kept bytes; base64 output decoded", () => {
  assert.deepEqual(outputView("abc\n", undefined, 0), {
    head: "abc\n",
    tail: "",
    cutBytes: 0,
    binary: false,
    terminalCodes: false,
    nulBytes: false,
    bidiOverrides: false,
  });
  assert.deepEqual(outputView("aaaabbbb", "utf-8", 10), {
    head: "aaaa",
    tail: "bbbb",
    cutBytes: 10,
    binary: false,
    terminalCodes: false,
    nulBytes: false,
    bidiOverrides: false,
  });
  // "é" is two bytes: halves of the bytes, moved back to a character's start.
  const accents = outputView("éébb", undefined, 1);
  assert.equal(accents.head, "é");
  assert.equal(accents.tail, "ébb");
  const binary = outputView(btoa("ok\xff"), "base64", 0);
  assert.equal(binary.binary, true);
  assert.equal(binary.head, "ok\uFFFD");
  assert.equal(outputView(null, undefined, null).head, "");
  // The agent's marker line stands at the cut, not in the middle of the kept bytes: the view cuts
  // in its place.
  assert.deepEqual(
    outputView(
      "head line\n[status: 25934504 bytes dropped here]\ntail line and more\n",
      undefined,
      25934504,
    ),
    {
      head: "head line\n",
      tail: "tail line and more\n",
      cutBytes: 25934504,
      binary: false,
      terminalCodes: false,
      nulBytes: false,
      bidiOverrides: false,
    },
  );
});

Deno.test("agents page shows heartbeat, version and running command when the API has them", () => {
  const html = AgentsPage({
    devMode: false,
    csrf: "t",
    now: NOW,
    agents: [{
      id: "web-1",
      waiting: false,
      last_seen_at: iso(NOW - 2000),
      deployment_hash: "prod",
      version: "0.2.0",
      state: "online",
      heartbeat: { cpu_percent: 5, memory: { used_percent: 50 } },
      heartbeat_at: iso(NOW - 7000),
      running: { id: "c<1>", name: "sleep 30", status: "running" },
      queued: 2,
    }],
  }).toString();
  assert.match(html, /data-state="online"/);
  assert.match(html, /<td data-label="Deployment" class="text">prod<\/td>/);
  assert.match(html, /<td data-label="Version" class="text">0\.2\.0<\/td>/);
  assert.match(html, /CPU 5 % · memory 50 %/);
  assert.match(html, /<a href="\/commands\/c%3C1%3E">sleep 30<\/a>/);
  assert.match(html, /<td data-label="Queued">2<\/td>/);
  assert.match(html, /2 s ago/);
  assert.match(html, /<time datetime="[^"]+">7 s ago<\/time>/, "when the heartbeat came");
});

Deno.test("the README gives the console script's size within a tenth of its lines", () => {
  const readme = Deno.readTextFileSync(new URL("../../README.md", import.meta.url))
    .replaceAll(/\s+/g, " ");
  const said = /`src\/server\/web\/static\/console\.js`, (?:about )?(\d+) lines/.exec(readme);
  assert.ok(said, "the README's sentence on console.js");
  const lines = Deno.readTextFileSync(
    new URL("../../src/server/web/static/console.js", import.meta.url),
  ).split("\n").length;
  assert.ok(
    Math.abs(lines - Number(said[1])) <= lines / 10,
    `the README says ${said[1]} lines; console.js has ${lines}`,
  );
});
