/**
 * The pure argv builder for qemu-system-x86_64: no I/O, so every option is unit-tested. It is
 * handed to execa as an array (never a shell), so each value is quoted for QEMU alone, by the
 * kind of option it goes into:
 *  - inside QEMU's `key=value,...` lists (-drive, -chardev, -name, ...): a comma in a value
 *    is written as two commas (qemuOptValue);
 *  - options that take one literal path (-pidfile): the path as it is (literalPath); doubling
 *    there would name another file.
 * Either way a value with NUL, CR or LF is refused: QEMU cannot take it.
 */
import type { NetworkConfig } from "../../../contracts/index.js";
import { HypervisorError } from "../../errors.js";
import type { Accelerator } from "./accelerator.js";

export interface QemuLaunchConfig {
  vmId: string;
  accelerator: Accelerator;
  cpuModel: string;
  /** q35 (default) or pc. */
  machine: string;
  vcpus: number;
  memoryMb: number;
  overlayPath: string;
  seedIsoPath?: string | undefined;
  qmpSocket: string;
  consoleSocket: string;
  consoleLog: string;
  pidFile: string;
  network: NetworkConfig;
  macAddr?: string | undefined;
  sshHostPort?: number | undefined;
  /** Tap networking: the tap device QEMU opens itself (script=no), instead of the bridge helper. */
  tapDevice?: string | undefined;
  uefi?: { code: string; vars: string } | undefined;
  /** Listen for VNC on 127.0.0.1 (first free display); off: no display at all. */
  vnc: boolean;
}

function refuseControl(value: string): string {
  if (/[\0\n\r]/.test(value)) {
    throw new HypervisorError(
      "hypervisor::invalid-path",
      "a QEMU option value holds a control character",
      {
        hint: "Use paths without NUL or newline characters.",
      },
    );
  }
  return value;
}

/** A value inside QEMU's `key=value,...` option syntax: a comma is written as two commas. */
export function qemuOptValue(value: string): string {
  return refuseControl(value).replaceAll(",", ",,");
}

/**
 * A path given as an option's whole argument (-pidfile): QEMU takes it literally. An absolute
 * path is required, so it can never be read as another option.
 */
export function literalPath(value: string): string {
  if (!value.startsWith("/")) {
    throw new HypervisorError("hypervisor::invalid-path", `not an absolute path: ${value}`);
  }
  return refuseControl(value);
}

/** The QMP chardev argument; also how /proc/<pid>/cmdline proves a pid is this VM's QEMU. */
export function qmpChardevArg(qmpSocket: string): string {
  return `socket,id=qmp,path=${qemuOptValue(qmpSocket)},server=on,wait=off`;
}

const SAFE_TOKEN = /^[A-Za-z0-9][A-Za-z0-9_.+-]*$/;

function token(what: string, value: string): string {
  if (!SAFE_TOKEN.test(value)) {
    throw new HypervisorError(
      "hypervisor::failed",
      `invalid QEMU ${what}: ${JSON.stringify(value)}`,
    );
  }
  return value;
}

export function buildQemuArgs(c: QemuLaunchConfig): string[] {
  const esc = qemuOptValue;
  const args = [
    "-name",
    `guest=${esc(c.vmId)}`,
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-machine",
    `${token("machine", c.machine)},accel=${c.accelerator}`,
    "-cpu",
    token("cpu model", c.cpuModel),
    "-smp",
    String(positiveInt("vcpus", c.vcpus)),
    "-m",
    `${positiveInt("memoryMb", c.memoryMb)}M`,
    // QMP and the serial console on unix sockets; wait=off so QEMU never blocks on a client.
    "-chardev",
    qmpChardevArg(c.qmpSocket),
    "-mon",
    "chardev=qmp,mode=control",
    "-chardev",
    `socket,id=serial0,path=${esc(c.consoleSocket)},server=on,wait=off,logfile=${esc(c.consoleLog)},logappend=on`,
    "-serial",
    "chardev:serial0",
    "-device",
    "virtio-rng-pci",
  ];
  if (c.uefi) {
    args.push(
      "-drive",
      `if=pflash,format=raw,unit=0,readonly=on,file=${esc(c.uefi.code)}`,
      "-drive",
      `if=pflash,format=raw,unit=1,file=${esc(c.uefi.vars)}`,
    );
  }
  args.push(
    "-drive",
    `file=${esc(c.overlayPath)},format=qcow2,if=none,id=drive0,discard=unmap`,
    "-device",
    "virtio-blk-pci,drive=drive0,bootindex=0",
  );
  if (c.seedIsoPath) {
    args.push(
      "-drive",
      `file=${esc(c.seedIsoPath)},format=raw,if=none,id=seed0,media=cdrom,readonly=on`,
      "-device",
      "ide-cd,drive=seed0",
    );
  }
  args.push(...networkArgs(c));
  if (c.vnc) args.push("-vnc", "127.0.0.1:0,to=99");
  // -daemonize: QEMU forks into its own session once its sockets exist, so the guest outlives
  // the worker (even a SIGKILLed one) and the parent's exit status reports startup errors.
  args.push("-pidfile", literalPath(c.pidFile), "-daemonize");
  return args;
}

function networkArgs(c: QemuLaunchConfig): string[] {
  const mac = c.macAddr;
  if (mac !== undefined && !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(mac)) {
    throw new HypervisorError("hypervisor::failed", `invalid MAC address ${mac}`);
  }
  const nic = ["-device", `virtio-net-pci,netdev=net0${mac ? `,mac=${mac}` : ""}`];
  switch (c.network.type) {
    case "user": {
      const fwd =
        c.sshHostPort === undefined
          ? ""
          : `,hostfwd=tcp:127.0.0.1:${positiveInt("sshHostPort", c.sshHostPort)}-:22`;
      return ["-netdev", `user,id=net0${fwd}`, ...nic];
    }
    case "tap":
      if (c.tapDevice !== undefined) {
        // QEMU creates this tap (it needs CAP_NET_ADMIN); the backend puts it on the bridge.
        const tap = token("tap device", c.tapDevice);
        return ["-netdev", `tap,id=net0,ifname=${tap},script=no,downscript=no`, ...nic];
      }
      // `-netdev bridge` runs qemu-bridge-helper, which creates the tap and attaches it to the
      // bridge (the bridge must be allowed in /etc/qemu/bridge.conf). `-netdev tap` has no br=.
      return ["-netdev", `bridge,id=net0,br=${token("bridge", c.network.bridge)}`, ...nic];
    case "none":
      return [];
    case "vnic":
      throw new HypervisorError(
        "hypervisor::unsupported",
        "vnic networking exists only on illumos",
      );
  }
}

function positiveInt(what: string, n: number): number {
  if (!Number.isInteger(n) || n < 1) {
    throw new HypervisorError("hypervisor::failed", `invalid ${what}: ${n}`);
  }
  return n;
}
