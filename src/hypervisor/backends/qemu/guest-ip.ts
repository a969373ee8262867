/**
 * Finding a tap-networked guest's IPv4 address by its MAC: the bridge's neighbour table
 * first (`ip -j neigh show dev <bridge>`), then dnsmasq leases. Only an entry whose MAC is
 * exactly this VM's is used, so another VM's address is never returned.
 */
import { readFile } from "node:fs/promises";
import { execa } from "execa";
import { ipArgs } from "./qemu-network.js";

export const DEFAULT_LEASE_FILES = [
  "/var/lib/misc/dnsmasq.leases",
  "/var/lib/dnsmasq/dnsmasq.leases",
];

interface Neighbour {
  dst?: string;
  lladdr?: string;
  state?: string[];
}

/** IPv4 addresses for `mac` in `ip -j neigh` output (REACHABLE/STALE/DELAY/PROBE entries). */
export function parseNeighbours(json: string, mac: string): string[] {
  let rows: Neighbour[];
  try {
    rows = JSON.parse(json) as Neighbour[];
  } catch {
    return [];
  }
  if (!Array.isArray(rows)) return [];
  const usable = new Set(["REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT"]);
  return rows
    .filter(
      (r) =>
        r.lladdr?.toLowerCase() === mac.toLowerCase() &&
        typeof r.dst === "string" &&
        isIpv4(r.dst) &&
        (r.state ?? []).some((s) => usable.has(s)),
    )
    .map((r) => r.dst!);
}

/** dnsmasq lease lines: `<expiry> <mac> <ip> <hostname> <client-id>`. */
export function parseLeases(text: string, mac: string): string[] {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const [, m, ip] = line.trim().split(/\s+/);
    if (m?.toLowerCase() === mac.toLowerCase() && ip && isIpv4(ip)) out.push(ip);
  }
  return out;
}

function isIpv4(s: string): boolean {
  const parts = s.split(".");
  return parts.length === 4 && parts.every((p) => /^[0-9]{1,3}$/.test(p) && Number(p) <= 255);
}

/**
 * One look for the MAC's address on the bridge (in `netns` when QEMU runs in one); undefined
 * when not (yet) known.
 */
export async function lookupTapIp(
  bridge: string,
  mac: string,
  leaseFiles: readonly string[] = DEFAULT_LEASE_FILES,
  netns?: string,
): Promise<string | undefined> {
  const r = await execa("ip", ipArgs(netns, ["-j", "neigh", "show", "dev", bridge]), {
    reject: false,
  });
  if (r.exitCode === 0) {
    const ip = parseNeighbours(r.stdout, mac)[0];
    if (ip) return ip;
  }
  for (const f of leaseFiles) {
    const text = await readFile(f, "utf8").catch(() => "");
    // The newest lease is last in the file.
    const ip = parseLeases(text, mac).at(-1);
    if (ip) return ip;
  }
  return undefined;
}
