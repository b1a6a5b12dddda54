/**
 * The command page's script in chromium, with an event stream at
 * `GET /api/v1/commands/{id}/events` (the live-output contract: `status`, `output` and `end`
 * events): output chunks appear as they come, the end event brings the final page, and nothing is
 * polled while the stream works. The stream is played by the test in front of an in-process
 * dashboard, so the script's side of the contract is checked whichever dashboard serves it.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { makeDashboard, reportBody } from "../server/_helpers.ts";
import { browserTest, eventually, launchChromium } from "./_browser.ts";

const NAME = "command page follows the event stream: live output chunks, end, no polling";
const encoder = new TextEncoder();

/** One open event stream the test writes to. */
interface Stream {
  send(event: string, data: unknown, id: number): void;
  close(): void;
}

async function streamTest(): Promise<void> {
  await using t = await makeDashboard({ devMode: true, realClock: true });
  const streams: Stream[] = [];
  const polls: string[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (request) => {
    const path = new URL(request.url).pathname;
    if (/^\/api\/v1\/commands\/[^/]+\/events$/.test(path)) {
      let controller!: ReadableStreamDefaultController<Uint8Array>;
      const body = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) });
      streams.push({
        send: (event, data, id) =>
          controller.enqueue(
            encoder.encode(`id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`),
          ),
        close: () => {
          try {
            controller.close();
          } catch {
            // the page closed it first
          }
        },
      });
      return new Response(body, {
        headers: { "Content-Type": "text/event-stream", "Cache-Control": "no-store" },
      });
    }
    if (path.startsWith("/api/v1/commands/")) polls.push(path);
    return t.dashboard.app.fetch(request);
  });
  const url = `http://127.0.0.1:${server.addr.port}`;
  const browser = await launchChromium();
  try {
    const enqueued = await t.dashboard.app.request("/api/v1/agent/commands/enqueue", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ id: "s1", agent_id: "a1", name: "printf", params: {} }),
    });
    assert.equal(enqueued.status, 202);
    const page = await browser.newPage();
    await page.goto(`${url}/commands/s1`);
    const status = page.locator("#command-detail .headline .status");
    assert.equal(await status.innerText(), "queued");
    const stream = await eventually("the page opens the event stream", () => streams[0]);

    // Output as it comes (base64 chunks at byte offsets), a repeated chunk shown once.
    const b64 = (text: string) => Buffer.from(text, "utf-8").toString("base64");
    stream.send("output", { stream: "stdout", offset: 0, data: b64("first <b>line</b>\n") }, 1);
    await eventually(
      "the first chunk shows",
      async () => (await page.locator("pre#stdout").textContent()) === "first <b>line</b>\n",
    );
    stream.send("output", { stream: "stdout", offset: 0, data: b64("first <b>line</b>\n") }, 2);
    stream.send("output", { stream: "stdout", offset: 18, data: b64("second\n") }, 3);
    stream.send("output", { stream: "stderr", offset: 100, data: b64("warn\n") }, 4);
    await eventually(
      "the later chunks show",
      async () =>
        (await page.locator("pre#stdout").textContent()) === "first <b>line</b>\nsecond\n" &&
        (await page.locator("pre#stderr").textContent()) ===
          "[… 100 bytes not received here …]\nwarn\n",
    );
    assert.equal(await page.locator("pre#stdout b").count(), 0, "chunks are text");

    // The agent runs it to the end; the stream says so.
    const wait = await t.agent({
      path: "/api/v1/agent/commands/wait/default?timeout=1",
      token: null,
    });
    const { attempt } = await wait.json();
    await (await t.agent({
      path: "/api/v1/agent/commands/ack",
      body: { command_id: "s1", attempt },
      token: null,
    })).body?.cancel();
    const command = await (await t.dashboard.app.request("/api/v1/commands/s1")).json();
    stream.send("status", command, 5);
    await eventually(
      "a status event refreshes the page",
      async () => (await status.innerText()) === "running",
    );
    assert.equal(
      await page.locator("pre#stdout").textContent(),
      "first <b>line</b>\nsecond\n",
      "the live output stays through the refresh",
    );
    assert.equal(await page.locator("#live-status").textContent(), "Status: running");
    // A long output: the page keeps the newest part of it.
    stream.send("output", { stream: "stdout", offset: 25, data: b64("y".repeat(1_200_000)) }, 6);
    await eventually(
      "a long output is cut to its newest part",
      () =>
        page.locator("pre#stdout").evaluate((pre) => {
          const text = pre.textContent ?? "";
          return text.startsWith("[… earlier live output dropped here …]\n") &&
            text.length <= 100_050 && text.endsWith("yyyy");
        }),
    );
    // A flood of chunks (a command printing fast): the page lays its output out at most every
    // 250 ms, not once per chunk (a page kept a million characters and laid them out at each of
    // hundreds of chunks, and froze for seconds).
    // (A string: the DOM's MutationObserver is not in Deno's types.)
    await page.evaluate(`
      globalThis.renders = [];
      new MutationObserver((records) => {
        for (const _ of records) globalThis.renders.push(performance.now());
      }).observe(document.getElementById("stdout"), { childList: true, characterData: true });
    `);
    let offset = 25 + 1_200_000;
    for (let i = 0; i < 300; i++) {
      const data = i === 299 ? "z".repeat(9_996) + "END\n" : "z".repeat(10_000);
      stream.send("output", { stream: "stdout", offset, data: b64(data) }, 100 + i);
      offset += data.length;
    }
    await eventually(
      "the flood's last chunk shows",
      () => page.locator("pre#stdout").evaluate((pre) => pre.textContent?.endsWith("zEND\n")),
    );
    const renders = await page.evaluate(() =>
      (globalThis as unknown as { renders: number[] }).renders
    );
    const spanMs = renders[renders.length - 1] - renders[0];
    assert.ok(
      renders.length <= spanMs / 250 + 2,
      `${renders.length} renders of 300 chunks in ${Math.round(spanMs)} ms`,
    );
    // A second delivery attempt (the first agent vanished) prints from offset 0 again: its output
    // replaces the first attempt's, and a chunk of the first that comes late is not shown.
    stream.send("output", { stream: "stdout", offset: 0, data: b64("again\n"), attempt: 2 }, 7);
    stream.send("output", { stream: "stdout", offset: 9, data: b64("late\n"), attempt: 1 }, 8);
    stream.send("output", { stream: "stdout", offset: 6, data: b64("more\n"), attempt: 2 }, 9);
    await eventually(
      "the second attempt's output replaces the first's",
      async () => (await page.locator("pre#stdout").textContent()) === "again\nmore\n",
    );
    assert.equal(await page.locator("pre#stderr").textContent(), "");
    // Terminal colour codes are left out of live output, as out of the final page.
    stream.send("output", {
      stream: "stdout",
      offset: 11,
      data: b64("\x1b[1;32mgreen\x1b[0m\n"),
      attempt: 2,
    }, 10);
    await eventually(
      "live output without terminal codes",
      async () => (await page.locator("pre#stdout").textContent()) === "again\nmore\ngreen\n",
    );
    // NUL bytes show as a symbol, as on the final page.
    stream.send("output", { stream: "stdout", offset: 28, data: b64("a\0b\n"), attempt: 2 }, 12);
    await eventually(
      "live output with NUL bytes shown",
      async () =>
        (await page.locator("pre#stdout").textContent()) === "again\nmore\ngreen\na\u2400b\n",
    );
    // Bidirectional overrides show as escapes, as on the final page.
    stream.send("output", {
      stream: "stdout",
      offset: 32,
      data: b64("r\u202egnp.exe\n"),
      attempt: 2,
    }, 13);
    await eventually(
      "live output with overrides shown as escapes",
      async () =>
        (await page.locator("pre#stdout").textContent())?.endsWith("b\nr\\u202egnp.exe\n"),
    );
    const report = reportBody("s1", { attempt });
    (report.result as Record<string, unknown>).stdout = "final output\n";
    await (await t.agent({ path: "/api/v1/agent/commands/report", body: report, token: null }))
      .body?.cancel();
    const final = await (await t.dashboard.app.request("/api/v1/commands/s1")).json();
    stream.send("end", final, 11);
    await eventually(
      "the end event brings the final page",
      async () => (await status.innerText()) === "success",
    );
    assert.equal(await page.locator("pre#stdout").textContent(), "final output\n");
    assert.equal(await page.locator("#live-status").textContent(), "Status: success");
    assert.deepEqual(polls, [], "nothing was polled while the stream worked");
    for (const open of streams) open.close();
  } finally {
    await browser.close();
    await server.shutdown();
  }
}

browserTest(NAME, import.meta.filename!, streamTest);
