/** Typed rejections of the decider; the code is what goes on the wire. */
export type RejectionCode =
  | "command::illegal-transition"
  | "command::version-conflict"
  | "command::expired"
  /** Cancelled (vmq cancel) before the worker took it. */
  | "command::cancelled"
  | "vm::exists"
  | "vm::not-found"
  /** The VM was evacuated to another host (vm.evacuated): nothing runs here again. */
  | "vm::evacuated"
  /** A move is taking the VM to another host: a start here would run a second copy. */
  | "vm::moving"
  /** The VM's backend cannot do this (decided by the worker from capabilities). */
  | "hypervisor::unsupported"
  | "hypervisor::backend-unavailable";

export interface Rejection {
  code: RejectionCode;
  message: string;
}

/** A failure reported by whatever ran the command, as the domain needs it. */
export interface Failure {
  code: string;
  message: string;
  retryable: boolean;
  hint?: string;
}
