/**
 * A minimal in-memory hypervisor whose legal transitions are the domain's TRANSITIONS table,
 * so it agrees with the decider by construction and a worker test means something. With a
 * state dir, each VM is also a file (VMs outlive the worker process) and every effect is
 * appended to calls.log (fault tests count them). Faults, latency and the call log tests read
 * are not here: testing/faulty-backend.ts wraps any backend with them.
 */
import type {
  BackendTag,
  Capabilities,
  CommandType,
  ConsoleEndpoint,
  VmHandle,
  VmSpec,
  VmState,
} from "../../../contracts/index.js";
import { isAllowed, targetState } from "../../../domain/index.js";
import { checkAborted, HypervisorError } from "../../errors.js";
import type {
  CallOptions,
  ConsoleConnection,
  DiskExport,
  Hypervisor,
  StopOptions,
  StopResult,
} from "../../hypervisor.js";
import { withoutRuntime } from "../shared/handle.js";
import { resolveOptions } from "../shared/options.js";
import { plainUserData } from "../shared/user-data.js";
import { NoopStore, type NoopVm } from "./noop-store.js";

export interface NoopOptions {
  /** Whether suspend/resume are offered (to test capability checks). Default true. */
  suspend?: boolean;
  /** Keep each VM in a file here so VMs outlive the worker process (crash/restart tests). */
  stateDir?: string;
  /** The tag it answers to (default noop); router tests let it pose as another backend. */
  tag?: BackendTag;
}

export const NOOP_DEFAULTS = { suspend: true, tag: "noop" } satisfies Partial<NoopOptions>;

type Lifecycle = "prepare" | "start" | "stop" | "suspend" | "resume" | "destroy" | "exportDisk";
const COMMAND: Record<Lifecycle, CommandType> = {
  exportDisk: "vm.export-disk",
  prepare: "vm.prepare",
  start: "vm.start",
  stop: "vm.stop",
  suspend: "vm.suspend",
  resume: "vm.resume",
  destroy: "vm.destroy",
};

export class NoopBackend implements Hypervisor {
  readonly tag: BackendTag;
  readonly #suspend: boolean;
  readonly #vms = new Map<string, NoopVm>();
  readonly #store: NoopStore | undefined;

  constructor(opts: NoopOptions = {}) {
    const o = resolveOptions(NOOP_DEFAULTS, opts);
    this.tag = o.tag;
    this.#suspend = o.suspend;
    this.#store = o.stateDir === undefined ? undefined : new NoopStore(o.stateDir);
    for (const v of this.#store?.load() ?? []) this.#vms.set(v.handle.id, v);
  }

  /** What the backend holds, for tests (undefined once destroyed: it forgets the VM). */
  peek(vmId: string): VmState | undefined {
    return this.#vms.get(vmId)?.state;
  }

  /** Pretends a VM exists (e.g. a guest that kept running while the worker was away). */
  seed(handle: VmHandle, state: VmState): void {
    this.#set({ handle, state });
  }

  capabilities(): Capabilities {
    return {
      suspend: this.#suspend,
      reboot: false,
      uefi: true,
      guestIp: true,
      console: "none",
      // Nothing happens to its VMs but what calls do (a fault decorator can say otherwise).
      observesChanges: false,
    };
  }

  async prepare(vmId: string, spec: VmSpec, opts: CallOptions = {}): Promise<VmHandle> {
    checkAborted(opts.signal, "noop prepare");
    this.#allow("prepare", vmId, this.#live(vmId)?.state ?? null);
    const handle: VmHandle = {
      id: vmId,
      name: spec.name,
      backend: this.tag,
      workDir: `noop://${vmId}`,
      vcpus: spec.vcpus,
      memoryMb: spec.memoryMb,
      network: spec.network,
      uefi: spec.uefi,
      ...(spec.diskGb === undefined ? {} : { diskGb: spec.diskGb }),
    };
    // The Noop's seed: what a real backend would write into the guest's cloud-init ISO.
    const userData = spec.cloudInit ? plainUserData(spec.cloudInit) : undefined;
    const prepared = this.#apply("prepare", { handle, state: "prepared" }).handle;
    if (userData !== undefined) this.#store?.seed(vmId, userData);
    return Promise.resolve(prepared);
  }

  async start(vm: VmHandle, opts: CallOptions = {}): Promise<VmHandle> {
    const v = this.#check("start", vm.id, opts);
    const handle = { ...v.handle, pid: 10_000 + (hash(vm.id) % 50_000) };
    return Promise.resolve(this.#apply("start", { ...v, handle }).handle);
  }

  async suspend(vm: VmHandle, opts: CallOptions = {}): Promise<VmHandle> {
    return Promise.resolve(this.#apply("suspend", this.#check("suspend", vm.id, opts)).handle);
  }

  async resume(vm: VmHandle, opts: CallOptions = {}): Promise<VmHandle> {
    return Promise.resolve(this.#apply("resume", this.#check("resume", vm.id, opts)).handle);
  }

  /** Always stops at once: only a decorated Noop has a guest that ignores the button. */
  async stop(vm: VmHandle, opts: StopOptions): Promise<StopResult> {
    const v = this.#check("stop", vm.id, opts);
    const after = this.#apply("stop", { ...v, handle: withoutRuntime(v.handle) });
    return Promise.resolve({ handle: after.handle, how: opts.force === "now" ? "forced" : "acpi" });
  }

  async destroy(vm: VmHandle, opts: StopOptions): Promise<void> {
    checkAborted(opts.signal, "noop destroy");
    // Forgotten, not kept as "destroyed": a long-running worker (Noop is `npm start`'s default)
    // would hold every VM it ever had. The state dir forgets it the same way.
    const live = this.#live(vm.id) !== undefined;
    this.#vms.delete(vm.id);
    this.#store?.remove(vm.id);
    if (live) this.#store?.effect("destroy", vm.id);
    return Promise.resolve();
  }

  /**
   * A placeholder of a few bytes for the disk a Noop VM does not have (its name, vmId and a
   * note), so a move's saga runs end to end without a real disk.
   */
  async exportDisk(vm: VmHandle, opts: CallOptions = {}): Promise<DiskExport> {
    const v = this.#check("exportDisk", vm.id, opts);
    this.#store?.effect("export-disk", vm.id);
    const data = new TextEncoder().encode(
      `vmq noop disk placeholder\nvmId: ${vm.id}\nname: ${v.handle.name}\n`,
    );
    return Promise.resolve({
      format: "placeholder",
      size: data.length,
      // eslint-disable-next-line @typescript-eslint/require-await -- an async iterable of one
      bytes: async function* () {
        yield data;
      },
      release: () => Promise.resolve(),
    });
  }

  async state(vm: VmHandle, opts: CallOptions = {}): Promise<VmState> {
    checkAborted(opts.signal, "noop state");
    return Promise.resolve(this.#live(vm.id)?.state ?? "destroyed");
  }

  async guestIp(vm: VmHandle, opts: CallOptions = {}): Promise<string> {
    checkAborted(opts.signal, "noop guestIp");
    const v = this.#existing(vm.id);
    if (v.state !== "running" && v.state !== "suspended") {
      throw new HypervisorError(
        "hypervisor::invalid-state",
        `noop VM ${vm.id} is ${v.state}; it has no address`,
      );
    }
    return Promise.resolve("127.0.0.1");
  }

  consoleEndpoint(): ConsoleEndpoint {
    return { type: "none" };
  }

  async openConsole(vm: VmHandle): Promise<ConsoleConnection> {
    await Promise.resolve();
    throw new HypervisorError(
      "console::unavailable",
      `VM ${vm.id}'s backend (${this.tag}) has no serial console`,
    );
  }

  /** The handle of a VM this backend holds (its state dir makes it outlive the worker). */
  async recorded(vmId: string, opts: CallOptions = {}): Promise<VmHandle | undefined> {
    opts.signal?.throwIfAborted();
    this.#reread(vmId);
    return Promise.resolve(this.#live(vmId)?.handle);
  }

  /**
   * Nothing to re-attach to (no process or socket), but with a state dir the VM's record is read
   * again: a standby worker that takes over adopts what the previous worker of the host left.
   */
  async adopt(vm: VmHandle): Promise<void> {
    this.#reread(vm.id);
    await Promise.resolve();
  }

  #reread(vmId: string): void {
    if (!this.#store) return;
    const v = this.#store.read(vmId);
    if (v) this.#vms.set(vmId, v);
    else this.#vms.delete(vmId);
  }

  // ---- internals -------------------------------------------------------------------------

  /** The VM as `op` finds it, when TRANSITIONS allows `op` from its state; else a coded error. */
  #check(op: Exclude<Lifecycle, "prepare" | "destroy">, vmId: string, opts: CallOptions): NoopVm {
    checkAborted(opts.signal, `noop ${op}`);
    if ((op === "suspend" || op === "resume") && !this.#suspend)
      throw new HypervisorError("hypervisor::unsupported", `this noop backend cannot ${op}`);
    const v = this.#existing(vmId);
    this.#allow(op, vmId, v.state);
    return v;
  }

  #allow(op: Lifecycle, vmId: string, from: VmState | null): void {
    if (isAllowed(COMMAND[op], from)) return;
    throw new HypervisorError(
      "hypervisor::invalid-state",
      op === "prepare"
        ? `noop VM ${vmId} already exists (${String(from)})`
        : `cannot ${op} noop VM ${vmId} in state ${String(from)}`,
    );
  }

  /** Moves the VM to op's target state (from TRANSITIONS) and records the effect. */
  #apply(op: Lifecycle, v: NoopVm): NoopVm {
    const next = { ...v, state: targetState(COMMAND[op]) ?? v.state };
    this.#set(next);
    this.#store?.effect(op, next.handle.id);
    return next;
  }

  #set(v: NoopVm): void {
    this.#vms.set(v.handle.id, v);
    this.#store?.save(v);
  }

  /** The VM unless it is gone (a seeded "destroyed" VM counts as gone). */
  #live(vmId: string): NoopVm | undefined {
    const v = this.#vms.get(vmId);
    return v && v.state !== "destroyed" ? v : undefined;
  }

  #existing(vmId: string): NoopVm {
    const v = this.#live(vmId);
    if (!v) throw new HypervisorError("hypervisor::not-found", `noop VM ${vmId} does not exist`);
    return v;
  }
}

function hash(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) >>> 0;
  return h;
}
