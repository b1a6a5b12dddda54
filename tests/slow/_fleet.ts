/**
 * Helpers of the slow scale-out tests: dashboards on fixed ports that can be killed and restarted,
 * nginx in front of them (with `examples/nginx.conf`), and a command that writes a ledger line per
 * execution.
 *
 * @module
 */
import { type ServeProcess, startServe } from "../e2e/helpers.ts";
import { ROOT } from "../_cli.ts";
import { freePort } from "../_pg.ts";

/** Where nginx is, or `null`. */
export function findNginx(): string | null {
  for (const path of ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]) {
    try {
      Deno.statSync(path);
      return path;
    } catch {
      // not here
    }
  }
  return null;
}

/** A dashboard instance on a fixed port that can be SIGKILLed and started again. */
export class Instance implements AsyncDisposable {
  readonly port: number = freePort();
  current: ServeProcess | undefined;
  /** stderr of every run so far, for failure messages. */
  readonly logs: string[] = [];

  constructor(readonly db: string, readonly env: Record<string, string>, readonly args: string[]) {}

  /** Starts it and waits until it listens. */
  async start(): Promise<void> {
    for (let attempt = 1;; attempt++) {
      try {
        this.current = await startServe({
          db: this.db,
          port: this.port,
          env: this.env,
          args: this.args,
        });
        return;
      } catch (error) {
        // The port of a killed instance can take a moment to be free again.
        if (attempt >= 5) throw error;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  /** SIGKILLs it. */
  async kill(): Promise<void> {
    const proc = this.current?.proc;
    if (!proc) return;
    proc.kill("SIGKILL");
    await proc.status();
    this.logs.push(proc.stderr.text);
    this.current = undefined;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
  }
}

/** nginx in front of the instances, configured with `examples/nginx.conf`. */
export async function startNginx(
  nginx: string,
  dir: string,
  upstreams: number[],
): Promise<{ url: string } & AsyncDisposable> {
  const port = freePort();
  let site = await Deno.readTextFile(`${ROOT}/examples/nginx.conf`);
  // Each instance with the example's own parameters (max_fails=...).
  const parameters = /^ {4}server 127\.0\.0\.1:\d+(.*);$/m.exec(site)![1];
  const servers = upstreams
    .map((p) => `    server 127.0.0.1:${p}${parameters};`)
    .join("\n");
  site = site
    .replace(
      /^ {4}server 127\.0\.0\.1:\d+ .*\n(?: {4}server 127\.0\.0\.1:\d+ .*\n)*/m,
      `${servers}\n`,
    )
    .replace(/listen 8080;/, `listen 127.0.0.1:${port};`);
  await Deno.writeTextFile(`${dir}/status.conf`, site);
  const root = Deno.uid() === 0 ? "user root;\n" : "";
  await Deno.writeTextFile(
    `${dir}/nginx.conf`,
    `${root}worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  include ${dir}/status.conf;
}
`,
  );
  const child = new Deno.Command(nginx, {
    args: ["-p", dir, "-c", `${dir}/nginx.conf`, "-g", "daemon off;"],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      break;
    } catch {
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        const out = await child.output();
        throw new Error(`nginx did not start: ${new TextDecoder().decode(out.stderr)}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    url,
    async [Symbol.asyncDispose]() {
      child.kill("SIGTERM");
      await child.output();
    },
  };
}

/**
 * Writes an executable script that appends `<id>` to `<dir>/ledger` each time it runs (after a
 * short sleep, so that kills land while commands run). The directory is opened to every user.
 *
 * @param dir A directory under an allowed path prefix.
 * @returns The script's path.
 */
export async function ledgerScript(dir: string): Promise<string> {
  const path = `${dir}/ledger.sh`;
  await Deno.writeTextFile(
    path,
    `#!/bin/sh\nsleep 0.1\necho "$1" >> "${dir}/ledger"\necho "ran $1"\n`,
  );
  await Deno.chmod(path, 0o755);
  // An agent running as root runs commands as nobody: it must run the script and write the ledger.
  await Deno.chmod(dir, 0o777);
  return path;
}

/** How often each id appears in the ledger. */
export async function ledgerCounts(dir: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  let text = "";
  try {
    text = await Deno.readTextFile(`${dir}/ledger`);
  } catch {
    // nothing ran
  }
  for (const line of text.split("\n")) {
    if (line) counts.set(line, (counts.get(line) ?? 0) + 1);
  }
  return counts;
}
