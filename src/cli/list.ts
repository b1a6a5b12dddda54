/**
 * `status list`: the dashboard's commands as a table, newest first.
 *
 * @module
 */
import { Command, Option } from "@commander-js/extra-typings";
import { addSettingOptions, loadCommandSettings } from "./common.ts";
import type { Io } from "./io.ts";
import { parseAgentId, wholeNumberParser } from "./enqueue.ts";
import { COMMAND_STATUSES, LIST_LIMIT } from "../protocol/mod.ts";
import { formatTable, operatorClientFromSettings } from "../operator/mod.ts";

/**
 * Builds `status list`.
 *
 * @param io Where the command prints.
 * @returns The command.
 */
export function listCommand(io: Io): Command {
  const command = new Command("list")
    .description("List the dashboard's commands, newest first")
    .option("--agent <id>", "only commands of this agent", parseAgentId)
    .addOption(
      new Option("--status <status>", "only commands in this status").choices(COMMAND_STATUSES),
    )
    .option(
      "--limit <n>",
      "at most this many (default: the dashboard's)",
      wholeNumberParser(1, LIST_LIMIT.max),
    )
    .option("--json", "print the commands as a JSON array");
  addSettingOptions(command, ["operator"]);
  command.action(async (options) => {
    const { settings } = loadCommandSettings(io, options as Record<string, unknown>, ["operator"]);
    const records = await operatorClientFromSettings(settings).listCommands({
      agentId: options.agent,
      status: options.status,
      limit: options.limit,
    });
    if (options.json) {
      io.out(JSON.stringify(records, null, 2));
      return;
    }
    if (records.length === 0) {
      io.err("no commands");
      return;
    }
    for (const line of formatTable(records)) io.out(line);
  });
  return command as unknown as Command;
}
