/**
 * `status result <id>`: shows one command of the dashboard: its status and, when it is final,
 * its exit code and output; with `--follow` (or `--wait-timeout`), follows it to its end.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { addSettingOptions, loadCommandSettings, noAdminTokenReason } from "./common.ts";
import type { Io } from "./io.ts";
import { follow, parseAnyCommandId } from "./enqueue.ts";
import { waitTimeoutOption } from "./interrupt.ts";
import { UsageError } from "../errors.ts";
import {
  EXIT_WAIT_TIMEOUT,
  exitCodeOf,
  formatRecord,
  isFinalStatus,
  operatorClientFromSettings,
  outputBytes,
  unmarkedTruncationNote,
} from "../operator/mod.ts";
import { followAndPrint, writerFor } from "./live.ts";
import { setExitCode } from "./exit.ts";

/**
 * Builds `status result`.
 *
 * @param io Where the command prints.
 * @returns The command.
 */
export function resultCommand(io: Io): Command {
  const command = new Command("result")
    .description(
      "Show a command: its status, and when it is final its exit code, stdout and stderr " +
        "(exits 0 when shown, 1 when the dashboard has no such command); with --follow, follow " +
        `it to its end and exit with its exit code (${EXIT_WAIT_TIMEOUT} still not final at ` +
        "--wait-timeout)",
    )
    .argument("<id>", "the command id", parseAnyCommandId)
    .option("--json", "print the command as JSON")
    .option(
      "--stdout",
      "print only the command's stdout, byte for byte (binary output too) when redirected; " +
        "on a terminal with control characters shown as escapes",
    )
    .option("--stderr", "print only the command's stderr, as --stdout prints its stdout")
    .option(
      "--follow",
      "print its output as it arrives (stdout to stdout, stderr to stderr; on a terminal with " +
        "control characters shown as escapes) until it ends, then exit with its exit code " +
        "(with --json: progress on stderr, then the final command)",
    )
    .addOption(waitTimeoutOption("--follow", "the command goes on"));
  addSettingOptions(command, ["operator"]);
  command.action(async (id, options) => {
    const following = options.follow || options.waitTimeout !== undefined;
    // Said before the dashboard is asked: a flag that would be ignored, or whose bytes would run
    // into the other's, is a mistake in how it was asked whether the dashboard answers or not.
    const only = [options.stdout && "--stdout", options.stderr && "--stderr"].filter(Boolean);
    if (only.length === 2) throw new UsageError("give --stdout or --stderr, not both");
    if (only.length === 1 && (options.json || following)) {
      const flag = options.json ? "--json" : options.follow ? "--follow" : "--wait-timeout";
      throw new UsageError(`${flag} cannot be combined with ${only[0]}`);
    }
    const loaded = loadCommandSettings(io, options as Record<string, unknown>, ["operator"]);
    const { settings } = loaded;
    const client = operatorClientFromSettings(settings, noAdminTokenReason(loaded));
    if (following) {
      // With --json, stdout is the final command alone: wait for it printing only progress (on
      // stderr), as status enqueue --wait --json does.
      const timeoutSecs = options.waitTimeout;
      const record = options.json
        ? await follow(io, client, id, { timeoutSecs })
        : await followAndPrint(io, writerFor(io), client, id, { timeoutSecs });
      if (record === null) {
        setExitCode(130);
        return;
      }
      if (options.json) io.out(JSON.stringify(record, null, 2));
      setExitCode(exitCodeOf(record));
      return;
    }
    const record = await client.getCommand(id);
    if (options.stdout || options.stderr) {
      if (!record.result) {
        // Not a mistake in how it was asked (exit 2): the command has no result yet, or never
        // will (exit 1, as any state the dashboard reports).
        throw new Error(
          `${id} has no output${
            isFinalStatus(record.status) ? "" : " yet"
          } (status ${record.status})`,
        );
      }
      const stream = options.stdout ? "stdout" : "stderr";
      const bytes = outputBytes(record.result, stream);
      if (io.write) io.write(bytes);
      else io.out(new TextDecoder().decode(bytes));
      // Text carries a marker line where bytes were dropped; other bytes carry none.
      for (const note of unmarkedTruncationNote(record, stream)) io.err(note);
      return;
    }
    if (options.json) io.out(JSON.stringify(record, null, 2));
    else for (const line of formatRecord(record)) io.out(line);
  });
  return command as unknown as Command;
}
