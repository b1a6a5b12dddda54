import assert from "node:assert/strict";
import { startServer } from "../../src/server/mod.ts";

async function selfSignedCert(dir: string): Promise<{ cert: string; key: string } | null> {
  try {
    const output = await new Deno.Command("openssl", {
      args: [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        `${dir}/key.pem`,
        "-out",
        `${dir}/cert.pem`,
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
      ],
      stdout: "null",
      stderr: "null",
    }).output();
    if (!output.success) return null;
  } catch {
    return null; // no openssl here
  }
  return {
    cert: await Deno.readTextFile(`${dir}/cert.pem`),
    key: await Deno.readTextFile(`${dir}/key.pem`),
  };
}

/** Runs `fn` with a fresh self-signed certificate, or skips (one message) without openssl. */
async function withCert(
  t: Deno.TestContext,
  fn: (tls: { cert: string; key: string }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "status-tls-" });
  try {
    const tls = await selfSignedCert(dir);
    if (!tls) {
      await t.step({ name: "openssl is not available", ignore: true, fn: () => {} });
      return;
    }
    await fn(tls);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("the dashboard serves HTTPS with a certificate and key", async (t) => {
  await withCert(t, async (tls) => {
    await using server = await startServer({
      availableDescriptors: "plenty",
      db: ":memory:",
      port: 0,
      tls,
    });
    assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    using client = Deno.createHttpClient({ caCerts: [tls.cert] });
    const response = await fetch(`${server.url}/health`, { client });
    assert.equal(response.status, 200);
    assert.equal((await response.json()).status, "ok");
  });
});

Deno.test("an HTTPS connection that never finishes its TLS handshake is closed after the header timeout", async (t) => {
  await withCert(t, async (tls) => {
    await using server = await startServer({
      availableDescriptors: "plenty",
      db: ":memory:",
      port: 0,
      tls,
      headerTimeoutSecs: 1,
    });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    try {
      const buffer = new Uint8Array(64);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const closed = await Promise.race([
        conn.read(buffer).then((n) => n === null, () => true),
        new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), 8000)),
      ]);
      clearTimeout(timer);
      assert.ok(closed, "the idle TLS connection is closed");
      assert.equal(server.listener.connections, 0);
    } finally {
      try {
        conn.close();
      } catch {
        // closed
      }
    }
  });
});
