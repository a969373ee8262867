import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { CommandType, VmEvent } from "../../src/contracts/index.js";
import { Harness, SPEC, eventually } from "../helpers/worker-harness.js";

const PLAN: CommandType[] = [
  "vm.prepare",
  "vm.start",
  "vm.suspend",
  "vm.resume",
  "vm.stop",
  "vm.start",
  "vm.stop",
  "vm.start",
  "vm.stop",
  "vm.destroy",
];
const OUTCOME: Record<CommandType, VmEvent["type"]> = {
  "vm.prepare": "vm.prepared",
  "vm.start": "vm.started",
  "vm.suspend": "vm.suspended",
  "vm.resume": "vm.resumed",
  "vm.stop": "vm.stopped",
  "vm.destroy": "vm.destroyed",
  "vm.export-disk": "vm.disk-exported",
};

describe("worker at scale: 1,000 VMs x 10 commands, concurrency 16", { timeout: 240_000 }, () => {
  let h: Harness;
  before(async () => {
    h = await Harness.start();
    await h.worker({ concurrency: 16 });
  });
  after(async () => h.stop());

  it("keeps per-VM order, gives every command its outcome, and loses no conflict", async () => {
    const VMS = 1000;
    const sent = new Map<string, string[]>(); // vmId -> commandIds in publish order
    // Round-robin over VMs so every VM's commands interleave with all the others'.
    for (const [step, type] of PLAN.entries()) {
      const batch = [];
      for (let i = 0; i < VMS; i++) {
        const vmId = `s-${i}`;
        const body = type === "vm.prepare" ? { type, vmId, spec: SPEC } : { type, vmId };
        batch.push(
          h.client
            .publish("h1", body as Parameters<typeof h.client.publish>[1])
            .then((r) => ({ vmId, id: r.command.commandId })),
        );
      }
      for (const { vmId, id } of await Promise.all(batch))
        sent.set(vmId, [...(sent.get(vmId) ?? []), id]);
      assert.equal(sent.get("s-0")?.length, step + 1);
    }
    const worker = h.workers[0];
    assert.ok(worker);
    await eventually(
      () => {
        const r = worker.registry;
        if (!r) return undefined;
        return r.all().filter((v) => v.state === "destroyed" && v.pending === null).length === VMS
          ? true
          : undefined;
      },
      200_000,
      "all VMs destroyed",
    );

    // Read the whole event stream back and check each VM's history against what was sent.
    const byVm = new Map<string, VmEvent[]>();
    let total = 0;
    for await (const { event } of h.client.watch(
      { host: "h1" },
      { signal: AbortSignal.timeout(60_000) },
    )) {
      byVm.set(event.vmId, [...(byVm.get(event.vmId) ?? []), event]);
      if (++total === VMS * PLAN.length * 2) break;
    }
    assert.equal(byVm.size, VMS);
    for (const [vmId, events] of byVm) {
      const ids = sent.get(vmId) ?? [];
      assert.equal(
        events.length,
        PLAN.length * 2,
        `${vmId} has one intent and one outcome per command`,
      );
      events.forEach((e, i) => {
        assert.equal(
          e.causationId,
          ids[Math.floor(i / 2)],
          `${vmId} event ${i} follows publish order`,
        );
        const type = PLAN[Math.floor(i / 2)] as CommandType;
        assert.equal(
          e.type,
          i % 2 === 0 ? "vm.command-accepted" : OUTCOME[type],
          `${vmId} event ${i}`,
        );
      });
    }
    assert.equal(worker.stats.conflicts, 0, "a single writer per VM never conflicts");
    assert.equal(worker.stats.total("failed") + worker.stats.total("rejected"), 0);
  });
});
