/**
 * The metrics listener (the agent's `--metrics-port`, the dashboard's `--metrics-bind`) has the
 * dashboard's socket defences: idle sockets are closed, and a flood of them is refused instead of
 * running the process out of descriptors.
 */
import assert from "node:assert/strict";
import { FakeClock } from "../src/clock.ts";
import { serveMetrics } from "../src/metrics_server.ts";
import { closeLogging, setupLogging } from "../src/log/mod.ts";
import { readAll } from "./server/_sockets.ts";

Deno.test("the metrics listener refuses connections beyond its limit, closes idle ones, then serves a scrape", async () => {
  const stop = new AbortController();
  const server = await serveMetrics(
    () => Promise.resolve(new Response("up 1\n")),
    { hostname: "127.0.0.1", port: 0 },
    stop.signal,
    { headerTimeoutSecs: 1, maxConnections: 4 },
  );
  const conns: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < 10; i++) {
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port: server.port }));
    }
    // Beyond the limit: closed at once. Within it: closed once the header timeout passed.
    const outcomes = await Promise.all(conns.map((conn) => readAll(conn, 5000)));
    assert.ok(outcomes.every((outcome) => outcome.closed), JSON.stringify(outcomes));
    const scrape = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    assert.equal(scrape.status, 200);
    assert.equal(await scrape.text(), "up 1\n");
    const other = await fetch(`http://127.0.0.1:${server.port}/`);
    assert.equal(other.status, 404);
    await other.body?.cancel();
    // A monitor's HEAD gets the scrape's headers; another method is told which ones there are.
    const head = await fetch(`http://127.0.0.1:${server.port}/metrics`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), "");
    const post = await fetch(`http://127.0.0.1:${server.port}/metrics`, { method: "POST" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("Allow"), "GET, HEAD");
    await post.body?.cancel();
  } finally {
    for (const conn of conns) {
      try {
        conn.close();
      } catch {
        // closed by the server
      }
    }
    stop.abort();
    await server.finished;
  }
});

Deno.test("the metrics listener's answers are kept by no cache and never sniffed, as the dashboard's", async () => {
  const stop = new AbortController();
  const server = await serveMetrics(
    () => Promise.resolve(new Response("up 1\n")),
    { hostname: "127.0.0.1", port: 0 },
    stop.signal,
  );
  try {
    for (
      const [method, path, status] of [
        ["GET", "/metrics", 200],
        ["HEAD", "/metrics", 200],
        ["GET", "/", 404],
        ["POST", "/metrics", 405],
      ] as const
    ) {
      const answer = await fetch(`http://127.0.0.1:${server.port}${path}`, { method });
      await answer.body?.cancel();
      assert.equal(answer.status, status, `${method} ${path}`);
      assert.equal(answer.headers.get("Cache-Control"), "no-store", `${method} ${path}`);
      assert.equal(answer.headers.get("X-Content-Type-Options"), "nosniff", `${method} ${path}`);
    }
  } finally {
    stop.abort();
    await server.finished;
  }
});

Deno.test("the metrics listener renders at most once a second, however often it is scraped", async (t) => {
  const clock = new FakeClock();
  let renders = 0;
  const stop = new AbortController();
  const server = await serveMetrics(
    async () => {
      renders++;
      await Promise.resolve();
      return new Response(`renders ${renders}\n`, {
        headers: { "Content-Type": "text/plain; version=0.0.4" },
      });
    },
    { hostname: "127.0.0.1", port: 0 },
    stop.signal,
    { clock },
  );
  const scrape = async () => {
    const response = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("Content-Type"), "text/plain; version=0.0.4");
    return await response.text();
  };
  try {
    await t.step("scrapes at once and one after another share one render", async () => {
      const texts = await Promise.all(Array.from({ length: 20 }, scrape));
      for (let i = 0; i < 20; i++) texts.push(await scrape());
      assert.deepEqual(new Set(texts), new Set(["renders 1\n"]));
      assert.equal(renders, 1);
    });
    await t.step("a second later the next scrape renders again", async () => {
      clock.advance(999);
      assert.equal(await scrape(), "renders 1\n");
      clock.advance(1);
      assert.equal(await scrape(), "renders 2\n");
      assert.equal(renders, 2);
    });
  } finally {
    stop.abort();
    await server.finished;
  }
});

Deno.test("the metrics listener renders again when the wall clock was set back, not an old scrape until it catches up", async () => {
  // The last render was kept while now minus its time was under a second, and that difference
  // is negative for as long as a clock set back (an NTP step, a VM resumed) takes to catch up:
  // every scrape in those hours got the same old metrics.
  class SteppedClock extends FakeClock {
    at = Date.UTC(2026, 0, 12, 10, 0, 0);
    override now(): number {
      return this.at;
    }
  }
  const clock = new SteppedClock();
  let renders = 0;
  const stop = new AbortController();
  const server = await serveMetrics(
    () => Promise.resolve(new Response(`renders ${++renders}\n`)),
    { hostname: "127.0.0.1", port: 0 },
    stop.signal,
    { clock },
  );
  const scrape = async () => await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
  try {
    assert.equal(await scrape(), "renders 1\n");
    clock.at -= 3_600_000;
    assert.equal(await scrape(), "renders 2\n", "an hour back: rendered again");
    clock.at += 500;
    assert.equal(await scrape(), "renders 2\n", "then kept for a second, as always");
  } finally {
    stop.abort();
    await server.finished;
  }
});

Deno.test("a failed render of the metrics is not kept: the next scrape renders again", async () => {
  const clock = new FakeClock();
  let renders = 0;
  const stop = new AbortController();
  const server = await serveMetrics(
    () => {
      renders++;
      if (renders === 1) throw new Error("the registry failed");
      return Promise.resolve(new Response("up 1\n"));
    },
    { hostname: "127.0.0.1", port: 0 },
    stop.signal,
    { clock },
  );
  try {
    const failed = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    assert.equal(failed.status, 500);
    await failed.body?.cancel();
    const next = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    assert.equal(next.status, 200);
    assert.equal(await next.text(), "up 1\n");
  } finally {
    stop.abort();
    await server.finished;
  }
});

Deno.test("the metrics listener says its URL with an IPv6 address in brackets", async () => {
  // It said "metrics on http://::1:9100/metrics", which no browser or scraper takes.
  const lines: string[] = [];
  setupLogging({ format: "json", level: "info", write: (line) => lines.push(line) });
  const stop = new AbortController();
  try {
    const served = await serveMetrics(
      () => Promise.resolve(new Response("up 1\n")),
      { hostname: "::1", port: 0 },
      stop.signal,
    );
    const said = lines.map((line) => JSON.parse(line).message).find((m) => /^metrics on /.test(m));
    assert.equal(said, `metrics on http://[::1]:${served.port}/metrics`);
    const scrape = await fetch(`http://[::1]:${served.port}/metrics`);
    assert.equal(await scrape.text(), "up 1\n");
    stop.abort();
    await served.finished;
  } finally {
    stop.abort();
    closeLogging();
  }
});

Deno.test("the metrics listener on loopback answers only a loopback Host (no DNS rebinding)", async () => {
  const stop = new AbortController();
  const server = await serveMetrics(
    () => Promise.resolve(new Response("up 1\n")),
    { hostname: "127.0.0.1", port: 0 },
    stop.signal,
  );
  const ask = async (host: string) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    try {
      await conn.write(
        new TextEncoder().encode(
          `GET /metrics HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
        ),
      );
      return (await readAll(conn, 5000)).text;
    } finally {
      try {
        conn.close();
      } catch {
        // closed by the server
      }
    }
  };
  try {
    for (const host of ["evil.example", `evil.example:${server.port}`, "192.168.1.10"]) {
      const answer = await ask(host);
      assert.match(answer, /^HTTP\/1\.1 403 /, host);
      assert.match(
        answer,
        /\r\n\r\nmetrics on a loopback address answer requests addressed to this machine by a loopback name \(localhost, 127\.0\.0\.1, \[::1\]\) only; this one was addressed to "(evil\.example|192\.168\.1\.10)" \(a DNS-rebinding page\?\)\n$/,
        host,
      );
      assert.doesNotMatch(answer, /up 1/, host);
    }
    for (const host of ["localhost", `127.0.0.1:${server.port}`, "[::1]", "LOCALHOST"]) {
      const answer = await ask(host);
      assert.match(answer, /^HTTP\/1\.1 200 /, host);
      assert.match(answer, /\r\n\r\nup 1\n$/, host);
    }
  } finally {
    stop.abort();
    await server.finished;
  }
});

Deno.test("the metrics listener on loopback spelled otherwise (127.1, 0::1) answers only a loopback Host too", async () => {
  // Loopback was told by the setting's spelling: 127.1, 2130706433, 0::1 or a host name of
  // 127.0.0.1 listen on loopback, and answered a DNS-rebinding page's Host.
  for (const hostname of ["127.1", "2130706433", "0::1"]) {
    const stop = new AbortController();
    const server = await serveMetrics(
      () => Promise.resolve(new Response("up 1\n")),
      { hostname, port: 0 },
      stop.signal,
    );
    const ask = async (host: string) => {
      const conn = await Deno.connect({ hostname: server.hostname, port: server.port });
      try {
        await conn.write(
          new TextEncoder().encode(
            `GET /metrics HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
          ),
        );
        return (await readAll(conn, 5000)).text;
      } finally {
        try {
          conn.close();
        } catch {
          // closed by the server
        }
      }
    };
    try {
      assert.match(server.hostname, /^(127\.0\.0\.1|::1)$/, hostname);
      assert.match(await ask("evil.example"), /^HTTP\/1\.1 403 /, hostname);
      assert.match(await ask("localhost"), /^HTTP\/1\.1 200 /, hostname);
    } finally {
      stop.abort();
      await server.finished;
    }
  }
});

Deno.test("the metrics listener on another address answers any Host its scrapers know it by", async () => {
  const stop = new AbortController();
  const server = await serveMetrics(
    () => Promise.resolve(new Response("up 1\n")),
    { hostname: "0.0.0.0", port: 0 },
    stop.signal,
  );
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    await conn.write(
      new TextEncoder().encode(
        "GET /metrics HTTP/1.1\r\nHost: metrics.example\r\nConnection: close\r\n\r\n",
      ),
    );
    const answer = (await readAll(conn, 5000)).text;
    try {
      conn.close();
    } catch {
      // closed by the server
    }
    assert.match(answer, /^HTTP\/1\.1 200 /);
    assert.match(answer, /\r\n\r\nup 1\n$/);
  } finally {
    stop.abort();
    await server.finished;
  }
});
