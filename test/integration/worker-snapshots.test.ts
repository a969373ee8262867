import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Kvm } from "@nats-io/kv";
import { emptyVm, toView, type Vm } from "../../src/domain/index.js";
import { SnapshotStore } from "../../src/event-store/snapshots.js";
import type { Worker } from "../../src/worker/worker.js";
import { Harness, SPEC, testNoop } from "../helpers/worker-harness.js";

const SPEC_FULL = { ...SPEC, network: { type: "user" as const }, uefi: false };
const SPEC_HANDLE = {
  name: SPEC.name,
  backend: "noop" as const,
  vcpus: SPEC.vcpus,
  memoryMb: SPEC.memoryMb,
  network: { type: "user" as const },
  uefi: false,
};

/** Everything a restart must get back: the view of each VM and its idempotency set. */
function state(w: Worker): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const vm of w.registry?.all() ?? [])
    out[vm.vmId] = { view: toView(vm) ?? null, seen: [...vm.seenCommands].sort() };
  return out;
}

describe(
  "snapshots: a restart replays only what came after, and gives the same handles",
  { timeout: 120_000 },
  () => {
    let h: Harness;
    const noop = testNoop();
    before(async () => {
      h = await Harness.start();
    });
    after(async () => h.stop());

    const busy = async (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        await h.client.send("sn", { type: "vm.prepare", vmId: `sn-${i}`, spec: SPEC });
        await h.client.send("sn", { type: "vm.start", vmId: `sn-${i}` });
        if (i % 3 === 0) await h.client.send("sn", { type: "vm.suspend", vmId: `sn-${i}` });
        if (i % 5 === 0) await h.client.send("sn", { type: "vm.resume", vmId: `sn-${i}` }); // illegal on some: a rejection
      }
    };
    const start = async (snapshots: "on" | "off") =>
      (await h.worker({ host: "sn", backend: noop, snapshots })).worker;

    it("drain writes a snapshot; the next start uses it and replays nothing", async () => {
      const a = await start("on");
      await busy(0, 20);
      await a.drain(); // drained: every appended event is applied
      const expected = state(a);
      const b = await start("on");
      assert.equal(b.stats.replayFrom, "snapshot");
      assert.equal(b.stats.replayedEvents, 0);
      assert.deepEqual(state(b), expected);
      await b.drain();
    });

    it("snapshot + the events after it equals a full replay", async () => {
      const c = await start("off"); // appends more without writing a snapshot
      await busy(20, 30);
      await h.client.send("sn", { type: "vm.stop", vmId: "sn-1" });
      await c.drain();
      const expected = state(c);
      const d = await start("on");
      assert.equal(d.stats.replayFrom, "snapshot");
      assert.ok(d.stats.replayedEvents > 0, "the tail after the snapshot was replayed");
      assert.deepEqual(state(d), expected);
      await d.drain();
      const e = await start("off");
      assert.equal(e.stats.replayFrom, "full");
      assert.deepEqual(state(e), expected);
      await e.drain();
    });

    it("a corrupt snapshot falls back to a full replay with identical handles", async () => {
      const f = await start("off");
      await f.drain();
      const expected = state(f);
      const kv = await new Kvm(h.nc).open(h.client.names.snapshotsBucket);
      await kv.put("sn.chunk.0", "{ not json");
      const g = await start("on");
      assert.equal(g.stats.replayFrom, "full");
      assert.deepEqual(state(g), expected);
      await g.drain();
      await kv.delete("sn");
      const k = await start("on");
      assert.equal(k.stats.replayFrom, "full", "a missing manifest also means full replay");
      assert.deepEqual(state(k), expected);
    });

    it("a destroyed VM comes back from a snapshot without its cloud-init data, as a replay gives it", async () => {
      // As a snapshot written before destroyed VMs dropped it would hold the VM.
      const handle = { ...SPEC_HANDLE, id: "old-1", workDir: "noop://old-1" };
      const vm: Vm = {
        ...emptyVm("old-1", "old"),
        state: "destroyed",
        version: 4,
        handle,
        spec: {
          ...SPEC_FULL,
          cloudInit: { userData: "#cloud-config\npassword: hunter2\n" },
        },
        seenCommands: new Set(["c1", "c2"]),
      };
      const kv = await new Kvm(h.nc).open(h.client.names.snapshotsBucket);
      await new SnapshotStore(kv).save("old", [vm], ["old-1"], 4);
      const loaded = await new SnapshotStore(kv).load("old");
      assert.ok("vms" in loaded, "the snapshot loads");
      const back = loaded.vms[0];
      assert.equal(back?.spec?.cloudInit, undefined, "no user-data kept for a destroyed VM");
      assert.equal(back?.spec?.name, SPEC_FULL.name, "the rest of the spec stays");
      assert.deepEqual(back?.handle, handle, "and so does the handle");
      assert.deepEqual([...(back?.seenCommands ?? [])], ["c1", "c2"]);
    });
  },
);
