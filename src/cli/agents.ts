/**
 * `status agents add|list|rotate|remove`: manages the dashboard's agents and their tokens, over its
 * operator API (see `agents_http.ts`) or, with `--db`, directly on its store (a SQLite file or a
 * `postgres://` URL). Tokens are printed once, by `add` and `rotate`, and never listed.
 *
 * @module
 */
import { Command, InvalidArgumentError } from "@commander-js/extra-typings";
import { ConfigError, UsageError } from "../errors.ts";
import { nearest } from "../config/mod.ts";
import { AGENT_ID_RULE, generateToken } from "../protocol/mod.ts";
import { alignColumns, idWord } from "../operator/mod.ts";
import {
  AGENT_SCOPES,
  type AgentScope,
  type CommandStore,
  openStore,
  StoreError,
} from "../store/mod.ts";
import { addSettingOptions, loadCommandSettings, storeLocation, storeSetting } from "./common.ts";
import {
  addAgentRemote,
  AgentsError,
  listAgentsRemote,
  printToken,
  removalLine,
  removeAgentRemote,
  rotateAgentRemote,
} from "./agents_http.ts";
import type { Io } from "./io.ts";
import { parseAgentId } from "./enqueue.ts";

export { AgentsError } from "./agents_http.ts";

function parseScopes(value: string): AgentScope[] {
  const scopes = value.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  if (scopes.length === 0) throw new InvalidArgumentError("must name at least one scope");
  for (const scope of scopes) {
    if (!AGENT_SCOPES.includes(scope as AgentScope)) {
      throw new InvalidArgumentError(
        `unknown scope ${JSON.stringify(scope)}; scopes are ${AGENT_SCOPES.join(", ")}`,
      );
    }
  }
  return [...new Set(scopes)] as AgentScope[];
}

/**
 * Adds `--db` (work on the dashboard's store: a SQLite file or a `postgres://` URL) and the operator settings (without `--db`:
 * over the dashboard's operator API), with `--config` and `--env-file`.
 */
// deno-lint-ignore no-explicit-any
function withDbOptions<C extends Command<any, any, any>>(command: C): C {
  command.option(
    "--db <path|url>",
    "work on this store of the dashboard (a SQLite file or a postgres:// URL); without it, over " +
      "the dashboard's operator API at DASHBOARD_URL",
  );
  addSettingOptions(command, ["operator"]);
  return command;
}

/** Whether `--db` was given: work on the store instead of over the operator API. */
function onDisk(options: object): boolean {
  return (options as { db?: string }).db !== undefined;
}

async function withStore<T>(
  io: Io,
  options: object,
  fn: (store: CommandStore) => Promise<T>,
) {
  const loaded = loadCommandSettings(io, options as Record<string, unknown>, ["server"], {
    oneShot: true,
  });
  let store: CommandStore;
  try {
    store = await openStore(storeLocation(loaded), { sqlite: { create: false } });
  } catch (error) {
    if (error instanceof StoreError) {
      throw new ConfigError(`${storeSetting(loaded)}: ${error.message}`, { cause: error });
    }
    throw error;
  }
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

function iso(ms: number | null): string {
  return ms === null ? "never" : new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * Builds `status agents` and its subcommands.
 *
 * @param io Where the commands print.
 * @returns The command.
 */
export function agentsCommand(io: Io) {
  const agents = new Command("agents")
    .description(
      "Manage the dashboard's agents and their tokens: over its operator API (DASHBOARD_URL, " +
        "STATUS_ADMIN_TOKEN), or on its store with --db: a SQLite file (run with --allow-read " +
        "--allow-write --allow-env) or a postgres:// URL (add --allow-net)",
    );

  const add = withDbOptions(
    new Command("add")
      .description("Add an agent and print its new token once (as AGENT_ID=/AGENT_TOKEN= lines)")
      .argument("<id>", `agent id: ${AGENT_ID_RULE}`, parseAgentId)
      .option(
        "--scopes <list>",
        `comma-separated scopes (default all: ${AGENT_SCOPES.join(",")})`,
        parseScopes,
      ),
  );
  add.action(async (id, options) => {
    if (!onDisk(options)) return await addAgentRemote(io, id, options);
    const token = generateToken();
    await withStore(io, options, async (store) => {
      const added = await store.addAgent({
        id,
        token,
        scopes: options.scopes ?? AGENT_SCOPES,
        now: Date.now(),
      });
      if (!added) {
        throw new AgentsError(
          `agent ${id} already exists; print a new token with "status agents rotate ${idWord(id)}"`,
        );
      }
    });
    printToken(io, id, [`AGENT_ID=${id}`, `AGENT_TOKEN=${token}`], `agent ${id} was added`);
    io.err(
      `agent ${id} added. Give the agent these two settings (e.g. in its .env); the token is not ` +
        `shown again. A dashboard already running on this database in dev mode (no ` +
        `STATUS_ADMIN_TOKEN) keeps taking agents without tokens until restarted with it set.`,
    );
  });

  const list = withDbOptions(
    new Command("list")
      .description(
        "List agents (the default): over the API their state (waiting, online, offline), last " +
          "seen, version, deployment, labels, running command, queue and heartbeat; with --db " +
          "id, scopes, last seen, created and queue. Never tokens",
      )
      .option("--json", "print JSON")
      // As the default command it gets the words of a mistyped sub-command (`agents ad web-5`).
      .allowExcessArguments(true),
  );
  list.action(async (options, cmd) => {
    const [word] = cmd.args;
    // `agents --json list`: an option before the sub-command sends the words after it here.
    if (word !== undefined && !(word === "list" && cmd.args.length === 1)) {
      const names = agents.commands.map((c) => c.name());
      if (word !== "list" && names.includes(word)) {
        // `agents --db s.db add web-1` would otherwise read as a mistyped name.
        throw new UsageError(
          `'${word}' must come right after 'agents', before any option: ` +
            `status agents ${word} <id> [options]`,
        );
      }
      const suggestion = nearest(word, names);
      throw new UsageError(
        `unknown command 'agents ${word}'${
          suggestion ? ` (did you mean agents ${suggestion}?)` : ""
        }; the commands are ${names.join(", ")}`,
      );
    }
    if (!onDisk(options)) return await listAgentsRemote(io, options);
    const rows = await withStore(io, options, (store) => store.listAgents());
    if (options.json) {
      io.out(JSON.stringify(
        rows.map((a) => ({
          id: a.id,
          scopes: a.scopes,
          has_token: a.hasToken,
          last_seen_at: a.lastSeenAt === null ? null : new Date(a.lastSeenAt).toISOString(),
          created_at: new Date(a.createdAt).toISOString(),
          queued: a.queued,
        })),
        null,
        2,
      ));
      return;
    }
    if (rows.length === 0) {
      io.err('no agents; add one with "status agents add <id>"');
      return;
    }
    const lines = alignColumns(
      ["ID", "SCOPES", "LAST SEEN", "CREATED", "QUEUED"],
      rows.map((a) => [
        a.hasToken ? a.id : `${a.id} (no token)`,
        a.scopes.join(","),
        iso(a.lastSeenAt),
        iso(a.createdAt),
        String(a.queued),
      ]),
    );
    for (const line of lines) io.out(line);
  });

  const rotate = withDbOptions(
    new Command("rotate")
      .description("Give an agent a new token and print it once; the old token stops working")
      .argument("<id>", "agent id", parseAgentId),
  );
  rotate.action(async (id, options) => {
    if (!onDisk(options)) return await rotateAgentRemote(io, id, options);
    const token = generateToken();
    await withStore(io, options, async (store) => {
      if (!(await store.setAgentToken(id, token))) {
        throw new AgentsError(
          `agent ${id} does not exist; add it with "status agents add ${idWord(id)}"`,
        );
      }
    });
    printToken(io, id, [`AGENT_TOKEN=${token}`], `agent ${id} has a new token`);
    io.err(`agent ${id} has a new token; the old one no longer works. It is not shown again.`);
  });

  const remove = withDbOptions(
    new Command("remove")
      .description(
        "Remove an agent; its queued or running commands are cancelled, its commands and " +
          "results are kept",
      )
      .argument("<id>", "agent id", parseAgentId),
  );
  remove.action(async (id, options) => {
    if (!onDisk(options)) return await removeAgentRemote(io, id, options);
    const removed = await withStore(io, options, async (store) => {
      const removed = await store.removeAgent(id, Date.now());
      if (!removed) throw new AgentsError(`agent ${id} does not exist`);
      return removed;
    });
    io.err(removalLine(id, removed.ended.length));
  });

  agents.addCommand(add);
  agents.addCommand(list, { isDefault: true });
  agents.addCommand(rotate);
  agents.addCommand(remove);
  return agents;
}
