/** Valid v1 histories for the recovery benchmark, made with the domain's own functions. */
import { Command, type VmEvent, type VmHandle } from "../../src/contracts/index.js";
import {
  decide,
  evolve,
  emptyVm,
  succeeded,
  type CommandResult,
  type Vm,
} from "../../src/domain/index.js";
import { SPEC } from "./common.js";

export const recoveryVmId = (i: number): string => `r-${i}`;

/** The handle the Noop backend gives a prepared (or stopped) VM; seeded into the worker's Noop. */
export function recoveryHandle(i: number): VmHandle {
  const id = recoveryVmId(i);
  return {
    id,
    name: SPEC.name,
    backend: "noop",
    workDir: `noop://${id}`,
    vcpus: SPEC.vcpus,
    memoryMb: SPEC.memoryMb,
    network: { type: "user" },
    uefi: false,
  };
}

const PLAN = ["vm.prepare", "vm.start", "vm.stop", "vm.start", "vm.stop"] as const;

/**
 * The 10 events of one VM (5 commands: prepare, start, stop, start, stop; intent + outcome each),
 * ending in `stopped`. `nextSeq` supplies plausible stream sequences for the fold.
 */
export function recoveryHistory(host: string, i: number, nextSeq: () => number): VmEvent[] {
  const vmId = recoveryVmId(i);
  let vm: Vm = emptyVm(vmId, host);
  const out: VmEvent[] = [];
  const handle = recoveryHandle(i);
  const now = new Date();
  for (const [n, type] of PLAN.entries()) {
    const command = Command.parse({
      type,
      version: 1,
      commandId: `${vmId}-c${n}`,
      vmId,
      issuedAt: now.toISOString(),
      ...(type === "vm.prepare" ? { spec: SPEC } : {}),
    });
    const d = decide(command, vm, { now });
    if (d.kind !== "accept") throw new Error(`recovery plan: ${type} was not accepted (${d.kind})`);
    out.push(d.event);
    vm = evolve(vm, d.event, nextSeq());
    const result: CommandResult =
      command.type === "vm.prepare"
        ? { handle, spec: command.spec }
        : type === "vm.start"
          ? { handle: { ...handle, pid: 10_000 + i } }
          : { handle, how: "acpi" };
    const outcome = succeeded(vm, command, result, { now });
    out.push(outcome);
    vm = evolve(vm, outcome, nextSeq());
  }
  return out;
}
