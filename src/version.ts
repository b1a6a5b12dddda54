/**
 * The program's version, from `deno.json`: the agent sends it with its heartbeat, the dashboard
 * shows it in the fleet view and on `/health`.
 *
 * @module
 */
import denoJson from "../deno.json" with { type: "json" };

/** This program's version, e.g. `"0.1.0"`. */
export const VERSION: string = denoJson.version;
