import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Harness, SPEC, eventually } from "../helpers/worker-harness.js";

const enc = new TextEncoder();

describe("worker: idempotency by commandId, for ever", () => {
  let h: Harness;
  let calls: () => string[];
  before(async () => {
    h = await Harness.start();
    const { noop } = await h.worker();
    calls = () => noop.calls.filter((c) => c.op !== "state").map((c) => `${c.op}:${c.vmId}`);
  });
  after(async () => h.stop());

  it("the same command published twice (same Nats-Msg-Id) has one effect and one outcome", async () => {
    await h.client.send("h1", { type: "vm.prepare", vmId: "idem-1", spec: SPEC });
    const commandId = randomUUID();
    const a = await h.client.publish("h1", { type: "vm.start", vmId: "idem-1", commandId });
    const b = await h.client.publish("h1", { type: "vm.start", vmId: "idem-1", commandId });
    assert.equal(b.duplicate, true);
    assert.equal(a.seq, b.seq);
    await h.client.waitForOutcome("h1", "idem-1", commandId);
    assert.equal(calls().filter((c) => c === "start:idem-1").length, 1);
  });

  it("re-published beyond the duplicate window (another Nats-Msg-Id), it still has no second effect or outcome", async () => {
    await h.client.send("h1", { type: "vm.prepare", vmId: "idem-2", spec: SPEC });
    const r = await h.client.send("h1", { type: "vm.start", vmId: "idem-2" });
    const command = {
      type: "vm.start",
      version: 1,
      commandId: r.commandId,
      vmId: "idem-2",
      issuedAt: new Date().toISOString(),
    };
    // A different msgID defeats JetStream's window: only the VM's history can tell.
    await h.client.js.publish(
      h.client.names.cmd("h1", "idem-2"),
      enc.encode(JSON.stringify(command)),
      { msgID: `again-${r.commandId}` },
    );
    // A marker command behind it proves the worker has processed the replay.
    const marker = await h.client.send("h1", { type: "vm.suspend", vmId: "idem-2" });
    assert.equal(marker.outcome.type, "vm.suspended");
    const history = await h.client.history("h1", "idem-2");
    const forStart = history.filter((e) => e.event.causationId === r.commandId);
    assert.equal(forStart.length, 2, "one intent and one outcome, not two");
    assert.equal(calls().filter((c) => c === "start:idem-2").length, 1);
    await eventually(() => (h.workers[0]?.stats.duplicates ?? 0) >= 1 || undefined);
  });
});
