import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { deadlineSignal, untilAborted } from "../../../src/lib/time.js";

/** A stand-in for a fetch's batch: something with stop(). */
const batch = () => {
  const b = { stopped: false, stop: () => void (b.stopped = true) };
  return b;
};

describe("untilAborted", () => {
  it("passes the value through when it comes first, without stopping it", async () => {
    const b = batch();
    const ac = new AbortController();
    assert.equal(await untilAborted(Promise.resolve(b), ac.signal), b);
    assert.equal(b.stopped, false);
  });

  it("gives up on abort, and stops a value that arrives later", async () => {
    const b = batch();
    let resolve: (v: typeof b) => void = () => undefined;
    const pending = new Promise<typeof b>((r) => (resolve = r));
    const ac = new AbortController();
    const r = untilAborted(pending, ac.signal);
    ac.abort();
    assert.equal(await r, undefined);
    resolve(b);
    await pending;
    await new Promise((r) => setImmediate(r));
    assert.equal(b.stopped, true, "the late batch is stopped");
  });

  it("returns at once for a signal that has already aborted", async () => {
    const b = batch();
    assert.equal(await untilAborted(Promise.resolve(b), AbortSignal.abort()), undefined);
    await new Promise((r) => setImmediate(r));
    assert.equal(b.stopped, true);
  });
});

describe("deadlineSignal", () => {
  it("aborts at the deadline, and with its parent; dispose() stops both", async () => {
    const soon = deadlineSignal(new Date(Date.now() + 20));
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(soon.signal.aborted, true);
    assert.equal((soon.signal.reason as Error).name, "TimeoutError");

    const parent = new AbortController();
    const d = deadlineSignal(new Date(Date.now() + 60_000), parent.signal);
    parent.abort(new Error("drained"));
    assert.equal(d.signal.aborted, true);
    assert.equal((d.signal.reason as Error).message, "drained");
    d.dispose();

    const p2 = new AbortController();
    const kept = deadlineSignal(new Date(Date.now() + 20), p2.signal);
    kept.dispose();
    p2.abort();
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(kept.signal.aborted, false, "disposed: neither the timer nor the parent fires it");
  });
});
