/**
 * Fault injection around any backend, so worker tests, chaos runs and benchmarks can make a
 * hypervisor slow, unreachable, failing, stubborn or losing VMs: latency on every call, the
 * next N calls failing with a chosen code, guests that ignore the graceful stop, and VMs that
 * die behind the worker's back. It also keeps the latest calls (tests assert that hostile
 * input never reaches the backend). `vmq worker` wraps its Noop backend in one (its
 * `--noop-latency-ms`, and the `mid-backend` failpoint of the chaos tests).
 */
import type {
  BackendTag,
  Capabilities,
  ConsoleEndpoint,
  VmHandle,
  VmSpec,
  VmState,
} from "../../contracts/index.js";
import { failpoint } from "../../lib/failpoints.js";
import { sleep } from "../../lib/time.js";
import { ChangeEmitter } from "../backends/shared/change-emitter.js";
import { resolveOptions } from "../backends/shared/options.js";
import { checkAborted, HypervisorError, type HypervisorErrorCode } from "../errors.js";
import type {
  CallOptions,
  ChangeListener,
  ConsoleConnection,
  ConsoleHandlers,
  DiskExport,
  Hypervisor,
  StopOptions,
  StopResult,
} from "../hypervisor.js";

export interface FaultOptions {
  /** Latency of every call, in ms (the benchmark's 50 ms per call). Default 0. */
  latencyMs?: number;
  /** How many of the latest calls `calls` keeps (default 10,000; it holds up to twice that). */
  keepCalls?: number;
}

export const FAULT_DEFAULTS = { latencyMs: 0, keepCalls: 10_000 } satisfies FaultOptions;

/** The calls that go through fault injection (and into `calls`). */
export type BackendOperation =
  | "prepare"
  | "start"
  | "stop"
  | "suspend"
  | "resume"
  | "destroy"
  | "state"
  | "guestIp"
  | "exportDisk";

interface Fault {
  remaining: number;
  code: HypervisorErrorCode;
  retryable: boolean | undefined;
  ops: BackendOperation[] | undefined;
}

export class FaultyBackend<B extends Hypervisor = Hypervisor> implements Hypervisor {
  readonly tag: BackendTag;
  /** The backend faults are injected around. */
  readonly inner: B;
  /** Latency of every call, in ms; tests change it on the fly. */
  latencyMs: number;
  /** The latest calls, in order; bounded, since the product's Noop runs for ever. */
  readonly calls: { op: BackendOperation; vmId: string }[] = [];
  readonly #keepCalls: number;
  #faults: Fault[] = [];
  #stopHangs = false;
  readonly #stubborn = new Set<string>();
  #unreachable = false;
  readonly #handles = new Map<string, VmHandle>();
  readonly #changes = new ChangeEmitter();

  constructor(inner: B, opts: FaultOptions = {}) {
    const o = resolveOptions(FAULT_DEFAULTS, opts);
    this.inner = inner;
    this.tag = inner.tag;
    this.latencyMs = o.latencyMs;
    this.#keepCalls = Math.max(1, o.keepCalls);
  }

  // ---- the faults ------------------------------------------------------------------------

  /**
   * The next `count` calls (optionally of the listed operations) fail with `code`; retryable
   * as the error-code table says unless `retryable` is given (a test may want either).
   */
  failNext(
    count: number,
    code: HypervisorErrorCode = "hypervisor::injected",
    opts: { retryable?: boolean; ops?: BackendOperation[] } = {},
  ): void {
    this.#faults.push({ remaining: count, code, retryable: opts.retryable, ops: opts.ops });
  }

  /** Guests (all, or the one named) ignore the graceful stop: stop waits out its timeout, then escalates. */
  hangStop(on = true, vmId?: string): void {
    if (vmId === undefined) this.#stopHangs = on;
    else if (on) this.#stubborn.add(vmId);
    else this.#stubborn.delete(vmId);
  }

  /** Every call fails as if the hypervisor could not be reached. */
  setUnreachable(on = true): void {
    this.#unreachable = on;
  }

  /**
   * The VM dies behind the worker's back (it crashed, or its guest powered off): the wrapped
   * backend stops it at once, as its own doing, and watchers hear of it from here.
   */
  async vanish(vmId: string, how: "crash" | "guest-poweroff" = "crash"): Promise<void> {
    const known = (await this.inner.recorded?.(vmId)) ?? this.#handles.get(vmId);
    if (!known) return;
    const now = await this.inner.state(known);
    if (now !== "running" && now !== "suspended") return;
    const { handle } = await this.inner.stop(known, { timeoutMs: 0, force: "now" });
    this.#handles.set(vmId, handle);
    this.#changes.emit({
      vmId,
      backend: this.tag,
      state: "stopped",
      source: "process",
      guestInitiated: how === "guest-poweroff",
      detail: how === "crash" ? "the VM process died" : "the guest powered off",
      handle,
    });
  }

  // ---- Hypervisor ------------------------------------------------------------------------

  capabilities(): Capabilities {
    return { ...this.inner.capabilities(), observesChanges: true };
  }

  async prepare(vmId: string, spec: VmSpec, opts: CallOptions = {}): Promise<VmHandle> {
    await this.#enter("prepare", vmId, opts);
    return this.#keep(await this.inner.prepare(vmId, spec, opts));
  }

  async start(vm: VmHandle, opts: CallOptions = {}): Promise<VmHandle> {
    await this.#enter("start", vm.id, opts);
    return this.#keep(await this.inner.start(vm, opts));
  }

  async suspend(vm: VmHandle, opts: CallOptions = {}): Promise<VmHandle> {
    await this.#enter("suspend", vm.id, opts);
    return this.#keep(await this.inner.suspend(vm, opts));
  }

  async resume(vm: VmHandle, opts: CallOptions = {}): Promise<VmHandle> {
    await this.#enter("resume", vm.id, opts);
    return this.#keep(await this.inner.resume(vm, opts));
  }

  async stop(vm: VmHandle, opts: StopOptions): Promise<StopResult> {
    await this.#enter("stop", vm.id, opts);
    const r = (await this.#stubbornGuest(vm, opts)) ?? (await this.inner.stop(vm, opts));
    this.#keep(r.handle);
    return r;
  }

  async destroy(vm: VmHandle, opts: StopOptions): Promise<void> {
    await this.#enter("destroy", vm.id, opts);
    await this.inner.destroy(vm, opts);
    this.#handles.delete(vm.id);
  }

  async state(vm: VmHandle, opts: CallOptions = {}): Promise<VmState> {
    await this.#enter("state", vm.id, opts);
    return this.inner.state(vm, opts);
  }

  async guestIp(vm: VmHandle, opts: CallOptions = {}): Promise<string> {
    await this.#enter("guestIp", vm.id, opts);
    return this.inner.guestIp(vm, opts);
  }

  consoleEndpoint(vm: VmHandle): ConsoleEndpoint {
    return this.inner.consoleEndpoint(vm);
  }

  async openConsole(
    vm: VmHandle,
    handlers: ConsoleHandlers,
    opts?: CallOptions,
  ): Promise<ConsoleConnection> {
    return this.inner.openConsole(vm, handlers, opts);
  }

  async exportDisk(vm: VmHandle, opts: CallOptions = {}): Promise<DiskExport> {
    if (!this.inner.exportDisk)
      throw new HypervisorError("hypervisor::unsupported", `${this.tag} cannot export a disk`);
    await this.#enter("exportDisk", vm.id, opts);
    return this.inner.exportDisk(vm, opts);
  }

  async recorded(vmId: string, opts?: CallOptions): Promise<VmHandle | undefined> {
    return this.inner.recorded?.(vmId, opts);
  }

  async adopt(vm: VmHandle, opts?: CallOptions): Promise<void> {
    await this.inner.adopt?.(vm, opts);
  }

  /** The wrapped backend's observations, and the VMs that vanished here. */
  watch(listener: ChangeListener): () => void {
    const offInner = this.inner.watch?.(listener);
    const off = this.#changes.watch(listener);
    return () => {
      offInner?.();
      off();
    };
  }

  async close(): Promise<void> {
    await this.inner.close?.();
  }

  // ---- internals -------------------------------------------------------------------------

  /** Every call's way in: logged, delayed, then failed when a fault says so. */
  async #enter(op: BackendOperation, vmId: string, opts: CallOptions): Promise<void> {
    checkAborted(opts.signal, `${this.tag} ${op}`);
    this.calls.push({ op, vmId });
    // Trimmed in halves, so a call costs O(1) on average.
    if (this.calls.length > 2 * this.#keepCalls)
      this.calls.splice(0, this.calls.length - this.#keepCalls);
    if (this.latencyMs > 0) await this.#sleep(this.latencyMs, opts, `${op} of ${vmId}`);
    if (this.#unreachable) {
      throw new HypervisorError(
        "hypervisor::unreachable",
        `the ${this.tag} hypervisor is unreachable (injected)`,
      );
    }
    const fault = this.#faults.find(
      (f) => f.remaining > 0 && (f.ops === undefined || f.ops.includes(op)),
    );
    if (fault) {
      fault.remaining -= 1;
      this.#faults = this.#faults.filter((f) => f.remaining > 0);
      throw new HypervisorError(
        fault.code,
        `injected failure of ${this.tag} ${op} for ${vmId}`,
        // A test's injected fault may say retryable either way (an exception to the table).
        fault.retryable === undefined ? {} : { retryable: fault.retryable },
      );
    }
    // A crash inside a lifecycle call: past its latency, before its effect (fault tests).
    if (op !== "state" && op !== "guestIp") failpoint("mid-backend");
  }

  /** A guest that ignores the power button: wait out the timeout, then give up or force it. */
  async #stubbornGuest(vm: VmHandle, opts: StopOptions): Promise<StopResult | undefined> {
    if (opts.force === "now" || !(this.#stopHangs || this.#stubborn.has(vm.id))) return undefined;
    const now = await this.inner.state(vm, opts);
    if (now !== "running" && now !== "suspended") return undefined; // the backend refuses it
    await this.#sleep(opts.timeoutMs, opts, `stop of ${vm.id}`);
    if (opts.force === "never") {
      throw new HypervisorError(
        "hypervisor::stop-timeout",
        `${this.tag} VM ${vm.id} did not stop within ${opts.timeoutMs} ms`,
      );
    }
    const r = await this.inner.stop(vm, { ...opts, force: "now" });
    return { handle: r.handle, how: "sigterm" };
  }

  async #sleep(ms: number, opts: CallOptions, what: string): Promise<void> {
    try {
      await sleep(ms, opts.signal);
    } catch (e) {
      throw new HypervisorError("hypervisor::aborted", `${this.tag} ${what} was cancelled`, {
        cause: e,
      });
    }
  }

  #keep(handle: VmHandle): VmHandle {
    this.#handles.set(handle.id, handle);
    return handle;
  }
}
