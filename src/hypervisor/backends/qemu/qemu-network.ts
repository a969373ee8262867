/**
 * Guest networking of the QEMU backend beyond the argv: the tap device QEMU opens itself
 * (`tap: "direct"`) and its place on the bridge, the network namespace QEMU runs in, and how a
 * guest's address is found:
 *  - user networking (SLIRP): the guest's address is SLIRP's first DHCP lease, private to the
 *    VM; it is given only once the guest answers on it, probed through the forwarded host port
 *    (SLIRP accepts on the host at once, then connects to the guest: a guest without the
 *    address never answers, one with it answers with data or a reset);
 *  - tap: the bridge's neighbour table, then dnsmasq leases, by this VM's MAC only.
 */
import { createHash } from "node:crypto";
import { createConnection } from "node:net";
import { execa } from "execa";
import type { GuestAddress, VmHandle } from "../../../contracts/index.js";
import { HypervisorError } from "../../errors.js";

/** SLIRP's first DHCP address (10.0.2.0/24, hosts from .15): what hostfwd connects to. */
export const SLIRP_GUEST_IP = "10.0.2.15";
/** The guest port the user-networking forward reaches (SSH). */
export const FORWARDED_GUEST_PORT = 22;

const NETNS = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** A network namespace name, refused unless it is a plain token (it becomes an argv item). */
export function netnsName(ns: string): string {
  if (!NETNS.test(ns)) {
    throw new HypervisorError("hypervisor::failed", `invalid network namespace ${ns}`, {
      hint: "A namespace name is letters, digits, _ . - (as `ip netns list` shows it).",
    });
  }
  return ns;
}

/** `ip` with `-n <ns>` when QEMU runs in a namespace: the tap and the bridge live there. */
export function ipArgs(netns: string | undefined, args: string[]): string[] {
  return netns === undefined ? args : ["-n", netnsName(netns), ...args];
}

/** The program and argv that run QEMU, inside `netns` (`ip netns exec`) when one is set. */
export function qemuInvocation(
  qemuBinary: string,
  args: string[],
  netns: string | undefined,
): { file: string; args: string[] } {
  if (netns === undefined) return { file: qemuBinary, args };
  return { file: "ip", args: ["netns", "exec", netnsName(netns), qemuBinary, ...args] };
}

/**
 * The tap device name for a VM: 15 characters at most (IFNAMSIZ), stable for the VM, and
 * distinct for two workers' VMs of the same id (the data dir is hashed in).
 */
export function tapNameFor(dataDir: string, vmId: string): string {
  const h = createHash("sha256").update(`${dataDir}\0${vmId}`).digest("hex");
  return `vmq${h.slice(0, 12)}`;
}

/**
 * Puts QEMU's own tap device on the bridge and up. QEMU made it (not persistent), so it
 * disappears with QEMU: nothing to clean up on stop or on a crash.
 */
export async function attachTap(
  netns: string | undefined,
  tap: string,
  bridge: string,
): Promise<void> {
  const r = await execa("ip", ipArgs(netns, ["link", "set", tap, "master", bridge, "up"]), {
    reject: false,
  });
  if (r.exitCode !== 0) {
    const where = netns === undefined ? "" : ` in network namespace ${netns}`;
    throw new HypervisorError(
      "qemu::spawn-failed",
      `cannot put tap ${tap} on bridge ${bridge}${where}: ${r.stderr.trim() || r.message}`,
      { hint: "The bridge must exist (ip link add <bridge> type bridge) where QEMU runs." },
    );
  }
}

/**
 * One probe of a user-networking guest through its forwarded port: true when the guest
 * answered (data, or a close: a reset from a guest that has the address but no listener),
 * false when nothing came back within `ms` (the guest has no address yet) or QEMU refused.
 */
export function probeForward(port: number, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: "127.0.0.1", port });
    let connected = false;
    const end = (answered: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(answered);
    };
    const timer = setTimeout(() => end(false), ms);
    s.on("connect", () => (connected = true));
    s.on("data", () => end(true));
    s.on("error", () => end(false));
    s.on("close", () => end(connected));
  });
}

/** The answer for a user-networking guest that answered on its forwarded port. */
export function userNetworkAddress(vm: VmHandle): GuestAddress {
  const port = vm.sshHostPort;
  return {
    ip: SLIRP_GUEST_IP,
    ...(port === undefined
      ? {}
      : {
          forwards: [
            {
              protocol: "tcp" as const,
              hostAddr: "127.0.0.1",
              hostPort: port,
              guestPort: FORWARDED_GUEST_PORT,
            },
          ],
        }),
  };
}
