/**
 * What the decider's events say, field by field: deterministic event ids (the Nats-Msg-Id that
 * makes a re-append a no-op), deadlines, the state a rejection or failure records, hints from
 * the error-code table, readable messages, and the outcome event of each command type. Also the
 * host's refusals and observed changes, which build the same events.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  ERROR_CODES,
  VmEvent as VmEventSchema,
  type Command,
  type CommandOf,
  type CommandType,
  type VmEvent,
} from "../../../src/contracts/index.js";
import {
  decide,
  emptyVm,
  eventIdFor,
  evolve,
  failed,
  observed,
  observedChange,
  refusal,
  rejectInvalid,
  rejected,
  succeeded,
  type HostFacts,
  type Vm,
} from "../../../src/domain/index.js";
import { NOW, cmd, HANDLE as handle, SPEC as spec } from "../../helpers/decider-spec.js";

const ctx = { now: NOW };
const at = (ms: number) => new Date(NOW.getTime() + ms).toISOString();

/** Runs commands to their outcomes through decide/succeeded/evolve; the last may stay pending. */
function vmAfter(types: CommandType[], opts: { pendingLast?: boolean; specOf?: object } = {}): Vm {
  let vm = emptyVm("vm1", "h1");
  let seq = 0;
  types.forEach((type, i) => {
    const c =
      type === "vm.prepare" ? cmd({ type, spec: { ...spec, ...opts.specOf } }) : cmd({ type });
    const d = decide(c, vm, ctx);
    assert.equal(d.kind, "accept", `${type} on ${vm.state ?? "(new)"}`);
    if (d.kind !== "accept") return;
    vm = evolve(vm, d.event, ++seq);
    if (opts.pendingLast && i === types.length - 1) return;
    vm = evolve(vm, succeeded(vm, c, { handle }, ctx), ++seq);
  });
  return vm;
}

const valid = (e: VmEvent) => {
  const r = VmEventSchema.safeParse(e);
  assert.equal(r.success, true, r.success ? "" : JSON.stringify(r.error.issues));
};

describe("event ids are deterministic: <vmId>:<commandId>:accepted | outcome", () => {
  it("the intent, a rejection, a success and a failure of a command", () => {
    const start = cmd({ type: "vm.start" });
    const vm = vmAfter(["vm.prepare"]);
    assert.equal(eventIdFor("vm1", "c-9", "accepted"), "vm1:c-9:accepted");
    assert.equal(eventIdFor("vm1", "c-9", "outcome"), "vm1:c-9:outcome");

    const accept = decide(start, vm, ctx);
    assert.equal(
      accept.kind === "accept" && accept.event.eventId,
      `vm1:${start.commandId}:accepted`,
    );
    const outcome = `vm1:${start.commandId}:outcome`;
    const r = rejected(vm, start, { code: "vm::exists", message: "m" }, ctx);
    assert.equal(r.eventId, outcome);
    assert.equal(succeeded(vm, start, { handle }, ctx).eventId, outcome);
    const f = failed(vm, start, { code: "x::y", message: "m", retryable: false }, 1, ctx);
    assert.equal(f.eventId, outcome);
  });

  it("bad input: <vmId>:invalid:<stream seq>, whatever commandId it claims", () => {
    const e = rejectInvalid(
      emptyVm("vm1", "h1"),
      { commandId: "c1", code: "command::invalid", message: "m", streamSeq: 42 },
      ctx,
    );
    assert.equal(e.eventId, "vm1:invalid:42");
  });
});

describe("deadlines", () => {
  it("a destroy gets its timeout plus the escalation, like a stop", () => {
    const d = decide(cmd({ type: "vm.destroy", timeoutMs: 2_000 }), vmAfter(["vm.prepare"]), ctx);
    assert.equal(d.kind === "accept" && d.event.deadline, at(17_000));
  });
  it("other commands get their budget: the context's when it gives one, else the default", () => {
    const vm = vmAfter(["vm.prepare"]);
    const start = cmd({ type: "vm.start" });
    const byDefault = decide(start, vm, ctx);
    assert.equal(byDefault.kind === "accept" && byDefault.event.deadline, at(5 * 60_000));
    const custom = decide(start, vm, { now: NOW, budgets: { "vm.start": 1_234 } });
    assert.equal(custom.kind === "accept" && custom.event.deadline, at(1_234));
  });
});

describe("rejections", () => {
  it("on a VM that never existed record it as destroyed (absent), a state the schema accepts", () => {
    const d = decide(cmd({ type: "vm.start" }), emptyVm("vm1", "h1"), ctx);
    assert.equal(d.kind, "reject");
    if (d.kind !== "reject") return;
    assert.equal(d.event.state, "destroyed");
    valid(d.event);
  });

  it("an illegal transition names the command, the state and every state it is allowed from", () => {
    const d = decide(cmd({ type: "vm.start" }), vmAfter(["vm.prepare", "vm.start"]), ctx);
    assert.equal(
      d.kind === "reject" && d.rejection.message,
      "cannot start VM vm1 in state running; allowed from: prepared, stopped",
    );
  });

  it("carry the hint of their code from the error-code table", () => {
    const d = decide(cmd({ type: "vm.start" }), vmAfter(["vm.prepare", "vm.start"]), ctx);
    assert.equal(d.kind, "reject");
    if (d.kind !== "reject") return;
    assert.equal(d.event.hint, ERROR_CODES["command::illegal-transition"].hint);
    assert.equal(d.event.state, "running", "a rejection keeps the VM's state");
  });

  it("of bad input carry the hint of their code, and none for a code the table lacks", () => {
    const vm = emptyVm("vm1", "h1");
    const known = rejectInvalid(vm, { code: "command::not-json", message: "m", streamSeq: 1 }, ctx);
    assert.equal(known.hint, ERROR_CODES["command::not-json"].hint);
    const unknown = rejectInvalid(vm, { code: "x::unheard-of", message: "m", streamSeq: 2 }, ctx);
    assert.equal(Object.hasOwn(unknown, "hint"), false);
    const r = rejected(
      vmAfter(["vm.prepare"]),
      cmd({ type: "vm.start" }),
      {
        code: "x::unheard-of" as "vm::exists",
        message: "m",
      },
      ctx,
    );
    assert.equal(Object.hasOwn(r, "hint"), false);
  });

  it("of bad input: no commandId gives an empty one and no causation; a valid one is the cause", () => {
    const vm = emptyVm("vm1", "h1");
    const none = rejectInvalid(vm, { code: "command::invalid", message: "m", streamSeq: 3 }, ctx);
    assert.equal(none.commandId, "");
    assert.equal(none.causationId, null);
    valid(none);
    const bad = rejectInvalid(
      vm,
      { commandId: "tab\tin it", code: "command::invalid", message: "m", streamSeq: 4 },
      ctx,
    );
    assert.equal(bad.commandId, "tab\tin it");
    assert.equal(bad.causationId, null, "an invalid commandId is no causation");
    const ok = rejectInvalid(
      vm,
      { commandId: "c-1", code: "command::invalid", message: "m", streamSeq: 5 },
      ctx,
    );
    assert.equal(ok.causationId, "c-1");
  });

  it("of bad input record the VM's state, or destroyed (absent) when it has none", () => {
    const info = { code: "command::invalid", message: "m", streamSeq: 6 };
    assert.equal(rejectInvalid(emptyVm("vm1", "h1"), info, ctx).state, "destroyed");
    assert.equal(rejectInvalid(vmAfter(["vm.prepare"]), info, ctx).state, "prepared");
  });
});

describe("outcome events of a successful backend call", () => {
  const outcomeOf = (c: Command, vm: Vm, result: Parameters<typeof succeeded>[2] = { handle }) =>
    succeeded(vm, c, result, ctx);

  it("a prepare needs the backend's handle", () => {
    assert.throws(() => outcomeOf(cmd({ type: "vm.prepare", spec }), vmAfter([]), {}), {
      name: "TypeError",
      message: /needs a handle/,
    });
  });

  it("a prepare records the spec the backend ran (defaults filled in), else the command's", () => {
    const p = cmd({ type: "vm.prepare", spec }) as CommandOf<"vm.prepare">;
    const ran = { ...p.spec, backend: "noop" as const };
    const e1 = outcomeOf(p, vmAfter([]), { handle, spec: ran });
    assert.equal(e1.type === "vm.prepared" && e1.spec?.backend, "noop");
    const e2 = outcomeOf(p, vmAfter([]), { handle });
    assert.deepEqual(e2.type === "vm.prepared" && e2.spec, p.spec);
  });

  it("each command type has its own event and target state", () => {
    const cases: [CommandType, CommandType[], string, string][] = [
      ["vm.start", ["vm.prepare"], "vm.started", "running"],
      ["vm.suspend", ["vm.prepare", "vm.start"], "vm.suspended", "suspended"],
      ["vm.resume", ["vm.prepare", "vm.start", "vm.suspend"], "vm.resumed", "running"],
      ["vm.stop", ["vm.prepare", "vm.start"], "vm.stopped", "stopped"],
      ["vm.destroy", ["vm.prepare"], "vm.destroyed", "destroyed"],
    ];
    for (const [type, before, event, state] of cases) {
      const e = outcomeOf(cmd({ type }), vmAfter(before));
      assert.equal(e.type, event, type);
      assert.equal(e.state, state, type);
      assert.equal(Object.hasOwn(e, "reconciled"), false, "only a restarted worker reconciles");
      valid(e);
    }
  });

  it("carries the handle the backend returned, and none when it returned none", () => {
    const vm = vmAfter(["vm.prepare", "vm.start", "vm.suspend"]);
    const withPid = { ...handle, pid: 7 };
    const e = outcomeOf(cmd({ type: "vm.resume" }), vm, { handle: withPid });
    assert.deepEqual(e.type === "vm.resumed" && e.handle, withPid);
    const bare = outcomeOf(cmd({ type: "vm.resume" }), vm, {});
    assert.equal(Object.hasOwn(bare, "handle"), false);
  });

  it("a stop records the step that ended it, or forced when the backend did not say", () => {
    const vm = vmAfter(["vm.prepare", "vm.start"]);
    const acpi = outcomeOf(cmd({ type: "vm.stop" }), vm, { handle, how: "acpi" });
    assert.equal(acpi.type === "vm.stopped" && acpi.how, "acpi");
    const unsaid = outcomeOf(cmd({ type: "vm.stop" }), vm, { handle });
    assert.equal(unsaid.type === "vm.stopped" && unsaid.how, "forced");
  });
});

describe("failure events", () => {
  const f = (code: string, hint?: string) => ({
    code,
    message: "m",
    retryable: false,
    ...(hint ? { hint } : {}),
  });

  it("a command other than prepare failing on a VM with no state records it as failed", () => {
    // e.g. a start dead-lettered after its recording failed on every delivery
    const e = failed(emptyVm("vm1", "h1"), cmd({ type: "vm.start" }), f("x::y"), 5, ctx);
    assert.equal(e.state, "failed");
    assert.equal(e.attempt, 5);
  });

  it("the failure's own hint wins; else the code's hint; else none", () => {
    const vm = vmAfter(["vm.prepare"]);
    const start = cmd({ type: "vm.start" });
    const own = failed(vm, start, f("hypervisor::failed", "look at qemu.log"), 1, ctx);
    assert.equal(own.hint, "look at qemu.log");
    const table = failed(vm, start, f("hypervisor::failed"), 1, ctx);
    assert.equal(table.hint, ERROR_CODES["hypervisor::failed"].hint);
    const none = failed(vm, start, f("x::unheard-of"), 1, ctx);
    assert.equal(Object.hasOwn(none, "hint"), false);
    valid(none);
  });
});

describe("observations", () => {
  const obs = { now: NOW, eventId: "vm1:obs:1" };

  it("a VM with no state yet was unknown before", () => {
    const e = observed(emptyVm("vm1", "h1"), "running", "process", obs);
    assert.equal(e?.previous, "unknown");
  });

  it("the same state with a new handle is still worth recording; without one it is nothing", () => {
    const vm = vmAfter(["vm.prepare", "vm.start"]);
    const moved = { ...handle, pid: 99 };
    const e = observed(vm, "running", "process", obs, { handle: moved });
    assert.deepEqual(e?.handle, moved);
    assert.equal(observed(vm, "running", "process", obs), undefined);
  });

  it("observedChange: a change carries the backend's handle; no change records nothing, handle or not", () => {
    const vm = vmAfter(["vm.prepare", "vm.start"]);
    const moved = { ...handle, pid: 99 };
    const e = observedChange(vm, { state: "stopped", source: "process", handle: moved }, obs);
    assert.deepEqual(e?.handle, moved);
    assert.equal(
      observedChange(vm, { state: "running", source: "process", handle: moved }, obs),
      undefined,
    );
  });
});

describe("refusals name what is missing", () => {
  const facts: HostFacts = {
    host: "h1",
    backends: ["noop", "propolis"],
    defaultBackend: "noop",
    canSuspend: (tag) => tag !== "noop",
  };

  it("a prepare for a backend the host lacks lists the host's backends", () => {
    const r = refusal(
      cmd({ type: "vm.prepare", spec: { ...spec, backend: "qemu" } }),
      vmAfter([]),
      facts,
    );
    assert.deepEqual(r, {
      code: "hypervisor::backend-unavailable",
      message: "backend qemu is not configured on host h1 (it has noop, propolis)",
    });
  });

  it("a VM whose backend the host lost", () => {
    const vm = vmAfter(["vm.prepare"]);
    const r = refusal(cmd({ type: "vm.start" }), vm, { ...facts, backends: ["propolis"] });
    assert.deepEqual(r, {
      code: "hypervisor::backend-unavailable",
      message: "VM vm1 runs on backend noop, which is not configured on host h1",
    });
  });

  it("a backend that cannot suspend or resume says which", () => {
    const vm = vmAfter(["vm.prepare", "vm.start"]);
    assert.deepEqual(refusal(cmd({ type: "vm.suspend" }), vm, facts), {
      code: "hypervisor::unsupported",
      message: "backend noop cannot suspend a VM",
    });
  });

  it("a VM without a handle (its prepare failed) is judged by its spec's backend", () => {
    const p = cmd({ type: "vm.prepare", spec: { ...spec, backend: "qemu" } });
    let vm = emptyVm("vm1", "h1");
    const d = decide(p, vm, ctx);
    assert.equal(d.kind, "accept");
    if (d.kind !== "accept") return;
    vm = evolve(vm, d.event, 1);
    vm = evolve(vm, failed(vm, p, { code: "x::y", message: "m", retryable: false }, 1, ctx), 2);
    assert.equal(vm.handle, null);
    assert.equal(vm.state, "failed");
    const r = refusal(cmd({ type: "vm.destroy" }), vm, facts);
    assert.equal(r?.code, "hypervisor::backend-unavailable");
    assert.equal(
      refusal(cmd({ type: "vm.destroy" }), vm, { ...facts, backends: ["qemu"] }),
      undefined,
    );
  });

  it("a VM with neither handle nor spec gives nothing to refuse", () => {
    assert.equal(refusal(cmd({ type: "vm.destroy" }), emptyVm("vm1", "h1"), facts), undefined);
  });
});
