/**
 * Host metrics of the heartbeat: CPU use (from deltas of the CPU times), memory, disk of `/` and
 * the load average, each read only when a permission allows it; what cannot be read is left out
 * and named once.
 *
 * @module
 */
import { statfsSync } from "node:fs";
import { cpus } from "node:os";
import { isGranted } from "../permissions.ts";
import { helperPath } from "../exec/env.ts";

/** One heartbeat's measurements. Fields that could not be read are absent. */
export interface MetricsSample {
  /** The agent id. */
  agent_id: string;
  /** When the sample was taken, ISO 8601. */
  timestamp: string;
  /** CPU busy share since the previous sample, 0–100. */
  cpu_percent?: number;
  /** System memory. */
  memory?: { total_bytes: number; available_bytes: number; used_percent: number };
  /** The file system of `/`. */
  disk?: { path: string; total_bytes: number; available_bytes: number; used_percent: number };
  /** Load average over 1, 5 and 15 minutes. */
  load_avg?: [number, number, number];
}

/** Where each measurement comes from; injectable for tests. */
export interface MetricsSources {
  /** Returns busy and total CPU time so far, or `undefined` when it may not be read. */
  cpuTimes?: () => CpuTimes | undefined;
  /** Returns memory information, or `undefined` when not permitted. */
  memory?: () => Deno.SystemMemoryInfo | undefined;
  /** Returns the load average, or `undefined` when not permitted. */
  loadavg?: () => number[] | undefined;
  /** Returns total and available bytes of `/`, or `undefined` when it cannot be measured. */
  disk?: () => Promise<{ total: number; available: number } | undefined>;
}

/** CPU time spent so far, in any unit (ticks, milliseconds). */
export interface CpuTimes {
  /** Time not idle. */
  busy: number;
  /** All time. */
  total: number;
}

/**
 * Sums the times of `node:os` `cpus()` over every CPU.
 *
 * @param list The CPUs.
 * @returns Busy and total milliseconds, or `undefined` for an empty list.
 */
export function sumCpuTimes(
  list: readonly {
    times: { user: number; nice: number; sys: number; idle: number; irq: number };
  }[],
): CpuTimes | undefined {
  if (list.length === 0) return undefined;
  let busy = 0;
  let total = 0;
  for (const { times } of list) {
    const all = times.user + times.nice + times.sys + times.idle + times.irq;
    total += all;
    busy += all - times.idle;
  }
  return { busy, total };
}

/**
 * Reads the aggregate `cpu` line of `/proc/stat`.
 *
 * @param text The contents of `/proc/stat`.
 * @returns Busy and total jiffies, or `undefined` when the line is missing.
 */
export function parseProcStat(text: string): CpuTimes | undefined {
  const line = text.split("\n").find((l) => l.startsWith("cpu "));
  if (!line) return undefined;
  const values = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (values.length < 4 || values.some((v) => !Number.isFinite(v))) return undefined;
  const total = values.reduce((a, b) => a + b, 0);
  const idle = values[3] + (values[4] ?? 0);
  return { busy: total - idle, total };
}

/**
 * Reads the output of `df -Pk /`.
 *
 * @param text The output.
 * @returns Total and available bytes, or `undefined` when unreadable.
 */
export function parseDf(text: string): { total: number; available: number } | undefined {
  const line = text.trim().split("\n")[1];
  if (!line) return undefined;
  const fields = line.trim().split(/\s+/);
  const total = Number(fields[1]) * 1024;
  const available = Number(fields[3]) * 1024;
  if (!Number.isFinite(total) || !Number.isFinite(available)) return undefined;
  return { total, available };
}

function round1(value: number): number {
  return Math.round(value * 10) / 10;
}

function readsProcStat(): boolean {
  if (!isGranted({ name: "read", path: "/proc/stat" })) return false;
  try {
    Deno.readTextFileSync("/proc/stat");
    return true;
  } catch {
    return false;
  }
}

/** What {@link defaultMetricsSources} can measure, and what it cannot and why. */
export interface MetricsAvailability {
  /** The sources to use. */
  sources: MetricsSources;
  /** One sentence per missing measurement naming the flag that enables it. */
  missing: string[];
}

/**
 * Picks the sources the current permissions allow: CPU times, memory and load with `--allow-sys`,
 * the disk with `--allow-read` of `/` (statfs) or else by running `df -Pk /` with `--allow-run`.
 *
 * @returns The sources and the notices of what is skipped.
 */
export function defaultMetricsSources(): MetricsAvailability {
  const missing: string[] = [];
  const sources: MetricsSources = {};
  if (isGranted({ name: "sys", kind: "cpus" })) {
    sources.cpuTimes = () => sumCpuTimes(cpus());
  } else if (Deno.build.os === "linux" && readsProcStat()) {
    // Deno lets a program read /proc/stat only under --allow-all.
    sources.cpuTimes = () => {
      try {
        return parseProcStat(Deno.readTextFileSync("/proc/stat"));
      } catch {
        return undefined;
      }
    };
  } else {
    missing.push("CPU use is skipped without --allow-sys (or --allow-sys=cpus)");
  }
  if (isGranted({ name: "sys", kind: "systemMemoryInfo" })) {
    sources.memory = () => Deno.systemMemoryInfo();
  } else {
    missing.push("memory is skipped without --allow-sys (or --allow-sys=systemMemoryInfo)");
  }
  if (isGranted({ name: "sys", kind: "loadavg" })) {
    sources.loadavg = () => Deno.loadavg();
  } else {
    missing.push("the load average is skipped without --allow-sys (or --allow-sys=loadavg)");
  }
  if (isGranted({ name: "read", path: "/" })) {
    sources.disk = () => {
      const stats = statfsSync("/");
      return Promise.resolve({
        total: stats.blocks * stats.bsize,
        available: stats.bavail * stats.bsize,
      });
    };
  } else if (isGranted({ name: "run", command: "df" })) {
    sources.disk = async () => {
      try {
        const output = await new Deno.Command("df", {
          env: { PATH: helperPath() },
          args: ["-Pk", "/"],
          stdin: "null",
          stdout: "piped",
          stderr: "null",
        }).output();
        return output.success ? parseDf(new TextDecoder().decode(output.stdout)) : undefined;
      } catch {
        return undefined;
      }
    };
  } else {
    missing.push("disk use of / is skipped without --allow-read=/ or --allow-run=df");
  }
  return { sources, missing };
}

/**
 * Takes samples; CPU use is the busy share between two consecutive samples (the first reading is
 * taken when the collector is created).
 */
export class MetricsCollector {
  readonly #agentId: string;
  readonly #sources: MetricsSources;
  readonly #now: () => number;
  #previousCpu: CpuTimes | undefined;

  /**
   * Creates a collector and takes the first CPU reading.
   *
   * @param agentId The agent id put in every sample.
   * @param sources Where measurements come from.
   * @param now Clock; for tests.
   */
  constructor(agentId: string, sources: MetricsSources, now: () => number = Date.now) {
    this.#agentId = agentId;
    this.#sources = sources;
    this.#now = now;
    this.#previousCpu = this.#readCpu();
  }

  #readCpu(): CpuTimes | undefined {
    try {
      return this.#sources.cpuTimes?.();
    } catch {
      return undefined;
    }
  }

  /**
   * Takes one sample.
   *
   * @returns The measurements that could be read.
   */
  async collect(): Promise<MetricsSample> {
    const sample: MetricsSample = {
      agent_id: this.#agentId,
      timestamp: new Date(this.#now()).toISOString(),
    };
    const cpu = this.#readCpu();
    if (cpu && this.#previousCpu) {
      const total = cpu.total - this.#previousCpu.total;
      const busy = cpu.busy - this.#previousCpu.busy;
      if (total > 0) sample.cpu_percent = round1(Math.min(100, Math.max(0, (busy / total) * 100)));
    }
    if (cpu) this.#previousCpu = cpu;
    try {
      const memory = this.#sources.memory?.();
      if (memory && memory.total > 0) {
        sample.memory = {
          total_bytes: memory.total,
          available_bytes: memory.available,
          used_percent: round1(((memory.total - memory.available) / memory.total) * 100),
        };
      }
    } catch {
      // Left out.
    }
    try {
      const load = this.#sources.loadavg?.();
      if (load && load.length >= 3) {
        sample.load_avg = [load[0], load[1], load[2]].map((v) => Math.round(v * 100) / 100) as [
          number,
          number,
          number,
        ];
      }
    } catch {
      // Left out.
    }
    try {
      const disk = await this.#sources.disk?.();
      if (disk && disk.total > 0) {
        sample.disk = {
          path: "/",
          total_bytes: disk.total,
          available_bytes: disk.available,
          used_percent: round1(((disk.total - disk.available) / disk.total) * 100),
        };
      }
    } catch {
      // Left out.
    }
    return sample;
  }
}
