/**
 * `status list`: the dashboard's commands as a table, newest first.
 *
 * @module
 */
import { Command, InvalidArgumentError, Option } from "@commander-js/extra-typings";
import { addSettingOptions, givenOnce, loadCommandSettings, noAdminTokenReason } from "./common.ts";
import type { Io } from "./io.ts";
import { parseAgentId, wholeNumberParser } from "./enqueue.ts";
import { COMMAND_STATUSES, LIST_LIMIT } from "../protocol/mod.ts";
import { formatTable, operatorClientFromSettings } from "../operator/mod.ts";

/** A page cursor: the decimal number a previous page printed. */
function parseCursor(value: string): string {
  if (!/^[1-9]\d{0,19}$/.test(value)) {
    throw new InvalidArgumentError("a cursor is the number a previous page printed after --before");
  }
  return value;
}

/** Parses `--status`: one of the command statuses (commander's own check, as a parser). */
function parseStatus(value: string): string {
  if (!(COMMAND_STATUSES as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`must be one of ${COMMAND_STATUSES.join(", ")}`);
  }
  return value;
}

/** A word of a command line as a POSIX shell reads it back: quoted when it is not plain. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * Builds `status list`.
 *
 * @param io Where the command prints.
 * @returns The command.
 */
export function listCommand(io: Io): Command {
  const command = new Command("list")
    .description("List the dashboard's commands, newest first")
    .option(
      "--agent <id>",
      "only commands of this agent",
      givenOnce("a list shows the commands of one agent at a time", parseAgentId),
    )
    .addOption(
      // The choices are for --help and the shell completions; the parser checks them too.
      new Option("--status <status>", "only commands in this status").choices(COMMAND_STATUSES)
        .argParser(givenOnce("a list shows the commands in one status at a time", parseStatus)),
    )
    .option(
      "--limit <n>",
      "at most this many (default: the dashboard's)",
      wholeNumberParser(1, LIST_LIMIT.max),
    )
    .option(
      "--before <cursor>",
      "only commands older than this cursor (the one a previous page printed)",
      parseCursor,
    )
    .option("--json", "print the commands as a JSON array");
  addSettingOptions(command, ["operator"]);
  command.action(async (options) => {
    const loaded = loadCommandSettings(io, options as Record<string, unknown>, ["operator"]);
    const { settings } = loaded;
    const page = await operatorClientFromSettings(settings, noAdminTokenReason(loaded))
      .listCommandsPage({
        agentId: options.agent,
        status: options.status,
        limit: options.limit,
        before: options.before,
      });
    const records = page.commands;
    if (options.json) io.out(JSON.stringify(records, null, 2));
    else if (records.length === 0) io.err(options.before ? "no older commands" : "no commands");
    else for (const line of formatTable(records)) io.out(line);
    if (page.nextBefore !== null) {
      // The same list one page further (on standard error: the table or JSON stays whole): its
      // filters, its form, and the flags that chose the dashboard, which without them would be
      // another (the default's, or ./config.json's). A token given as a flag is not repeated.
      const { config, envFile } = options as { config?: string; envFile?: string };
      const urlFromFlag = loaded.sources.dashboardUrl?.startsWith("flag ");
      const again = [
        "status",
        "list",
        ...(options.agent ? ["--agent", options.agent] : []),
        ...(options.status ? ["--status", options.status] : []),
        ...(options.limit !== undefined ? ["--limit", String(options.limit)] : []),
        ...(options.json ? ["--json"] : []),
        ...(config !== undefined ? ["--config", config] : []),
        ...(envFile !== undefined ? ["--env-file", envFile] : []),
        ...(urlFromFlag ? ["--dashboard-url", settings.dashboardUrl] : []),
        "--before",
        page.nextBefore,
      ];
      io.err(`older commands: ${again.map(shellWord).join(" ")}`);
    }
  });
  return command as unknown as Command;
}
