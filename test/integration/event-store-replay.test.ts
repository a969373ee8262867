import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { names as namesFor } from "../../src/contracts/index.js";
import { JetStreamEventStore } from "../../src/event-store/jetstream-event-store.js";
import { Harness, SPEC } from "../helpers/worker-harness.js";

describe("event store replay", { timeout: 60_000 }, () => {
  let h: Harness;
  before(async () => {
    h = await Harness.start();
    const { worker } = await h.worker({ host: "rp" });
    for (let i = 0; i < 5; i++)
      await h.client.send("rp", { type: "vm.prepare", vmId: `rp-${i}`, spec: SPEC });
    await worker.drain();
  });
  after(async () => h.stop());

  it("stops when its signal is aborted, with the signal's reason, and leaves no consumer behind", async () => {
    const names = namesFor(h.prefix);
    const store = new JetStreamEventStore(jetstream(h.nc), names);
    const all = await store.replay("rp", 0, () => undefined);
    assert.equal(all.count, 10, "5 prepares: an intent and an outcome each");

    const stop = new AbortController();
    const reason = new Error("stop asked for");
    let seen = 0;
    await assert.rejects(
      store.replay(
        "rp",
        0,
        () => {
          if (++seen === 3) stop.abort(reason);
        },
        stop.signal,
      ),
      (e) => e === reason,
    );
    assert.equal(seen, 3, "no event is applied after the abort");
    const jsm = await jetstreamManager(h.nc);
    const left = await jsm.consumers.list(names.eventsStream).next();
    assert.deepEqual(
      left.map((c) => c.name),
      [],
      "the replay's ordered consumer is deleted",
    );
  });
});
