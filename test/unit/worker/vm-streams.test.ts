/** The one optimistic-concurrency path: decide, append at the VM's version, reload on conflict. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { VmqError, isVmqError } from "../../../src/lib/errors.js";
import { silentLogger } from "../../../src/observability/logger.js";
import { VmStreams, type Change } from "../../../src/worker/state/vm-streams.js";
import { eventOf } from "../../conformance/event-store.conformance.js";
import { ScriptedStore } from "../../helpers/pipeline-fixture.js";

function streams() {
  const store = new ScriptedStore();
  let conflicts = 0;
  const s = new VmStreams("h1", store, { log: silentLogger(), onConflict: () => conflicts++ });
  const changes: [string, Change][] = [];
  s.onChange((id, c) => changes.push([id, c]));
  return { s, store, changes, conflicts: () => conflicts };
}

describe("VmStreams.update", () => {
  it("appends what decide returns at the VM's version and applies it", async () => {
    const { s, store, changes } = streams();
    const first = await s.update("a", () => eventOf("h1", "a", "running"));
    assert.equal(first.vm.state, "running");
    assert.equal(first.vm.version, 1);
    const second = await s.update("a", (vm) => {
      assert.equal(vm.version, 1, "decide sees the VM as it is now");
      return eventOf("h1", "a", "stopped");
    });
    assert.equal(second.vm.version, 2);
    assert.equal((await store.readVm("h1", "a")).length, 2);
    assert.deepEqual(changes, [
      ["a", "appended"],
      ["a", "appended"],
    ]);
    assert.equal(s.lastSeq, 2);
  });

  it("appends nothing when decide returns nothing", async () => {
    const { s, store, changes } = streams();
    const r = await s.update("a", () => undefined);
    assert.equal(r.event, undefined);
    assert.equal(r.vm.state, null);
    assert.deepEqual(await store.readVm("h1", "a"), []);
    assert.deepEqual(changes, []);
  });

  it("on a conflict reloads the VM from its stream and decides again on what it finds", async () => {
    const { s, store, conflicts } = streams();
    await s.update("a", () => eventOf("h1", "a", "running"));
    // Another writer moves the VM on behind the cache's back.
    await store.inner.append(eventOf("h1", "a", "stopped"), 1);
    const seen: (string | null)[] = [];
    const r = await s.update("a", (vm) => {
      seen.push(vm.state);
      return vm.state === "stopped" ? undefined : eventOf("h1", "a", "stopped");
    });
    assert.deepEqual(seen, ["running", "stopped"], "decided again after the reload");
    assert.equal(r.event, undefined);
    assert.equal(r.vm.version, 2);
    assert.equal(conflicts(), 1);
  });

  it("gives up with event-store::conflict when the VM keeps changing", async () => {
    const { s, store } = streams();
    let rounds = 0;
    await assert.rejects(
      s.update("a", () => {
        rounds++;
        // Every round, someone else gets in first.
        store.beforeNextAppend = async () => {
          const last = (await store.inner.readVm("h1", "a")).at(-1)?.seq ?? 0;
          await store.inner.append(eventOf("h1", "a"), last);
        };
        return eventOf("h1", "a");
      }),
      (e) => isVmqError(e, "event-store::conflict"),
    );
    assert.equal(rounds, 8);
  });

  it("lets any other error through at once", async () => {
    const { s, store } = streams();
    store.failWith = new VmqError("event-store::append-failed", "away");
    let rounds = 0;
    await assert.rejects(
      s.update("a", () => (rounds++, eventOf("h1", "a"))),
      (e) => isVmqError(e, "event-store::append-failed"),
    );
    assert.equal(rounds, 1);
  });
});

describe("VmStreams.replayAll", () => {
  it("starts from a snapshot's VMs and applies only what came after it", async () => {
    const { s, store, changes } = streams();
    await store.append(eventOf("h1", "a", "running"), 0);
    await store.append(eventOf("h1", "b", "running"), 0);
    const snap = { seq: 1, vms: [{ ...s.get("a"), state: "running" as const, version: 1 }] };
    const r = await s.replayAll(snap);
    assert.deepEqual(r, { lastSeq: 2, count: 1 });
    assert.equal(s.size, 2);
    assert.equal(s.get("b").state, "running");
    assert.deepEqual(changes, [["b", "replayed"]]);
  });
});
