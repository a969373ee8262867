/**
 * reconcile at its edges: when an intent counts as untouched, the one-second margin before its
 * deadline, what an interrupted command's failure records (state, message, flags), the spec of
 * an interrupted prepare resolved from the backend's record, and drift.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { CommandType, VmEvent } from "../../../src/contracts/index.js";
import {
  decide,
  emptyVm,
  evolve,
  interruptedPrepareState,
  observed,
  reconcile,
  succeeded,
  type Reconciliation,
  type Vm,
} from "../../../src/domain/index.js";
import { NOW, cmd, HANDLE as handle, SPEC as spec } from "../../helpers/decider-spec.js";

const START_BUDGET_MS = 5 * 60_000;
const ctxAt = (ms: number) => ({ now: new Date(NOW.getTime() + ms), eventId: "vm1:obs:r" });

/** The VM after these commands (accepted at NOW), the last one left pending. */
function interrupted(types: CommandType[], observe?: VmEvent["state"]): Vm {
  let vm = emptyVm("vm1", "h1");
  let seq = 0;
  types.forEach((type, i) => {
    if (observe && i === types.length - 1) {
      const o = observed(vm, observe, "reconcile", { now: NOW, eventId: `o${seq}` });
      if (o) vm = evolve(vm, o, ++seq);
    }
    const c = type === "vm.prepare" ? cmd({ type, spec }) : cmd({ type });
    const d = decide(c, vm, { now: NOW });
    assert.equal(d.kind, "accept", `${type} on ${vm.state ?? "(new)"}`);
    if (d.kind !== "accept") return;
    vm = evolve(vm, d.event, ++seq);
    if (i < types.length - 1) vm = evolve(vm, succeeded(vm, c, { handle }, { now: NOW }), ++seq);
  });
  return vm;
}

function resolved(r: Reconciliation): Record<string, unknown> {
  assert.equal(r.kind, "resolve", JSON.stringify(r));
  return r.kind === "resolve" ? { ...r.event } : {};
}

describe("interruptedPrepareState", () => {
  it("a backend record counts only for a prepared VM; anything else there is failed", () => {
    assert.equal(interruptedPrepareState("prepared", true), "prepared");
    assert.equal(interruptedPrepareState("running", true), "failed");
    assert.equal(interruptedPrepareState("stopped", true), "failed");
    assert.equal(interruptedPrepareState("destroyed", true), "destroyed");
  });
});

describe("reconcile: is the intent untouched, with time left?", () => {
  it("left alone until one second before its deadline, resolved from then on", () => {
    const vm = interrupted(["vm.prepare", "vm.start"]);
    const report = { state: "prepared" as const };
    assert.deepEqual(reconcile(vm, report, ctxAt(START_BUDGET_MS - 1_001)), { kind: "leave" });
    const r = resolved(reconcile(vm, report, ctxAt(START_BUDGET_MS - 1_000)));
    assert.equal(r.code, "worker::interrupted");
    resolved(reconcile(vm, report, ctxAt(START_BUDGET_MS - 500)));
  });

  it("a backend that cannot tell is not 'untouched': the intent is resolved", () => {
    // A start interrupted, and the backend cannot tell now: nothing says it did nothing.
    const vm = interrupted(["vm.prepare", "vm.start"]);
    const r = resolved(reconcile(vm, { state: "unknown" }, ctxAt(0)));
    assert.equal(r.type, "vm.command-failed");
    assert.equal(r.state, "prepared");
  });

  it("but a stop or destroy it cannot tell about is resumed while it has time: it escalates", () => {
    // A wedged QEMU answers no QMP: the redelivered stop goes on to SIGTERM and SIGKILL.
    for (const types of [
      ["vm.prepare", "vm.start", "vm.stop"],
      ["vm.prepare", "vm.start", "vm.destroy"],
    ] as CommandType[][]) {
      const vm = interrupted(types);
      const deadline = Date.parse(vm.pending?.deadline ?? "") - NOW.getTime();
      assert.deepEqual(reconcile(vm, { state: "unknown" }, ctxAt(0)), { kind: "leave" });
      assert.deepEqual(reconcile(vm, { state: "running" }, ctxAt(deadline - 1_001)), {
        kind: "leave",
      });
      const r = resolved(reconcile(vm, { state: "unknown" }, ctxAt(deadline - 1_000)));
      assert.equal(r.code, "worker::interrupted");
      assert.equal(r.state, "unknown");
    }
  });

  it("an intent without its command (an older snapshot) is left as it is", () => {
    const vm = { ...interrupted(["vm.prepare", "vm.start"]), pendingCommand: null };
    assert.deepEqual(reconcile(vm, { state: "running" }, ctxAt(0)), { kind: "nothing" });
  });
});

describe("reconcile: what an interrupted command's failure records", () => {
  const late = ctxAt(START_BUDGET_MS + 1);

  it("the backend's state, a message naming it, retryable, reconciled, attempt 1", () => {
    const vm = interrupted(["vm.prepare", "vm.start"]);
    const r = resolved(reconcile(vm, { state: "stopped" }, late));
    assert.deepEqual(
      {
        type: r.type,
        state: r.state,
        code: r.code,
        message: r.message,
        retryable: r.retryable,
        reconciled: r.reconciled,
        attempt: r.attempt,
      },
      {
        type: "vm.command-failed",
        state: "stopped",
        code: "worker::interrupted",
        message: "the worker stopped during vm.start; the backend now reports stopped",
        retryable: true,
        reconciled: true,
        attempt: 1,
      },
    );
  });

  it("a backend that cannot tell keeps a VM that is not live as recorded", () => {
    const vm = interrupted(["vm.prepare", "vm.start"]);
    const r = resolved(reconcile(vm, { state: "unknown", detail: "x::unreachable" }, late));
    assert.equal(r.state, "prepared");
    assert.equal(
      r.message,
      "the worker stopped during vm.start; the backend now reports unknown (x::unreachable)",
    );
  });

  it("and makes a live one unknown, suspended as well as running", () => {
    const vm = interrupted(["vm.prepare", "vm.start", "vm.suspend", "vm.stop"]);
    assert.equal(vm.state, "suspended");
    const r = resolved(reconcile(vm, { state: "unknown" }, ctxAt(60 * 60_000)));
    assert.equal(r.state, "unknown");
  });
});

describe("reconcile: an interrupted prepare the backend finished", () => {
  it("records the spec with the backend of the handle the backend kept", () => {
    const vm = interrupted(["vm.prepare"]);
    assert.equal(vm.spec?.backend, undefined);
    const r = resolved(reconcile(vm, { state: "prepared", recovered: handle }, ctxAt(0)));
    assert.equal(r.type, "vm.prepared");
    assert.equal(r.reconciled, true);
    assert.deepEqual(r.spec, { ...vm.spec, backend: "noop" });
  });
});

describe("reconcile: drift", () => {
  it("is recorded as observed by reconcile, with the backend's detail", () => {
    const vm = evolveAll(["vm.prepare", "vm.start"]);
    const d = reconcile(vm, { state: "stopped", detail: "qemu exited" }, ctxAt(0));
    assert.equal(d.kind, "drift");
    if (d.kind !== "drift" || d.event.type !== "vm.state-observed") return;
    assert.equal(d.event.source, "reconcile");
    assert.equal(d.event.detail, "qemu exited");
    assert.equal(d.event.previous, "running");
  });
});

/** The VM after these commands, all done. */
function evolveAll(types: CommandType[]): Vm {
  let vm = emptyVm("vm1", "h1");
  let seq = 0;
  for (const type of types) {
    const c = type === "vm.prepare" ? cmd({ type, spec }) : cmd({ type });
    const d = decide(c, vm, { now: NOW });
    if (d.kind !== "accept") throw new Error(`${type} not accepted`);
    vm = evolve(vm, d.event, ++seq);
    vm = evolve(vm, succeeded(vm, c, { handle }, { now: NOW }), ++seq);
  }
  return vm;
}

describe("reconcile: an interrupted export of the disk", () => {
  const EXPORT_BUDGET_MS = 60 * 60_000;
  it("is left to its redelivery while it has time, then fails: never resolved from the state", () => {
    const vm = interrupted(["vm.prepare", "vm.start", "vm.stop", "vm.export-disk"]);
    assert.equal(vm.state, "stopped");
    assert.deepEqual(reconcile(vm, { state: "stopped" }, ctxAt(0)), { kind: "leave" });
    // Past its deadline the backend's "stopped" is where it began, not a sign it was sent.
    const r = resolved(reconcile(vm, { state: "stopped" }, ctxAt(EXPORT_BUDGET_MS)));
    assert.equal(r.type, "vm.command-failed");
    assert.equal(r.code, "worker::interrupted");
    assert.equal(r.state, "stopped");
  });
});
