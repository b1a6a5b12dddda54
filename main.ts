#!/usr/bin/env -S deno run --allow-net --allow-run --no-prompt
/**
 * The `status` command line: builds the command tree, runs it, and maps errors to exit codes.
 * This is the only place that exits the process.
 *
 * @module
 */
import { Command, CommanderError } from "@commander-js/extra-typings";
import denoJson from "./deno.json" with { type: "json" };
import { type Io, processIo } from "./src/cli/io.ts";
import { errorLine } from "./src/cli/error_line.ts";
import { takeExitCode } from "./src/cli/exit.ts";
import { keepHangupIgnored, surviveFileSizeLimit } from "./src/cli/signals.ts";
import { closeLogging } from "./src/log/mod.ts";
import { redactString } from "./src/log/redact.ts";
import { agentCommand } from "./src/cli/agent.ts";
import { stopCommand } from "./src/cli/stop.ts";
import { serveCommand } from "./src/cli/serve.ts";
import { upCommand } from "./src/cli/up.ts";
import { agentsCommand } from "./src/cli/agents.ts";
import { enqueueCommand } from "./src/cli/enqueue.ts";
import { resultCommand } from "./src/cli/result.ts";
import { runCommand } from "./src/cli/run.ts";
import { listCommand } from "./src/cli/list.ts";
import { cancelCommand } from "./src/cli/cancel.ts";
import { execCommand } from "./src/cli/exec.ts";
import { completionsCommand } from "./src/cli/completions.ts";
import { nearest } from "./src/config/mod.ts";
import { healthCommand } from "./src/cli/health.ts";

/** What the program talks to: its output streams, its environment, and how it ends. */
export interface ProgramIo extends Io {
  /** Ends the process with this code. */
  exit(code: number): void;
}

/**
 * Builds the whole command tree.
 *
 * @param io Where the commands print and read their environment.
 * @returns The root `status` command.
 */
export function buildProgram(io: Io = processIo): Command {
  const program = new Command("status")
    .description(
      "Fleet command agent and dashboard: the agent long-polls the dashboard, runs commands " +
        "safely under a deadline and reports the results",
    )
    .version(denoJson.version, "-V, --version", "print the version")
    .helpOption("-h, --help", "show help")
    .showHelpAfterError(false)
    .addHelpText(
      "after",
      '\nWith no command, status runs the agent with the same options as "status agent" ' +
        '(see "status agent --help"), e.g. status --config config.json',
    );
  program.addCommand(agentCommand(io), { isDefault: true });
  program.addCommand(stopCommand(io));
  program.addCommand(serveCommand(io));
  program.addCommand(upCommand(io));
  program.addCommand(agentsCommand(io));
  program.addCommand(enqueueCommand(io));
  program.addCommand(resultCommand(io));
  program.addCommand(runCommand(io));
  program.addCommand(listCommand(io));
  program.addCommand(cancelCommand(io));
  program.addCommand(execCommand(io));
  program.addCommand(healthCommand(io));
  program.addCommand(completionsCommand(io, () => program));
  showHelpAlike(program);
  configureErrors(program, io);
  return program;
}

/**
 * The first word of the arguments that is not an option or an option's value: the command word,
 * if any, and whether options of the default command (`agent`) came before it.
 */
function firstWord(
  program: Command,
  args: readonly string[],
): { word: string; index: number; afterOptions: boolean } | undefined {
  // Options of the root and of the default command (they may come before a command word).
  const options = [program, ...program.commands.filter((c) => c.name() === "agent")]
    .flatMap((c) => c.options);
  let afterOptions = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") return undefined;
    if (arg.startsWith("-")) {
      if (arg.includes("=")) {
        afterOptions = true;
        continue;
      }
      const option = options.find((o) => o.long === arg || o.short === arg);
      // An unknown option: commander names it (with the nearest option), and the word after it
      // may be its value, not a command.
      if (!option && !["-h", "--help", "-V", "--version"].includes(arg)) return undefined;
      if (option) afterOptions = true;
      if (option?.required) i++;
      continue;
    }
    return { word: arg, index: i, afterOptions };
  }
  return undefined;
}

/**
 * The word that would be taken for a command but names none: with `agent` as the default
 * command, `status lst` would otherwise run the agent and fail with "too many arguments".
 *
 * @param program The root command.
 * @param args Arguments after the program name.
 * @returns The unknown command word and the nearest command, or `undefined`.
 */
export function unknownCommand(
  program: Command,
  args: readonly string[],
): { word: string; suggestion?: string } | undefined {
  const names = program.commands.flatMap((c) => [c.name(), ...c.aliases()]);
  const known = new Set([...names, "help"]);
  const first = firstWord(program, args);
  if (first === undefined) return undefined;
  const { word: arg, index: i } = first;
  // `status help lst` names no command either.
  const word = arg === "help" && args[i + 1] && !args[i + 1].startsWith("-") ? args[i + 1] : arg;
  if (known.has(word)) return undefined;
  return { word, suggestion: nearest(word, names) };
}

/**
 * Help asked for a subcommand (`status help run start`, `status run help start`): commander shows
 * the group's help for the first, and for a word that names none of its commands
 * (`status agents help lst`) the group's help on stderr, as if no command had been given.
 *
 * @param program The root command.
 * @param args Arguments after the program name.
 * @returns The arguments that ask commander for the subcommand's help, or the unknown word with
 *   its group and the nearest subcommand, or `undefined`.
 */
export function subcommandHelp(
  program: Command,
  args: readonly string[],
): { args: string[] } | { group: string; word: string; suggestion?: string } | undefined {
  const [first, second, word] = args;
  if (word === undefined || word.startsWith("-")) return undefined;
  const name = first === "help" ? second : second === "help" ? first : undefined;
  const group = program.commands.find((c) => c.name() === name || c.aliases().includes(name!));
  if (group === undefined || group.commands.length === 0) return undefined;
  const names = group.commands.flatMap((c) => [c.name(), ...c.aliases()]);
  if (word === "help") return undefined;
  if (names.includes(word)) return { args: [group.name(), word, "--help"] };
  return { group: group.name(), word, suggestion: nearest(word, names) };
}

/**
 * A command named after options (`status --config c.json list`): commander would take the
 * options for the default command's (`agent`) and the command word for an argument of it, and say
 * "too many arguments for 'agent'".
 *
 * @param program The root command.
 * @param args Arguments after the program name.
 * @returns The arguments with the command moved first, or `undefined`.
 */
export function commandAfterOptions(
  program: Command,
  args: readonly string[],
): string[] | undefined {
  const first = firstWord(program, args);
  if (first === undefined || !first.afterOptions) return undefined;
  const command = program.commands.find((c) =>
    c.name() === first.word || c.aliases().includes(first.word)
  );
  if (command === undefined) return undefined;
  return [first.word, ...args.slice(0, first.index), ...args.slice(first.index + 1)];
}

/**
 * Adds the nearest option to commander's "unknown option" error when commander found none
 * (`--polling-timeout` → `--polling-timeout-secs`: too far for its own suggestion).
 */
function withOptionSuggestion(
  command: Command<unknown[], Record<string, unknown>>,
  text: string,
): string {
  // `--daemon=false`: an on/off flag takes no value, and commander names only the whole word.
  const valued = /^(error: unknown option '(--[^'=]+)=[^']*')(?:\n\(Did you mean [^\n]*\))?$/
    .exec(text);
  const flag = valued && command.options.find((o) => o.long === valued[2] && !o.hidden);
  if (flag && !flag.required && !flag.optional) {
    const name = flag.long!.replace(/^--(no-)?/, "");
    const both = command.options.some((o) => o.long === `--${name}`) &&
      command.options.some((o) => o.long === `--no-${name}`);
    return `${valued[1]} (${flag.long} takes no value: give ${
      both ? `--${name} to turn it on, or --no-${name} to turn it off` : `${flag.long} alone`
    })`;
  }
  const unknown = /^error: unknown option '(--[^'=]+)'$/.exec(text);
  if (!unknown) return text;
  const longs = command.options.filter((o) => !o.hidden && o.long).map((o) => o.long!);
  const suggestion = nearest(unknown[1], longs);
  if (suggestion) return `${text} (did you mean ${suggestion}?)`;
  // `status agent --port 5000`: a setting of another command, which a new operator gives to the
  // wrong one.
  const others = commandsWith(command, unknown[1]);
  if (others.length === 0) return text;
  const named = others.length === 1
    ? others[0]
    : others.length > 3
    ? `${others.slice(0, 3).join(", ")} and ${others.length - 3} more`
    : `${others.slice(0, -1).join(", ")} and ${others.at(-1)}`;
  return `${text} (${unknown[1]} is an option of ${named})`;
}

/** The commands of the whole program that take a long option, as `status serve`. */
function commandsWith(
  command: Command<unknown[], Record<string, unknown>>,
  long: string,
): string[] {
  let root = command;
  while (root.parent) root = root.parent as typeof root;
  const found: string[] = [];
  const visit = (c: Command<unknown[], Record<string, unknown>>) => {
    if (c.options.some((o) => o.long === long && !o.hidden)) found.push(commandPath(c));
    for (const sub of c.commands) visit(sub as typeof c);
  };
  visit(root);
  return found;
}

/**
 * Adds how to quote a command line to commander's error when a command that takes one was given
 * it as several words (`status exec ls /tmp`, `status exec ls -la`, `status enqueue -- ls -l`):
 * commander names the extra word or the "option" only.
 */
function withQuotingHint(
  command: Command<unknown[], Record<string, unknown>>,
  text: string,
): string {
  if (!command.registeredArguments.some((argument) => argument.name() === "command-line")) {
    return text;
  }
  if (!/^error: (too many arguments for |unknown option '-[^-])/.test(text)) return text;
  const path = [];
  for (let c: typeof command | null = command; c?.parent; c = c.parent) path.unshift(c.name());
  return `${text.replace(/\.$/, "")} (quote the command line as one argument: status ${
    path.join(" ")
  } "ls -la /tmp")`;
}

/** The most characters of a value quoted in commander's "is invalid" message. */
const QUOTED_VALUE_MAX = 80;

/**
 * Commander's error as one line in the program's own words (`status: ...`, as every other error):
 * the value it quotes in "argument '…' is invalid" cut to {@link QUOTED_VALUE_MAX} characters (a
 * 5,000-character command line would hide the reason after it), the reason after a colon, line
 * breaks and control characters escaped. Help text is left as it is.
 */
function oneLineError(text: string): string {
  if (!text.startsWith("error: ")) return text;
  // Commander's own suggestion goes on a line of its own: put it on this one, as ours are.
  text = text.replace(/\n\(Did you mean ([^\n]*)\)$/, " (did you mean $1)");
  // The reason after "is invalid" follows commander's full stop ("is invalid. must be ..."): one
  // sentence, after a colon; commander's own reason for a choice in our words.
  const shortened = text.replace(
    /^(error: (?:option '[^']*' argument|command-argument value) ')([^]*)(' is invalid(?: for argument '[^']*')?)\. ([^]*)$/,
    (_, before: string, value: string, after: string, reason: string) =>
      before + (value.length > QUOTED_VALUE_MAX
        ? `${value.slice(0, QUOTED_VALUE_MAX)}… (${value.length} characters)`
        : value) +
      after + ": " + reason.replace(/^Allowed choices are ([^]*?)\.?$/, "must be one of $1"),
  );
  // No full stop inside the line: "too many arguments for 'list'. Expected 0 arguments ...".
  const worded = shortened.replace(
    /^(error: too many arguments[^.]*)\. Expected /,
    "$1: expected ",
  );
  return errorLine(worded.replace(/^error: /, "status: "));
}

/** `status agents add` for the `add` command under `agents`. */
function commandPath(command: Command<unknown[], Record<string, unknown>>): string {
  const names: string[] = [];
  for (let c: { name(): string; parent: unknown } | null = command; c;) {
    names.unshift(c.name());
    c = c.parent as typeof c;
  }
  return names.join(" ");
}

/**
 * An unknown subcommand is named with its group, as `status agents lst` names it (`status run lst`:
 * "unknown command 'run lst' (did you mean run list?)"), and says where the commands are told.
 */
function withGroupName(command: Command<unknown[], Record<string, unknown>>, text: string): string {
  const unknown = /^error: unknown command '([^']*)'(?:\n\(Did you mean ([^\n]*)\?\))?$/.exec(text);
  if (!unknown || !command.parent) return text;
  const path = commandPath(command);
  const group = path.replace(/^status /, "");
  return `error: unknown command '${group} ${unknown[1]}'${
    unknown[2] ? ` (did you mean ${group} ${unknown[2]}?)` : ""
  }; see ${path} --help`;
}

/** A usage error about the command's arguments says where its usage is told. */
function withHelpHint(command: Command<unknown[], Record<string, unknown>>, text: string): string {
  if (!/^error: (missing required argument|too many arguments)/.test(text)) return text;
  // One hint is enough: a command line given as words is told how to quote it.
  if (text.endsWith(")")) return text;
  return `${text.replace(/\.$/, "")}; see ${commandPath(command)} --help`;
}

/**
 * The one line said instead of the help commander prints on stderr for a command group given
 * no command of its own (`status run`).
 */
function missingCommand(command: Command<unknown[], Record<string, unknown>>): string {
  const names = command.commands.map((c) => c.name());
  const listed = names.length > 1
    ? `${names.slice(0, -1).join(", ")} or ${names.at(-1)}`
    : names.join("");
  const path = commandPath(command);
  return `status: ${path.replace(/^status /, "")} needs a command: ${listed}; see ${path} --help`;
}

function configureErrors(command: Command<unknown[], Record<string, unknown>>, io: Io): void {
  command.exitOverride();
  command.configureOutput({
    // A flag's value in commander's message: a URL's password is not shown. Help on stderr is
    // help shown for a missing command (help asked for goes to stdout): one line, as every error.
    writeErr: (text) =>
      text.startsWith("Usage:") ? io.err(missingCommand(command)) : io.err(
        oneLineError(
          redactString(
            withHelpHint(
              command,
              withQuotingHint(
                command,
                withOptionSuggestion(command, withGroupName(command, text.replace(/\n$/, ""))),
              ),
            ),
          ),
        ),
      ),
    writeOut: (text) => io.out(text.replace(/\n$/, "")),
    // commander would read NO_COLOR and friends, which needs --allow-env; help is plain text.
    getOutHasColors: () => false,
    getErrHasColors: () => false,
  });
  // deno-lint-ignore no-explicit-any
  for (const sub of command.commands as any[]) configureErrors(sub, io);
}

/**
 * Gives every command's `-h, --help`, and the `help [command]` of those with subcommands, the
 * root's words (commander's own are another's).
 */
function showHelpAlike(command: Command<unknown[], Record<string, unknown>>): void {
  command.helpOption("-h, --help", "show help");
  // Given words, commander adds the help command whether or not there are subcommands.
  if (command.commands.length > 0) command.helpCommand("help [command]", "show help for a command");
  // deno-lint-ignore no-explicit-any
  for (const sub of command.commands as any[]) showHelpAlike(sub);
}

/**
 * Runs the CLI with the given arguments and returns the exit code.
 *
 * @param args Arguments after the program name.
 * @param io Where the commands print and read their environment.
 * @returns 0 on success, 2 for bad usage or configuration, 1 for runtime failures, or the code
 *   a command chose.
 */
export async function main(args: readonly string[], io: Io = processIo): Promise<number> {
  const program = buildProgram(io);
  const reordered = commandAfterOptions(program, args);
  if (reordered) {
    const quoted = reordered.map((arg) => /^[\w@%+=:,./-]+$/.test(arg) ? arg : JSON.stringify(arg));
    io.err(
      `status: the command comes first, then its options: status ${errorLine(quoted.join(" "))}`,
    );
    return 2;
  }
  const help = subcommandHelp(program, args);
  // The word is the user's (pasted, or a script's variable): one line, its control characters
  // shown, not obeyed, as every error line.
  if (help && "group" in help) {
    io.err(errorLine(
      `status: unknown command '${help.group} ${help.word}'${
        help.suggestion ? ` (did you mean ${help.group} ${help.suggestion}?)` : ""
      }; see status ${help.group} --help`,
    ));
    return 2;
  }
  if (help) args = help.args;
  const unknown = unknownCommand(program, args);
  if (unknown) {
    io.err(errorLine(
      `status: unknown command '${unknown.word}'${
        unknown.suggestion ? ` (did you mean ${unknown.suggestion}?)` : ""
      }; see status --help`,
    ));
    return 2;
  }
  try {
    await program.parseAsync([...args], { from: "user" });
    return takeExitCode() ?? 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === "commander.helpDisplayed" || error.code === "commander.version") return 0;
      // Help asked for is a success; help shown instead of a missing subcommand
      // (`status run`) is bad usage.
      if (error.code === "commander.help") return error.exitCode === 0 ? 0 : 2;
      return 2;
    }
    const exitCode = (error as { exitCode?: unknown }).exitCode;
    const message = error instanceof Error ? error.message : String(error);
    // One line, however much text a dashboard or a proxy put in its error answer.
    io.err(`status: ${errorLine(message)}`);
    if (typeof exitCode === "number") return exitCode;
    // A permission the command needs and was not given ("Requires net access to ...,
    // run again with the --allow-net flag") is a matter of how it was started: usage.
    return error instanceof Deno.errors.NotCapable ? 2 : 1;
  } finally {
    closeLogging();
  }
}

/**
 * Runs the CLI and ends through `io.exit` with its exit code.
 *
 * @param args Arguments after the program name.
 * @param io Output, environment and exit; by default the process's own.
 */
export async function run(args: readonly string[], io: ProgramIo): Promise<void> {
  io.exit(await main(args, io));
}

/** Commands that end by themselves soon: a hangup while they run need not be told apart. */
const SHORT_LIVED = new Set([
  "stop",
  "agents",
  "enqueue",
  "result",
  "run",
  "list",
  "cancel",
  "health",
  "completions",
  "help",
]);

if (import.meta.main) {
  // First: Deno's own signal handlers, installed soon after, hide what was ignored. Only for the
  // commands that keep running (reading the mask may start `ps`).
  if (!SHORT_LIVED.has(Deno.args.find((arg) => !arg.startsWith("-")) ?? "")) keepHangupIgnored();
  surviveFileSizeLimit();
  await run(Deno.args, { ...processIo, exit: (code) => Deno.exit(code) });
}
