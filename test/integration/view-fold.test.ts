import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { foldedView } from "../../src/client/view-fold.js";
import { names as namesFor } from "../../src/contracts/index.js";
import { replayVm, toView } from "../../src/domain/index.js";
import { JetStreamEventStore } from "../../src/event-store/jetstream-event-store.js";
import { Harness, SPEC } from "../helpers/worker-harness.js";

/**
 * The SDK's fold of a lagging view record: the record plus the VM's later events must be the
 * record the worker writes next, field for field (it once restarted the event count at the
 * record, which a read-your-writes run caught only when the view happened to lag).
 */
describe("the SDK's fold of a lagging view record", { timeout: 60_000 }, () => {
  let h: Harness;
  before(async () => {
    h = await Harness.start();
    const { worker } = await h.worker({ host: "vf" });
    await h.client.send("vf", { type: "vm.prepare", vmId: "vf-1", spec: SPEC });
    await h.client.send("vf", { type: "vm.start", vmId: "vf-1" });
    await h.client.send("vf", { type: "vm.stop", vmId: "vf-1" });
    await worker.drain();
  });
  after(async () => h.stop());

  it("from every point of the history gives what a full replay gives", async () => {
    const names = namesFor(h.prefix);
    const events = await new JetStreamEventStore(jetstream(h.nc), names).readVm("vf", "vf-1");
    assert.ok(events.length >= 6, `prepare, start and stop: ${events.length} events`);
    const whole = toView(replayVm("vf-1", "vf", events));
    assert.equal(whole?.state, "stopped");
    assert.equal(whole?.eventCount, events.length);
    const jsm = await jetstreamManager(h.nc);
    for (let k = 0; k <= events.length; k++) {
      const from = toView(replayVm("vf-1", "vf", events.slice(0, k)));
      const folded = await foldedView(jsm, names, "vf", "vf-1", from);
      assert.deepEqual(folded, whole, `folded from a record after ${k} events`);
    }
  });

  it("leaves the count out when the record it starts from had none (an older worker's)", async () => {
    const names = namesFor(h.prefix);
    const events = await new JetStreamEventStore(jetstream(h.nc), names).readVm("vf", "vf-1");
    const from = toView(replayVm("vf-1", "vf", events.slice(0, 2)));
    assert.ok(from);
    const { eventCount: _dropped, ...older } = from;
    const folded = await foldedView(await jetstreamManager(h.nc), names, "vf", "vf-1", older);
    assert.equal(folded?.state, "stopped");
    assert.equal(folded && "eventCount" in folded, false);
  });
});
