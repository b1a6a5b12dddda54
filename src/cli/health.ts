/**
 * `status health` (alias `status ping`): checks the dashboard URL, the credentials and the clock
 * offset, and prints what it found; exits 1 when something failed.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { checkHealth } from "../operator/mod.ts";
import { keysFor } from "../config/mod.ts";
import { addSettingOptions, loadCommandSettings } from "./common.ts";
import { errorLine } from "./error_line.ts";
import { setExitCode } from "./exit.ts";
import type { Io } from "./io.ts";

const MARKS = { ok: "ok", warning: "warning", failed: "FAILED", skipped: "skipped" } as const;

/**
 * What to do when no dashboard answered at the URL checked, and where that URL came from: a
 * newcomer who set none learns that the default was tried.
 *
 * @param url The URL checked (its password left out).
 * @param source Where DASHBOARD_URL came from (`"default"` when nowhere).
 * @param unread What could not be read, where DASHBOARD_URL may be set: `"the environment
 *   (Deno was started without --allow-env)"`, ...
 * @returns One line of advice.
 */
export function unreachableAdvice(
  url: string,
  source: string | undefined,
  unread: readonly string[] = [],
): string {
  const from = source !== undefined && source !== "default"
    ? `from ${source}`
    : unread.length > 0
    ? `the default: DASHBOARD_URL is not set, or is set where it could not be read: ${
      unread.join(" and ")
    }`
    : "the default: DASHBOARD_URL is not set";
  return `is the dashboard running at ${url} (${from})? start it, or set DASHBOARD_URL or ` +
    "--dashboard-url to where it listens";
}

/**
 * Builds `status health`.
 *
 * @param io Where the command prints.
 * @returns The command.
 */
export function healthCommand(io: Io): Command {
  const command = new Command("health")
    .alias("ping")
    .description(
      "Check a dashboard from here: is DASHBOARD_URL reachable, are STATUS_ADMIN_TOKEN and " +
        "AGENT_ID/AGENT_TOKEN accepted, how far apart are the clocks (exits 1 when a check fails)",
    )
    .option("--json", "print the findings as JSON");
  addSettingOptions(command, ["operator"]);
  command
    .option("--agent-id <id>", "check this agent's credentials too [AGENT_ID]")
    .option("--agent-token <token>", "the agent's token [AGENT_TOKEN]");
  command.action(async (options) => {
    // Of the agent's settings only its credentials: a bad POLLING_TIMEOUT_SECS in .env is no
    // reason to refuse checking a dashboard.
    const { settings, sources, envUnreadable, deniedVariables, unreadableFiles } =
      loadCommandSettings(
        io,
        options as Record<string, unknown>,
        ["operator", "agent"],
        { only: [...keysFor(["operator"]), "agentId", "agentToken"], oneShot: true },
      );
    /** Where a variable may be set that this process could not read, in words. */
    const unreadWords = (variable: string) => [
      ...(envUnreadable ? ["the environment (Deno was started without --allow-env)"] : []),
      ...(!envUnreadable && deniedVariables.includes(variable)
        ? [`${variable} (not granted by --allow-env)`]
        : []),
      ...(unreadableFiles.length > 0
        ? [`${unreadableFiles.join(" and ")} (without --allow-read)`]
        : []),
    ];
    const report = await checkHealth({
      dashboardUrl: settings.dashboardUrl,
      adminToken: settings.statusAdminToken,
      agentId: settings.agentId,
      agentToken: settings.agentToken,
    });
    const agentUnread = settings.agentId === undefined ? unreadWords("AGENT_ID") : [];
    if (agentUnread.length > 0) {
      // AGENT_ID may be set where this process could not read it: say so, not "none given".
      const skipped = report.checks.find((check) => check.name === "agent");
      if (skipped?.outcome === "skipped") {
        skipped.message = `no AGENT_ID given, or it is set where it could not be read: ${
          agentUnread.join(" and ")
        } (pass --agent-id)`;
      }
    }
    if (options.json) io.out(JSON.stringify(report, null, 2));
    else {
      io.out(`dashboard ${report.url}`);
      for (const check of report.checks) {
        // A message may quote the dashboard's error answer: one line, nothing for the terminal.
        io.out(
          `  ${check.name.padEnd(9)} ${MARKS[check.outcome].padEnd(7)} ${errorLine(check.message)}`,
        );
      }
    }
    const dashboard = report.checks.find((check) => check.name === "dashboard");
    if (dashboard?.outcome === "failed" && dashboard.message.startsWith("not reachable: ")) {
      // A certificate refused, HTTPS answered to http://, or a redirect, says what to do itself:
      // the dashboard is there.
      const there = dashboard.message.includes("the TLS handshake failed") ||
        dashboard.message.startsWith("not reachable: it answered") ||
        dashboard.message.startsWith("not reachable: the dashboard redirects (");
      if (!there) {
        const unread = unreadWords("DASHBOARD_URL");
        io.err(`status: ${unreachableAdvice(report.url, sources.dashboardUrl, unread)}`);
      }
    }
    if (!report.ok) setExitCode(1);
  });
  return command as unknown as Command;
}
