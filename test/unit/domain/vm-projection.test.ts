/**
 * evolve, the fold that serves the live path and replay alike, field by field: what a second
 * prepare resets, where handles and specs come from, which outcome clears the pending intent,
 * and what the idempotency set holds.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { CommandOf, VmEvent } from "../../../src/contracts/index.js";
import {
  decide,
  emptyVm,
  evolve,
  observed,
  rejectInvalid,
  succeeded,
  withoutUserData,
  toView,
  notLive,
  type Vm,
} from "../../../src/domain/index.js";
import { NOW, cmd, HANDLE as handle, SPEC as spec } from "../../helpers/decider-spec.js";

const ctx = { now: NOW };

/** A tiny event log: accept(c) appends the intent, then(e) any event, each at the next seq. */
function history() {
  let vm = emptyVm("vm1", "h1");
  let seq = 0;
  const h = {
    get vm(): Vm {
      return vm;
    },
    accept(c: ReturnType<typeof cmd>) {
      const d = decide(c, vm, ctx);
      assert.equal(d.kind, "accept", `${c.type} on ${vm.state ?? "(new)"}`);
      if (d.kind === "accept") vm = evolve(vm, d.event, ++seq);
      return h;
    },
    then(e: VmEvent) {
      vm = evolve(vm, e, ++seq);
      return h;
    },
    run(c: ReturnType<typeof cmd>, result: Parameters<typeof succeeded>[2] = { handle }) {
      h.accept(c);
      return h.then(succeeded(vm, c, result, ctx));
    },
  };
  return h;
}

describe("evolve", () => {
  it("counts the VM's own events (1, 2, 3...) whatever the stream sequence, into the view", () => {
    let vm = emptyVm("vm1", "h1");
    const c = cmd({ type: "vm.prepare", spec });
    const d = decide(c, vm, ctx);
    assert.equal(d.kind, "accept");
    if (d.kind !== "accept") return;
    // Other VMs' events fill the stream between this VM's: seqs 7 and 40.
    vm = evolve(vm, d.event, 7);
    assert.equal(vm.eventCount, 1);
    vm = evolve(vm, succeeded(vm, c, { handle }, ctx), 40);
    assert.equal(vm.eventCount, 2);
    assert.equal(vm.version, 40, "the stream sequence stays the expectedVersion");
    const info = { code: "command::invalid", message: "bad", streamSeq: 41 };
    vm = evolve(vm, rejectInvalid(vm, info, ctx), 41);
    assert.equal(vm.eventCount, 3, "a rejection is one of its events too");
    const view = toView(vm);
    assert.equal(view?.eventCount, 3);
    assert.equal(view?.lastEventSeq, 41);
  });

  it("a prepare after a destroy starts from its own spec, without the old handle", () => {
    const h = history().run(cmd({ type: "vm.prepare", spec }));
    h.run(cmd({ type: "vm.destroy" }));
    assert.deepEqual(h.vm.handle, handle, "a destroyed VM keeps its handle");
    const again = { ...spec, name: "web-2" };
    h.accept(cmd({ type: "vm.prepare", spec: again }));
    assert.equal(h.vm.state, "preparing");
    assert.equal(h.vm.handle, null);
    assert.equal(h.vm.spec?.name, "web-2");
  });

  it("a destroyed VM's handle and view drop what only a live VM has (pid, sockets, VNC, SSH port)", () => {
    const live = {
      ...handle,
      pid: 4242,
      qmpSocket: "/d/vm1/qmp.sock",
      consoleSocket: "/d/vm1/console.sock",
      vncAddr: "127.0.0.1:5900",
      sshHostPort: 2222,
    };
    const h = history().run(cmd({ type: "vm.prepare", spec }));
    h.run(cmd({ type: "vm.start" }), { handle: live });
    assert.equal(toView(h.vm)?.handle?.pid, 4242, "a running VM's view has its pid");
    h.run(cmd({ type: "vm.destroy" }), {});
    assert.deepEqual(h.vm.handle, handle, "backend, id and work dir stay for a second destroy");
    const view = toView(h.vm);
    assert.equal(view?.state, "destroyed");
    assert.deepEqual(view?.handle, handle);
    assert.equal(notLive(null), null);
  });

  it("vm.prepared records the spec the backend ran (its defaults filled in)", () => {
    const p = cmd({ type: "vm.prepare", spec }) as CommandOf<"vm.prepare">;
    const h = history().run(p, { handle, spec: { ...p.spec, backend: "noop" } });
    assert.equal(h.vm.spec?.backend, "noop");
    const bare = history().accept(p);
    const { spec: _dropped, ...withoutSpec } = succeeded(bare.vm, p, { handle }, ctx) as Extract<
      VmEvent,
      { type: "vm.prepared" }
    >;
    bare.then(withoutSpec);
    assert.deepEqual(bare.vm.spec, p.spec, "an old vm.prepared without spec keeps the intent's");
  });

  it("vm.state-observed with a handle replaces it; without one keeps it", () => {
    const h = history().run(cmd({ type: "vm.prepare", spec }));
    h.run(cmd({ type: "vm.start" }));
    const moved = { ...handle, pid: 4242 };
    h.then(observed(h.vm, "running", "process", { now: NOW, eventId: "o1" }, { handle: moved })!);
    assert.deepEqual(h.vm.handle, moved);
    h.then(observed(h.vm, "stopped", "process", { now: NOW, eventId: "o2" })!);
    assert.deepEqual(h.vm.handle, moved);
    assert.equal(h.vm.state, "stopped");
  });

  it("only the pending command's own outcome clears it; another command's rejection does not", () => {
    const h = history().run(cmd({ type: "vm.prepare", spec }));
    const start = cmd({ type: "vm.start" });
    h.accept(start);
    const busy = cmd({ type: "vm.destroy" });
    const d = decide(busy, h.vm, ctx);
    assert.equal(d.kind, "reject");
    if (d.kind !== "reject") return;
    h.then(d.event);
    assert.equal(h.vm.pending?.commandId, start.commandId);
    assert.equal(h.vm.pendingCommand?.commandId, start.commandId);
    assert.equal(h.vm.seenCommands.has(busy.commandId), true);
    h.then(succeeded(h.vm, start, { handle }, ctx));
    assert.equal(h.vm.pending, null);
    assert.equal(h.vm.pendingCommand, null);
  });

  it("bad input without a valid commandId adds nothing to the idempotency set", () => {
    const h = history().run(cmd({ type: "vm.prepare", spec }));
    const before = [...h.vm.seenCommands];
    h.then(rejectInvalid(h.vm, { code: "command::invalid", message: "m", streamSeq: 9 }, ctx));
    assert.deepEqual([...h.vm.seenCommands], before);
    assert.equal(h.vm.state, "prepared");
  });
});

describe("withoutUserData", () => {
  it("drops the cloud-init data only, and passes a missing spec through", () => {
    assert.equal(withoutUserData(null), null);
    const plain = { ...spec, network: { type: "user" as const }, uefi: false };
    assert.deepEqual(withoutUserData(plain), plain);
    const secret = { ...plain, cloudInit: { userData: "#cloud-config\n" } };
    assert.deepEqual(withoutUserData(secret), plain);
  });
});
