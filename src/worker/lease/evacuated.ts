import type { Evacuation, EventOf } from "../../contracts/index.js";
import { observed, type Vm } from "../../domain/index.js";
import { toVmqError } from "../../lib/errors.js";
import type { Logger } from "../../observability/logger.js";
import type { CommandRouter } from "../pipeline/pipeline-deps.js";
import type { Clock, Ids } from "../ports.js";
import type { Decide } from "../state/vm-streams.js";

/** The steps after which a VM lives (or may live) on another host: its copy here is stale. */
const MOVED = new Set(["placed", "prepared", "done", "skipped"]);

/** The VMs of an evacuation this host must never run again. */
export function evacuatedVmIds(evacuation: Evacuation | undefined): Set<string> {
  return new Set(evacuation?.vms.filter((v) => MOVED.has(v.step)).map((v) => v.vmId) ?? []);
}

export interface EvacuatedDeps {
  evacuation: Evacuation;
  get: (vmId: string) => Vm;
  /** streams.update in the VM's lane. */
  update: (vmId: string, decide: Decide) => Promise<unknown>;
  router: CommandRouter;
  clock: Clock;
  ids: Ids;
  log: Logger;
  /** Purges this host's own view record of the VM (clients resolve it to its new host). */
  dropView: (vmId: string) => Promise<void>;
}

/**
 * Run by a worker that came back on a host that was evacuated, after replay and before the
 * reconcile and the consumer: for every VM that now lives elsewhere it records what its backend
 * says (vm.state-observed), stops and destroys the stale copy (policy in docs/lease.md: the VM's
 * identity moved; a second copy of it must never run, and leaving one to be re-adopted would),
 * appends vm.evacuated (the decider then rejects its commands with vm::evacuated), and drops
 * its view record. Idempotent: a VM already evacuated is skipped, so a crash midway is resumed.
 */
export async function removeEvacuated(deps: EvacuatedDeps): Promise<number> {
  const { evacuation, log } = deps;
  let removed = 0;
  for (const entry of evacuation.vms) {
    if (!MOVED.has(entry.step)) continue;
    const vm = deps.get(entry.vmId);
    if (vm.evacuated) continue;
    const vlog = log.child({ vmId: entry.vmId, evacuation: evacuation.id, to: entry.target });
    if (vm.state === null) {
      await deps.dropView(entry.vmId);
      continue;
    }
    const stale = vm.handle
      ? await deps.router.state(vm.handle).catch(() => "unknown" as const)
      : vm.state;
    const why = `evacuated to ${entry.target ?? "another host"} by evacuation ${evacuation.id}`;
    await deps.update(entry.vmId, (now) =>
      observed(
        now,
        stale,
        "reconcile",
        { now: deps.clock.now(), eventId: deps.ids.newId() },
        // Always recorded: with the handle, observed() writes it even when the state is the same.
        {
          detail: `${why}: removing this host's stale copy`,
          ...(now.handle ? { handle: now.handle } : {}),
        },
      ),
    );
    if (vm.handle && vm.state !== "destroyed") {
      try {
        await deps.router.destroy(vm.handle, {
          timeoutMs: 0,
          force: "now",
          signal: AbortSignal.timeout(60_000),
        });
      } catch (e) {
        // Left for the operator; the VM is still never started here (vm.evacuated below).
        vlog.error(
          { err: e, code: toVmqError(e).code },
          "could not destroy the stale copy of an evacuated VM",
        );
      }
    }
    await deps.update(entry.vmId, (now) =>
      now.evacuated ? undefined : evacuatedEvent(now, entry.target, stale, why, deps),
    );
    await deps.dropView(entry.vmId);
    removed++;
    vlog.warn({ stale }, "this VM was evacuated while the host was dead: stale copy removed");
  }
  return removed;
}

function evacuatedEvent(
  vm: Vm,
  toHost: string | undefined,
  stale: EventOf<"vm.evacuated">["stale"],
  detail: string,
  deps: EvacuatedDeps,
): EventOf<"vm.evacuated"> {
  return {
    type: "vm.evacuated",
    version: 1,
    eventId: `${vm.vmId}:${deps.evacuation.id}:evacuated`,
    vmId: vm.vmId,
    host: vm.host,
    at: deps.clock.now().toISOString(),
    causationId: null,
    correlationId: null,
    state: "destroyed",
    evacuationId: deps.evacuation.id,
    ...(toHost ? { toHost } : {}),
    stale,
    detail,
  };
}
