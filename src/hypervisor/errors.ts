import { VmqError, type VmqErrorOptions } from "../lib/errors.js";

/** Codes of the hypervisor layer (see also contracts/error-codes.ts for hints). */
export type HypervisorErrorCode =
  | "hypervisor::unsupported"
  | "hypervisor::backend-unavailable"
  | "hypervisor::invalid-state"
  | "hypervisor::not-found"
  | "hypervisor::timeout"
  | "hypervisor::aborted"
  | "hypervisor::stop-timeout"
  | "hypervisor::unreachable"
  | "hypervisor::injected"
  | "hypervisor::failed"
  | "hypervisor::invalid-path"
  | `qemu::${string}`
  | `propolis::${string}`
  | `image::${string}`
  | `cloudinit::${string}`
  | `network::${string}`
  | `zone::${string}`;

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
      retryable: true,
      cause: signal.reason,
    });
  }
}
