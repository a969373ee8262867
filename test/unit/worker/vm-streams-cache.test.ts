/**
 * VmStreams as the host's cache of VMs: what readers see (has, all, ids), the highest sequence
 * applied when appends finish out of order, the reload and replay paths and what they tell
 * listeners, and the error of an update that never got through.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VmEvent } from "../../../src/contracts/index.js";
import type { EventStore, StoredEvent } from "../../../src/event-store/event-store.js";
import { InMemoryEventStore } from "../../../src/event-store/in-memory-event-store.js";
import { isVmqError } from "../../../src/lib/errors.js";
import { silentLogger } from "../../../src/observability/logger.js";
import { VmStreams, type Change } from "../../../src/worker/state/vm-streams.js";

let n = 0;
function observedEvent(vmId: string, state: "running" | "stopped" = "running"): VmEvent {
  n++;
  return {
    type: "vm.state-observed",
    version: 1,
    eventId: `${vmId}:obs:${n}`,
    vmId,
    host: "h1",
    at: new Date(Date.UTC(2026, 0, 1, 0, 0, n % 60)).toISOString(),
    causationId: null,
    correlationId: null,
    state,
    observed: state,
    previous: "unknown",
    source: "reconcile",
  };
}

/** An in-memory store whose append answers only when the test lets it (after appending). */
class GatedStore implements EventStore {
  readonly inner = new InMemoryEventStore();
  gate: Promise<void> | undefined;
  async append(event: VmEvent, expectedSeq: number): Promise<number> {
    const seq = await this.inner.append(event, expectedSeq);
    const gate = this.gate;
    this.gate = undefined;
    await gate;
    return seq;
  }
  purgeVm(host: string, vmId: string, throughSeq: number): Promise<number> {
    return this.inner.purgeVm(host, vmId, throughSeq);
  }
  readVm(host: string, vmId: string): Promise<StoredEvent[]> {
    return this.inner.readVm(host, vmId);
  }
  replay(
    host: string,
    afterSeq: number,
    onEvent: (e: StoredEvent) => void,
    signal?: AbortSignal,
  ): Promise<{ lastSeq: number; count: number }> {
    return this.inner.replay(host, afterSeq, onEvent, signal);
  }
}

function streams(store: EventStore = new InMemoryEventStore()) {
  const s = new VmStreams("h1", store, { log: silentLogger() });
  const changes: [string, Change][] = [];
  s.onChange((id, c) => changes.push([id, c]));
  return { s, changes };
}

describe("VmStreams as a cache", () => {
  it("readers see the VMs that have events, and only those", async () => {
    const { s } = streams();
    await s.update("a", () => observedEvent("a"));
    await s.update("b", () => observedEvent("b"));
    await s.update("c", () => undefined);
    assert.equal(s.has("a"), true);
    assert.equal(s.has("c"), false);
    assert.deepEqual([...s.ids()].sort(), ["a", "b"]);
    assert.deepEqual(
      s
        .all()
        .map((vm) => vm.vmId)
        .sort(),
      ["a", "b"],
    );
    assert.equal(s.get("c").state, null, "an unknown VM reads as empty");
  });

  it("lastSeq is the highest sequence applied, also when appends finish out of order", async () => {
    const store = new GatedStore();
    const { s } = streams(store);
    let open = () => {};
    store.gate = new Promise<void>((r) => (open = r));
    const first = s.update("a", () => observedEvent("a")); // seq 1, answered late
    await new Promise((r) => setImmediate(r));
    const second = await s.update("b", () => observedEvent("b")); // seq 2
    assert.equal(second.vm.version, 2);
    open();
    assert.equal((await first).vm.version, 1);
    assert.equal(s.lastSeq, 2);
  });

  it("a reload rebuilds the VM from its stream and says so to listeners", async () => {
    const store = new InMemoryEventStore();
    const { s, changes } = streams(store);
    await s.update("a", () => observedEvent("a"));
    await store.append(observedEvent("a", "stopped"), 1); // another writer
    const vm = await s.reload("a");
    assert.equal(vm.state, "stopped");
    assert.equal(s.get("a").version, 2);
    assert.deepEqual(changes, [
      ["a", "appended"],
      ["a", "reloaded"],
    ]);
  });

  it("replayAll without a snapshot replays the whole stream", async () => {
    const store = new InMemoryEventStore();
    await store.append(observedEvent("a"), 0);
    await store.append(observedEvent("b", "stopped"), 0);
    const { s, changes } = streams(store);
    assert.deepEqual(await s.replayAll(), { lastSeq: 2, count: 2 });
    assert.equal(s.get("b").state, "stopped");
    assert.equal(s.lastSeq, 2);
    assert.deepEqual(changes, [
      ["a", "replayed"],
      ["b", "replayed"],
    ]);
  });

  it("an update that kept meeting other writers fails retryable, naming the VM", async () => {
    const store = new InMemoryEventStore();
    const { s } = streams(store);
    await assert.rejects(
      s.update("a", async () => {
        // every round, someone else gets in first
        const last = (await store.readVm("h1", "a")).at(-1)?.seq ?? 0;
        await store.append(observedEvent("a"), last);
        return observedEvent("a");
      }),
      (e: unknown) => {
        assert.equal(isVmqError(e, "event-store::conflict"), true, String(e));
        assert.equal(isVmqError(e) && e.retryable, true);
        assert.match((e as Error).message, /^VM a kept changing/);
        return true;
      },
    );
  });
});
