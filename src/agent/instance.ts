/**
 * The agent's instance id (`X-Agent-Instance`): the dashboard serves one agent process per agent
 * id and refuses a second one. The id is kept in the state directory, so a restarted agent (same
 * machine, same state directory, which only one process can lock) is the same instance and is
 * not taken for a second machine; an agent without a durable state directory makes a new one per
 * process.
 *
 * @module
 */
import { join } from "node:path";
import { readStateTextSync, writeFileAtomicSync } from "./fs.ts";
import { INSTANCE_ID_PATTERN } from "../protocol/mod.ts";

/** Name of the file holding the instance id inside the state directory. */
export const INSTANCE_ID_FILE = "instance-id";

/**
 * The instance id kept in `dir`, made and written on first use.
 *
 * @param dir The agent's (locked, durable) state directory.
 * @returns The id.
 * @throws {Error} When the file cannot be written, or what is in its place cannot be read (a
 *   named pipe, a symlink, a file of more than 1 KiB).
 */
export function stateInstanceId(dir: string): string {
  const path = join(dir, INSTANCE_ID_FILE);
  // Never a named pipe (the agent would hang at start) nor through a symlink, nor a file longer
  // than any id to its end.
  const kept = readStateTextSync(path, 1024)?.trim();
  if (kept !== undefined && INSTANCE_ID_PATTERN.test(kept)) return kept;
  const id = crypto.randomUUID();
  writeFileAtomicSync(path, `${id}\n`);
  return id;
}
