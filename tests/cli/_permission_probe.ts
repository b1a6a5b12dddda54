/** Prints the permission flags this process would hand a daemon (for daemon_test.ts). */
import { permissionFlags } from "../../src/cli/permission_flags.ts";

console.log(JSON.stringify(permissionFlags(JSON.parse(Deno.args[0]))));
