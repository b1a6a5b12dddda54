import assert from "node:assert/strict";
import { listenHttp } from "../../src/http_listener.ts";
import { ConfigError } from "../../src/errors.ts";
import { startServer } from "../../src/server/mod.ts";
import { until } from "../_until.ts";
import { P } from "./_helpers.ts";
import { closeQuietly, readAll, readAnswer, send, waitHead } from "./_sockets.ts";

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

Deno.test("startServer refuses a key that is not its certificate's, before listening", async (t) => {
  await withCert(t, async (tls) => {
    await withCert(t, async (other) => {
      const error = await startServer({
        availableDescriptors: "plenty",
        db: ":memory:",
        port: 0,
        tls: { cert: tls.cert, key: other.key },
      }).catch((e) => e);
      assert.ok(error instanceof ConfigError, String(error));
      assert.equal(error.message, "tls.key is not the private key of the certificate in tls.cert");
    });
  });
});

Deno.test("startServer refuses an encrypted key as encrypted, before listening", async (t) => {
  await withCert(t, async (tls) => {
    const dir = await Deno.makeTempDir({ prefix: "status-tls-" });
    try {
      await Deno.writeTextFile(`${dir}/key.pem`, tls.key);
      // PKCS #8 (BEGIN ENCRYPTED PRIVATE KEY) and traditional (a Proc-Type: 4,ENCRYPTED header).
      for (const args of [["pkcs8", "-topk8"], ["ec", "-aes256"]]) {
        const encrypted = await new Deno.Command("openssl", {
          args: [...args, "-in", `${dir}/key.pem`, "-out", `${dir}/enc.pem`, "-passout", "pass:x"],
          stdout: "null",
          stderr: "piped",
        }).output();
        assert.ok(encrypted.success, new TextDecoder().decode(encrypted.stderr));
        const key = await Deno.readTextFile(`${dir}/enc.pem`);
        const error = await startServer({
          availableDescriptors: "plenty",
          db: ":memory:",
          port: 0,
          tls: { cert: tls.cert, key },
        }).catch((e) => e);
        assert.ok(error instanceof ConfigError, String(error));
        assert.match(
          error.message,
          /^tls\.key is encrypted \(it needs a passphrase, which the dashboard cannot give\); give it unencrypted: openssl pkey /,
          args.join(" "),
        );
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
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

Deno.test("over HTTPS a half-close drops a held wait and answers a body cut short 400", async (t) => {
  await withCert(t, async (tls) => {
    await using server = await startServer({
      availableDescriptors: "plenty",
      db: ":memory:",
      port: 0,
      tls,
      rateLimitPerMinute: 1_000_000,
    });
    const connect = () =>
      Deno.connectTls({ hostname: "127.0.0.1", port: server.port, caCerts: [tls.cert] });
    const waiting = await connect();
    try {
      await send(waiting, waitHead("w1", 30));
      await until(() => server.dashboard.hub.size === 1, "the wait is held");
      await waiting.closeWrite();
      await until(() => server.dashboard.hub.size === 0, "the wait is dropped");
    } finally {
      closeQuietly(waiting);
    }
    const cut = await connect();
    try {
      await send(
        cut,
        `POST ${P.enqueue} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Agent-Id: a1\r\n` +
          'Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"id":"x",',
      );
      await cut.closeWrite();
      const answer = await readAll(cut, 5000);
      assert.match(answer.text, /^HTTP\/1\.1 400 [\s\S]*the client closed its side/);
    } finally {
      closeQuietly(cut);
    }
  });
});

Deno.test("over HTTPS a request in flight when close begins gets its answer, then the connection ends", async (t) => {
  await withCert(t, async (tls) => {
    const answer = Promise.withResolvers<void>();
    const started = Promise.withResolvers<void>();
    const listener = await listenHttp({
      port: 0,
      hostname: "127.0.0.1",
      availableDescriptors: "plenty",
      tls,
      async fetch() {
        started.resolve();
        await answer.promise;
        return Response.json({ ok: true });
      },
    });
    const busy = await Deno.connectTls({
      hostname: "127.0.0.1",
      port: listener.port,
      caCerts: [tls.cert],
    });
    const idle = await Deno.connectTls({
      hostname: "127.0.0.1",
      port: listener.port,
      caCerts: [tls.cert],
    });
    try {
      await idle.handshake();
      await send(busy, "GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
      await started.promise;
      const closed = listener.close();
      // The idle connection ends now; the busy one gets its answer first.
      assert.equal((await readAll(idle, 5000)).closed, true, "the idle connection ends");
      answer.resolve();
      const got = await readAll(busy, 5000);
      assert.match(got.text, /^HTTP\/1\.1 200 [\s\S]*\{"ok":true\}$/);
      assert.equal(got.closed, true, "then the connection ends");
      await closed;
    } finally {
      answer.resolve();
      closeQuietly(busy);
      closeQuietly(idle);
      await listener.close();
    }
  });
});

Deno.test("over HTTPS at the connection limit a new connection takes the place of one that never finished its handshake, never of a held wait", async (t) => {
  await withCert(t, async (tls) => {
    await using server = await startServer({
      availableDescriptors: "plenty",
      db: ":memory:",
      port: 0,
      tls,
      maxConnections: 2,
      rateLimitPerMinute: 1_000_000,
    });
    const connectTls = () =>
      Deno.connectTls({ hostname: "127.0.0.1", port: server.port, caCerts: [tls.cert] });
    const waiting = await connectTls();
    const silent = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    const conns: Deno.Conn[] = [waiting, silent];
    try {
      await send(waiting, waitHead("w1", 30));
      await until(() => server.dashboard.hub.size === 1, "the wait is held");
      await until(() => server.listener.connections === 2, "the limit is reached");
      const client = await connectTls();
      conns.push(client);
      await send(client, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
      assert.match((await readAnswer(client)).text, /^HTTP\/1\.1 200 /);
      assert.ok((await readAll(silent, 2000)).closed, "the silent connection made room");
      assert.equal(server.listener.evicted, 1);
      // Now the client is idle after its answer: the next one takes its place, not the wait's.
      await until(() => server.listener.idle === 1, "the client's connection is idle");
      const next = await connectTls();
      conns.push(next);
      await send(next, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
      assert.match((await readAnswer(next)).text, /^HTTP\/1\.1 200 /);
      assert.equal(server.listener.evicted, 2);
      assert.equal(server.dashboard.hub.size, 1, "the held wait was kept");
    } finally {
      for (const conn of conns) closeQuietly(conn);
    }
  });
});
