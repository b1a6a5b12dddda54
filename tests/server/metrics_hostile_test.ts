/**
 * The dashboard's metrics after hostile traffic over real sockets: what clients choose (paths,
 * methods, agent ids, user agents, with quotes, backslashes, newlines, UTF-8 and bidi characters)
 * never breaks the exposition nor adds series.
 */
import assert from "node:assert/strict";
import { parseStrict } from "../_prom_strict.ts";
import { startServer } from "../../src/server/mod.ts";
import { closeQuietly, rawConnect, readAll } from "./_sockets.ts";

/** Values an attacker would try in every place a client names something. */
const HOSTILE = ['q"uote', "back\\slash", "new%0Aline", "caf\u00e9", "\u202eevil", "x".repeat(300)];

/** Sends one raw request head (bytes as given, UTF-8) and reads the answer until close. */
async function raw(port: number, head: string): Promise<string> {
  const conn = await rawConnect({ port });
  try {
    await conn.write(new TextEncoder().encode(head));
    return (await readAll(conn, 5000)).text;
  } finally {
    closeQuietly(conn);
  }
}

/** One round of hostile requests, each value of {@link HOSTILE} made distinct by `round`. */
async function hostileRound(port: number, round: number): Promise<void> {
  for (const value of HOSTILE) {
    const v = `${value}-${round}`;
    const id = encodeURIComponent(v);
    const heads = [
      `GET /no/such/${v} HTTP/1.1`,
      `GET /api/v1/commands/${id} HTTP/1.1`,
      `PURGE /api/v1/commands/${id}/cancel HTTP/1.1`,
      `DELETE /api/v1/agents/${id} HTTP/1.1`,
      `GET /api/v1/agent/commands/wait/${id}?timeout=nope HTTP/1.1`,
      `POST /api/v1/agent/commands/report HTTP/1.1`,
      `BREW /metrics${round} HTTP/1.1`,
      `GET /commands/${id} HTTP/1.1`,
    ];
    for (const line of heads) {
      await raw(
        port,
        `${line}\r\nHost: 127.0.0.1\r\nUser-Agent: ${v}\r\nX-Agent-Id: ${v}\r\n` +
          "Content-Length: 2\r\nConnection: close\r\n\r\n{}",
      );
    }
  }
}

Deno.test("a dashboard's scrapes after hostile paths, methods, agent ids and user agents parse strictly and add no series", async () => {
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
    metricsBind: "127.0.0.1:0",
    rateLimitPerMinute: 1_000_000,
    operatorRateLimitPerMinute: 1_000_000,
  });
  const scrape = async (url: string) => {
    const response = await fetch(url, { headers: { Connection: "close" } });
    assert.equal(response.status, 200);
    const text = await response.text();
    const families = parseStrict(text);
    assert.ok(families.has("status_http_requests_total"));
    return text.split("\n").filter((line) => line !== "" && !line.startsWith("#")).length;
  };
  await hostileRound(server.port, 1);
  // The first scrape of the main address is counted in the next: its own series.
  await scrape(`${server.url}/metrics`);
  const main = await scrape(`${server.url}/metrics`);
  await hostileRound(server.port, 2);
  assert.equal(await scrape(`${server.url}/metrics`), main);
  const bound = await scrape(server.metricsUrl!);
  assert.ok(bound >= main, "the same metrics on the metrics address");
});
