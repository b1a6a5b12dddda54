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
import { writeFileAtomicSync } from "./fs.ts";
import { INSTANCE_ID_PATTERN } from "../protocol/mod.ts";

/** Name of the file holding the instance id inside the state directory. */
export const INSTANCE_ID_FILE = "instance-id";

/**
 * The instance id kept in `dir`, made and written on first use.
 *
 * @param dir The agent's (locked, durable) state directory.
 * @returns The id.
 * @throws {Error} When the file cannot be written.
 */
export function stateInstanceId(dir: string): string {
  const path = join(dir, INSTANCE_ID_FILE);
  try {
    const kept = Deno.readTextFileSync(path).trim();
    if (INSTANCE_ID_PATTERN.test(kept)) return kept;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const id = crypto.randomUUID();
  writeFileAtomicSync(path, `${id}\n`);
  return id;
}
