import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DeadlineSignals, untilAborted } from "../../../src/lib/time.js";

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

describe("DeadlineSignals", () => {
  it("aborts at the deadline (at most one slot late), and with its parent", async () => {
    const soon = new DeadlineSignals(undefined, 10).acquire(new Date(Date.now() + 20));
    assert.equal(soon.signal.aborted, false);
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(soon.signal.aborted, true);
    assert.equal((soon.signal.reason as Error).name, "TimeoutError");

    const parent = new AbortController();
    const d = new DeadlineSignals(parent.signal).acquire(new Date(Date.now() + 60_000));
    parent.abort(new Error("drained"));
    assert.equal(d.signal.aborted, true);
    assert.equal((d.signal.reason as Error).message, "drained");
    d.dispose();

    const late = new DeadlineSignals(parent.signal).acquire(new Date(Date.now() + 60_000));
    assert.equal(late.signal.aborted, true, "a parent that already aborted aborts new slots");
    late.dispose();
  });

  it("shares one signal per slot; a slot nobody holds lingers, then is cleared", async () => {
    const p = new AbortController();
    const ds = new DeadlineSignals(p.signal, 1_000, 40);
    const at = new Date(Math.ceil(Date.now() / 1_000) * 1_000 + 30_000);
    const a = ds.acquire(at);
    const b = ds.acquire(new Date(at.getTime() - 500));
    const other = ds.acquire(new Date(at.getTime() + 5_000));
    assert.equal(a.signal, b.signal, "deadlines in one slot share a signal");
    assert.notEqual(a.signal, other.signal);
    assert.equal(ds.size, 2);
    a.dispose();
    a.dispose(); // twice counts once
    b.dispose();
    // A fast backend's calls do not overlap: the next one in the slot reuses it.
    const again = ds.acquire(at);
    assert.equal(again.signal, a.signal, "a slot let go of a moment ago is reused");
    again.dispose();
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(ds.size, 1, "the idle slot is cleared after the linger; the held one stays");
    assert.notEqual(ds.acquire(at).signal, a.signal, "a cleared slot is not reused");
    p.abort(new Error("drained"));
    assert.equal(a.signal.aborted, false, "cleared: the parent no longer reaches it");
    assert.equal(other.signal.aborted, true, "held slots abort with the parent");
    assert.equal(ds.size, 0);
    other.dispose();
  });

  it("aborts a slot at its end even while nobody holds it, and then lets it go", async () => {
    const ds = new DeadlineSignals(undefined, 10, 60_000);
    const d = ds.acquire(new Date(Date.now() + 15));
    d.dispose();
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(d.signal.aborted, true);
    assert.equal(ds.size, 0, "an ended slot leaves the map");
  });

  it("a past deadline gets a signal that has already aborted, so no call starts", () => {
    const d = new DeadlineSignals().acquire(new Date(Date.now() - 1_000));
    assert.equal(d.signal.aborted, true);
    assert.equal((d.signal.reason as Error).name, "TimeoutError");
    d.dispose();
  });
});
