/**
 * Summarises the profiles that `deno task bench --profile <dir>` writes: the functions that take
 * the most CPU in a `.cpuprofile` (self and inclusive time), the functions that allocate the most in
 * a `.heapprofile` (sampled allocations, what the collector freed included), and what fills a
 * `.heapsnapshot`
 * (retained-by-nobody accounting: self size by object type and constructor name).
 *
 * ```sh
 * deno run --allow-read bench/profile_summary.ts /tmp/prof/idle-10000.cpuprofile
 * deno run --allow-read bench/profile_summary.ts --top=50 /tmp/prof/heap-10000.heapsnapshot
 * ```
 *
 * @module
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** One line of a CPU summary. */
export interface FunctionTime {
  /** `name (file:line)`. */
  label: string;
  /** Time spent in the function itself, in ms. */
  selfMs: number;
  /** Time spent in it and what it called, in ms. */
  totalMs: number;
}

function labelOf(frame: CallFrame): string {
  const name = frame.functionName || "(anonymous)";
  if (!frame.url) return name;
  const file = frame.url.replace(/^.*\/(node_modules|npm|registry\.npmjs\.org)\//, "npm:/")
    .replace(/^file:\/\/\/.*?\/(src|bench|main\.ts)/, "$1")
    .replace(/^ext:/, "ext:");
  return `${name} (${file}:${frame.lineNumber + 1})`;
}

/**
 * Sums a CPU profile by function.
 *
 * @param profile The parsed `.cpuprofile`.
 * @returns Functions by self time, the wall time and the busy (non-idle) time, in ms.
 */
export function summarizeCpuProfile(
  profile: CpuProfile,
): { functions: FunctionTime[]; wallMs: number; busyMs: number } {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    // The delta before a sample is the time it stands for (the usual approximation).
    const delta = profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0;
    selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + delta);
  }
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let busyUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    const label = labelOf(node.callFrame);
    self.set(label, (self.get(label) ?? 0) + us);
    if (label !== "(idle)" && label !== "(program)") busyUs += us;
    // Inclusive: every distinct function on the stack gets the sample once.
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const name = labelOf(byId.get(at)!.callFrame);
      if (seen.has(name)) continue;
      seen.add(name);
      total.set(name, (total.get(name) ?? 0) + us);
    }
  }
  const functions = [...self.keys(), ...total.keys()]
    .filter((label, i, all) => all.indexOf(label) === i)
    .map((label) => ({
      label,
      selfMs: (self.get(label) ?? 0) / 1000,
      totalMs: (total.get(label) ?? 0) / 1000,
    }));
  return {
    functions,
    wallMs: (profile.endTime - profile.startTime) / 1000,
    busyMs: busyUs / 1000,
  };
}

interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** One line of a heap summary. */
export interface HeapGroup {
  /** `type: name`, e.g. `object: Request`. */
  label: string;
  /** Objects. */
  count: number;
  /** Sum of their own sizes, in bytes. */
  selfBytes: number;
}

/**
 * Sums a heap snapshot by object type and constructor name.
 *
 * @param snapshot The parsed `.heapsnapshot`.
 * @returns Groups by self size and the total, in bytes.
 */
export function summarizeHeapSnapshot(
  snapshot: HeapSnapshot,
): { groups: HeapGroup[]; totalBytes: number } {
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf("type");
  const nameAt = fields.indexOf("name");
  const sizeAt = fields.indexOf("self_size");
  const groups = new Map<string, HeapGroup>();
  let totalBytes = 0;
  for (let i = 0; i < snapshot.nodes.length; i += width) {
    const type = types[snapshot.nodes[i + typeAt]];
    const rawName = snapshot.strings[snapshot.nodes[i + nameAt]] ?? "";
    // Strings and code are grouped by type; objects by constructor.
    const name = type === "object" || type === "closure" || type === "native"
      ? rawName.slice(0, 60)
      : "";
    const label = name ? `${type}: ${name}` : type;
    const size = snapshot.nodes[i + sizeAt];
    totalBytes += size;
    const group = groups.get(label) ?? { label, count: 0, selfBytes: 0 };
    group.count++;
    group.selfBytes += size;
    groups.set(label, group);
  }
  return { groups: [...groups.values()], totalBytes };
}

interface SamplingNode {
  callFrame: CallFrame;
  selfSize: number;
  children: SamplingNode[];
}

/**
 * Sums an allocation profile (`.heapprofile`) by function: bytes allocated in the function itself
 * and in it and what it called.
 *
 * @param profile The parsed `.heapprofile`.
 * @returns One line per function (its times are bytes here) and the total, in bytes.
 */
export function summarizeAllocations(
  profile: { head: SamplingNode },
): { functions: FunctionTime[]; totalBytes: number } {
  const byLabel = new Map<string, FunctionTime>();
  const walk = (node: SamplingNode, open: Set<string>): number => {
    const label = labelOf(node.callFrame);
    let total = node.selfSize;
    const inner = new Set(open).add(label);
    for (const child of node.children) total += walk(child, inner);
    const entry = byLabel.get(label) ?? { label, selfMs: 0, totalMs: 0 };
    entry.selfMs += node.selfSize;
    // A recursive function counts its bytes once.
    if (!open.has(label)) entry.totalMs += total;
    byLabel.set(label, entry);
    return total;
  };
  const totalBytes = walk(profile.head, new Set());
  return { functions: [...byLabel.values()], totalBytes };
}

function printAllocations(path: string, top: number): void {
  const profile = JSON.parse(Deno.readTextFileSync(path)) as { head: SamplingNode };
  const { functions, totalBytes } = summarizeAllocations(profile);
  const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1).padStart(9);
  console.log(`${path}: ${mb(totalBytes).trim()} MB allocated (sampled)`);
  console.log("\nby bytes allocated in the function itself:");
  for (const f of [...functions].sort((a, b) => b.selfMs - a.selfMs).slice(0, top)) {
    console.log(`${mb(f.selfMs)} MB  ${f.label}`);
  }
  console.log("\nby bytes allocated in it and what it called:");
  for (const f of [...functions].sort((a, b) => b.totalMs - a.totalMs).slice(0, top)) {
    console.log(`${mb(f.totalMs)} MB  ${f.label}`);
  }
}

function printCpu(path: string, top: number): void {
  const profile = JSON.parse(Deno.readTextFileSync(path)) as CpuProfile;
  const { functions, wallMs, busyMs } = summarizeCpuProfile(profile);
  console.log(
    `${path}: ${wallMs.toFixed(0)} ms profiled, ${busyMs.toFixed(1)} ms busy on the JS thread`,
  );
  console.log("\nby self time:");
  for (const f of [...functions].sort((a, b) => b.selfMs - a.selfMs).slice(0, top)) {
    console.log(`${f.selfMs.toFixed(1).padStart(9)} ms  ${f.label}`);
  }
  console.log("\nby inclusive time:");
  for (const f of [...functions].sort((a, b) => b.totalMs - a.totalMs).slice(0, top)) {
    console.log(`${f.totalMs.toFixed(1).padStart(9)} ms  ${f.label}`);
  }
}

function printHeap(path: string, top: number): void {
  const snapshot = JSON.parse(Deno.readTextFileSync(path)) as HeapSnapshot;
  const { groups, totalBytes } = summarizeHeapSnapshot(snapshot);
  console.log(`${path}: ${(totalBytes / 1024 / 1024).toFixed(1)} MB in the V8 heap`);
  for (const g of groups.sort((a, b) => b.selfBytes - a.selfBytes).slice(0, top)) {
    console.log(
      `${(g.selfBytes / 1024 / 1024).toFixed(2).padStart(8)} MB ${
        String(g.count).padStart(8)
      } × ${g.label}`,
    );
  }
}

if (import.meta.main) {
  // `--top=N` rows per list (30 by default), then the files.
  const top = Number(/^--top=(\d+)$/.exec(Deno.args[0] ?? "")?.[1] ?? 30);
  for (const path of Deno.args.filter((arg) => !arg.startsWith("--top="))) {
    if (path.endsWith(".cpuprofile")) printCpu(path, top);
    else if (path.endsWith(".heapsnapshot")) printHeap(path, top);
    else if (path.endsWith(".heapprofile")) printAllocations(path, top);
    else console.error(`${path}: not a .cpuprofile, .heapprofile or .heapsnapshot`);
    console.log();
  }
}
