/**
 * `status serve`: runs the dashboard (command queue, wake-ups, results) until SIGINT or SIGTERM.
 *
 * @module
 */
import { onSignals, STOP_SIGNALS } from "./signals.ts";
import { Command } from "@commander-js/extra-typings";
import { ConfigError } from "../errors.ts";
import { logger } from "../log/mod.ts";
import { startServer } from "../server/mod.ts";
import { addSettingOptions, loadCommandSettings, storeLocation } from "./common.ts";
import type { Io } from "./io.ts";
import { consoleIntoLog, surviveConnectionFailures } from "./survive.ts";

function readPem(path: string, flag: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new ConfigError(`${flag} ${path} does not exist`, { cause: error });
    }
    if (error instanceof Deno.errors.NotCapable) {
      throw new ConfigError(`cannot read ${path} (given by ${flag}) without --allow-read`, {
        cause: error,
      });
    }
    throw new ConfigError(`cannot read ${path} (given by ${flag}): ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/**
 * Builds `status serve`.
 *
 * @param io Where the command prints.
 * @returns The command.
 */
export function serveCommand(io: Io) {
  const command = new Command("serve")
    .description(
      "Run the dashboard: a durable command queue per agent that wakes waiting agents at once, " +
        "with signed, replay-proof agent requests and an operator API",
    );
  addSettingOptions(command, ["server"]);
  command.addHelpText(
    "after",
    `
Permissions: deno run --allow-net --allow-read --allow-write --allow-env main.ts serve

With no agent tokens and no STATUS_ADMIN_TOKEN the dashboard runs in dev mode (loopback only,
unsigned requests accepted). Otherwise set STATUS_ADMIN_TOKEN and add agents with
"status agents add <id>".

Examples:
  status serve
  status serve --port 0 --db /var/lib/status/status.db
  DATABASE_URL=postgres://status:secret@db:5432/status status serve   # several instances
  STATUS_ADMIN_TOKEN=... status serve --bind 0.0.0.0 --tls-cert cert.pem --tls-key key.pem`,
  );
  command.action(async (options) => {
    const loaded = loadCommandSettings(io, options as Record<string, unknown>, ["server"]);
    const s = loaded.settings;
    if ((s.tlsCert === undefined) !== (s.tlsKey === undefined)) {
      throw new ConfigError("--tls-cert and --tls-key must be given together");
    }
    const tls = s.tlsCert && s.tlsKey
      ? { cert: readPem(s.tlsCert, "--tls-cert"), key: readPem(s.tlsKey, "--tls-key") }
      : undefined;
    using _survive = surviveConnectionFailures();
    using _console = consoleIntoLog();
    const server = await startServer({
      db: storeLocation(loaded),
      port: s.port,
      hostname: s.bind,
      tls,
      adminToken: s.statusAdminToken,
      ackTimeoutSecs: s.ackTimeoutSecs,
      defaultTimeoutSecs: s.commandTimeoutSecs,
      maxAttempts: s.maxAttempts,
      rateLimitPerMinute: s.rateLimitPerMinute,
      headerTimeoutSecs: s.headerTimeoutSecs,
      maxConnections: s.maxConnections,
      operatorRateLimitPerMinute: s.operatorRateLimitPerMinute,
      queueTtlSecs: s.queueTtlSecs,
      waitRequireSignature: s.waitRequireSignature,
      acceptV1Signatures: s.acceptV1Signatures,
      metricsBind: s.metricsBind,
      offlineAfterSecs: s.offlineAfterSecs,
    });
    const log = logger("server");
    const stopSignals = onSignals(STOP_SIGNALS, (signal) => {
      log.info("received {signal}; shutting down", { signal });
      void server.shutdown();
    });
    try {
      if (server.devMode) {
        io.err(
          "status serve: DEV MODE: accepting unsigned requests from any agent id on loopback " +
            'only; add agents with "status agents add <id>" and set STATUS_ADMIN_TOKEN to ' +
            "leave it",
        );
      }
      io.out(`listening on ${server.url}`);
      await server.finished;
    } finally {
      stopSignals[Symbol.dispose]();
    }
  });
  return command;
}
