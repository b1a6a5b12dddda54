/** Prints the permission flags this process would hand a daemon (for daemon_test.ts). */
import { permissionFlags } from "../../src/agent/mod.ts";

console.log(JSON.stringify(permissionFlags(JSON.parse(Deno.args[0]))));
