/**
 * Makes a tree `depth` directories deep in the directory given (from the bottom up, so that no path
 * is ever long; a command can make one so), removes it with `removeTree` and prints, as JSON,
 * whether it is gone and what the removal threw. Used by `remove_tree_test.ts` under a low
 * open-file limit or a small stack, which `Deno.remove(path, { recursive: true })` (a descriptor
 * and a stack frame per level) fails with, or aborts the process on.
 *
 * @module
 */
import { removeTree } from "../../src/exec/remove_tree.ts";

const [dir, depth] = Deno.args;
// Built from the bottom up: each level is moved into a new one, and no path is ever long.
let below = `${dir}/level-0`;
Deno.mkdirSync(below);
Deno.writeTextFileSync(`${below}/file`, "at the bottom");
for (let level = 1; level <= Number(depth); level++) {
  const above = `${dir}/level-${level}`;
  Deno.mkdirSync(above);
  Deno.renameSync(below, `${above}/d`);
  below = above;
}
const tree = `${dir}/cmd`;
Deno.renameSync(below, tree);
let error: string | null = null;
try {
  await removeTree(tree);
} catch (thrown) {
  error = (thrown as Error).message;
}
console.log(JSON.stringify({ left: [...Deno.readDirSync(dir)].map((entry) => entry.name), error }));
