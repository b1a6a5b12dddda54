/**
 * `status serve`: runs the dashboard (command queue, wake-ups, results) until SIGINT, SIGTERM or SIGHUP
 * (a second one: stops at once, exit code 128 + its number).
 *
 * @module
 */
import {
  NOHUP_IGNORED,
  onSignals,
  signalNumber,
  startedIgnoringHangup,
  STOP_SIGNALS,
  type StopSignal,
} from "./signals.ts";
import { setExitCode } from "./exit.ts";
import { Command } from "@commander-js/extra-typings";
import { ConfigError } from "../errors.ts";
import { literal, logger } from "../log/mod.ts";
import { checkTlsPair, startServer } from "../server/mod.ts";
import {
  addSettingOptions,
  isAddrInUse,
  loadCommandSettings,
  storeLocation,
  storeSetting,
} from "./common.ts";
import { flagOf, type LoadedSettings, SETTINGS } from "../config/mod.ts";
import { redactUrl } from "../log/redact.ts";
import type { Io } from "./io.ts";
import { readTextFileBounded } from "../read_bounded.ts";
import { isNamedPipe } from "../config/load.ts";
import { consoleIntoLog, surviveConnectionFailures } from "./survive.ts";

/** How a TLS file setting is named in errors: `TLS_CERT from flag --tls-cert (cert.pem)`. */
function named(env: string, source: string | undefined, path: string): string {
  return `${env} from ${source ?? "the default"} (${path})`;
}

/** The largest PEM file read: a certificate chain or a key is a few kilobytes. */
const MAX_PEM_BYTES = 1024 * 1024;

function readPem(path: string, what: string): string {
  if (isNamedPipe(path)) {
    throw new ConfigError(
      `${what} is a named pipe, not a file: reading it would wait until something writes to it`,
    );
  }
  let text: string | undefined;
  try {
    text = readTextFileBounded(path, MAX_PEM_BYTES);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new ConfigError(`${what}: the file does not exist`, { cause: error });
    }
    if (error instanceof Deno.errors.NotCapable) {
      throw new ConfigError(`${what}: cannot be read without --allow-read`, { cause: error });
    }
    throw new ConfigError(`${what}: cannot be read: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (text === undefined) throw new ConfigError(`${what} is larger than 1 MiB; is it PEM?`);
  return text;
}

/**
 * The mode of a file that users other than its owner may read (`"0644"`), or `undefined` when
 * they may not, or it cannot be looked at.
 */
function readableByOthers(path: string): string | undefined {
  let mode: number | null;
  try {
    mode = Deno.statSync(path).mode;
  } catch {
    return undefined;
  }
  if (mode === null || (mode & 0o044) === 0) return undefined;
  return (mode & 0o7777).toString(8).padStart(4, "0");
}

/**
 * Reads the certificate and key files and checks once, before listening, that they are PEM and
 * belong together: a bad pair would otherwise fail every HTTPS connection, one by one.
 *
 * @param loaded The loaded settings (`TLS_CERT` and `TLS_KEY` set).
 * @returns The PEM texts.
 * @throws {ConfigError} Naming the setting, where it came from and what is wrong with the file.
 */
export function loadTlsPair(loaded: LoadedSettings): { cert: string; key: string } {
  const { settings: s, sources } = loaded;
  const certName = named("TLS_CERT", sources.tlsCert, s.tlsCert!);
  const keyName = named("TLS_KEY", sources.tlsKey, s.tlsKey!);
  const cert = readPem(s.tlsCert!, certName);
  const key = readPem(s.tlsKey!, keyName);
  checkTlsPair({ cert, key }, { cert: certName, key: keyName });
  return { cert, key };
}

/**
 * What to do about an address another process listens on: the dashboard's port or METRICS_BIND.
 * The listener's message names only the address.
 *
 * @param error The listener's error.
 * @returns The error to print.
 */
export function addressInUse(error: Error): Error {
  const advice = error.message.startsWith("cannot serve metrics")
    ? "; stop what listens there, or give METRICS_BIND (--metrics-bind) another port"
    : ' (another "status serve" or "status up"?); stop what listens there, or give another ' +
      "port with --port <n> or PORT (0 picks a free one)";
  return new Error(error.message + advice, { cause: error });
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
      const [given, missing] = s.tlsCert === undefined ? ["TLS_KEY", "TLS_CERT"] : [
        "TLS_CERT",
        "TLS_KEY",
      ];
      const source = loaded.sources[given === "TLS_CERT" ? "tlsCert" : "tlsKey"];
      throw new ConfigError(
        `${given} (from ${source}) is set but ${missing} is not: --tls-cert and --tls-key ` +
          "must be given together",
      );
    }
    const tls = s.tlsCert && s.tlsKey ? loadTlsPair(loaded) : undefined;
    const log = logger("server");
    if (tls) {
      // As a settings file holding a token (config/load.ts): the key lets anyone pose as the
      // dashboard, and read what agents and operators send it (their tokens).
      const exposed = readableByOthers(s.tlsKey!);
      if (exposed !== undefined) {
        log.warning(
          literal(
            `${named("TLS_KEY", loaded.sources.tlsKey, s.tlsKey!)} is the dashboard's private ` +
              `key and users other than its owner may read it (mode ${exposed}): any of them ` +
              "could pose as the dashboard and read the tokens sent to it; make it readable by " +
              `its owner only: chmod 600 ${s.tlsKey}`,
          ),
        );
      }
    }
    // Names other programs' settings use too: one of theirs in the environment, or in a .env of
    // another project's in the working directory, was taken without a word (BIND=0.0.0.0 opening
    // the dashboard to the network, a Rails app's DATABASE_URL made status's store).
    const generic = ["port", "bind", "db", "databaseUrl"] as const;
    for (const key of generic) {
      const source = loaded.sources[key];
      if (source !== "the environment" && source !== ".env") continue;
      if (key === "databaseUrl" && !storeSetting(loaded).startsWith("DATABASE_URL")) continue;
      const { env } = SETTINGS[key];
      log.info(
        "{setting} is {value}, from {source}: {setting} is a name other programs use too; if " +
          "it is not meant for status, unset it or give {flag}",
        { setting: env, value: redactUrl(String(s[key])), source, flag: flagOf(env) },
      );
    }
    using _survive = surviveConnectionFailures();
    using _console = consoleIntoLog();
    const server = await startServer({
      db: storeLocation(loaded),
      dbSetting: storeSetting(loaded),
      port: s.port,
      hostname: s.bind,
      bindSetting: `BIND from ${
        loaded.sources.bind === "default" ? "the default" : loaded.sources.bind
      }`,
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
      resultRetentionDays: s.resultRetentionDays,
      waitRequireSignature: s.waitRequireSignature,
      acceptV1Signatures: s.acceptV1Signatures,
      metricsBind: s.metricsBind,
      offlineAfterSecs: s.offlineAfterSecs,
    }).catch((error) => {
      throw isAddrInUse(error) ? addressInUse(error as Error) : error;
    });
    // The first signal shuts down (in-flight requests have up to 20 s); a second closes what is
    // left at once, and the exit code is 128 + its number, as for the agent.
    let forcedBy: StopSignal | undefined;
    let received = 0;
    const stopSignals = onSignals(STOP_SIGNALS, (signal) => {
      if (signal === "SIGHUP" && startedIgnoringHangup()) {
        log.info(NOHUP_IGNORED);
        return;
      }
      if (++received === 1) {
        log.info("received {signal}; shutting down", { signal });
        void server.shutdown();
      } else if (forcedBy === undefined) {
        forcedBy = signal;
        log.warning("received {signal} again; closing every connection at once", { signal });
        void server.shutdown({ now: true });
      }
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
    if (forcedBy) setExitCode(128 + signalNumber(forcedBy)!);
  });
  return command;
}
