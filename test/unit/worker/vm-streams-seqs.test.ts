/**
 * The sequences VmStreams knows for each VM, which the compactor deletes one by one instead of
 * a filtered purge: known only when they are all of what the VM's subject holds (a mistake
 * here would delete another VM's events, or leave some of this one's behind).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InMemoryEventStore } from "../../../src/event-store/in-memory-event-store.js";
import { silentLogger } from "../../../src/observability/logger.js";
import { VmStreams } from "../../../src/worker/state/vm-streams.js";
import { eventOf } from "../../conformance/event-store.conformance.js";

const fresh = (store = new InMemoryEventStore()) =>
  new VmStreams("h1", store, { log: silentLogger() });
const seqsOf = async (store: InMemoryEventStore, vmId: string) =>
  (await store.readVm("h1", vmId)).map((e) => e.seq);

describe("VmStreams.eventSeqs", () => {
  it("knows every sequence of a VM whose events it appended, and only that VM's", async () => {
    const store = new InMemoryEventStore();
    const s = fresh(store);
    await s.update("a", () => eventOf("h1", "a", "running"));
    await s.update("b", () => eventOf("h1", "b", "running"));
    await s.update("a", () => eventOf("h1", "a", "stopped"));
    assert.deepEqual(s.eventSeqs("a"), await seqsOf(store, "a"));
    assert.deepEqual(s.eventSeqs("b"), await seqsOf(store, "b"));
    assert.equal(s.eventSeqs("c"), undefined);
  });

  it("knows them after a replay from the stream's start, and after a reload", async () => {
    const store = new InMemoryEventStore();
    const a1 = await store.append(eventOf("h1", "a", "running"), 0);
    await store.append(eventOf("h1", "b", "running"), 0);
    await store.append(eventOf("h1", "a", "stopped"), a1);
    const s = fresh(store);
    await s.replayAll();
    assert.deepEqual(s.eventSeqs("a"), await seqsOf(store, "a"));
    await s.reload("b");
    assert.deepEqual(s.eventSeqs("b"), await seqsOf(store, "b"));
  });

  it("does not claim to know them after a snapshot: neither its VMs nor ones seen first after it", async () => {
    const store = new InMemoryEventStore();
    const a1 = await store.append(eventOf("h1", "a", "running"), 0);
    const b1 = await store.append(eventOf("h1", "b", "running"), 0); // not in the snapshot
    await store.append(eventOf("h1", "a", "stopped"), a1);
    await store.append(eventOf("h1", "b", "stopped"), b1);
    const s = fresh(store);
    const snap = { seq: b1, vms: [{ ...s.get("a"), state: "running" as const, version: a1 }] };
    await s.replayAll(snap);
    assert.equal(s.eventSeqs("a"), undefined, "its earlier events are only in the snapshot");
    assert.equal(s.eventSeqs("b"), undefined, "first seen after the snapshot, not first ever");
    // A VM created after the replay starts at version 0: its list is whole again.
    await s.update("c", () => eventOf("h1", "c", "running"));
    assert.deepEqual(s.eventSeqs("c"), await seqsOf(store, "c"));
  });

  it("forgets the list with the VM, and keeps none for a VM with a long history", async () => {
    const store = new InMemoryEventStore();
    const s = fresh(store);
    await s.update("a", () => eventOf("h1", "a", "running"));
    s.forget("a");
    assert.equal(s.eventSeqs("a"), undefined);
    for (let i = 0; i < 70; i++)
      await s.update("long", () => eventOf("h1", "long", i % 2 ? "running" : "stopped"));
    assert.equal(s.eventSeqs("long"), undefined, "past 64 events the compactor purges by subject");
  });

  it("after a compaction by these sequences the subject is empty and other VMs are whole", async () => {
    const store = new InMemoryEventStore();
    const s = fresh(store);
    for (const st of ["running", "stopped", "running"] as const) {
      await s.update("a", () => eventOf("h1", "a", st));
      await s.update("b", () => eventOf("h1", "b", st));
    }
    const before = await seqsOf(store, "b");
    const gone = await store.purgeVm("h1", "a", s.get("a").version, s.eventSeqs("a"));
    assert.equal(gone, 3);
    assert.deepEqual(await seqsOf(store, "a"), []);
    assert.deepEqual(await seqsOf(store, "b"), before);
  });
});
