/**
 * `status cancel <id>`: cancels a queued command, or asks the agent to stop a delivered one.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { addSettingOptions, loadCommandSettings, noAdminTokenReason } from "./common.ts";
import type { Io } from "./io.ts";
import { follow, parseAnyCommandId } from "./enqueue.ts";
import { requestSignals, waitTimeoutOption } from "./interrupt.ts";
import { WaitTimeoutError } from "./live.ts";
import { timeoutSignal } from "../clock.ts";
import { setExitCode } from "./exit.ts";
import {
  type CancelAnswer,
  idWord,
  operatorClientFromSettings,
  OperatorError,
} from "../operator/mod.ts";
import { redactUrl } from "../log/redact.ts";

/**
 * Refuses a cancel answer that does not say what the CLI would print: a `200` without
 * `"cancelled": true` (a proxy's or another program's answer) is not a cancelled command, nor a
 * `202` without `"cancel_requested": true` a requested cancel.
 *
 * @throws {OperatorError} `invalid_answer`, naming the dashboard and what it answered.
 */
function checkCancelAnswer(dashboardUrl: string, id: string, answer: CancelAnswer): void {
  const body = answer.body as Record<string, unknown> | null | undefined;
  const field = answer.outcome === "cancelled" ? "cancelled" : "cancel_requested";
  if (body && typeof body === "object" && body[field] === true) return;
  const shown = redactUrl(dashboardUrl);
  throw new OperatorError(
    "invalid_answer",
    `the dashboard at ${shown} answered the cancel of ${id} without "${field}": true, so ` +
      `whether ${id} was cancelled is not known; is ${shown} a status dashboard? ` +
      `(see it with: status result ${idWord(id)})`,
    { body },
  );
}

/**
 * Builds `status cancel`.
 *
 * @param io Where the command prints.
 * @returns The command.
 */
export function cancelCommand(io: Io): Command {
  const command = new Command("cancel")
    .description(
      "Cancel a command: a queued one becomes cancelled at once; one already delivered is " +
        "stopped by its agent (SIGTERM to every process of it, then SIGKILL) and reported " +
        "cancelled; a finished one cannot be cancelled (exit 1)",
    )
    .argument("<id>", "the command id", parseAnyCommandId)
    .option(
      "--wait",
      "wait until a delivered command has stopped; exit 0 when it ended cancelled, 1 when it " +
        "finished otherwise first",
    )
    .addOption(waitTimeoutOption("--wait", "the agent still stops the command"));
  addSettingOptions(command, ["operator"]);
  command.action(async (id, options) => {
    const loaded = loadCommandSettings(io, options as Record<string, unknown>, ["operator"]);
    const { settings } = loaded;
    const client = operatorClientFromSettings(settings, noAdminTokenReason(loaded));
    // `--wait-timeout` counts from the start: a dashboard that does not answer the cancel too.
    const secs = options.waitTimeout;
    const deadline = secs === undefined ? undefined : timeoutSignal(secs * 1000);
    try {
      // Ctrl-C before the answer: the cancel may have reached the dashboard all the same.
      const sending = requestSignals(deadline);
      const answer = await client.cancel(id, sending.signal).catch((error) => {
        if (sending.interrupted.aborted) return undefined;
        if (!deadline?.aborted) throw error;
        throw new WaitTimeoutError(id, secs!, undefined, [
          "the cancel",
          `whether it reached ${id} is not known (see it with: status result ${idWord(id)})`,
        ]);
      }).finally(() => sending[Symbol.dispose]());
      if (answer === undefined) {
        io.err(
          `stopped before the dashboard answered; whether the cancel reached ${id} is not known ` +
            `(see it with: status result ${idWord(id)})`,
        );
        setExitCode(130);
        return;
      }
      checkCancelAnswer(client.dashboardUrl, id, answer);
      if (answer.outcome === "cancelled") {
        io.out(`cancelled ${id}`);
        return;
      }
      io.out(`cancel requested: the agent will stop ${id}`);
      if (!options.wait && options.waitTimeout === undefined) return;
      // The command was delivered or running: progress starts from what the dashboard says.
      const record = await follow(io, client, id, { timeoutSecs: secs, deadline });
      if (record === null) setExitCode(130);
      else if (record.status !== "cancelled") {
        io.err(`${id} finished as ${record.status} before the cancel took effect`);
        setExitCode(1);
      }
    } catch (error) {
      if (error instanceof OperatorError && error.kind === "conflict") {
        const record = await client.getCommand(id, deadline).catch(() => undefined);
        throw new OperatorError(
          "conflict",
          `${id} has already finished${record ? ` (${record.status})` : ""}; nothing to cancel`,
          { status: error.status, body: error.body, cause: error },
        );
      }
      throw error;
    }
  });
  return command as unknown as Command;
}
