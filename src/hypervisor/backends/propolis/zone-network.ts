/**
 * The network side of a Propolis zone, pure: the control address range its propolis-server's
 * address comes from, the name of its control VNIC, and reading a guest's address by MAC out of
 * the zone's ARP (`arp -an`) and NDP (`ndp -an`) tables. An exclusive-IP zone has its own IP
 * stack, so its server must listen on an address of the zone's own VNIC, never on loopback.
 */
import { createHash } from "node:crypto";
import { isIP, isIPv4 } from "node:net";
import { HypervisorError } from "../../errors.js";

const bad = (msg: string) => new HypervisorError("hypervisor::invalid-path", msg);

const toInt = (ip: string): number => ip.split(".").reduce((a, o) => a * 256 + Number(o), 0);
const toIp = (n: number): string =>
  [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");

/** An IPv4 range "first-last" (or one address), inclusive. */
export interface AddressRange {
  first: number;
  last: number;
}

export function parseRange(text: string): AddressRange {
  const [a = "", b = a, ...rest] = text.split("-").map((s) => s.trim());
  if (rest.length > 0 || !isIPv4(a) || !isIPv4(b)) {
    throw bad(`address range ${JSON.stringify(text)} is not "<first IPv4>-<last IPv4>"`);
  }
  const first = toInt(a);
  const last = toInt(b);
  if (last < first) throw bad(`address range ${text} ends before it starts`);
  if (last - first > 65_535) throw bad(`address range ${text} is larger than 65,536 addresses`);
  return { first, last };
}

/** The lowest address of the range not in `used` (IPs, no port), or undefined when all are. */
export function freeAddress(range: AddressRange, used: ReadonlySet<string>): string | undefined {
  for (let n = range.first; n <= range.last; n++) {
    const ip = toIp(n);
    if (!used.has(ip)) return ip;
  }
  return undefined;
}

export function inRange(range: AddressRange, ip: string): boolean {
  if (!isIPv4(ip)) return false;
  const n = toInt(ip);
  return n >= range.first && n <= range.last;
}

/**
 * The control VNIC of a zone: illumos link names start with a letter, end with a digit and
 * have at most 31 characters, so it is derived from a hash of the zone name (stable, so
 * teardown finds it without a record).
 */
export function controlVnicName(zone: string): string {
  const h = createHash("sha256").update(zone).digest("hex").slice(0, 12);
  return `vmqc${h}0`;
}

const LINK_NAME = /^[A-Za-z][A-Za-z0-9_]{0,29}[0-9]$/;

export function checkLinkName(name: string, what: string): string {
  if (!LINK_NAME.test(name)) {
    throw bad(`${what} ${JSON.stringify(name)} is not an illumos link name`);
  }
  return name;
}

/** "2:8:20:AB:c:d" → "02:08:20:ab:0c:0d"; undefined when it is not a 6-octet MAC. */
export function normalizeMac(text: string): string | undefined {
  const parts = text.trim().split(/[:-]/);
  if (parts.length !== 6 || !parts.every((p) => /^[0-9A-Fa-f]{1,2}$/.test(p))) return undefined;
  return parts.map((p) => p.toLowerCase().padStart(2, "0")).join(":");
}

/** An address a guest can be reached on (not loopback, link-local, unspecified). */
function usable(ip: string): boolean {
  if (ip.startsWith("127.") || ip === "::1" || ip === "0.0.0.0" || ip === "::") return false;
  return !/^fe80:/i.test(ip) && !ip.startsWith("169.254.");
}

/**
 * The guest's address from `arp -an` and `ndp -an` output run in its zone: only entries whose
 * MAC is the guest's, never the zone's own (flag L / type local) nor `exclude` (the zone's
 * control address). IPv4 first. Lines are read by token, so both tools' column layouts work.
 */
export function guestIpFromNeighbours(
  tables: string,
  mac: string,
  exclude: readonly string[] = [],
): string | undefined {
  const want = normalizeMac(mac);
  if (want === undefined) return undefined;
  const found: string[] = [];
  for (const line of tables.split("\n")) {
    const tokens = line.trim().split(/\s+/);
    if (!tokens.some((t) => normalizeMac(t) === want)) continue;
    // arp flags (S static, P published, L local, U unresolved) or ndp's "local" type.
    if (tokens.some((t) => t === "local" || (/^[SPLUAMD]{1,5}$/.test(t) && t.includes("L"))))
      continue;
    // The first address of a line is the neighbour's (arp prints its netmask after it).
    const ip = tokens.map((t) => t.replace(/%.*$/, "")).find((t) => isIP(t) !== 0);
    if (ip !== undefined && usable(ip) && !exclude.includes(ip)) found.push(ip);
  }
  return found.find((a) => isIPv4(a)) ?? found[0];
}
