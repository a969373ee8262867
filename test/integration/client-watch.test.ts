import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { isVmqError } from "../../src/lib/errors.js";
import { Harness, SPEC } from "../helpers/worker-harness.js";

describe("SDK watch: events are read through the upcasters, and none is skipped silently", () => {
  let h: Harness;
  before(async () => {
    h = await Harness.start();
    await h.worker();
    await h.client.send("h1", { type: "vm.prepare", vmId: "w-1", spec: SPEC });
    // What a newer vmq (event version 2) would have written to the VM's stream.
    await h.client.js.publish(
      h.client.names.evt("h1", "w-1"),
      JSON.stringify({ type: "vm.started", version: 2, eventId: "from-the-future", vmId: "w-1" }),
    );
  });
  after(async () => h.stop());

  it("throws client::unreadable-event on an event it cannot read", async () => {
    const seen: string[] = [];
    await assert.rejects(
      (async () => {
        for await (const { event } of h.client.watch({ host: "h1", vmId: "w-1" }, { toEnd: true }))
          seen.push(event.type);
      })(),
      (e: unknown) => isVmqError(e, "client::unreadable-event") && /v2/.test(e.message),
    );
    assert.deepEqual(seen, ["vm.command-accepted", "vm.prepared"], "the readable ones came first");
  });

  it("with onUnreadable, reports it and goes on", async () => {
    const bad: number[] = [];
    const seen: string[] = [];
    for await (const { event } of h.client.watch(
      { host: "h1", vmId: "w-1" },
      { toEnd: true, onUnreadable: (u) => bad.push(u.seq) },
    ))
      seen.push(event.type);
    assert.deepEqual(seen, ["vm.command-accepted", "vm.prepared"]);
    assert.equal(bad.length, 1);
  });
});
