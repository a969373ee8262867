/** given(events) / when(command) / then(events | rejection | nothing): emmett-style decider tests. */
import assert from "node:assert/strict";
import type { Command, CommandInput, VmEvent, VmHandle } from "../../src/contracts/index.js";
import { Command as CommandSchema } from "../../src/contracts/index.js";
import { decide, emptyVm, evolve, type Decision, type Vm } from "../../src/domain/index.js";

export const NOW = new Date("2026-11-25T10:00:00.000Z");

/** A small spec, and the handle a Noop backend makes of it for vm1. */
export const SPEC = { name: "web", imagePath: "/images/base.qcow2", vcpus: 1, memoryMb: 256 };
export const HANDLE: VmHandle = {
  id: "vm1",
  name: "web",
  backend: "noop",
  workDir: "noop://vm1",
  vcpus: 1,
  memoryMb: 256,
  network: { type: "user" },
  uefi: false,
};
let n = 0;
export const cmd = (
  c: Omit<CommandInput, "version" | "commandId" | "vmId" | "issuedAt"> & Partial<CommandInput>,
): Command =>
  CommandSchema.parse({
    version: 1,
    commandId: `c${++n}`,
    vmId: "vm1",
    issuedAt: NOW.toISOString(),
    ...c,
  });

export function given(events: VmEvent[]): { vm: Vm; when: (c: Command) => Then } {
  let vm = emptyVm("vm1", "h1");
  events.forEach((e, i) => (vm = evolve(vm, e, i + 1)));
  return {
    vm,
    when: (c) => {
      const d = decide(c, vm, { now: NOW });
      return new Then(d);
    },
  };
}

export class Then {
  constructor(readonly decision: Decision) {}
  thenAccepted(): Extract<Decision, { kind: "accept" }>["event"] {
    assert.equal(
      this.decision.kind,
      "accept",
      `expected accept, got ${JSON.stringify(this.decision)}`,
    );
    return this.decision.event;
  }
  thenRejected(code: string, messageIncludes?: string[]): void {
    assert.equal(this.decision.kind, "reject", `expected a rejection, got ${this.decision.kind}`);
    const d = this.decision;
    assert.equal(d.rejection.code, code);
    assert.equal(d.event.code, code);
    for (const s of messageIncludes ?? [])
      assert.ok(d.rejection.message.includes(s), `"${d.rejection.message}" names ${s}`);
  }
  thenNothingHappened(): void {
    assert.equal(this.decision.kind, "duplicate");
  }
}

/** The intent event of `c` at the VM's state (preparing for a prepare), as the worker writes it. */
export function acceptedEvent(vm: Vm, c: Command, seq: number, deadline = NOW): VmEvent {
  return {
    type: "vm.command-accepted",
    version: 1,
    eventId: `e${seq}`,
    vmId: "vm1",
    host: "h1",
    at: NOW.toISOString(),
    causationId: c.commandId,
    correlationId: null,
    state: c.type === "vm.prepare" ? "preparing" : (vm.state ?? "preparing"),
    command: c,
    deadline: deadline.toISOString(),
  };
}
