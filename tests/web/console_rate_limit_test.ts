/**
 * The console script under the dashboard's rate limit (`429` with `Retry-After`) in chromium: a
 * refreshing part and a polled command wait as long as the answer asks before asking again,
 * instead of going on at their own pace (each request spending the address's limit again), and
 * the page is not shown as broken meanwhile; a refresh of a command's page that met the limit is
 * made again once the wait is over.
 */
import assert from "node:assert/strict";
import { browserTest, eventually, fakeConsoleServer, launchChromium } from "./_browser.ts";

const NAME = "a page under the rate limit waits as Retry-After says, and is not shown as broken";

async function rateLimitTest(): Promise<void> {
  let limited = false;
  let over = false;
  let ended = false;
  // When each path was asked while the limit held; how often the part was asked after it.
  const asked: Record<string, number[]> = {};
  let askedAfter = 0;
  let endPages = 0;
  const tooMany = (secs: number) =>
    new Response("Too many requests", { status: 429, headers: { "Retry-After": String(secs) } });
  const server = await fakeConsoleServer((path) => {
    if (ended) {
      // The command ended; the first read of its page meets the limit.
      if (path === "/api/v1/commands/c1") return Response.json({ id: "c1", status: "success" });
      if (path === "/commands/c1" && endPages++ === 0) return tooMany(1);
      if (path === "/commands/c1") {
        return new Response(
          `<!doctype html><main id="main"><div id="command-detail" data-command-id="c1" ` +
            `data-status="success" data-final="true">success</div></main>`,
          { headers: { "Content-Type": "text/html" } },
        );
      }
    }
    if (!limited) {
      if (over && path === "/") askedAfter++;
      return undefined;
    }
    (asked[path] ??= []).push(performance.now());
    return tooMany(2);
  });
  const browser = await launchChromium();
  try {
    const origin = `http://127.0.0.1:${server.addr.port}`;
    // The agents part refreshes every 0.2 s; the command page polls its command every second.
    const agents = await browser.newPage();
    await agents.goto(`${origin}/`);
    const command = await browser.newPage();
    await command.goto(`${origin}/commands/c1`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    limited = true;
    const paths = ["/", "/api/v1/commands/c1"];
    // Each is asked again, once the 2 s it was told to wait have passed.
    for (const path of paths) {
      await eventually(`${path} is asked again after its 429`, () => asked[path]?.length >= 2);
      const [first, second] = asked[path];
      assert.ok(second - first >= 1_900, `${path} asked again after ${second - first} ms`);
    }
    for (const tab of [agents, command]) {
      assert.equal(await tab.locator("#dashboard-unreachable").count(), 0, "not shown as broken");
      assert.equal(await tab.locator("#session-ended").count(), 0);
    }
    limited = false;
    over = true;
    await eventually("the part refreshes at its own pace once the limit is over", () => {
      return askedAfter >= 3;
    });
    // A refresh of the command's page that met the limit is made again once the wait is over:
    // the page comes to show how the command ended.
    ended = true;
    await eventually(
      "the command's page shows it ended",
      async () =>
        (await command.locator("#command-detail").getAttribute("data-status")) === "success",
    );
    assert.equal(endPages, 2, "its page was read twice: the 429, then the page");
  } finally {
    await browser.close();
    await server.shutdown();
  }
}

browserTest(NAME, import.meta.filename!, rateLimitTest);
