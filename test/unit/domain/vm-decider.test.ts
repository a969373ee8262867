import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { CommandType, VmEvent, VmState } from "../../../src/contracts/index.js";
import {
  COMMAND_TYPES,
  VmEvent as VmEventSchema,
  VmState as VmStateSchema,
} from "../../../src/contracts/index.js";
import { emptyVm, evolve, failed, succeeded, type Vm } from "../../../src/domain/index.js";
import {
  HANDLE as handle,
  NOW,
  SPEC as spec,
  acceptedEvent,
  cmd,
  given,
} from "../../helpers/decider-spec.js";

function commandOf(type: CommandType) {
  return type === "vm.prepare" ? cmd({ type, spec }) : cmd({ type });
}

/** Runs a command all the way (accept + success) and returns the events, to build histories. */
function run(vm: Vm, type: CommandType, seq: number): { vm: Vm; events: VmEvent[] } {
  const c = commandOf(type);
  const a = acceptedEvent(vm, c, seq);
  const v1 = evolve(vm, a, seq);
  const out = succeeded(v1, c, { handle, how: "acpi" }, { now: NOW });
  return { vm: evolve(v1, out, seq + 1), events: [a, out] };
}

/** A history that leaves the VM in `state`. */
function historyFor(state: VmState | null): VmEvent[] {
  const paths: Record<string, CommandType[]> = {
    prepared: ["vm.prepare"],
    running: ["vm.prepare", "vm.start"],
    suspended: ["vm.prepare", "vm.start", "vm.suspend"],
    stopped: ["vm.prepare", "vm.start", "vm.stop"],
    destroyed: ["vm.prepare", "vm.destroy"],
  };
  if (state === null) return [];
  let vm = emptyVm("vm1", "h1");
  const events: VmEvent[] = [];
  let seq = 1;
  if (state === "failed" || state === "unknown" || state === "preparing") {
    const r = run(vm, "vm.prepare", seq);
    vm = r.vm;
    events.push(...r.events);
    const obs: VmEvent = {
      type: "vm.state-observed",
      version: 1,
      eventId: "obs",
      vmId: "vm1",
      host: "h1",
      at: NOW.toISOString(),
      causationId: null,
      correlationId: null,
      state,
      observed: state,
      previous: "prepared",
      source: "reconcile",
    };
    return [...events, obs];
  }
  for (const t of paths[state] ?? []) {
    const r = run(vm, t, seq);
    seq += 2;
    vm = r.vm;
    events.push(...r.events);
  }
  return events;
}

/**
 * The expected answer of decide() for every (state, command) pair, written out by hand and NOT
 * derived from TRANSITIONS (the table the code itself uses): a change to the table must show up
 * here as a failing pair, not as a test that renames itself.
 *   A: accepted   E: vm::exists   N: vm::not-found   I: command::illegal-transition
 */
type Expect = "A" | "E" | "N" | "I";
const COLUMNS = [
  null,
  "preparing",
  "prepared",
  "running",
  "suspended",
  "stopped",
  "failed",
  "destroyed",
  "unknown",
] as const satisfies readonly (VmState | null)[];
// prettier-ignore
const GRID: Record<CommandType, readonly Expect[]> = {
  //             new  preparing prepared running suspended stopped failed destroyed unknown
  "vm.prepare": ["A", "E",      "E",     "E",    "E",      "E",    "E",   "A",      "E"],
  "vm.start":   ["N", "I",      "A",     "I",    "I",      "A",    "I",   "I",      "I"],
  "vm.suspend": ["N", "I",      "I",     "A",    "I",      "I",    "I",   "I",      "I"],
  "vm.resume":  ["N", "I",      "I",     "I",    "A",      "I",    "I",   "I",      "I"],
  "vm.stop":    ["N", "I",      "I",     "A",    "A",      "I",    "I",   "I",      "I"],
  "vm.destroy": ["N", "A",      "A",     "A",    "A",      "A",    "A",   "A",      "A"],
  "vm.export-disk": ["N", "I",  "A",     "I",    "I",      "A",    "I",   "I",      "I"],
};
/** Where a successful command leaves the VM, also by hand (null: where it was). */
const TARGET: Record<CommandType, VmState | null> = {
  "vm.prepare": "prepared",
  "vm.start": "running",
  "vm.suspend": "suspended",
  "vm.resume": "running",
  "vm.stop": "stopped",
  "vm.destroy": "destroyed",
  "vm.export-disk": null,
};
const disk = {
  nuid: "vmqx0123456789abcdefaa",
  chunks: 1,
  size: 10,
  digest: `sha256:${"a".repeat(64)}`,
  format: "placeholder",
} as const;
const CODE = {
  E: "vm::exists",
  N: "vm::not-found",
  I: "command::illegal-transition",
} as const;
const label = (s: VmState | null): string => s ?? "(new)";

describe("decide: every (state, command) pair", () => {
  it("the grid covers every command type and every state of the contracts", () => {
    assert.deepEqual(Object.keys(GRID).sort(), [...COMMAND_TYPES].sort());
    assert.deepEqual(COLUMNS.filter((s) => s !== null).sort(), [...VmStateSchema.options].sort());
    for (const row of Object.values(GRID)) assert.equal(row.length, COLUMNS.length);
  });

  for (const type of COMMAND_TYPES) {
    const row = GRID[type];
    const allowedFrom = COLUMNS.filter((_, i) => row[i] === "A").map(label);
    COLUMNS.forEach((state, i) => {
      const expect = row[i] ?? "?";
      if (expect === "?") throw new Error(`GRID row ${type} is short`);
      const what = expect === "A" ? "accepted" : `rejected with ${CODE[expect]}`;
      it(`${type} on ${label(state)} is ${what}`, () => {
        const g = given(historyFor(state));
        assert.equal(g.vm.state, state);
        const t = g.when(commandOf(type));
        if (expect === "A") {
          const e = t.thenAccepted();
          assert.equal(e.command.type, type);
          assert.equal(e.state, type === "vm.prepare" ? "preparing" : state);
          assert.ok(VmEventSchema.safeParse(e).success, "the intent event satisfies its schema");
          const done = evolve(g.vm, e, g.vm.version + 1);
          const out = succeeded(done, e.command, { handle, how: "acpi", disk }, { now: NOW });
          assert.ok(VmEventSchema.safeParse(out).success, "the outcome satisfies its schema");
          assert.equal(evolve(done, out, g.vm.version + 2).state, TARGET[type] ?? state);
        } else if (expect === "I") {
          // The message names the current state and, from the grid, where the command may start.
          t.thenRejected(CODE.I, [`in state ${label(state)};`]);
          const { message } = (t.decision as { rejection: { message: string } }).rejection;
          const listed = message.split("allowed from: ")[1]?.split(", ") ?? [];
          assert.deepEqual(listed.sort(), [...allowedFrom].sort(), message);
        } else {
          t.thenRejected(CODE[expect], ["vm1"]);
        }
      });
    });
  }
});

describe("decide: idempotency and concurrency rules", () => {
  it("a repeated commandId decides nothing new", () => {
    const events = historyFor("running");
    const g = given(events);
    const first = (events[2] as Extract<VmEvent, { type: "vm.command-accepted" }>).command; // the start command
    g.when(first).thenNothingHappened();
  });

  it("a rejected commandId is also never decided again", () => {
    const g0 = given(historyFor("prepared"));
    const stop = cmd({ type: "vm.stop" });
    const d = g0.when(stop);
    assert.equal(d.decision.kind, "reject");
    const rejected = (d.decision as { event: VmEvent }).event;
    given([...historyFor("prepared"), rejected])
      .when(stop)
      .thenNothingHappened();
  });

  it("an intent without an outcome resumes instead of starting twice", () => {
    const h = historyFor("prepared");
    const start = cmd({ type: "vm.start" });
    const accepted = given(h).when(start).thenAccepted();
    const d = given([...h, accepted]).when(start).decision;
    assert.equal(d.kind, "resume");
  });

  it("a different command while another is pending is refused, naming the busy command", () => {
    const h = historyFor("prepared");
    const start = cmd({ type: "vm.start" });
    const accepted = given(h).when(start).thenAccepted();
    given([...h, accepted])
      .when(cmd({ type: "vm.destroy" }))
      .thenRejected("command::illegal-transition", [start.commandId]);
  });

  it("expectedVersion must match the VM's last event sequence", () => {
    const h = historyFor("prepared"); // two events: seq 1, 2
    given(h)
      .when(cmd({ type: "vm.start", expectedVersion: 1 }))
      .thenRejected("command::version-conflict", ["1", "2"]);
    given(h)
      .when(cmd({ type: "vm.start", expectedVersion: 2 }))
      .thenAccepted();
  });

  it("a command whose notAfter has passed is rejected command::expired, before any other check", () => {
    const h = historyFor("prepared");
    const past = new Date(NOW.getTime() - 1).toISOString();
    given(h)
      .when(cmd({ type: "vm.start", notAfter: past }))
      .thenRejected("command::expired", [past]);
    // Expiry comes first: even a command that would conflict says it expired.
    given(h)
      .when(cmd({ type: "vm.start", notAfter: past, expectedVersion: 9 }))
      .thenRejected("command::expired");
    given(h)
      .when(cmd({ type: "vm.start", notAfter: NOW.toISOString() }))
      .thenAccepted();
  });

  it("an accepted command is resumed after a crash even when its notAfter has passed", () => {
    const h = historyFor("prepared");
    const start = cmd({ type: "vm.start", notAfter: NOW.toISOString() });
    const accepted = given(h).when(start).thenAccepted();
    const later = { ...start, notAfter: new Date(NOW.getTime() - 60_000).toISOString() };
    assert.equal(given([...h, accepted]).when(later).decision.kind, "resume");
  });

  it("a destroyed VM may be prepared again", () => {
    given(historyFor("destroyed"))
      .when(cmd({ type: "vm.prepare", spec }))
      .thenAccepted();
  });

  it("the intent's deadline is the stop timeout plus escalation", () => {
    const e = given(historyFor("running"))
      .when(cmd({ type: "vm.stop", timeoutMs: 1000 }))
      .thenAccepted();
    assert.equal(new Date(e.deadline).getTime() - NOW.getTime(), 16_000);
  });
});

describe("evolve", () => {
  it("tracks pending, handle and state through accept and outcome", () => {
    const h = historyFor("prepared");
    const start = cmd({ type: "vm.start", correlationId: "deploy-1" });
    const g = given(h);
    const accepted = g.when(start).thenAccepted();
    const v1 = evolve(g.vm, accepted, 10);
    assert.equal(v1.pending?.commandId, start.commandId);
    assert.equal(v1.version, 10);
    const out = succeeded(v1, start, { handle: { ...handle, pid: 42 } }, { now: NOW });
    assert.equal(out.correlationId, "deploy-1");
    const v2 = evolve(v1, out, 11);
    assert.equal(v2.state, "running");
    assert.equal(v2.pending, null);
    assert.equal(v2.handle?.pid, 42);
    assert.ok(v2.seenCommands.has(start.commandId));
  });

  it("the image a VM was prepared from stays in its handle when the backend's handles omit it", () => {
    const digest = `sha256:${"ab".repeat(32)}`;
    const p = cmd({ type: "vm.prepare", spec });
    let vm = evolve(emptyVm("vm1", "h1"), acceptedEvent(emptyVm("vm1", "h1"), p, 1), 1);
    vm = evolve(
      vm,
      succeeded(vm, p, { handle: { ...handle, imageDigest: digest } }, { now: NOW }),
      2,
    );
    const start = cmd({ type: "vm.start" });
    vm = evolve(vm, acceptedEvent(vm, start, 3), 3);
    // The backend answers with its own record of the VM, which never had the digest.
    const out = succeeded(vm, start, { handle: { ...handle, pid: 42 } }, { now: NOW });
    assert.equal(
      out.type === "vm.started" && out.handle?.imageDigest,
      digest,
      "the event keeps it",
    );
    vm = evolve(vm, out, 4);
    assert.deepEqual([vm.handle?.pid, vm.handle?.imageDigest], [42, digest]);
    // A history recorded before this rule (a started event without it) folds the same way.
    const old = { ...out, handle: { ...handle, pid: 43 } };
    const replayed = evolve(evolve(vm, acceptedEvent(vm, start, 5), 5), old, 6);
    assert.deepEqual([replayed.handle?.pid, replayed.handle?.imageDigest], [43, digest]);
  });

  it("a failed prepare leaves the VM failed, which only destroy leaves", () => {
    const p = cmd({ type: "vm.prepare", spec });
    const g = given([]);
    const accepted = g.when(p).thenAccepted();
    const v1 = evolve(g.vm, accepted, 1);
    const f = failed(
      v1,
      p,
      { code: "image::not-found", message: "no image", retryable: false },
      1,
      { now: NOW },
    );
    const v2 = evolve(v1, f, 2);
    assert.equal(v2.state, "failed");
    assert.equal(v2.pending, null);
    assert.ok(VmEventSchema.safeParse(f).success);
  });

  it("a destroyed VM keeps its handle and spec, but not its cloud-init data", () => {
    let vm = emptyVm("vm1", "h1");
    const withUserData = { ...spec, cloudInit: { userData: "#cloud-config\npassword: x\n" } };
    const p = cmd({ type: "vm.prepare", spec: withUserData });
    const accepted = given([]).when(p).thenAccepted();
    vm = evolve(vm, accepted, 1);
    vm = evolve(vm, succeeded(vm, p, { handle }, { now: NOW }), 2);
    assert.equal(
      vm.spec?.cloudInit?.userData,
      withUserData.cloudInit.userData,
      "kept while it lives",
    );
    const d = run(vm, "vm.destroy", 3).vm;
    assert.equal(d.state, "destroyed");
    assert.equal(d.spec?.cloudInit, undefined);
    assert.equal(d.spec?.imagePath, spec.imagePath, "the rest of the spec stays");
    assert.deepEqual(d.handle, handle, "a second destroy still reaches the VM's own backend");
    assert.ok(d.seenCommands.has(p.commandId));
  });
});
