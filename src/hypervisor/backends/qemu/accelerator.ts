import { closeSync, constants, existsSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { HypervisorError } from "../../errors.js";

export type Accelerator = "kvm" | "tcg";
export type AcceleratorChoice = "auto" | Accelerator;

export interface AcceleratorDecision {
  accelerator: Accelerator;
  /** Why, for the startup log and the host record (e.g. "/dev/kvm not usable: ENOENT"). */
  reason: string;
}

/** Where the detection looks; tests point these at files of their own. */
export interface AcceleratorProbe {
  device: string;
  cpuinfo: string;
  modules: string;
}

const HOST_PROBE: AcceleratorProbe = {
  device: "/dev/kvm",
  cpuinfo: "/proc/cpuinfo",
  modules: "/sys/module",
};

/**
 * KVM when /dev/kvm opens read-write and the CPU has hardware virtualization, else TCG.
 * "kvm" insists (and fails loudly when the device cannot be opened); "tcg" never touches KVM.
 *
 * Opening the device is not enough: nested sandboxes (Firecracker with PVM, for one) offer a
 * /dev/kvm with no VMX/SVM behind it, served by kvm-pvm. It runs PVM-enabled guest kernels;
 * ordinary guests and firmware fail there at random ("kvm-pvm: INTERNAL_ERROR in batch emul",
 * QEMU in internal-error, guests that stop answering), so `auto` does not pick it.
 */
export function detectAccelerator(
  choice: AcceleratorChoice = "auto",
  probe: Partial<AcceleratorProbe> = {},
): AcceleratorDecision {
  const p = { ...HOST_PROBE, ...probe };
  if (choice === "tcg") return { accelerator: "tcg", reason: "configured: tcg" };
  try {
    closeSync(openSync(p.device, constants.O_RDWR));
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? String(e);
    if (choice === "kvm") {
      throw new HypervisorError("qemu::kvm-unavailable", `${p.device} cannot be opened: ${why}`, {
        hint: "Load the kvm module and give the worker read-write access to /dev/kvm, or use accelerator auto/tcg.",
        cause: e,
      });
    }
    return { accelerator: "tcg", reason: `${p.device} not usable (${why}): software emulation` };
  }
  if (choice === "kvm") return { accelerator: "kvm", reason: "configured: kvm" };
  const software = softwareKvm(p);
  if (software) {
    return {
      accelerator: "tcg",
      reason: `${p.device} opens, but ${software}: software emulation (accelerator kvm forces it)`,
    };
  }
  return { accelerator: "kvm", reason: `${p.device} is usable` };
}

/** Why this KVM is not hardware-assisted, or undefined when it is (or cannot be told). */
function softwareKvm(p: AcceleratorProbe): string | undefined {
  if (existsSync(join(p.modules, "kvm_pvm")))
    return "it is kvm-pvm (nested PVM), which runs only PVM-enabled guest kernels";
  let cpuinfo: string;
  try {
    cpuinfo = readFileSync(p.cpuinfo, "utf8");
  } catch {
    return undefined; // nothing to go on: trust the open device
  }
  const flags = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1];
  if (flags === undefined) return undefined; // not an x86 cpuinfo
  const set = new Set(flags.trim().split(/\s+/));
  if (!set.has("vmx") && !set.has("svm"))
    return "the CPU has no hardware virtualization (no vmx or svm flag)";
  return undefined;
}

/**
 * `-cpu host` aborts on some KVM hosts ("failed to set MSR 0x10a") and does not exist under
 * TCG, so the defaults are models that always work: max under TCG, kvm64 under KVM.
 */
export function defaultCpuModel(accel: Accelerator): string {
  return accel === "kvm" ? "kvm64" : "max";
}
