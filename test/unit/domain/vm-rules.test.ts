/**
 * The rules that moved out of the worker into the domain, given/when/then: the host's
 * refusals, what an observed change means, what a restarted worker records for an interrupted
 * command, and the state a failed command leaves.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VmHandle } from "../../../src/contracts/index.js";
import {
  driftAfterFailure,
  evolve,
  failed,
  moveToCheck,
  interruptedPrepareState,
  observedChange,
  reconcile,
  refusal,
  succeeded,
  type HostFacts,
  type Vm,
} from "../../../src/domain/index.js";
import {
  NOW,
  acceptedEvent,
  cmd,
  given,
  HANDLE as handle,
  SPEC as spec,
} from "../../helpers/decider-spec.js";

const ctx = { now: NOW, eventId: "vm1:obs:1" };
const facts: HostFacts = {
  host: "h1",
  backends: ["noop"],
  defaultBackend: "noop",
  canSuspend: () => true,
};

/** The VM after running these commands to their outcomes; the last one may stay pending. */
function vmAfter(types: ("vm.prepare" | "vm.start" | "vm.stop")[], pendingLast = false): Vm {
  let vm = given([]).vm;
  let seq = 1;
  types.forEach((type, i) => {
    const c = type === "vm.prepare" ? cmd({ type, spec }) : cmd({ type });
    vm = evolve(vm, acceptedEvent(vm, c, seq, LATER), seq++);
    if (pendingLast && i === types.length - 1) return;
    vm = evolve(vm, succeeded(vm, c, { handle, how: "acpi" }, { now: NOW }), seq++);
  });
  return vm;
}

const LATER = new Date(NOW.getTime() + 60_000);

describe("refusal: what only the host knows", () => {
  it("given a host without the spec's backend, when prepare, then backend-unavailable", () => {
    const r = refusal(
      cmd({ type: "vm.prepare", spec: { ...spec, backend: "qemu" } }),
      vmAfter([]),
      facts,
    );
    assert.equal(r?.code, "hypervisor::backend-unavailable");
    assert.match(r?.message ?? "", /qemu.*h1.*noop/);
  });
  it("given no backend in the spec, the host's default is checked", () => {
    const r = refusal(cmd({ type: "vm.prepare", spec }), vmAfter([]), {
      ...facts,
      defaultBackend: "propolis",
    });
    assert.equal(r?.code, "hypervisor::backend-unavailable");
  });
  it("given the vmId on another live host, when prepare, then vm::exists naming it", () => {
    const r = refusal(cmd({ type: "vm.prepare", spec }), vmAfter([]), {
      ...facts,
      ownerElsewhere: "h9",
    });
    assert.deepEqual(r, { code: "vm::exists", message: "VM vm1 exists on host h9" });
  });
  it("given a VM on a backend the host lost, when start, then backend-unavailable", () => {
    const vm = vmAfter(["vm.prepare"]);
    const r = refusal(cmd({ type: "vm.start" }), vm, { ...facts, backends: ["qemu"] });
    assert.equal(r?.code, "hypervisor::backend-unavailable");
  });
  it("given a backend that cannot suspend, suspend and resume are unsupported; start is fine", () => {
    const vm = vmAfter(["vm.prepare", "vm.start"]);
    const noSuspend = { ...facts, canSuspend: () => false };
    assert.equal(
      refusal(cmd({ type: "vm.suspend" }), vm, noSuspend)?.code,
      "hypervisor::unsupported",
    );
    assert.equal(
      refusal(cmd({ type: "vm.resume" }), vm, noSuspend)?.code,
      "hypervisor::unsupported",
    );
    assert.equal(refusal(cmd({ type: "vm.stop" }), vm, noSuspend), undefined);
    assert.equal(refusal(cmd({ type: "vm.suspend" }), vm, facts), undefined);
  });
});

describe("a move's hold on its source: no second copy while the disk travels", () => {
  const origin = { kind: "move" as const, fromHost: "h1", toHost: "h2", moveId: "m1" };
  /** A stopped VM after the move m1 exported its disk (export accepted, then exported). */
  const exported = (): Vm => {
    let vm = vmAfter(["vm.prepare", "vm.start", "vm.stop"]);
    const c = cmd({ type: "vm.export-disk", origin });
    vm = evolve(vm, acceptedEvent(vm, c, 10, LATER), 10);
    return vm;
  };

  it("given a move's export accepted, the VM is held for that move", () => {
    assert.deepEqual(exported().movingOut, { moveId: "m1", toHost: "h2" });
    // An export that is not a move's holds nothing.
    const vm = vmAfter(["vm.prepare"]);
    const plain = evolve(vm, acceptedEvent(vm, cmd({ type: "vm.export-disk" }), 5), 5);
    assert.equal(plain.movingOut, undefined);
  });
  it("given a held VM, a scheduler's start is refused vm::moving while the move is under way", () => {
    const start = cmd({ type: "vm.start" });
    assert.deepEqual(moveToCheck(start, exported()), { moveId: "m1", toHost: "h2" });
    const r = refusal(start, exported(), { ...facts, moveUnderWay: true });
    assert.equal(r?.code, "vm::moving");
    assert.match(r?.message ?? "", /host h2 \(move m1\).*second copy/);
  });
  it("given the move over (its record final or gone), the scheduler's start runs", () => {
    const start = cmd({ type: "vm.start" });
    assert.equal(refusal(start, exported(), { ...facts, moveUnderWay: false }), undefined);
  });
  it("the move's own start (its undo) needs no check; other commands are not held", () => {
    const own = cmd({ type: "vm.start", origin });
    assert.equal(moveToCheck(own, exported()), undefined);
    assert.equal(refusal(own, exported(), { ...facts, moveUnderWay: true }), undefined);
    const otherMove = cmd({ type: "vm.start", origin: { ...origin, moveId: "m2" } });
    assert.ok(moveToCheck(otherMove, exported()));
    assert.equal(moveToCheck(cmd({ type: "vm.destroy" }), exported()), undefined);
  });
  it("an accepted start or destroy ends the hold; a rejection in between keeps it", () => {
    const held = exported();
    const started = evolve(held, acceptedEvent(held, cmd({ type: "vm.start" }), 11), 11);
    assert.equal(started.movingOut, undefined);
    assert.equal("movingOut" in started, false);
    const gone = evolve(held, acceptedEvent(held, cmd({ type: "vm.destroy" }), 11), 11);
    assert.equal(gone.movingOut, undefined);
    // Outcomes and rejections in between keep it.
    const c = cmd({ type: "vm.stop" });
    const rejected = evolve(
      held,
      {
        type: "vm.command-rejected",
        version: 1,
        eventId: "r1",
        vmId: "vm1",
        host: "h1",
        at: NOW.toISOString(),
        causationId: c.commandId,
        correlationId: null,
        state: "stopped",
        commandId: c.commandId,
        code: "command::illegal-transition",
        message: "no",
      },
      12,
    );
    assert.deepEqual(rejected.movingOut, { moveId: "m1", toHost: "h2" });
  });
});

describe("observedChange: a backend saw something no command explains", () => {
  it("given a running VM, when the guest powers off, then vm.state-observed saying so", () => {
    const e = observedChange(
      vmAfter(["vm.prepare", "vm.start"]),
      { state: "stopped", source: "qmp", guestInitiated: true, detail: "ACPI" },
      ctx,
    );
    assert.equal(e?.type, "vm.state-observed");
    assert.equal(e?.state, "stopped");
    assert.equal(e?.previous, "running");
    assert.equal(e?.source, "qmp");
    assert.equal(e?.detail, "guest-initiated: ACPI");
    assert.equal(e?.eventId, "vm1:obs:1");
  });
  it("given a command of ours in flight, then nothing: its outcome records the state", () => {
    const vm = vmAfter(["vm.prepare", "vm.start", "vm.stop"], true);
    assert.ok(vm.pending);
    assert.equal(observedChange(vm, { state: "stopped", source: "qmp" }, ctx), undefined);
  });
  it("given the history already says so, then nothing", () => {
    const vm = vmAfter(["vm.prepare", "vm.start"]);
    assert.equal(observedChange(vm, { state: "running", source: "process" }, ctx), undefined);
  });
  it("a change without guest or detail carries no detail", () => {
    const e = observedChange(
      vmAfter(["vm.prepare", "vm.start"]),
      { state: "stopped", source: "process" },
      ctx,
    );
    assert.equal(e?.detail, undefined);
  });
});

describe("driftAfterFailure", () => {
  it("records what the backend reports after a failed command, naming the failure", () => {
    const e = driftAfterFailure(
      vmAfter(["vm.prepare", "vm.start"]),
      "stopped",
      { command: "vm.suspend", code: "x::y" },
      ctx,
    );
    assert.equal(e?.state, "stopped");
    assert.equal(e?.source, "reconcile");
    assert.equal(e?.detail, "after vm.suspend failed with x::y");
  });
  it("records nothing when the backend cannot tell, or agrees", () => {
    const vm = vmAfter(["vm.prepare", "vm.start"]);
    assert.equal(driftAfterFailure(vm, "unknown", { command: "c", code: "x::y" }, ctx), undefined);
    assert.equal(driftAfterFailure(vm, "running", { command: "c", code: "x::y" }, ctx), undefined);
  });
});

describe("failed: the state a failed command leaves", () => {
  const p = cmd({ type: "vm.prepare", spec });
  const f = (code: string) => ({ code, message: "m", retryable: false });
  it("a prepare that failed leaves a failed VM", () => {
    assert.equal(failed(vmAfter([]), p, f("image::not-found"), 1, { now: NOW }).state, "failed");
  });
  it("a prepare whose backend could not be reached leaves it unknown", () => {
    assert.equal(
      failed(vmAfter([]), p, f("propolis::unreachable"), 1, { now: NOW }).state,
      "unknown",
    );
  });
  it("anything else keeps the VM's state, unless told otherwise", () => {
    const vm = vmAfter(["vm.prepare", "vm.start"]);
    assert.equal(
      failed(vm, cmd({ type: "vm.stop" }), f("hypervisor::unreachable"), 1, { now: NOW }).state,
      "running",
    );
    assert.equal(
      failed(vm, cmd({ type: "vm.stop" }), f("x::y"), 1, { now: NOW }, { state: "unknown" }).state,
      "unknown",
    );
  });
});

describe("reconcile: a restarted worker asks the backend", () => {
  const later = { now: new Date(NOW.getTime() + 120_000), eventId: "vm1:obs:2" };
  it("given an interrupted start, when the backend says running, then vm.started (reconciled, forced)", () => {
    const r = reconcile(vmAfter(["vm.prepare", "vm.start"], true), { state: "running" }, ctx);
    assert.equal(r.kind, "resolve");
    assert.ok(r.kind === "resolve");
    assert.equal(r.event.type, "vm.started");
    assert.equal((r.event as { reconciled?: boolean }).reconciled, true);
  });
  it("given an interrupted stop that reached stopped, then vm.stopped how forced", () => {
    const r = reconcile(
      vmAfter(["vm.prepare", "vm.start", "vm.stop"], true),
      { state: "stopped" },
      ctx,
    );
    assert.ok(r.kind === "resolve");
    assert.equal(r.event.type, "vm.stopped");
    assert.equal((r.event as { how?: string }).how, "forced");
  });
  it("given an untouched VM with time left, then leave it to the command's redelivery", () => {
    const vm = vmAfter(["vm.prepare", "vm.start"], true);
    assert.deepEqual(reconcile(vm, { state: "prepared" }, ctx), { kind: "leave" });
  });
  it("given an untouched VM past its deadline, then worker::interrupted", () => {
    const r = reconcile(vmAfter(["vm.prepare", "vm.start"], true), { state: "prepared" }, later);
    assert.ok(r.kind === "resolve");
    assert.equal(r.event.type, "vm.command-failed");
    assert.equal((r.event as { code?: string }).code, "worker::interrupted");
    assert.equal(r.event.state, "prepared");
  });
  it("given an unreachable backend for a live VM, then unknown, never failed", () => {
    const r = reconcile(
      vmAfter(["vm.prepare", "vm.start", "vm.stop"], true),
      { state: "unknown", detail: "x::unreachable: gone" },
      later,
    );
    assert.ok(r.kind === "resolve");
    assert.equal(r.event.state, "unknown");
    assert.match((r.event as { message?: string }).message ?? "", /x::unreachable: gone/);
  });
  it("given an interrupted prepare the backend finished, then vm.prepared with the recorded handle", () => {
    const vm = vmAfter(["vm.prepare"], true);
    assert.equal(vm.handle, null);
    const r = reconcile(vm, { state: "prepared", recovered: handle }, ctx);
    assert.ok(r.kind === "resolve");
    assert.equal(r.event.type, "vm.prepared");
    assert.deepEqual((r.event as { handle?: VmHandle }).handle, handle);
  });
  it("given an interrupted prepare that left nothing, with time left, then leave it", () => {
    assert.deepEqual(reconcile(vmAfter(["vm.prepare"], true), { state: "destroyed" }, ctx), {
      kind: "leave",
    });
  });
  it("given no intent, a different state is drift; the same state or no handle is nothing", () => {
    const vm = vmAfter(["vm.prepare", "vm.start"]);
    const d = reconcile(vm, { state: "stopped" }, ctx);
    assert.ok(d.kind === "drift");
    assert.equal(d.event.type, "vm.state-observed");
    assert.deepEqual(reconcile(vm, { state: "running" }, ctx), { kind: "nothing" });
    assert.deepEqual(reconcile(given([]).vm, { state: "stopped" }, ctx), { kind: "nothing" });
  });
  it("what an interrupted prepare left, asked by vmId", () => {
    assert.equal(interruptedPrepareState("destroyed", false), "destroyed");
    assert.equal(interruptedPrepareState("unknown", false), "unknown");
    assert.equal(interruptedPrepareState("prepared", true), "prepared");
    assert.equal(
      interruptedPrepareState("prepared", false),
      "failed",
      "there, but without a record",
    );
    assert.equal(interruptedPrepareState("running", false), "failed");
  });
});
