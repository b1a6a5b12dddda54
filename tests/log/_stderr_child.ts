/**
 * A program that logs to standard error through `setupLogging` (for `batch_test.ts`): it logs
 * info lines, a warning, more info lines, and then ends as its first argument says: `close`
 * (closeLogging, then Deno.exit), `end` (the program just ends), `throw` (an uncaught error ends it)
 * or `busy` (many lines in one turn); `cli` writes a line of the CLI's own between two log lines;
 * `exit` calls Deno.exit without closing the log. A second argument logs to that file instead.
 *
 * @module
 */
import { closeLogging, logger, setupLogging } from "../../src/log/mod.ts";
import { processIo } from "../../src/cli/io.ts";

setupLogging({ format: "json", level: "info", file: Deno.args[1] });
const log = logger("child");
const how = Deno.args[0];
if (how === "busy") {
  for (let i = 0; i < 5000; i++) log.info("line {i}", { i });
} else if (how === "cli") {
  // The CLI's own line between two log lines.
  log.info("first");
  processIo.err(JSON.stringify({ message: "the CLI's own line" }));
  log.info("second");
} else {
  log.info("first");
  log.info("second");
  log.warn("third, a warning");
  log.info("fourth");
}
if (how === "close") {
  closeLogging();
  Deno.exit(0);
}
if (how === "exit") Deno.exit(0);
if (how === "throw") throw new Error("the child fails");
