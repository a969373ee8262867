import { VmHandle, type VmEvent, type VmState } from "../contracts/index.js";
import { isLive, observed, failed, succeeded, targetState, type Vm } from "../domain/index.js";
import { isVmqError } from "../lib/errors.js";
import type { WorkerContext } from "./context.js";

const STATE_TIMEOUT_MS = 10_000;

/**
 * Compares the replayed VMs with what the backends say, before any new command is taken.
 * A running guest stays running (nothing here starts or stops a VM); an intent with no
 * outcome is resolved from the backend's answer and recorded; drift is recorded as
 * vm.state-observed (source reconcile); an unreachable backend means `unknown`, never `failed`.
 */
export class Reconciler {
  constructor(
    private readonly ctx: WorkerContext,
    private readonly append: (vmId: string, make: (vm: Vm) => VmEvent | undefined) => Promise<void>,
  ) {}

  /** An aborted `signal` takes no further VM and ends with its reason once those under way are done. */
  async reconcileAll(opts: {
    adopt: boolean;
    signal?: AbortSignal;
  }): Promise<{ checked: number; corrected: number }> {
    const vms = this.ctx.registry
      .all()
      .filter((vm) => vm.state !== null && (vm.state !== "destroyed" || vm.pending));
    let corrected = 0;
    // Bounded parallelism: a host with thousands of VMs should not open thousands of sockets.
    const queue = [...vms];
    const workers = Array.from({ length: Math.min(16, queue.length) }, async () => {
      for (let vm = queue.shift(); vm && !opts.signal?.aborted; vm = queue.shift()) {
        if (await this.reconcile(vm.vmId, opts)) corrected++;
      }
    });
    await Promise.all(workers);
    opts.signal?.throwIfAborted();
    return { checked: vms.length, corrected };
  }

  /** Returns true when something was recorded. */
  async reconcile(vmId: string, opts: { adopt: boolean }): Promise<boolean> {
    const { ctx } = this;
    const vm = ctx.registry.get(vmId);
    const log = {
      // A child logger per VM only when something is said (thousands of VMs at every start).
      info: (o: object, m: string) => ctx.log.info({ vmId, ...o }, m),
      warn: (o: object, m: string) => ctx.log.warn({ vmId, ...o }, m),
    };
    let now: VmState = "unknown";
    let detail: string | undefined;
    /** The handle of an interrupted prepare, from the backend's own record. */
    let recovered: VmHandle | undefined;
    if (vm.handle) {
      try {
        const signal = AbortSignal.timeout(STATE_TIMEOUT_MS); // adopt and state together
        if (opts.adopt) await ctx.router.adopt(vm.handle, { signal });
        now = await ctx.router.state(vm.handle, { signal });
      } catch (e) {
        detail = isVmqError(e) ? `${e.code}: ${e.message}` : String(e);
        log.warn({ err: e }, "backend could not say how the VM is: recording unknown");
      }
    } else if (vm.pending?.type === "vm.prepare") {
      // No handle yet: ask the backend by id whether the prepare left anything.
      const stub = VmHandle.parse({
        id: vmId,
        name: vm.spec?.name ?? vmId,
        backend: vm.spec?.backend ?? ctx.router.defaultBackend,
        workDir: "",
      });
      const signal = AbortSignal.timeout(STATE_TIMEOUT_MS);
      const there = await ctx.router.state(stub, { signal }).catch(() => "unknown" as const);
      // The prepare may have finished in the backend: its own record gives the handle, and the
      // outcome is recorded as it would have been. Something that exists without a record is
      // failed (destroy cleans up); a backend that cannot say is unknown, never failed.
      if (there === "prepared")
        recovered = await ctx.router
          .recorded(stub.backend, vmId, { signal })
          .catch(() => undefined);
      now =
        there === "destroyed" || there === "unknown" || (there === "prepared" && recovered)
          ? there
          : "failed";
    }

    if (vm.pending) {
      const pending = vm.pending;
      // Nothing happened yet and there is time left: leave the intent for the command's
      // redelivery, which resumes it (decide -> resume) instead of failing it.
      const untouched =
        pending.type === "vm.prepare" ? now === "destroyed" : now === vm.state && now !== "unknown";
      if (untouched && Date.parse(pending.deadline) > ctx.now().getTime() + 1_000) {
        log.info(
          { pending: pending.type, deadline: pending.deadline },
          "interrupted command left for its redelivery to resume",
        );
        return false;
      }
      let recorded = false;
      await this.append(vmId, (v) => {
        if (v.pending?.commandId !== pending.commandId) return undefined;
        const command = v.pendingCommand;
        if (!command) return undefined;
        const target = targetState(command.type);
        recorded = true;
        const handle = v.handle ?? recovered;
        if (now === target && handle) {
          const spec =
            command.type === "vm.prepare"
              ? { ...command.spec, backend: command.spec.backend ?? handle.backend }
              : undefined;
          return succeeded(
            v,
            command,
            // The stop's step died with the worker; the contract's word for "ended without a
            // recorded graceful step" is forced (reconciled: true says why).
            { handle, how: "forced", ...(spec ? { spec } : {}) },
            { now: ctx.now() },
            { reconciled: true },
          );
        }
        return {
          ...failed(
            v,
            command,
            {
              code: "worker::interrupted",
              message: `the worker stopped during ${command.type}; the backend now reports ${now}${detail ? ` (${detail})` : ""}`,
              retryable: true,
            },
            1,
            { now: ctx.now() },
            {
              state:
                now === "unknown" && v.state !== null
                  ? isLive(v.state)
                    ? "unknown"
                    : v.state
                  : now,
            },
          ),
          reconciled: true,
        };
      });
      log.info({ pending: pending.type, now }, "resolved an interrupted command");
      return recorded;
    }

    // Without a handle the backend was not asked: there is nothing to compare (a failed prepare).
    if (!vm.handle) return false;
    if (vm.state === now) return false;
    if (now === "destroyed" && vm.state === "destroyed") return false;
    let wrote = false;
    await this.append(vmId, (v) => {
      const e = observed(
        v,
        now,
        "reconcile",
        { now: ctx.now(), eventId: `${vmId}:obs:${ctx.newId()}` },
        detail ? { detail } : {},
      );
      wrote = e !== undefined;
      return e;
    });
    if (wrote) log.warn({ recorded: vm.state, now }, "the VM is not as recorded: drift recorded");
    return wrote;
  }
}
