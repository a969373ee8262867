import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Command, type VmEvent } from "../../../src/contracts/index.js";
import { decide, emptyVm, evolve, type Vm } from "../../../src/domain/index.js";
import { silentLogger } from "../../../src/observability/logger.js";
import { ViewProjector, type ViewWriter } from "../../../src/worker/state/view-projector.js";
import type { VmReader } from "../../../src/worker/state/vm-streams.js";

/** The intent of a prepare: enough to give a VM a state, so it has a view record. */
function preparing(vmId: string): VmEvent {
  const command = Command.parse({
    type: "vm.prepare",
    version: 1,
    commandId: `${vmId}-c0`,
    vmId,
    issuedAt: new Date().toISOString(),
    spec: { name: vmId, imagePath: "/images/base.qcow2", vcpus: 1, memoryMb: 256 },
  });
  const d = decide(command, emptyVm(vmId, "h1"), { now: new Date() });
  assert.equal(d.kind, "accept");
  return d.event;
}

/** Records each batch of view writes (one batch per flush) and when it went out. */
class RecordingView implements ViewWriter {
  batches: { at: number; ids: string[] }[] = [];
  #current: string[] = [];
  write(vmId: string): void {
    this.#current.push(vmId);
  }
  flush(): Promise<void> {
    this.batches.push({ at: performance.now(), ids: this.#current });
    this.#current = [];
    return Promise.resolve();
  }
}

/** VMs in a map, each change marked dirty in the projector, as the worker's VmStreams does. */
function registry(view: ViewWriter, backlog?: () => boolean) {
  const vms = new Map<string, Vm>();
  const reader: VmReader = {
    get size() {
      return vms.size;
    },
    lastSeq: 0,
    get: (id) => vms.get(id) ?? emptyVm(id, "h1"),
    has: (id) => vms.has(id),
    all: () => [...vms.values()],
  };
  const projector = new ViewProjector(reader, view, silentLogger(), backlog);
  return {
    apply(event: VmEvent, seq: number): void {
      vms.set(event.vmId, evolve(reader.get(event.vmId), event, seq));
      projector.markDirty(event.vmId);
    },
    markDirty: (id: string) => projector.markDirty(id),
    flushView: () => projector.flush(),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("ViewProjector: the vms view behind the VMs", () => {
  it("coalesces one VM's changes within the window into one write", async () => {
    const view = new RecordingView();
    const reg = registry(view);
    reg.apply(preparing("a"), 1);
    reg.markDirty("a");
    reg.apply(preparing("b"), 2);
    await sleep(100);
    assert.deepEqual(
      view.batches.map((b) => b.ids),
      [["a", "b"]],
    );
  });

  it("widens the window while commands wait for a lane, and narrows it again after", async () => {
    const view = new RecordingView();
    let backlog = true;
    const reg = registry(view, () => backlog);
    // One VM changing every 5 ms, for 600 ms, with a backlog the whole time.
    const t0 = performance.now();
    for (let i = 0; performance.now() - t0 < 600; i++) {
      reg.apply(preparing(`v${i % 3}`), i + 1);
      await sleep(5);
    }
    const busy = view.batches.length;
    // At 25 ms a window, 600 ms would take about 24 writes; doubling (25, 50, 100, 200, ...) far fewer.
    assert.ok(busy >= 2 && busy <= 8, `${busy} flushes under a backlog`);
    await reg.flushView();
    backlog = false;
    const n = view.batches.length;
    const t1 = performance.now();
    for (let i = 0; performance.now() - t1 < 600; i++) {
      reg.apply(preparing("q"), 1_000 + i);
      await sleep(5);
    }
    const quiet = view.batches.slice(n).map((b) => b.at);
    const gaps = quiet.map((at, i) => at - (i === 0 ? t1 : (quiet[i - 1] as number)));
    // Back to 25 ms windows: about 20 flushes in 600 ms. Still wide (1 s), there would be at
    // most one, after a gap of a second. Slow timers only lengthen gaps, so the bounds are loose.
    assert.ok(quiet.length >= 3, `${quiet.length} flushes in 600 ms without a backlog`);
    assert.ok(Math.max(...gaps) < 500, `gaps ${gaps.map(Math.round).join(", ")} ms`);
    await reg.flushView();
  });

  it("flushView() writes what is pending without waiting out the window", async () => {
    const view = new RecordingView();
    const reg = registry(view, () => true);
    // Grow the window: a few flushes under a backlog.
    for (let i = 0; i < 4; i++) {
      reg.apply(preparing("w"), i + 1);
      await reg.flushView();
    }
    for (let i = 0; i < 6; i++) {
      reg.apply(preparing("w"), 10 + i);
      await sleep(30);
    }
    const t0 = performance.now();
    await reg.flushView();
    // The window is 800 ms by now (50, 100, 200, 400, 800), opened about 180 ms ago.
    assert.ok(performance.now() - t0 < 400, "did not wait out the window");
    assert.equal(view.batches.at(-1)?.ids.includes("w"), true);
  });

  it("sends a big batch a chunk per event-loop turn, so the worker's appends can go in between", async () => {
    const writes: string[] = [];
    let afterFirstTurn = -1;
    const view: ViewWriter = {
      write: (vmId) => {
        if (writes.length === 0) setImmediate(() => (afterFirstTurn = writes.length));
        writes.push(vmId);
      },
      flush: () => Promise.resolve(),
    };
    const reg = registry(view);
    for (let i = 0; i < 250; i++) reg.apply(preparing(`c${i}`), i + 1);
    await reg.flushView();
    assert.equal(writes.length, 250, "every record is written");
    assert.equal(afterFirstTurn, 100, "the first turn sent 100 records, not all 250");
  });
});
