import type { VmHandle } from "../../contracts/index.js";
import { interruptedPrepareState, reconcile, type BackendReport } from "../../domain/index.js";
import type { HypervisorRouter } from "../../hypervisor/index.js";
import { isVmqError } from "../../lib/errors.js";
import { DeadlineSignals } from "../../lib/time.js";
import type { Logger } from "../../observability/logger.js";
import type { Lanes } from "../consumer/lanes.js";
import { stubHandle } from "../pipeline/backend-call.js";
import type { Clock, Ids } from "../ports.js";
import type { Service } from "../service-stack.js";
import type { VmStreams } from "../state/vm-streams.js";

const STATE_TIMEOUT_MS = 10_000;

export interface ReconcilerDeps {
  streams: VmStreams;
  router: Pick<HypervisorRouter, "adopt" | "state" | "recorded" | "defaultBackend">;
  /** Each VM is reconciled in its lane: never beside one of its commands. */
  lanes: Lanes;
  clock: Clock;
  ids: Ids;
  log: Logger;
  /** Periodic passes (0: only at start); they run only while `running()`. */
  intervalMs: number;
  running: () => boolean;
  /** The image a VM's prepare took (the image cache's pin): a recovered handle lacks it. */
  imageOf?: (vmId: string) => string | undefined;
}

/**
 * Compares the replayed VMs with what the backends say: at start, before any command is taken
 * (re-adopting running guests; nothing here starts or stops a VM), and then every intervalMs.
 * What the answer means is the domain's `reconcile`: an interrupted command resolved, drift
 * recorded; an unreachable backend means `unknown`, never `failed`.
 */
export class Reconciler implements Service {
  readonly name = "reconciler";
  #timer: NodeJS.Timeout | undefined;
  /** The periodic pass under way: one slower than the interval must not stack up. */
  #pass: Promise<void> | undefined;
  /** One timer per 100 ms of deadlines, not one per VM (10,000 VMs at start). */
  readonly #deadlines = new DeadlineSignals();

  constructor(private readonly deps: ReconcilerDeps) {}

  async start(stopping: AbortSignal): Promise<void> {
    const r = await this.reconcileAll({ adopt: true, signal: stopping });
    this.deps.log.info(r, "reconciled VMs with the backends");
    if (this.deps.intervalMs > 0) {
      this.#timer = setInterval(() => void this.#periodic(), this.deps.intervalMs);
      this.#timer.unref();
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#pass;
  }

  /** An aborted `signal` takes no further VM and ends with its reason once those under way are done. */
  async reconcileAll(opts: {
    adopt: boolean;
    signal?: AbortSignal;
  }): Promise<{ checked: number; corrected: number }> {
    const vms = this.deps.streams
      .all()
      .filter((vm) => vm.state !== null && (vm.state !== "destroyed" || vm.pending));
    let corrected = 0;
    // In the VMs' lanes: as many at once as the worker runs commands.
    await Promise.all(
      vms.map((vm) =>
        this.deps.lanes.run(vm.vmId, async () => {
          if (opts.signal?.aborted) return;
          if (await this.reconcile(vm.vmId, opts)) corrected++;
        }),
      ),
    );
    opts.signal?.throwIfAborted();
    return { checked: vms.length, corrected };
  }

  #periodic(): void {
    if (!this.deps.running() || this.#pass) return;
    this.#pass = this.#periodicPass().finally(() => (this.#pass = undefined));
  }

  /** One VM at a time, each in its lane (after its commands). */
  async #periodicPass(): Promise<void> {
    for (const vm of this.deps.streams.all()) {
      if (!this.deps.running()) return; // a drain has begun: add no more work
      // A pending intent is reconciled only once its deadline has passed: a command still
      // running in its lane records its own outcome.
      const stale = vm.pending !== null && Date.parse(vm.pending.deadline) < Date.now();
      if ((vm.pending && !stale) || vm.state === null || (vm.state === "destroyed" && !stale))
        continue;
      await this.deps.lanes.run(vm.vmId, () =>
        this.reconcile(vm.vmId, { adopt: false }).catch(() => false),
      );
    }
  }

  /** Asks the backend about one VM and records what that means; true when something was recorded. */
  async reconcile(vmId: string, opts: { adopt: boolean }): Promise<boolean> {
    const { deps } = this;
    const vm = deps.streams.get(vmId);
    const report = await this.#ask(vm.handle, vm.pending?.type === "vm.prepare", vmId, opts);
    // Most VMs are as recorded: judged on the VM at hand first, only a VM with something to
    // record goes through update() (which judges again on the VM it will append to).
    const first = reconcile(deps.streams.get(vmId), report, { now: deps.clock.now(), eventId: "" });
    if (first.kind === "nothing") return false;
    let kind = "nothing";
    await deps.streams.update(vmId, (v) => {
      // The report is about the intent it was asked for.
      if (v.pending?.commandId !== vm.pending?.commandId) return undefined;
      const eventId = `${vmId}:obs:${deps.ids.newId()}`;
      const r = reconcile(v, report, { now: deps.clock.now(), eventId });
      kind = r.kind;
      return r.kind === "resolve" || r.kind === "drift" ? r.event : undefined;
    });
    if (kind === "nothing") return false;
    const at = {
      vmId,
      pending: vm.pending?.type,
      deadline: vm.pending?.deadline,
      now: report.state,
    };
    if (kind === "leave")
      deps.log.info(at, "interrupted command left for its redelivery to resume");
    else if (kind === "resolve") deps.log.info(at, "resolved an interrupted command");
    else if (kind === "drift")
      deps.log.warn({ ...at, recorded: vm.state }, "the VM is not as recorded: drift recorded");
    return kind === "resolve" || kind === "drift";
  }

  /** What the backend says: by handle, or for a prepare interrupted before it had one, by vmId. */
  async #ask(
    handle: VmHandle | null,
    preparing: boolean,
    vmId: string,
    opts: { adopt: boolean },
  ): Promise<BackendReport> {
    // Adopt and state together.
    const deadline = this.#deadlines.acquire(new Date(Date.now() + STATE_TIMEOUT_MS));
    try {
      return await this.#report(handle, preparing, vmId, opts, deadline.signal);
    } finally {
      deadline.dispose();
    }
  }

  async #report(
    handle: VmHandle | null,
    preparing: boolean,
    vmId: string,
    opts: { adopt: boolean },
    signal: AbortSignal,
  ): Promise<BackendReport> {
    const { router } = this.deps;
    if (handle) {
      try {
        if (opts.adopt) await router.adopt(handle, { signal });
        return { state: await router.state(handle, { signal }) };
      } catch (e) {
        this.deps.log.warn(
          { vmId, err: e },
          "backend could not say how the VM is: recording unknown",
        );
        return { state: "unknown", detail: isVmqError(e) ? `${e.code}: ${e.message}` : String(e) };
      }
    }
    if (!preparing) return { state: "unknown" };
    const vm = this.deps.streams.get(vmId);
    const stub = stubHandle(vm, router.defaultBackend);
    const there = await router.state(stub, { signal }).catch(() => "unknown" as const);
    const record =
      there === "prepared"
        ? await router.recorded(stub.backend, vmId, { signal }).catch(() => undefined)
        : undefined;
    // The worker, not the backend, records the image; its pin says which one it took.
    const digest = this.deps.imageOf?.(vmId);
    const recovered =
      record && digest && !record.imageDigest ? { ...record, imageDigest: digest } : record;
    return { state: interruptedPrepareState(there, recovered !== undefined), recovered };
  }
}
