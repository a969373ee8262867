import type {
  BackendTag,
  Capabilities,
  ConsoleEndpoint,
  GuestAddress,
  VmHandle,
  VmSpec,
  VmState,
} from "../contracts/index.js";
import { HypervisorError } from "./errors.js";
import type {
  CallOptions,
  ChangeListener,
  ConsoleConnection,
  ConsoleHandlers,
  DiskExport,
  Hypervisor,
  StopOptions,
  StopResult,
} from "./hypervisor.js";

/**
 * Dispatches by the handle's backend tag; prepare goes to `spec.backend` or the default.
 * A tag with no configured backend gives hypervisor::backend-unavailable; an operation the
 * backend cannot do gives hypervisor::unsupported before anything is touched.
 */
export class HypervisorRouter {
  readonly #backends: Map<BackendTag, Hypervisor>;
  readonly defaultBackend: BackendTag;

  constructor(backends: Hypervisor[], defaultBackend?: BackendTag) {
    this.#backends = new Map(backends.map((b) => [b.tag, b]));
    const first = backends[0];
    if (!first)
      throw new HypervisorError(
        "hypervisor::backend-unavailable",
        "the router needs at least one backend",
      );
    this.defaultBackend = defaultBackend ?? first.tag;
    if (!this.#backends.has(this.defaultBackend)) {
      throw new HypervisorError(
        "hypervisor::backend-unavailable",
        `default backend ${this.defaultBackend} is not configured`,
      );
    }
  }

  get tags(): BackendTag[] {
    return [...this.#backends.keys()];
  }

  backend(tag: BackendTag): Hypervisor {
    const b = this.#backends.get(tag);
    if (!b) {
      throw new HypervisorError(
        "hypervisor::backend-unavailable",
        `backend ${tag} is not configured on this worker (configured: ${this.tags.join(", ")})`,
      );
    }
    return b;
  }

  has(tag: BackendTag): boolean {
    return this.#backends.has(tag);
  }

  capabilities(): Partial<Record<BackendTag, Capabilities>> {
    return Object.fromEntries([...this.#backends].map(([t, b]) => [t, b.capabilities()]));
  }

  /** Which backend a prepare of this spec would use (throws when it is not configured). */
  backendFor(spec: VmSpec): Hypervisor {
    return this.backend(spec.backend ?? this.defaultBackend);
  }

  async prepare(vmId: string, spec: VmSpec, opts?: CallOptions): Promise<VmHandle> {
    return this.backendFor(spec).prepare(vmId, spec, opts);
  }
  async start(vm: VmHandle, opts?: CallOptions): Promise<VmHandle> {
    return this.backend(vm.backend).start(vm, opts);
  }
  async stop(vm: VmHandle, opts: StopOptions): Promise<StopResult> {
    return this.backend(vm.backend).stop(vm, opts);
  }
  async suspend(vm: VmHandle, opts?: CallOptions): Promise<VmHandle> {
    return this.#suspendable(vm, "suspend").suspend(vm, opts);
  }
  async resume(vm: VmHandle, opts?: CallOptions): Promise<VmHandle> {
    return this.#suspendable(vm, "resume").resume(vm, opts);
  }
  async destroy(vm: VmHandle, opts: StopOptions): Promise<void> {
    return this.backend(vm.backend).destroy(vm, opts);
  }
  async state(vm: VmHandle, opts?: CallOptions): Promise<VmState> {
    return this.backend(vm.backend).state(vm, opts);
  }
  async guestIp(vm: VmHandle, opts?: CallOptions): Promise<string> {
    return this.backend(vm.backend).guestIp(vm, opts);
  }
  /** The guest's address with how to reach it; backends without guestAddress give guestIp. */
  async guestAddress(vm: VmHandle, opts?: CallOptions): Promise<GuestAddress> {
    const b = this.backend(vm.backend);
    return b.guestAddress ? b.guestAddress(vm, opts) : { ip: await b.guestIp(vm, opts) };
  }
  consoleEndpoint(vm: VmHandle): ConsoleEndpoint {
    return this.backend(vm.backend).consoleEndpoint(vm);
  }
  async openConsole(
    vm: VmHandle,
    handlers: ConsoleHandlers,
    opts?: CallOptions,
  ): Promise<ConsoleConnection> {
    return this.backend(vm.backend).openConsole(vm, handlers, opts);
  }
  /** The handle `tag`'s backend recorded for vmId, when it keeps records (see Hypervisor). */
  async recorded(tag: BackendTag, vmId: string, opts?: CallOptions): Promise<VmHandle | undefined> {
    return this.backend(tag).recorded?.(vmId, opts);
  }
  /** The VM's disk, whole (a move); hypervisor::unsupported where the backend cannot. */
  async exportDisk(vm: VmHandle, opts?: CallOptions): Promise<DiskExport> {
    const b = this.backend(vm.backend);
    if (!b.exportDisk)
      throw new HypervisorError(
        "hypervisor::unsupported",
        `backend ${vm.backend} cannot export a VM's disk (a cold move needs qemu or noop)`,
      );
    return b.exportDisk(vm, opts);
  }
  async adopt(vm: VmHandle, opts?: CallOptions): Promise<void> {
    await this.backend(vm.backend).adopt?.(vm, opts);
  }

  /** Subscribes to every backend that reports observed changes. */
  watch(listener: ChangeListener): () => void {
    const offs = [...this.#backends.values()].map((b) => b.watch?.(listener));
    return () => offs.forEach((off) => off?.());
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.#backends.values()].map(async (b) => b.close?.()));
  }

  #suspendable(vm: VmHandle, op: string): Hypervisor {
    const b = this.backend(vm.backend);
    if (!b.capabilities().suspend) {
      throw new HypervisorError(
        "hypervisor::unsupported",
        `backend ${vm.backend} cannot ${op} a VM`,
      );
    }
    return b;
  }
}
