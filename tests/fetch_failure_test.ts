import assert from "node:assert/strict";
import { describeFetchFailure } from "../src/fetch_failure.ts";

Deno.test("describeFetchFailure names an http:// and https:// mix-up", async (t) => {
  await using tls = await tlsServer();
  const plain = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response("ok"),
  );
  try {
    const failure = (url: string) =>
      fetch(url).then(async (response) => {
        await response.body?.cancel();
        return assert.fail(`${url} answered`);
      }, describeFetchFailure);
    await t.step("http:// to a dashboard that serves HTTPS", async () => {
      if (!tls) return;
      assert.equal(
        await failure(`http://127.0.0.1:${tls.port}/`),
        "it answered, but not in HTTP (if it serves HTTPS, the URL must begin with https://)",
      );
    });
    await t.step("https:// to a dashboard that serves plain HTTP", async () => {
      assert.equal(
        await failure(`https://127.0.0.1:${plain.addr.port}/`),
        "the TLS handshake failed: it answered, but not in TLS (if it serves plain HTTP, the " +
          "URL must begin with http://)",
      );
    });
  } finally {
    await plain.shutdown();
  }
});

/** An HTTPS server on a self-signed certificate; `null` without openssl. */
async function tlsServer() {
  const dir = await Deno.makeTempDir({ prefix: "status-fetch-" });
  try {
    const made = await new Deno.Command("openssl", {
      args: ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        .concat(["-keyout", `${dir}/key.pem`, "-out", `${dir}/cert.pem`, "-days", "1"])
        .concat(["-subj", "/CN=localhost"]),
      stdout: "null",
      stderr: "null",
    }).output().catch(() => null);
    if (!made?.success) return null;
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen: () => {},
      cert: await Deno.readTextFile(`${dir}/cert.pem`),
      key: await Deno.readTextFile(`${dir}/key.pem`),
    }, () => new Response("ok"));
    return {
      port: server.addr.port,
      [Symbol.asyncDispose]: () => server.shutdown(),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("describeFetchFailure says why the dashboard's certificate was refused and what to do", async (t) => {
  await t.step("a bare self-signed certificate (openssl req -x509), fetched for real", async () => {
    await using tls = await tlsServer();
    if (!tls) return;
    const why = await fetch(`https://localhost:${tls.port}/`).then(async (response) => {
      await response.body?.cancel();
      return assert.fail("a self-signed certificate was accepted");
    }, describeFetchFailure);
    assert.match(
      why,
      /^the TLS handshake failed: the dashboard serves a CA certificate as its own/,
    );
    assert.match(why, /DENO_CERT=/);
  });
  const refused = (reason: string) =>
    describeFetchFailure(
      new TypeError("fetch failed", {
        cause: new Error(
          "error sending request for url (https://dash:5000/health): client error (Connect): " +
            `invalid peer certificate: ${reason}`,
        ),
      }),
    );
  for (
    const [reason, expected] of [
      ["UnknownIssuer", /not issued by a CA this machine trusts .*DENO_CERT=\/path\/to\/ca\.pem$/],
      ["NotValidForName", /not valid for the host name in the URL/],
      ["Expired", /has expired/],
      [
        "Other(OtherError(X))",
        /^the TLS handshake failed: the dashboard's certificate was refused \(X\)$/,
      ],
    ] as const
  ) {
    await t.step(reason, () => {
      const why = refused(reason);
      assert.match(why, /^the TLS handshake failed: /);
      assert.match(why, expected);
    });
  }
});

Deno.test("describeFetchFailure names a failure after the connection was made without Deno's prefix", async (t) => {
  /** Fetches from a server that reads the request and then does what `answer` does. */
  const failureOf = async (answer: (conn: Deno.Conn) => Promise<unknown>) => {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const served = (async () => {
      using conn = await listener.accept();
      await conn.read(new Uint8Array(64 * 1024));
      await answer(conn).catch(() => {});
    })();
    const why = await fetch(`http://127.0.0.1:${listener.addr.port}/api/v1/agent/ping`).then(
      async (response) => {
        await response.body?.cancel();
        return assert.fail(`answered ${response.status}`);
      },
      describeFetchFailure,
    );
    await served;
    return why;
  };
  const write = (conn: Deno.Conn, text: string) => conn.write(new TextEncoder().encode(text));
  await t.step("closed before an answer", async () => {
    assert.equal(
      await failureOf(() => Promise.resolve()),
      "the connection was closed before an answer came",
    );
  });
  await t.step("a head of a megabyte", async () => {
    assert.equal(
      await failureOf((conn) => write(conn, `HTTP/1.1 200 OK\r\nX-Big: ${"a".repeat(1 << 20)}`)),
      "the answer's status line and headers are too large",
    );
  });
  await t.step("another reason: only the reason", async () => {
    const why = await failureOf((conn) =>
      write(conn, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello")
    );
    assert.equal(why, "invalid content-length parsed");
  });
});

Deno.test("describeFetchFailure names the host a certificate was not issued for, and those it was", async (t) => {
  await t.step("fetched for real: a certificate for otherhost served at localhost", async () => {
    const dir = await Deno.makeTempDir({ prefix: "status-fetch-" });
    try {
      const made = await new Deno.Command("openssl", {
        args: ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
          .concat(["-nodes", "-keyout", `${dir}/key.pem`, "-out", `${dir}/cert.pem`, "-days", "1"])
          .concat(["-subj", "/CN=otherhost", "-addext", "basicConstraints=critical,CA:FALSE"])
          .concat(["-addext", "subjectAltName=DNS:otherhost"]),
        stdout: "null",
        stderr: "null",
      }).output().catch(() => null);
      if (!made?.success) return;
      const cert = await Deno.readTextFile(`${dir}/cert.pem`);
      await using server = Deno.serve({
        hostname: "127.0.0.1",
        port: 0,
        onListen: () => {},
        cert,
        key: await Deno.readTextFile(`${dir}/key.pem`),
      }, () => new Response("ok"));
      // Trusted, as DENO_CERT would make it: only its name is wrong.
      using client = Deno.createHttpClient({ caCerts: [cert] });
      const why = await fetch(`https://localhost:${server.addr.port}/`, { client }).then(
        async (response) => {
          await response.body?.cancel();
          return assert.fail("a certificate for another name was accepted");
        },
        describeFetchFailure,
      );
      assert.equal(
        why,
        "the TLS handshake failed: the dashboard's certificate is not valid for the host name in " +
          "the URL (localhost; it was issued for otherhost); use a name it was issued for",
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
  await t.step("an expired one, told in a sentence", () => {
    const why = describeFetchFailure(
      new TypeError("fetch failed", {
        cause: new Error(
          "error sending request for url (https://dash:5000/): client error (Connect): invalid " +
            "peer certificate: certificate expired: verification time 1796191200 (UNIX), but " +
            "certificate is not valid after 1796104800 (86400 seconds ago)",
        ),
      }),
    );
    assert.match(why, /^the TLS handshake failed: the dashboard's certificate has expired/);
  });
});
