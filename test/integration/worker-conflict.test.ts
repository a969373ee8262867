import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Worker } from "../../src/worker/worker.js";
import { Harness, SPEC, type TestNoop } from "../helpers/worker-harness.js";

describe("worker: another writer touched the VM (a sequence conflict)", () => {
  let h: Harness;
  let worker: Worker;
  let noop: TestNoop;
  before(async () => {
    h = await Harness.start();
    ({ worker, noop } = await h.worker());
  });
  after(async () => h.stop());

  it("reloads the VM and decides again on what the stream says, never overwriting it", async () => {
    await h.client.send("h1", { type: "vm.prepare", vmId: "cf-1", spec: SPEC });
    const started = await h.client.send("h1", { type: "vm.start", vmId: "cf-1" });
    // Someone else (an operator's tool, a second worker by mistake) records that the VM
    // stopped, behind this worker's back: its in-memory VM is now stale.
    const foreign = await h.client.js.publish(
      h.client.names.evt("h1", "cf-1"),
      JSON.stringify({
        type: "vm.state-observed",
        version: 1,
        eventId: "cf-1:foreign",
        vmId: "cf-1",
        host: "h1",
        at: new Date().toISOString(),
        causationId: null,
        correlationId: null,
        state: "stopped",
        observed: "stopped",
        previous: "running",
        source: "reconcile",
      }),
      { expect: { lastSubjectSequence: started.outcomeSeq } },
    );
    const conflicts = worker.stats.conflicts;
    const stops = noop.calls.filter((c) => c.op === "stop" && c.vmId === "cf-1").length;
    // On the stale state (running) a stop would be accepted and run; on the stream's (stopped)
    // it is an illegal transition: the worker must find out before touching the backend.
    const r = await h.client.send("h1", { type: "vm.stop", vmId: "cf-1" });
    assert.equal(r.outcome.type, "vm.command-rejected", JSON.stringify(r.outcome));
    if (r.outcome.type === "vm.command-rejected") {
      assert.equal(r.outcome.code, "command::illegal-transition");
      assert.match(r.outcome.message, /stopped/);
    }
    assert.ok(worker.stats.conflicts > conflicts, "the conflict was seen and handled");
    assert.equal(
      noop.calls.filter((c) => c.op === "stop" && c.vmId === "cf-1").length,
      stops,
      "the backend was not touched",
    );
    const hist = await h.client.history("h1", "cf-1");
    assert.ok(
      hist.some((e) => e.seq === foreign.seq && e.event.eventId === "cf-1:foreign"),
      "the other writer's event is still there",
    );
    assert.deepEqual(
      hist.filter((e) => e.seq > foreign.seq).map((e) => e.event.type),
      ["vm.command-rejected"],
      "nothing was appended on the stale decision",
    );
    assert.equal(worker.registry?.get("cf-1").state, "stopped");
  });
});
