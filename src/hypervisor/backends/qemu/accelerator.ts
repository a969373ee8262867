import { closeSync, constants, openSync } from "node:fs";
import { HypervisorError } from "../../errors.js";

export type Accelerator = "kvm" | "tcg";
export type AcceleratorChoice = "auto" | Accelerator;

export interface AcceleratorDecision {
  accelerator: Accelerator;
  /** Why, for the startup log (e.g. "/dev/kvm not usable: ENOENT"). */
  reason: string;
}

/**
 * KVM when /dev/kvm opens read-write (existing is not enough: permissions and nested setups
 * fail the open), else TCG. "kvm" insists and fails loudly; "tcg" never touches /dev/kvm.
 */
export function detectAccelerator(
  choice: AcceleratorChoice = "auto",
  device = "/dev/kvm",
): AcceleratorDecision {
  if (choice === "tcg") return { accelerator: "tcg", reason: "configured: tcg" };
  try {
    closeSync(openSync(device, constants.O_RDWR));
    return { accelerator: "kvm", reason: `${device} is usable` };
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? String(e);
    if (choice === "kvm") {
      throw new HypervisorError("qemu::kvm-unavailable", `${device} cannot be opened: ${why}`, {
        hint: "Load the kvm module and give the worker read-write access to /dev/kvm, or use accelerator auto/tcg.",
        cause: e,
      });
    }
    return { accelerator: "tcg", reason: `${device} not usable (${why}): software emulation` };
  }
}

/**
 * `-cpu host` aborts on some KVM hosts ("failed to set MSR 0x10a") and does not exist under
 * TCG, so the defaults are models that always work: max under TCG, kvm64 under KVM.
 */
export function defaultCpuModel(accel: Accelerator): string {
  return accel === "kvm" ? "kvm64" : "max";
}
