import type { ErrorCode } from "../contracts/index.js";
import { VmqError, type VmqErrorOptions } from "../lib/errors.js";

/** The codes of the hypervisor layer: the areas of ERROR_CODES a backend may raise. */
export type HypervisorErrorCode = Extract<
  ErrorCode,
  `${"hypervisor" | "qemu" | "propolis" | "image" | "cloudinit" | "network" | "zone" | "console"}::${string}`
>;

export class HypervisorError extends VmqError {
  constructor(code: HypervisorErrorCode, message: string, opts: VmqErrorOptions = {}) {
    super(code, message, opts);
    this.name = "HypervisorError";
  }
}

export { isVmqError as isHypervisorError } from "../lib/errors.js";

/** Throws hypervisor::aborted when the signal has fired (call at every step boundary). */
export function checkAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) {
    throw new HypervisorError("hypervisor::aborted", `${what} was cancelled`, {
      cause: signal.reason,
    });
  }
}

/**
 * The spec's local base image. A spec naming an object-store `image` reaches a backend only
 * through the worker, which fetches it and gives its cached path here instead.
 */
export function localImagePath(spec: { imagePath?: string | undefined }): string {
  if (spec.imagePath === undefined) {
    throw new HypervisorError(
      "image::not-resolved",
      "the spec names an object-store image that was not fetched into a local path",
      { hint: "Prepare through the worker, which fetches spec.image into its image cache." },
    );
  }
  return spec.imagePath;
}
