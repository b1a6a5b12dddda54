/**
 * Loopback names and addresses: where dev mode may listen and the names it answers to, and the
 * dashboards an agent may reach over plain HTTP without its token crossing a network.
 *
 * @module
 */

/**
 * Whether an address is loopback-only: `localhost`, `127.0.0.0/8`, `::1`.
 *
 * @param hostname A host name or IP address.
 */
export function isLoopback(hostname: string): boolean {
  const host = hostname.trim().toLowerCase().replace(/^\[(.*)\]$/, "$1");
  if (host === "localhost" || host === "::1" || host === "0:0:0:0:0:0:0:1") return true;
  const v4 = host.replace(/^::ffff:/, "");
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}
