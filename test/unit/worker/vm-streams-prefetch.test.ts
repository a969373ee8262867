/**
 * VmStreams.prefetch: the tombstone look-up of a VM the worker does not hold starts when its
 * command is queued, and the VM's lane takes that answer instead of asking again; a held VM,
 * an invalid id or a stale look-up is not used.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VmEvent, VmTombstone } from "../../../src/contracts/index.js";
import type { Vm } from "../../../src/domain/index.js";
import { InMemoryEventStore } from "../../../src/event-store/in-memory-event-store.js";
import { silentLogger } from "../../../src/observability/logger.js";
import type { Tombstones } from "../../../src/worker/ports.js";
import { VmStreams } from "../../../src/worker/state/vm-streams.js";

const HOST = "h1";

const tombstone = (vmId: string): VmTombstone => ({
  version: 1,
  vmId,
  host: HOST,
  destroyedAt: "2026-01-01T00:00:00.000Z",
  compactedAt: "2026-01-02T00:00:00.000Z",
  lastEventSeq: 7,
  seen: ["0123456789abcdef"],
});

/** Tombstones whose answers the test releases by hand. */
class SlowTombstones implements Tombstones {
  readonly map = new Map<string, VmTombstone>();
  asked: string[] = [];
  #release: (() => void)[] = [];
  get(vmId: string): Promise<VmTombstone | undefined> {
    this.asked.push(vmId);
    const answer = this.map.get(vmId); // as the bucket was when asked
    return new Promise((r) => this.#release.push(() => r(answer)));
  }
  put(t: VmTombstone): Promise<void> {
    this.map.set(t.vmId, t);
    return Promise.resolve();
  }
  releaseAll(): void {
    for (const r of this.#release.splice(0)) r();
  }
}

const observed = (vmId: string): VmEvent => ({
  type: "vm.state-observed",
  version: 1,
  eventId: `${vmId}:obs`,
  vmId,
  host: HOST,
  at: "2026-02-01T00:00:00.000Z",
  causationId: null,
  correlationId: null,
  state: "stopped",
  observed: "stopped",
  previous: "unknown",
  source: "reconcile",
});

function setup() {
  const store = new InMemoryEventStore();
  const tombstones = new SlowTombstones();
  const streams = new VmStreams(HOST, store, { log: silentLogger(), tombstones });
  return { store, tombstones, streams };
}

describe("VmStreams.prefetch", () => {
  it("the lane takes the answer asked for when the command was queued: one look-up", async () => {
    const t = setup();
    t.tombstones.map.set("a", tombstone("a"));
    t.streams.prefetch("a");
    t.streams.prefetch("a"); // a second command of the VM queued: no second look-up
    assert.deepEqual(t.tombstones.asked, ["a"]);
    let seen: Vm | undefined;
    const done = t.streams.update("a", (vm) => ((seen = vm), undefined));
    t.tombstones.releaseAll();
    await done;
    assert.deepEqual(t.tombstones.asked, ["a"]);
    assert.equal(seen?.state, "destroyed", "decided on as its tombstone says");
  });

  it("a VM with no tombstone is new, and its later commands need no look-up", async () => {
    const t = setup();
    t.streams.prefetch("b");
    const done = t.streams.update("b", () => observed("b"));
    t.tombstones.releaseAll();
    const { event } = await done;
    assert.equal(event?.type, "vm.state-observed");
    t.streams.prefetch("b");
    assert.deepEqual(t.tombstones.asked, ["b"], "a held VM is not looked up");
  });

  it("a command queued while the VM's first one runs (looked up, not yet appended) asks nothing", async () => {
    const t = setup();
    t.streams.prefetch("d");
    let deciding!: () => void;
    const decided = new Promise<void>((r) => (deciding = r));
    let go!: () => void;
    const gate = new Promise<void>((r) => (go = r));
    const done = t.streams.update("d", async () => {
      deciding();
      await gate;
      return observed("d");
    });
    t.tombstones.releaseAll();
    await decided;
    t.streams.prefetch("d"); // the next command of the VM arrives now
    go();
    await done;
    t.streams.prefetch("d");
    assert.deepEqual(t.tombstones.asked, ["d"]);
  });

  it("an answer is used once: a VM forgotten later is looked up afresh", async () => {
    const t = setup();
    t.streams.prefetch("c");
    const first = t.streams.update("c", () => observed("c"));
    t.tombstones.releaseAll();
    await first;
    // Compacted: the tombstone is written, then the VM forgotten.
    await t.tombstones.put(tombstone("c"));
    t.streams.forget("c");
    let seen: Vm | undefined;
    const again = t.streams.update("c", (vm) => ((seen = vm), undefined));
    await new Promise((r) => setImmediate(r));
    t.tombstones.releaseAll();
    await again;
    assert.deepEqual(t.tombstones.asked, ["c", "c"]);
    assert.equal(seen?.state, "destroyed");
  });

  it("ignores ids that are not VM ids, and does nothing without tombstones", async () => {
    const t = setup();
    t.streams.prefetch("a.b");
    t.streams.prefetch("*");
    assert.deepEqual(t.tombstones.asked, []);
    const bare = new VmStreams(HOST, new InMemoryEventStore(), { log: silentLogger() });
    bare.prefetch("x"); // no tombstones bucket: nothing to ask
    const { vm } = await bare.update("x", () => undefined);
    assert.equal(vm.version, 0);
  });
});
