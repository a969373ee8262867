import type {
  BackendTag,
  Capabilities,
  ConsoleEndpoint,
  GuestAddress,
  ObservationSource,
  StopForce,
  StopHow,
  VmHandle,
  VmSpec,
  VmState,
} from "../contracts/index.js";

/** Every call can be cancelled; the worker binds the signal to the command's deadline. */
export interface CallOptions {
  signal?: AbortSignal;
}

export interface StopOptions extends CallOptions {
  /** How long a graceful stop may take before escalation. */
  timeoutMs: number;
  /** never: fail with hypervisor::stop-timeout; after-timeout: escalate; now: kill at once. */
  force: StopForce;
  /**
   * At most this long for each escalation step (the worker's stop plan, src/domain/
   * stop-schedule.ts, so the steps fit before the command's deadline); a backend's own
   * settings apply when they are shorter, or when this is absent.
   */
  escalation?: { sigtermGraceMs: number; sigkillWaitMs: number };
}

export interface StopResult {
  handle: VmHandle;
  /** Which step ended the VM. */
  how: StopHow;
}

/** A change the backend saw that no command explains (guest power-off, crash, reset). */
export interface ObservedChange {
  vmId: string;
  backend: BackendTag;
  state: VmState;
  source: ObservationSource;
  /** The guest itself caused it (powered off, rebooted); said so in the event's detail. */
  guestInitiated?: boolean;
  detail?: string;
  handle?: VmHandle;
}
export type ChangeListener = (change: ObservedChange) => void;

/**
 * A VM's disk as one stream of bytes to send away (a cold move): flattened with its base image
 * so it stands alone. `release` removes whatever the export made (a temporary file).
 */
export interface DiskExport {
  format: "qcow2" | "placeholder";
  size: number;
  bytes(): AsyncIterable<Uint8Array>;
  release(): Promise<void>;
}

/** What a console session does with the VM's output and with the console's end. */
export interface ConsoleHandlers {
  onData(bytes: Uint8Array): void;
  /** The console ended on the VM's side (closed) or broke (error); never after close(). */
  onClose(why: "closed" | "error"): void;
}

/** An open serial console: bytes to the guest, and the end of the session. */
export interface ConsoleConnection {
  write(bytes: Uint8Array): void;
  close(): void;
}

/**
 * The Hypervisor contract, mirroring the seed trait (prepare, start, stop with a timeout,
 * suspend, resume, destroy, state, guestIp, consoleEndpoint) plus capabilities, cancellation,
 * an opened console and observed changes. Implementations throw VmqError with `hypervisor::*`/`<backend>::*` codes.
 */
export interface Hypervisor {
  readonly tag: BackendTag;
  capabilities(): Capabilities;
  /** Allocates the VM's resources; the returned handle's id is vmId. */
  prepare(vmId: string, spec: VmSpec, opts?: CallOptions): Promise<VmHandle>;
  start(vm: VmHandle, opts?: CallOptions): Promise<VmHandle>;
  stop(vm: VmHandle, opts: StopOptions): Promise<StopResult>;
  suspend(vm: VmHandle, opts?: CallOptions): Promise<VmHandle>;
  resume(vm: VmHandle, opts?: CallOptions): Promise<VmHandle>;
  /** Stops the VM if needed and removes everything; destroying what is gone succeeds. */
  destroy(vm: VmHandle, opts: StopOptions): Promise<void>;
  /** The state the backend reports now; `unknown` when it cannot tell. */
  state(vm: VmHandle, opts?: CallOptions): Promise<VmState>;
  guestIp(vm: VmHandle, opts?: CallOptions): Promise<string>;
  /**
   * The guest's address and how to reach it (host-forwarded ports when the address is private
   * to the VM). Backends without it answer with guestIp alone (the router falls back).
   */
  guestAddress?(vm: VmHandle, opts?: CallOptions): Promise<GuestAddress>;
  /** Where the console is (the `console` query answers with it). */
  consoleEndpoint(vm: VmHandle): ConsoleEndpoint;
  /**
   * Opens the VM's serial console (QEMU: its unix socket; Propolis: its websocket); a backend
   * without one refuses with console::unavailable. Handlers are attached before any byte flows.
   */
  openConsole(
    vm: VmHandle,
    handlers: ConsoleHandlers,
    opts?: CallOptions,
  ): Promise<ConsoleConnection>;
  /**
   * The handle this backend recorded for `vmId` in its own files, or undefined: lets a
   * restarted worker record a prepare that finished in the backend but whose outcome it never
   * wrote (instead of calling the VM failed). Backends without durable records omit it.
   */
  recorded?(vmId: string, opts?: CallOptions): Promise<VmHandle | undefined>;
  /**
   * The disk of a VM no guest runs on (prepared or stopped), whole, for a move to another host.
   * Backends without it make the router refuse with hypervisor::unsupported.
   */
  exportDisk?(vm: VmHandle, opts?: CallOptions): Promise<DiskExport>;
  /** Re-attaches to a VM after a worker restart (QMP socket, monitor); never starts or stops it. */
  adopt?(vm: VmHandle, opts?: CallOptions): Promise<void>;
  /** Subscribes to observed changes; returns the unsubscribe function. */
  watch?(listener: ChangeListener): () => void;
  close?(): Promise<void>;
}
