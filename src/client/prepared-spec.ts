import type { VmEvent, VmSpec } from "../contracts/index.js";

/**
 * The spec a VM was last prepared from on a host, as its events recorded it (the outcome's, or
 * the accepted command's when the prepare has no outcome yet), and the image digest its
 * prepare took. A move and an evacuation re-create the VM from it.
 */
export function preparedSpec(history: { event: VmEvent }[]): {
  spec?: VmSpec;
  imageDigest?: string;
} {
  let spec: VmSpec | undefined;
  let imageDigest: string | undefined;
  for (const { event } of history) {
    if (event.type === "vm.prepared" && event.spec) {
      spec = event.spec;
      imageDigest = event.handle.imageDigest;
    } else if (event.type === "vm.command-accepted" && event.command.type === "vm.prepare")
      spec = event.command.spec;
  }
  return { ...(spec ? { spec } : {}), ...(imageDigest ? { imageDigest } : {}) };
}
