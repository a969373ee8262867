/**
 * VmStreams and compacted VMs: a VM the cache does not hold is looked up in the tombstones
 * before anything is decided on it; its first event of a new life is preceded by vm.tombstoned;
 * a reload finds the tombstone when the stream is empty and the stream when it is not; forget
 * drops a VM and says so.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VmEvent, VmTombstone } from "../../../src/contracts/index.js";
import type { Vm } from "../../../src/domain/index.js";
import { InMemoryEventStore } from "../../../src/event-store/in-memory-event-store.js";
import { silentLogger } from "../../../src/observability/logger.js";
import type { Tombstones } from "../../../src/worker/ports.js";
import { VmStreams, type Change } from "../../../src/worker/state/vm-streams.js";

const HOST = "h1";
const DIGEST = "0123456789abcdef";

function tombstone(vmId: string): VmTombstone {
  return {
    version: 1,
    vmId,
    host: HOST,
    destroyedAt: "2026-01-01T00:00:00.000Z",
    compactedAt: "2026-01-02T00:00:00.000Z",
    lastEventSeq: 7,
    seen: [DIGEST],
  };
}

class MapTombstones implements Tombstones {
  readonly map = new Map<string, VmTombstone>();
  asked: string[] = [];
  get(vmId: string): Promise<VmTombstone | undefined> {
    this.asked.push(vmId);
    return Promise.resolve(this.map.get(vmId));
  }
  put(t: VmTombstone): Promise<void> {
    this.map.set(t.vmId, t);
    return Promise.resolve();
  }
}

let n = 0;
function observed(vmId: string): VmEvent {
  n++;
  return {
    type: "vm.state-observed",
    version: 1,
    eventId: `${vmId}:obs:${n}`,
    vmId,
    host: HOST,
    at: "2026-02-01T00:00:00.000Z",
    causationId: null,
    correlationId: null,
    state: "stopped",
    observed: "stopped",
    previous: "unknown",
    source: "reconcile",
  };
}

function setup() {
  const store = new InMemoryEventStore();
  const tombstones = new MapTombstones();
  const streams = new VmStreams(HOST, store, { log: silentLogger(), tombstones });
  const changes: [string, Change][] = [];
  streams.onChange((id, c) => changes.push([id, c]));
  const types = async (vmId: string) =>
    (await store.readVm(HOST, vmId)).map((e) => [e.seq, e.event.type, e.event.eventId]);
  return { store, tombstones, streams, changes, types };
}

describe("VmStreams and tombstones", () => {
  it("a VM it does not hold is decided on as its tombstone says: destroyed, its commands seen", async () => {
    const t = setup();
    t.tombstones.map.set("a", tombstone("a"));
    let seen: Vm | undefined;
    await t.streams.update("a", (vm) => ((seen = vm), undefined));
    assert.equal(seen?.state, "destroyed");
    assert.deepEqual([...(seen?.seenDigests ?? [])], [DIGEST]);
    assert.equal(seen?.version, 0, "nothing of it is on its subject");
    assert.deepEqual(await t.types("a"), [], "deciding nothing writes nothing");
  });

  it("without a tombstone a VM it does not hold is new", async () => {
    const t = setup();
    let seen: Vm | undefined;
    await t.streams.update("b", (vm) => ((seen = vm), undefined));
    assert.equal(seen?.state, null);
    assert.deepEqual(t.tombstones.asked, ["b"]);
  });

  it("the first event of a new life follows vm.tombstoned, once", async () => {
    const t = setup();
    t.tombstones.map.set("a", tombstone("a"));
    const first = observed("a");
    const second = observed("a");
    const one = await t.streams.update("a", () => first);
    await t.streams.update("a", () => second);
    assert.deepEqual(await t.types("a"), [
      [1, "vm.tombstoned", "a:tombstone:7"],
      [2, "vm.state-observed", first.eventId],
      [3, "vm.state-observed", second.eventId],
    ]);
    assert.equal(one.vm.version, 2);
    assert.deepEqual(
      [...(one.vm.seenDigests ?? [])],
      [DIGEST],
      "the new life keeps the old commands",
    );
    assert.deepEqual(t.changes, [
      ["a", "appended"],
      ["a", "appended"],
      ["a", "appended"],
    ]);
  });

  it("a VM it holds is not replaced by a tombstone written meanwhile", async () => {
    const t = setup();
    await t.streams.update("a", () => observed("a"));
    t.tombstones.asked = [];
    t.tombstones.map.set("a", tombstone("a"));
    let seen: Vm | undefined;
    await t.streams.update("a", (vm) => ((seen = vm), undefined));
    assert.equal(seen?.state, "stopped");
    assert.equal(seen?.version, 1);
    assert.deepEqual(t.tombstones.asked, [], "a held VM needs no look-up");
  });

  it("reload: the tombstone when the stream is empty, the stream when it is not", async () => {
    const t = setup();
    t.tombstones.map.set("a", tombstone("a"));
    const gone = await t.streams.reload("a");
    assert.equal(gone.state, "destroyed");
    assert.deepEqual([...(gone.seenDigests ?? [])], [DIGEST]);
    assert.equal(t.streams.has("a"), true);

    t.tombstones.map.set("b", tombstone("b"));
    await t.store.append(observed("b"), 0);
    const back = await t.streams.reload("b");
    assert.equal(back.state, "stopped", "events on the subject win over a tombstone");
    assert.equal(back.version, 1);
    assert.deepEqual(t.changes.at(-1), ["b", "reloaded"]);

    const none = await t.streams.reload("c");
    assert.equal(none.state, null);
    assert.deepEqual(t.changes.at(-1), ["c", "reloaded"]);
  });

  it("forget drops a VM it holds and tells listeners; an unknown one is left unsaid", async () => {
    const t = setup();
    await t.streams.update("a", () => observed("a"));
    t.changes.length = 0;
    t.streams.forget("a");
    assert.equal(t.streams.has("a"), false);
    assert.deepEqual(t.changes, [["a", "forgotten"]]);
    t.streams.forget("a");
    t.streams.forget("zz");
    assert.deepEqual(t.changes, [["a", "forgotten"]]);
  });

  it("a VM revived and forgotten before it was used again gets no vm.tombstoned later", async () => {
    const t = setup();
    t.tombstones.map.set("a", tombstone("a"));
    await t.streams.update("a", () => undefined); // revived, nothing written
    t.streams.forget("a");
    t.tombstones.map.delete("a"); // say the tombstone went too
    const e = observed("a");
    await t.streams.update("a", () => e);
    assert.deepEqual(await t.types("a"), [[1, "vm.state-observed", e.eventId]]);
  });
});
