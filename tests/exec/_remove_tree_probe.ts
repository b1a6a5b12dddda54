/**
 * Plays an agent that is not root removing a command's working directory: makes, in the
 * directory given, what a command can leave (a directory it made unreadable and unwritable, with
 * a file inside, in one it made read-only), removes it with `removeTree` and prints, as JSON, whether it is gone and
 * what the removal threw. Used by `remove_tree_test.ts`, as `nobody` when the test runs as root.
 *
 * @module
 */
import { removeTree } from "../../src/exec/remove_tree.ts";

const [dir] = Deno.args;
const cwd = `${dir}/cmd`;
Deno.mkdirSync(`${cwd}/shut/deeper`, { recursive: true });
Deno.writeTextFileSync(`${cwd}/shut/deeper/file`, "kept by the command");
Deno.chmodSync(`${cwd}/shut/deeper`, 0o500);
Deno.chmodSync(`${cwd}/shut`, 0o000);
// And the directory itself read-only: moving it (a new "..") needs write permission on it.
Deno.chmodSync(cwd, 0o500);
let error: string | null = null;
try {
  await removeTree(cwd);
} catch (thrown) {
  error = (thrown as Error).message;
}
let removed = false;
try {
  Deno.lstatSync(cwd);
} catch (thrown) {
  removed = thrown instanceof Deno.errors.NotFound;
}
console.log(JSON.stringify({ uid: Deno.uid(), removed, error }));
