import { observedChange } from "../../domain/index.js";
import type { HypervisorRouter } from "../../hypervisor/index.js";
import type { Logger } from "../../observability/logger.js";
import type { Clock, Ids } from "../ports.js";
import type { Service } from "../service-stack.js";
import type { Decide, VmReader } from "../state/vm-streams.js";

/**
 * Records what the backends see happen to this host's VMs that no command explains (a guest's
 * own power-off, a crash, a pause from outside) as vm.state-observed, in the VM's lane.
 */
export class Observer implements Service {
  readonly name = "observer";
  #unwatch: (() => void) | undefined;

  constructor(
    private readonly deps: {
      router: Pick<HypervisorRouter, "watch">;
      vms: VmReader;
      updateInLane: (vmId: string, decide: Decide) => Promise<unknown>;
      clock: Clock;
      ids: Ids;
      log: Logger;
      /** Counts each change heard (a metric). */
      heard: () => void;
    },
  ) {}

  start(): Promise<void> {
    const { deps } = this;
    this.#unwatch = deps.router.watch((change) => {
      if (!deps.vms.has(change.vmId)) return;
      deps.heard();
      deps
        .updateInLane(change.vmId, (vm) =>
          observedChange(vm, change, {
            now: deps.clock.now(),
            eventId: `${vm.vmId}:obs:${deps.ids.newId()}`,
          }),
        )
        .catch((e: unknown) =>
          deps.log.error({ err: e, vmId: change.vmId }, "could not record an observed change"),
        );
    });
    return Promise.resolve();
  }

  stop(): Promise<void> {
    this.#unwatch?.();
    return Promise.resolve();
  }
}
