/**
 * A small Chrome DevTools Protocol client for profiling a child started with
 * `deno run --inspect=127.0.0.1:<port>`: CPU profiles (`.cpuprofile`), heap snapshots
 * (`.heapsnapshot`) and the V8 heap's size. Deno has no `--cpu-prof`; this is its equivalent.
 *
 * @module
 */
import { sleep } from "./_proc.ts";

/** A CDP session over the inspector's WebSocket. */
export class Inspector implements Disposable {
  readonly #socket: WebSocket;
  #nextId = 1;
  readonly #pending = new Map<number, PromiseWithResolvers<Record<string, unknown>>>();
  readonly #listeners = new Map<string, (params: Record<string, unknown>) => void>();

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    socket.onmessage = (event) => {
      const message = JSON.parse(String(event.data));
      if (typeof message.id === "number") {
        const pending = this.#pending.get(message.id);
        this.#pending.delete(message.id);
        if (message.error) pending?.reject(new Error(JSON.stringify(message.error)));
        else pending?.resolve(message.result ?? {});
      } else if (typeof message.method === "string") {
        this.#listeners.get(message.method)?.(message.params ?? {});
      }
    };
  }

  /**
   * Connects to the inspector of a process started with `--inspect=127.0.0.1:<port>`.
   *
   * @param port The inspector's port.
   * @param timeoutMs How long to wait for it.
   * @returns The session.
   */
  static async connect(port: number, timeoutMs = 30_000): Promise<Inspector> {
    const deadline = Date.now() + timeoutMs;
    let url: string | undefined;
    while (!url) {
      try {
        const response = await fetch(`http://127.0.0.1:${port}/json/list`);
        const targets = await response.json() as Array<{ webSocketDebuggerUrl: string }>;
        url = targets[0]?.webSocketDebuggerUrl;
      } catch {
        // not listening yet
      }
      if (!url) {
        if (Date.now() > deadline) throw new Error(`no inspector on port ${port}`);
        await sleep(200);
      }
    }
    const socket = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      socket.onopen = () => resolve();
      socket.onerror = () => reject(new Error(`cannot open the inspector socket ${url}`));
    });
    return new Inspector(socket);
  }

  /**
   * Sends a CDP command.
   *
   * @param method E.g. `Profiler.start`.
   * @param params Its parameters.
   * @returns Its result.
   */
  send(method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const id = this.#nextId++;
    const pending = Promise.withResolvers<Record<string, unknown>>();
    this.#pending.set(id, pending);
    this.#socket.send(JSON.stringify({ id, method, params }));
    return pending.promise;
  }

  /** Starts the sampling CPU profiler. */
  async startCpuProfile(): Promise<void> {
    await this.send("Profiler.enable");
    await this.send("Profiler.setSamplingInterval", { interval: 200 });
    await this.send("Profiler.start");
  }

  /**
   * Stops the CPU profiler and writes the profile.
   *
   * @param path The `.cpuprofile` file.
   */
  async stopCpuProfile(path: string): Promise<void> {
    const { profile } = await this.send("Profiler.stop");
    await Deno.writeTextFile(path, JSON.stringify(profile));
  }

  /**
   * Starts the sampling heap profiler, counting what the young and old collections freed too:
   * what is allocated, not what stays.
   */
  async startAllocationSampling(): Promise<void> {
    await this.send("HeapProfiler.enable");
    await this.send("HeapProfiler.startSampling", {
      samplingInterval: 16 * 1024,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
  }

  /**
   * Stops the sampling heap profiler and writes its profile.
   *
   * @param path The `.heapprofile` file.
   */
  async stopAllocationSampling(path: string): Promise<void> {
    const { profile } = await this.send("HeapProfiler.stopSampling");
    await Deno.writeTextFile(path, JSON.stringify(profile));
  }

  /**
   * Takes a heap snapshot (after a full GC) and writes it.
   *
   * @param path The `.heapsnapshot` file.
   */
  async heapSnapshot(path: string): Promise<void> {
    const chunks: string[] = [];
    this.#listeners.set("HeapProfiler.addHeapSnapshotChunk", (params) => {
      chunks.push(String(params.chunk));
    });
    try {
      await this.send("HeapProfiler.enable");
      await this.send("HeapProfiler.collectGarbage");
      await this.send("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
    } finally {
      this.#listeners.delete("HeapProfiler.addHeapSnapshotChunk");
    }
    using file = await Deno.open(path, { write: true, create: true, truncate: true });
    const encoder = new TextEncoder();
    for (const chunk of chunks) {
      const bytes = encoder.encode(chunk);
      let written = 0;
      while (written < bytes.length) written += await file.write(bytes.subarray(written));
    }
  }

  /** The V8 heap's used and total size, in bytes. */
  async heapUsage(): Promise<{ usedSize: number; totalSize: number }> {
    const result = await this.send("Runtime.getHeapUsage");
    return { usedSize: Number(result.usedSize), totalSize: Number(result.totalSize) };
  }

  /** Closes the session. */
  [Symbol.dispose](): void {
    this.#socket.close();
  }
}
