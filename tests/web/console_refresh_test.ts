/**
 * The console script's self-refreshing parts (`data-refresh-secs`, as an open run's page has) in
 * chromium: the part is fetched again at its interval (the keyboard focus staying on the link it
 * was on), and once a fresh copy comes without the attribute (the run ended) the refreshing stops.
 */
import assert from "node:assert/strict";
import { browserTest, eventually, launchChromium } from "./_browser.ts";

const NAME = "a refreshing part stops refreshing once a fresh copy asks for no more";
const SCRIPT = new URL("../../src/server/web/static/console.js", import.meta.url);

async function refreshTest(): Promise<void> {
  const script = await Deno.readTextFile(SCRIPT);
  let pages = 0;
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (request) => {
    if (new URL(request.url).pathname === "/console.js") {
      return new Response(script, { headers: { "Content-Type": "text/javascript" } });
    }
    pages++;
    // The first three copies refresh every 0.2 s; the fourth (the run ended) asks for no more.
    const refresh = pages <= 3 ? ` data-refresh-secs="0.2"` : "";
    // Links without ids, as the agents table has; a later copy has one more before them.
    const links = (pages > 2 ? `<a href="/new">new</a>` : "") +
      `<a href="/commands?agent=a">a</a><a href="/commands?agent=b">b</a>`;
    return new Response(
      `<!doctype html><html><body><div id="part"${refresh}>copy ${pages} ${links}</div>` +
        `<script src="/console.js"></script></body></html>`,
      { headers: { "Content-Type": "text/html" } },
    );
  });
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${server.addr.port}/runs/r1`);
    // A keyboard user on a link of the part keeps the focus on that link through the refreshes.
    await page.focus(`a[href="/commands?agent=b"]`);
    await eventually(
      "the part is refreshed up to the copy without the attribute",
      async () => (await page.locator("#part").innerText()).startsWith("copy 4"),
    );
    assert.equal(
      await page.evaluate("document.activeElement && document.activeElement.getAttribute('href')"),
      "/commands?agent=b",
      "the focus stays on the same link",
    );
    // Five intervals later: no further request.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.equal(pages, 4, "no refresh after the part stopped asking");
  } finally {
    await browser.close();
    await server.shutdown();
  }
}

browserTest(NAME, import.meta.filename!, refreshTest);
