/**
 * `status completions bash|zsh|fish`: prints a shell completion script for the whole command
 * tree (commands, subcommands and their options), generated from the tree itself so that it
 * never falls behind.
 *
 * @module
 */
import { type Argument, Command, type Option } from "@commander-js/extra-typings";
import type { Io } from "./io.ts";

/** The shells `status completions` writes a script for. */
export const SHELLS = ["bash", "zsh", "fish"] as const;
/** A shell `status completions` supports. */
export type Shell = typeof SHELLS[number];

/** One command of the tree, flattened for the scripts. */
interface Node {
  /** The words leading to it after the program name: `[]`, `["agents"]`, `["agents", "add"]`. */
  path: string[];
  description: string;
  subcommands: Array<{ name: string; description: string }>;
  options: Array<{
    long?: string;
    short?: string;
    description: string;
    takesValue: boolean;
    /** The values the option takes, when they are fixed (`list --status`). */
    choices?: readonly string[];
  }>;
}

// deno-lint-ignore no-explicit-any
type AnyCommand = Command<any, any, any>;

function nodesOf(command: AnyCommand, path: string[] = []): Node[] {
  const visible = command.commands.filter((c: AnyCommand) =>
    !(c as unknown as { _hidden?: boolean })._hidden
  );
  const node: Node = {
    path,
    description: command.description(),
    subcommands: [
      // A command's aliases complete as it does (`status ping`, the README's name for health).
      ...visible.flatMap((c: AnyCommand) =>
        namesOf(c).map((name) => ({ name, description: firstSentence(c.description()) }))
      ),
      // An argument with fixed choices (`completions <shell>`) completes like a subcommand.
      ...(command.registeredArguments as readonly Argument[]).flatMap((a) =>
        (a.argChoices ?? []).map((choice) => ({ name: choice, description: a.description }))
      ),
    ],
    options: (command.options as readonly Option[])
      .filter((o) => !o.hidden)
      .map((o) => ({
        long: o.long,
        short: o.short,
        description: firstSentence(o.description),
        takesValue: o.required || o.optional,
        choices: o.argChoices,
      })),
  };
  node.options.push({ long: "--help", short: "-h", description: "show help", takesValue: false });
  return [
    node,
    ...visible.flatMap((c: AnyCommand) =>
      namesOf(c).flatMap((name) => nodesOf(c, [...path, name]))
    ),
  ];
}

/** A command's name and its aliases. */
function namesOf(command: AnyCommand): string[] {
  return [command.name(), ...command.aliases()];
}

function firstSentence(text: string): string {
  const line = text.split(/\n/)[0].replace(/\s*\[[A-Z0-9_]+\]$/, "");
  // A colon ends it where a sentence's would, not inside a URL scheme ("postgres:// URL ...").
  const cut = line.split(/;|\(|:(?!\/\/)/)[0].trim();
  return cut.length > 70 ? cut.slice(0, 69) + "…" : cut;
}

function words(node: Node): string[] {
  return [
    ...node.subcommands.map((s) => s.name),
    ...node.options.flatMap((o) => [o.long, o.short].filter((f): f is string => !!f)),
  ];
}

/**
 * `case` items, one per option with fixed values, keyed by its command path and flag
 * (`"list --status"`): `set` is given the values, quoted for the shell.
 */
function choiceCases(nodes: Node[], set: (values: string) => string): string {
  return nodes.flatMap((n) =>
    n.options.filter((o) => o.choices?.length).flatMap((o) =>
      [o.long, o.short].filter((f): f is string => !!f).map((flag) =>
        `      "${[...n.path, flag].join(" ")}") ${set(o.choices!.join(" "))} ;;`
      )
    )
  ).join("\n");
}

function valueFlags(nodes: Node[]): string[] {
  const flags = new Set<string>();
  for (const node of nodes) {
    for (const o of node.options) {
      if (!o.takesValue) continue;
      if (o.long) flags.add(o.long);
      if (o.short) flags.add(o.short);
    }
  }
  return [...flags].sort();
}

/**
 * Every word sequence that names a command (or a choice of its argument), `|`-separated: a word
 * typed after them that is not one (a command line, an id) leaves the command as it was, so its
 * options still complete (`status enqueue "echo hi" --wa`).
 */
function commandPaths(nodes: Node[]): string {
  const paths = new Set(
    nodes.flatMap((n) => [n.path, ...n.subcommands.map((s) => [...n.path, s.name])])
      .map((path) => path.join(" ")),
  );
  return `|${[...paths].join("|")}|`;
}

function bash(name: string, nodes: Node[]): string {
  const cases = nodes.map((n) => `    "${n.path.join(" ")}") words="${words(n).join(" ")}" ;;`);
  return `# bash completion for ${name}; load it with: source <(${name} completions bash)
_${name}_completions() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" cmdpath="" word i skip=0 flag=""
  local value_flags=" ${valueFlags(nodes).join(" ")} "
  local paths="${commandPaths(nodes)}"
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    if ((skip)); then skip=0; continue; fi
    case "$word" in
      -*=*) ;;
      -*) [[ "$value_flags" == *" $word "* ]] && skip=1 && flag="$word" ;;
      *) [[ "$paths" == *"|\${cmdpath:+$cmdpath }$word|"* ]] && cmdpath="\${cmdpath:+$cmdpath }$word" ;;
    esac
  done
  local words
  if ((skip)); then
    # The value of an option: its fixed values, else files.
    case "\${cmdpath:+$cmdpath }$flag" in
${choiceCases(nodes, (values) => `words="${values}"`)}
      *) return 0 ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
    return 0
  fi
  case "$cmdpath" in
${cases.join("\n")}
    *) words="" ;;
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _${name}_completions ${name}
`;
}

function zsh(name: string, nodes: Node[]): string {
  const quote = (text: string) => text.replace(/'/g, "'\\''").replace(/:/g, "\\:");
  const cases = nodes.map((n) => {
    const items = [
      ...n.subcommands.map((s) => `'${quote(s.name)}:${quote(s.description)}'`),
      ...n.options.flatMap((o) =>
        [o.long, o.short].filter((f): f is string => !!f).map((f) =>
          `'${quote(f)}:${quote(o.description)}'`
        )
      ),
    ];
    return `    "${n.path.join(" ")}") items=(${items.join(" ")}) ;;`;
  });
  return `#compdef ${name}
# zsh completion for ${name}; load it with: source <(${name} completions zsh)
_${name}() {
  local -a items
  local cmdpath="" word skip=0 i flag=""
  local value_flags=" ${valueFlags(nodes).join(" ")} "
  local paths="${commandPaths(nodes)}"
  for ((i = 2; i < CURRENT; i++)); do
    word="\${words[i]}"
    if ((skip)); then skip=0; continue; fi
    case "$word" in
      -*=*) ;;
      -*) [[ "$value_flags" == *" $word "* ]] && skip=1 && flag="$word" ;;
      *) [[ "$paths" == *"|\${cmdpath:+$cmdpath }$word|"* ]] && cmdpath="\${cmdpath:+$cmdpath }$word" ;;
    esac
  done
  if ((skip)); then
    # The value of an option: its fixed values, else files.
    case "\${cmdpath:+$cmdpath }$flag" in
${choiceCases(nodes, (values) => `items=(${values}); compadd -a items; return`)}
      *) _files; return ;;
    esac
  fi
  case "$cmdpath" in
${cases.join("\n")}
    *) items=() ;;
  esac
  _describe -t commands '${name}' items
}
compdef _${name} ${name}
`;
}

function fish(name: string, nodes: Node[]): string {
  const quote = (text: string) => `'${text.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
  const lines = [
    `# fish completion for ${name}; load it with: command ${name} completions fish | source`,
    `# (in fish, ${name} is a builtin: run this program as "command ${name} ...", or by its path)`,
    `complete -c ${name} -f`,
  ];
  const allSubs = new Set(nodes.flatMap((n) => n.subcommands.map((s) => s.name)));
  for (const node of nodes) {
    // The command applies when its path was typed and none of its subcommands yet.
    const seen = node.path.map((w) => `__fish_seen_subcommand_from ${w}`);
    const after = node.subcommands.length > 0
      ? [`not __fish_seen_subcommand_from ${node.subcommands.map((s) => s.name).join(" ")}`]
      : [];
    const condition = node.path.length === 0
      ? `not __fish_seen_subcommand_from ${[...allSubs].join(" ")}`
      : [...seen, ...after].join("; and ");
    for (const sub of node.subcommands) {
      lines.push(
        `complete -c ${name} -n ${quote(condition)} -a ${sub.name} -d ${quote(sub.description)}`,
      );
    }
    for (const option of node.options) {
      const flags = [
        option.long ? `-l ${option.long.slice(2)}` : "",
        option.short ? `-s ${option.short.slice(1)}` : "",
      ].filter(Boolean).join(" ");
      lines.push(
        `complete -c ${name} -n ${quote(condition)} ${flags}${option.takesValue ? " -r" : ""}${
          option.choices?.length ? ` -a ${quote(option.choices.join(" "))}` : ""
        } -d ${quote(option.description)}`,
      );
    }
  }
  return lines.join("\n") + "\n";
}

/**
 * The completion script of a command tree for a shell.
 *
 * @param program The root command.
 * @param shell `bash`, `zsh` or `fish`.
 * @returns The script.
 */
export function completionScript(program: AnyCommand, shell: Shell): string {
  const nodes = nodesOf(program);
  const name = program.name();
  switch (shell) {
    case "bash":
      return bash(name, nodes);
    case "zsh":
      return zsh(name, nodes);
    case "fish":
      return fish(name, nodes);
  }
}

/**
 * Builds `status completions`.
 *
 * @param io Where the script is printed.
 * @param program The root command whose tree is completed.
 * @returns The command.
 */
export function completionsCommand(io: Io, program: () => AnyCommand): Command {
  const command = new Command("completions")
    .description("Print a shell completion script for status (bash, zsh or fish)")
    .addArgument(
      new Command().createArgument("<shell>", "the shell: bash, zsh or fish").choices(SHELLS),
    )
    .addHelpText(
      "after",
      `
Load them:
  bash:  source <(status completions bash)     (or save to /etc/bash_completion.d/status)
  zsh:   source <(status completions zsh)      (after compinit)
  fish:  command status completions fish > ~/.config/fish/completions/status.fish
         (in fish, status is a builtin: run this program as "command status ...", or by its path)`,
    );
  command.action((shell) => {
    io.out(completionScript(program(), shell as Shell).replace(/\n$/, ""));
  });
  return command as unknown as Command;
}
