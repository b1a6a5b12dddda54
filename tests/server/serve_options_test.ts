/**
 * `startServer` checks its own options before it opens the store, as the CLI's settings do: a
 * value out of range is a `RangeError`, a `tls` pair that cannot serve HTTPS a `ConfigError`.
 */
import assert from "node:assert/strict";
import { ConfigError } from "../../src/errors.ts";
import { startServer } from "../../src/server/mod.ts";

Deno.test("startServer refuses bad listener options before opening the store", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "status-serve-options-" });
  try {
    const db = `${dir}/status.db`;
    const refused = async (options: Parameters<typeof startServer>[0], wanted: RegExp) => {
      await assert.rejects(
        startServer({ availableDescriptors: "plenty", db, port: 0, ...options }),
        wanted,
      );
      assert.deepEqual([...Deno.readDirSync(dir)], [], "no database was created");
    };
    for (const headerTimeoutSecs of [-1, 0, 1.5, 301, NaN]) {
      await t.step(`headerTimeoutSecs ${headerTimeoutSecs}`, () =>
        refused(
          { headerTimeoutSecs },
          new RegExp(
            `^RangeError: headerTimeoutSecs must be a whole number from 1 to 300, got ${headerTimeoutSecs}$`,
          ),
        ));
    }
    for (const maxConnections of [0, -5, 2.5, NaN, 1_000_001]) {
      await t.step(`maxConnections ${maxConnections}`, () =>
        refused(
          { maxConnections },
          new RegExp(
            `^RangeError: maxConnections must be a whole number from 1 to 1000000, got ${maxConnections}$`,
          ),
        ));
    }
    await t.step("a tls pair that is not PEM", async () => {
      const error = await startServer({ db, port: 0, tls: { cert: "x", key: "y" } }).catch((e) =>
        e
      );
      assert.ok(error instanceof ConfigError, String(error));
      assert.equal(
        error.message,
        'tls.cert holds no PEM certificate (a "-----BEGIN CERTIFICATE-----" block)',
      );
      assert.deepEqual([...Deno.readDirSync(dir)], [], "no database was created");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("startServer in dev mode refuses a non-loopback --metrics-bind as it does BIND", async () => {
  const dir = await Deno.makeTempDir({ prefix: "status-serve-options-" });
  try {
    const db = `${dir}/status.db`;
    for (const metricsBind of ["0.0.0.0:0", "[::]:0"]) {
      const error = await startServer({ availableDescriptors: "plenty", db, port: 0, metricsBind })
        .catch((e) => e);
      assert.ok(error instanceof ConfigError, String(error));
      assert.match(
        error.message,
        /^dev mode \(no agent tokens and no STATUS_ADMIN_TOKEN\) listens on loopback only, but METRICS_BIND \(--metrics-bind\) is (0\.0\.0\.0|::); bind 127\.0\.0\.1, or add an agent with "status agents add <id> --db .*" and set STATUS_ADMIN_TOKEN$/,
      );
    }
    // A loopback one is served, as before.
    await using server = await startServer({
      availableDescriptors: "plenty",
      db,
      port: 0,
      metricsBind: "127.0.0.1:0",
    });
    assert.ok(server.metricsUrl);
    const scrape = await fetch(server.metricsUrl);
    assert.equal(scrape.status, 200);
    await scrape.body?.cancel();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a start refused for its address makes no database", async (t) => {
  // A dev-mode start on 0.0.0.0 made status.db (and its reserve), then refused the address.
  const dir = await Deno.makeTempDir({ prefix: "status-serve-options-" });
  const db = `${dir}/status.db`;
  const refused = async (options: Parameters<typeof startServer>[0], wanted: RegExp) => {
    const error = await startServer({ availableDescriptors: "plenty", db, port: 0, ...options })
      .catch((e) => e);
    assert.ok(error instanceof ConfigError, String(error));
    assert.match(error.message, wanted);
    assert.deepEqual([...Deno.readDirSync(dir)], [], "no database was created");
  };
  try {
    await t.step("dev mode and a BIND that is not loopback", async () => {
      for (const hostname of ["0.0.0.0", "::"]) {
        await refused({ hostname }, /^dev mode .* listens on loopback only, but --bind is /);
      }
      await refused(
        { metricsBind: "0.0.0.0:0" },
        /^dev mode .* listens on loopback only, but METRICS_BIND/,
      );
    });
    await t.step("a BIND that does not resolve, or is no address here", async () => {
      const adminToken = "an-admin-token-of-some-length";
      await refused(
        { hostname: "no-such-host.invalid", adminToken },
        /^cannot listen on no-such-host\.invalid:0: .* is not an IP address or a host name that resolves$/,
      );
      await refused(
        { hostname: "192.0.2.1", adminToken },
        /^cannot listen on 192\.0\.2\.1:0: .* is not an address of this machine$/,
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a start refused for its METRICS_BIND host makes no database", async () => {
  // Found out only when the metrics listened, after status.db was made.
  const dir = await Deno.makeTempDir({ prefix: "status-serve-options-" });
  try {
    for (
      const [host, why] of [
        ["no-such-host.invalid", "is not an IP address or a host name that resolves"],
        ["192.0.2.1", "is not an address of this machine"],
      ]
    ) {
      const error = await startServer({
        availableDescriptors: "plenty",
        db: `${dir}/status.db`,
        port: 0,
        adminToken: "an-admin-token-of-some-length",
        metricsBind: `${host}:0`,
      }).catch((e) => e);
      assert.ok(error instanceof ConfigError, String(error));
      assert.equal(
        error.message,
        `cannot serve metrics on ${host}:0: ${host} (METRICS_BIND, --metrics-bind) ${why}`,
      );
      assert.deepEqual([...Deno.readDirSync(dir)], [], "no database was created");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
