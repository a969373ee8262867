import { z } from "zod";
import { QEMU_DEFAULTS } from "./qemu-options.js";

const path = z
  .string()
  .min(1)
  .regex(/^[^\0\n]+$/, "a path without NUL or newline");
const ms = (min: number, def: number) => z.int().min(min).max(3_600_000).default(def);

/**
 * What an operator sets of the QEMU backend (`vmq worker` flags and environment). Defaults are
 * QEMU_DEFAULTS, the backend's own; the ones that depend on the data dir are filled in by the
 * worker. Flags are --qemu-<option>, except the four that had their own names before.
 */
export const QemuConfig = z.object({
  imageRoots: z
    .array(path)
    .optional()
    .describe("QEMU: directories base images must resolve inside (default: <data-dir>/images)."),
  accelerator: z
    .enum(["auto", "kvm", "tcg"])
    .default(QEMU_DEFAULTS.accelerator)
    .describe(
      "QEMU: KVM when /dev/kvm opens and the CPU has VMX/SVM (a nested kvm-pvm is not used), else TCG; or force one.",
    ),
  cpuModel: z
    .string()
    .regex(/^[A-Za-z0-9_.,=+-]+$/, "a QEMU -cpu value")
    .optional()
    .describe("QEMU: CPU model (default: max under TCG, kvm64 under KVM; never host)."),
  vnc: z.enum(["on", "off"]).default("off").describe("QEMU: VNC display on 127.0.0.1 per VM."),
  qemuBinary: path.default(QEMU_DEFAULTS.qemuBinary).describe("QEMU: the system emulator."),
  qemuImgBinary: path.default(QEMU_DEFAULTS.qemuImgBinary).describe("QEMU: qemu-img."),
  isoTool: path
    .default(QEMU_DEFAULTS.isoTool)
    .describe("QEMU: builds the cloud-init seed ISO (genisoimage, mkisofs or xorriso)."),
  machine: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/, "a QEMU machine type")
    .default(QEMU_DEFAULTS.machine)
    .describe("QEMU: machine type."),
  ovmfCode: path.default(QEMU_DEFAULTS.ovmfCode).describe("QEMU: UEFI firmware (code)."),
  ovmfVars: path
    .default(QEMU_DEFAULTS.ovmfVars)
    .describe("QEMU: UEFI variables template, copied per VM."),
  qmpTimeoutMs: ms(100, QEMU_DEFAULTS.qmpTimeoutMs).describe("QEMU: QMP command timeout."),
  startTimeoutMs: ms(1_000, QEMU_DEFAULTS.startTimeoutMs).describe(
    "QEMU: how long a start waits for QEMU's QMP socket.",
  ),
  powerdownRetryMs: ms(100, QEMU_DEFAULTS.powerdownRetryMs).describe(
    "QEMU: interval between ACPI power-button presses during a graceful stop.",
  ),
  killGraceMs: ms(100, QEMU_DEFAULTS.killGraceMs).describe(
    "QEMU: SIGTERM to SIGKILL delay when a stop escalates (at most 5 s, the stop schedule's step).",
  ),
  ipTimeoutMs: ms(1_000, QEMU_DEFAULTS.ipTimeoutMs).describe(
    "QEMU: how long guest-ip waits for a guest's address.",
  ),
  tap: z
    .enum(["bridge-helper", "direct"])
    .default(QEMU_DEFAULTS.tap)
    .describe(
      "QEMU tap networking: bridge-helper (qemu-bridge-helper, the bridge allowed in /etc/qemu/bridge.conf) or direct (QEMU opens its own tap, the worker puts it on the bridge; needs CAP_NET_ADMIN).",
    ),
  netns: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, "a network namespace name")
    .optional()
    .describe(
      "QEMU: run guests inside this network namespace (ip netns exec), where their bridge is.",
    ),
  leaseFiles: z
    .array(path)
    .default([...QEMU_DEFAULTS.leaseFiles])
    .describe("QEMU: dnsmasq lease files read to find a tap guest's address by its MAC."),
});
export type QemuConfig = z.infer<typeof QemuConfig>;

/** These keep the flag names they had before the QEMU options had a section of their own. */
export const QEMU_UNPREFIXED = ["imageRoots", "accelerator", "cpuModel", "vnc"] as const;
