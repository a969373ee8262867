/**
 * Zone and ZFS helpers on top of the command runner: name validation, zone state, the zonecfg
 * command file. Every name that reaches a command is checked here first.
 */
import { HypervisorError } from "../../errors.js";
import type { CommandRunner, RunOptions } from "./command-runner.js";

/** zfs dataset: pool/child/... of [A-Za-z0-9_.:-], no empty, "." or ".." components. */
const DATASET_COMPONENT = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
/** A zone name: alphanumeric start, then [A-Za-z0-9_.-], at most 63 characters. */
const ZONE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
/** Values we put into a zonecfg command file: no spaces, quotes, semicolons or newlines. */
const SAFE_VALUE = /^[A-Za-z0-9_.:/@[\]-]+$/;

export function checkDataset(name: string, what = "dataset"): string {
  const parts = name.split("/");
  if (name.length > 200 || parts.length < 2 || !parts.every((p) => DATASET_COMPONENT.test(p))) {
    throw new HypervisorError(
      "hypervisor::invalid-path",
      `bad ZFS ${what} name ${JSON.stringify(name)}`,
    );
  }
  return name;
}

export function checkSnapshot(name: string): string {
  const at = name.indexOf("@");
  const snap = name.slice(at + 1);
  if (at < 0 || !DATASET_COMPONENT.test(snap)) {
    throw new HypervisorError(
      "hypervisor::invalid-path",
      `bad ZFS snapshot ${JSON.stringify(name)}`,
    );
  }
  checkDataset(name.slice(0, at), "snapshot");
  return name;
}

export function checkZoneName(name: string): string {
  if (!ZONE_NAME.test(name)) {
    throw new HypervisorError("hypervisor::invalid-path", `bad zone name ${JSON.stringify(name)}`);
  }
  return name;
}

export function checkSafeValue(value: string, what: string): string {
  if (!SAFE_VALUE.test(value) || value.includes("..")) {
    throw new HypervisorError(
      "hypervisor::invalid-path",
      `${what} ${JSON.stringify(value)} has characters a zone configuration cannot hold`,
    );
  }
  return value;
}

export type ZoneState =
  | "absent"
  | "configured"
  | "incomplete"
  | "installed"
  | "ready"
  | "running"
  | "shutting_down"
  | "down"
  | "unavailable";

const ZONE_STATES = new Set<string>([
  "configured",
  "incomplete",
  "installed",
  "ready",
  "running",
  "shutting_down",
  "down",
  "unavailable",
]);

/** `zoneadm -z <zone> list -p` → id:name:state:path:uuid:brand:ip-type. */
export async function zoneState(
  runner: CommandRunner,
  zone: string,
  opts: RunOptions = {},
): Promise<ZoneState> {
  const r = await runner.run("zoneadm", ["-z", checkZoneName(zone), "list", "-p"], {
    ...opts,
    allowFailure: true,
  });
  if (r.exitCode !== 0) {
    if (/no such zone|not configured|does not exist/i.test(r.stderr)) return "absent";
    throw new HypervisorError(
      "zone::command-failed",
      `zoneadm list of ${zone} failed: ${r.stderr.trim()}`,
      {
        details: { stderr: r.stderr, exitCode: r.exitCode },
      },
    );
  }
  const line = r.stdout.split("\n").find((l) => l.split(":")[1] === zone);
  const state = line?.split(":")[2];
  if (state === undefined || !ZONE_STATES.has(state)) {
    throw new HypervisorError("zone::bad-output", `cannot read the state of zone ${zone}`, {
      details: { stdout: r.stdout.slice(0, 500) },
    });
  }
  return state as ZoneState;
}

export async function datasetExists(
  runner: CommandRunner,
  dataset: string,
  opts: RunOptions = {},
): Promise<boolean> {
  const r = await runner.run("zfs", ["list", "-H", "-o", "name", checkDataset(dataset)], {
    ...opts,
    allowFailure: true,
  });
  if (r.exitCode === 0) return true;
  if (/does not exist/i.test(r.stderr)) return false;
  throw new HypervisorError("image::zfs-failed", `zfs list ${dataset} failed: ${r.stderr.trim()}`, {
    details: { stderr: r.stderr, exitCode: r.exitCode },
  });
}

/** One `add net` of an exclusive-IP zone: the control VNIC has an address, a guest's has none. */
export interface ZoneNet {
  physical: string;
  /** ip/prefix the zone's IP stack gets on this link at boot. */
  allowedAddress?: string;
  defrouter?: string;
}

export interface ZoneConfig {
  brand: string;
  zonepath: string;
  nets: ZoneNet[];
  devices: string[];
  /** lofs mounts: dir inside the zone ← special in the global zone (read-only). */
  mounts: { dir: string; special: string }[];
  attrs: Record<string, string>;
}

/** The command file for `zonecfg -z <zone> -f <file>` (values pre-validated, one per line). */
export function zonecfgScript(c: ZoneConfig): string {
  const v = (s: string, what: string) => checkSafeValue(s, what);
  const lines = [
    "create -b",
    `set brand=${v(c.brand, "brand")}`,
    `set zonepath=${v(c.zonepath, "zonepath")}`,
    "set autoboot=false",
    "set ip-type=exclusive",
  ];
  for (const n of c.nets) {
    lines.push("add net", `set physical=${v(n.physical, "vnic")}`);
    if (n.allowedAddress !== undefined)
      lines.push(`set allowed-address=${v(n.allowedAddress, "allowed-address")}`);
    if (n.defrouter !== undefined) lines.push(`set defrouter=${v(n.defrouter, "defrouter")}`);
    lines.push("end");
  }
  for (const d of c.devices) lines.push("add device", `set match=${v(d, "device")}`, "end");
  for (const m of c.mounts) {
    lines.push(
      "add fs",
      `set dir=${v(m.dir, "mount dir")}`,
      `set special=${v(m.special, "mount source")}`,
      "set type=lofs",
      "add options ro",
      "end",
    );
  }
  for (const [name, value] of Object.entries(c.attrs)) {
    lines.push(
      "add attr",
      `set name=${v(name, "attr name")}`,
      "set type=string",
      `set value=${v(value, "attr value")}`,
      "end",
    );
  }
  lines.push("verify", "commit");
  return `${lines.join("\n")}\n`;
}
