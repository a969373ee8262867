import {
  appendFileSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import type {
  BackendTag,
  Capabilities,
  ConsoleEndpoint,
  VmHandle,
  VmSpec,
  VmState,
} from "../../../contracts/index.js";
import { failpoint } from "../../../lib/failpoints.js";
import { sleep } from "../../../lib/time.js";
import { checkAborted, HypervisorError, type HypervisorErrorCode } from "../../errors.js";
import type {
  CallOptions,
  ChangeListener,
  Hypervisor,
  StopOptions,
  StopResult,
} from "../../hypervisor.js";

export interface NoopOptions {
  /** Latency of every call, in ms (the benchmark's 50 ms per call). */
  latencyMs?: number;
  /** Whether suspend/resume are offered (to test capability checks). */
  suspend?: boolean;
  /** Keep each VM in a file here so VMs outlive the worker process (crash/restart tests). */
  stateDir?: string;
  /** The tag it answers to (default noop); router tests let it pose as another backend. */
  tag?: BackendTag;
  /** How many of the latest calls `calls` keeps (default 10,000; it holds up to twice that). */
  keepCalls?: number;
}

export type NoopOperation =
  "prepare" | "start" | "stop" | "suspend" | "resume" | "destroy" | "state" | "guestIp";

interface Fault {
  remaining: number;
  code: HypervisorErrorCode;
  retryable: boolean;
  ops: NoopOperation[] | undefined;
}

interface NoopVm {
  handle: VmHandle;
  state: VmState;
}

/**
 * An in-memory hypervisor that enforces the same transitions as a real one, reports true
 * state, and injects faults on demand, so worker tests and benchmarks mean something.
 */
export class NoopBackend implements Hypervisor {
  readonly tag: BackendTag;
  readonly #vms = new Map<string, NoopVm>();
  readonly #listeners = new Set<ChangeListener>();
  #faults: Fault[] = [];
  #stopHangs = false;
  readonly #stubborn = new Set<string>();
  #unreachable = false;
  latencyMs: number;
  readonly #suspend: boolean;
  readonly #stateDir: string | undefined;
  /**
   * The latest calls, in order (tests assert that hostile input never reaches the backend).
   * Bounded: Noop is the default backend, and a long-running worker reconciles every VM.
   */
  readonly calls: { op: NoopOperation; vmId: string }[] = [];
  readonly #keepCalls: number;

  constructor(opts: NoopOptions = {}) {
    this.latencyMs = opts.latencyMs ?? 0;
    this.tag = opts.tag ?? "noop";
    this.#stateDir = opts.stateDir;
    if (this.#stateDir) this.#load(this.#stateDir);
    this.#suspend = opts.suspend ?? true;
    this.#keepCalls = Math.max(1, opts.keepCalls ?? 10_000);
  }

  // ---- fault injection -------------------------------------------------------------------

  /** The next `count` calls (optionally of the listed operations) fail with `code`. */
  failNext(
    count: number,
    code: HypervisorErrorCode = "hypervisor::injected",
    opts: { retryable?: boolean; ops?: NoopOperation[] } = {},
  ): void {
    this.#faults.push({ remaining: count, code, retryable: opts.retryable ?? true, ops: opts.ops });
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
  /** The VM dies behind our back (as if it crashed); watchers hear about it. */
  vanish(vmId: string, how: "crash" | "guest-poweroff" = "crash"): void {
    const vm = this.#vms.get(vmId);
    if (!vm) return;
    vm.state = "stopped";
    vm.handle = withoutRuntime(vm.handle);
    this.#save(vmId);
    for (const l of this.#listeners) {
      l({
        vmId,
        backend: this.tag,
        state: "stopped",
        source: "process",
        guestInitiated: how === "guest-poweroff",
        detail: how === "crash" ? "the VM process died" : "the guest powered off",
        handle: vm.handle,
      });
    }
  }
  /** What the backend holds, for tests (undefined once destroyed: it forgets the VM). */
  peek(vmId: string): VmState | undefined {
    return this.#vms.get(vmId)?.state;
  }
  /** Pretends a VM exists (e.g. a guest that kept running while the worker was away). */
  seed(handle: VmHandle, state: VmState): void {
    this.#vms.set(handle.id, { handle, state });
    this.#save(handle.id);
  }

  // ---- Hypervisor ------------------------------------------------------------------------

  capabilities(): Capabilities {
    return {
      suspend: this.#suspend,
      reboot: false,
      uefi: true,
      guestIp: true,
      console: "none",
      observesChanges: true,
    };
  }

  async prepare(vmId: string, spec: VmSpec, opts: CallOptions = {}): Promise<VmHandle> {
    await this.#enter("prepare", vmId, opts);
    const existing = this.#vms.get(vmId);
    if (existing && existing.state !== "destroyed") {
      throw new HypervisorError(
        "hypervisor::invalid-state",
        `noop VM ${vmId} already exists (${existing.state})`,
      );
    }
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
    this.#vms.set(vmId, { handle, state: "prepared" });
    this.#save(vmId);
    this.#effect("prepare", vmId);
    return handle;
  }

  /** The handle of a VM this backend holds (its state dir makes it outlive the worker). */
  async recorded(vmId: string, opts: CallOptions = {}): Promise<VmHandle | undefined> {
    opts.signal?.throwIfAborted();
    const v = this.#vms.get(vmId);
    return Promise.resolve(v && v.state !== "destroyed" ? v.handle : undefined);
  }

  async start(vm: VmHandle, opts: CallOptions = {}): Promise<VmHandle> {
    const v = await this.#transition("start", vm, opts, ["prepared", "stopped"]);
    v.state = "running";
    v.handle = { ...v.handle, pid: 10_000 + (hash(vm.id) % 50_000) };
    this.#save(vm.id);
    this.#effect("start", vm.id);
    return v.handle;
  }

  async suspend(vm: VmHandle, opts: CallOptions = {}): Promise<VmHandle> {
    this.#requireSuspend("suspend");
    const v = await this.#transition("suspend", vm, opts, ["running"]);
    v.state = "suspended";
    this.#save(vm.id);
    this.#effect("suspend", vm.id);
    return v.handle;
  }

  async resume(vm: VmHandle, opts: CallOptions = {}): Promise<VmHandle> {
    this.#requireSuspend("resume");
    const v = await this.#transition("resume", vm, opts, ["suspended"]);
    v.state = "running";
    this.#save(vm.id);
    this.#effect("resume", vm.id);
    return v.handle;
  }

  async stop(vm: VmHandle, opts: StopOptions): Promise<StopResult> {
    const v = await this.#transition("stop", vm, opts, ["running", "suspended"]);
    let how: StopResult["how"] = "acpi";
    if (opts.force === "now") how = "forced";
    else if (this.#stopHangs || this.#stubborn.has(vm.id)) {
      // The guest ignores the power button: wait out the timeout, then escalate or give up.
      await sleep(opts.timeoutMs, opts.signal);
      if (opts.force === "never") {
        throw new HypervisorError(
          "hypervisor::stop-timeout",
          `noop VM ${vm.id} did not stop within ${opts.timeoutMs} ms`,
        );
      }
      how = "sigterm";
    }
    v.state = "stopped";
    v.handle = withoutRuntime(v.handle);
    this.#save(vm.id);
    this.#effect("stop", vm.id);
    return { handle: v.handle, how };
  }

  async destroy(vm: VmHandle, opts: StopOptions): Promise<void> {
    await this.#enter("destroy", vm.id, opts);
    // Forgotten, not kept as "destroyed": a long-running worker (Noop is `npm start`'s default)
    // would hold every VM it ever had. A state dir forgets it the same way (#save removes it).
    const v = this.#vms.get(vm.id);
    const live = v !== undefined && v.state !== "destroyed";
    this.#vms.delete(vm.id);
    this.#save(vm.id);
    if (live) this.#effect("destroy", vm.id);
  }

  async state(vm: VmHandle, opts: CallOptions = {}): Promise<VmState> {
    await this.#enter("state", vm.id, opts);
    return this.#vms.get(vm.id)?.state ?? "destroyed";
  }

  async guestIp(vm: VmHandle, opts: CallOptions = {}): Promise<string> {
    await this.#enter("guestIp", vm.id, opts);
    const v = this.#get(vm.id);
    if (v.state !== "running" && v.state !== "suspended") {
      throw new HypervisorError(
        "hypervisor::invalid-state",
        `noop VM ${vm.id} is ${v.state}; it has no address`,
      );
    }
    return "127.0.0.1";
  }

  consoleEndpoint(): ConsoleEndpoint {
    return { type: "none" };
  }

  async adopt(vm: VmHandle): Promise<void> {
    // In-memory VMs die with the process; a worker restart in another process finds nothing.
    await Promise.resolve();
    void vm;
  }

  watch(listener: ChangeListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  // ---- internals -------------------------------------------------------------------------

  #load(dir: string): void {
    mkdirSync(dir, { recursive: true });
    for (const f of readdirSync(dir)) {
      if (!f.endsWith(".json")) continue;
      try {
        const v = JSON.parse(readFileSync(join(dir, f), "utf8")) as NoopVm;
        this.#vms.set(v.handle.id, v);
      } catch {
        /* a torn write from a killed process: that VM is simply unknown */
      }
    }
  }

  /** With a state dir, every effect is also appended to calls.log (fault tests count them). */
  #effect(op: NoopOperation, vmId: string): void {
    if (this.#stateDir) appendFileSync(join(this.#stateDir, "calls.log"), `${op} ${vmId}\n`);
  }

  /** Whole-file write then rename, so a killed process never leaves half a record. */
  #save(vmId: string): void {
    if (!this.#stateDir) return;
    const file = join(this.#stateDir, `${vmId}.json`);
    const v = this.#vms.get(vmId);
    if (!v || v.state === "destroyed") {
      rmSync(file, { force: true });
      return;
    }
    writeFileSync(`${file}.tmp`, JSON.stringify(v));
    renameSync(`${file}.tmp`, file);
  }

  async #enter(op: NoopOperation, vmId: string, opts: CallOptions): Promise<void> {
    checkAborted(opts.signal, `noop ${op}`);
    this.calls.push({ op, vmId });
    // Trimmed in halves, so a call costs O(1) on average.
    if (this.calls.length > 2 * this.#keepCalls)
      this.calls.splice(0, this.calls.length - this.#keepCalls);
    if (this.latencyMs > 0) {
      try {
        await sleep(this.latencyMs, opts.signal);
      } catch (e) {
        throw new HypervisorError("hypervisor::aborted", `noop ${op} of ${vmId} was cancelled`, {
          cause: e,
        });
      }
    }
    if (this.#unreachable) {
      throw new HypervisorError(
        "hypervisor::unreachable",
        "the noop hypervisor is unreachable (injected)",
      );
    }
    const fault = this.#faults.find(
      (f) => f.remaining > 0 && (f.ops === undefined || f.ops.includes(op)),
    );
    if (fault) {
      fault.remaining -= 1;
      this.#faults = this.#faults.filter((f) => f.remaining > 0);
      throw new HypervisorError(fault.code, `injected failure of noop ${op} for ${vmId}`, {
        retryable: fault.retryable,
      });
    }
    // A crash inside a lifecycle call: past its latency, before its effect (fault tests).
    if (op !== "state" && op !== "guestIp") failpoint("mid-backend");
  }

  async #transition(
    op: NoopOperation,
    vm: VmHandle,
    opts: CallOptions,
    from: VmState[],
  ): Promise<NoopVm> {
    await this.#enter(op, vm.id, opts);
    const v = this.#get(vm.id);
    if (!from.includes(v.state)) {
      throw new HypervisorError(
        "hypervisor::invalid-state",
        `cannot ${op} noop VM ${vm.id} in state ${v.state}`,
      );
    }
    return v;
  }

  #get(vmId: string): NoopVm {
    const v = this.#vms.get(vmId);
    if (!v || v.state === "destroyed")
      throw new HypervisorError("hypervisor::not-found", `noop VM ${vmId} does not exist`);
    return v;
  }

  #requireSuspend(op: string): void {
    if (!this.#suspend)
      throw new HypervisorError("hypervisor::unsupported", `this noop backend cannot ${op}`);
  }
}

function withoutRuntime(h: VmHandle): VmHandle {
  const { pid: _pid, vncAddr: _vnc, ...rest } = h;
  return rest;
}

function hash(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) >>> 0;
  return h;
}
