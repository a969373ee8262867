import type { Logger } from "../../../observability/logger.js";
import { resolveOptions, type Resolved } from "../shared/options.js";
import type { AcceleratorChoice } from "./accelerator.js";
import { DEFAULT_LEASE_FILES } from "./guest-ip.js";

export type QemuLogger = Pick<Logger, "info" | "warn" | "error" | "debug">;

export interface QemuBackendOptions {
  /** Where per-VM work dirs live (`<dataDir>/<vmId>`). Required. */
  dataDir: string;
  /** Folders base images must resolve into (after symlinks). Required; empty refuses all. */
  imageRoots: string[];
  /** Default "qemu-system-x86_64" (package qemu-system-x86). */
  qemuBinary?: string;
  /** Default "qemu-img" (package qemu-utils). */
  qemuImgBinary?: string;
  /** Seed ISO builder: "genisoimage" (default), "mkisofs" or "xorriso" (run as -as mkisofs). */
  isoTool?: string;
  /** "auto" (default): KVM when /dev/kvm opens read-write, else TCG. */
  accelerator?: AcceleratorChoice;
  /** Default: "max" under TCG, "kvm64" under KVM (never "host": it aborts on some KVM hosts). */
  cpuModel?: string;
  /** Default "q35". */
  machine?: string;
  /** Default /usr/share/OVMF/OVMF_CODE_4M.fd (package ovmf). */
  ovmfCode?: string;
  /** Template copied per VM; default /usr/share/OVMF/OVMF_VARS_4M.fd. */
  ovmfVars?: string;
  /** VNC on 127.0.0.1 (first free display from :0); default false (no display at all). */
  vnc?: boolean;
  /** Logger (pino-like); default: silent. user-data is never logged. */
  logger?: QemuLogger | undefined;
  /** QMP command timeout; default 10000 ms. */
  qmpTimeoutMs?: number;
  /** How long start waits for QEMU's QMP socket; default 15000 ms. */
  startTimeoutMs?: number;
  /** Interval between repeated ACPI power-button presses during a graceful stop; default 2000 ms. */
  powerdownRetryMs?: number;
  /** SIGTERM to SIGKILL delay when escalating; default 3000 ms. */
  killGraceMs?: number;
  /** How long guestIp waits for a guest's address; default 60000 ms. */
  ipTimeoutMs?: number;
  /**
   * Tap networking: "bridge-helper" (default) lets qemu-bridge-helper make the tap (the bridge
   * allowed in /etc/qemu/bridge.conf); "direct": QEMU opens its own tap and the backend puts
   * it on the bridge (needs CAP_NET_ADMIN, no bridge.conf).
   */
  tap?: "bridge-helper" | "direct";
  /** Run QEMU inside this network namespace (`ip netns exec`); addresses are looked up there. */
  netns?: string | undefined;
  /** dnsmasq lease files guestIp reads for tap guests; default the Debian locations. */
  leaseFiles?: string[];
}

/** Every default of the QEMU backend (cpuModel's depends on the accelerator: see accelerator.ts). */
export const QEMU_DEFAULTS = {
  qemuBinary: "qemu-system-x86_64",
  qemuImgBinary: "qemu-img",
  isoTool: "genisoimage",
  accelerator: "auto",
  machine: "q35",
  ovmfCode: "/usr/share/OVMF/OVMF_CODE_4M.fd",
  ovmfVars: "/usr/share/OVMF/OVMF_VARS_4M.fd",
  vnc: false,
  qmpTimeoutMs: 10_000,
  startTimeoutMs: 15_000,
  powerdownRetryMs: 2000,
  killGraceMs: 3000,
  ipTimeoutMs: 60_000,
  tap: "bridge-helper",
  leaseFiles: [...DEFAULT_LEASE_FILES],
} satisfies Partial<QemuBackendOptions>;

export type QemuOptions = Resolved<QemuBackendOptions, typeof QEMU_DEFAULTS>;

export const resolveQemuOptions = (opts: QemuBackendOptions): QemuOptions =>
  resolveOptions(QEMU_DEFAULTS, opts);
