/** The machinery every backend shares (src/hypervisor/backends/shared). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ObservedChange } from "../../../src/hypervisor/index.js";
import { ChangeEmitter } from "../../../src/hypervisor/backends/shared/change-emitter.js";
import { KeyedMutex } from "../../../src/hypervisor/backends/shared/keyed-mutex.js";
import { resolveOptions } from "../../../src/hypervisor/backends/shared/options.js";
import { OwnCalls } from "../../../src/hypervisor/backends/shared/own-calls.js";

const tick = () => new Promise((r) => setImmediate(r));

describe("KeyedMutex", () => {
  it("runs calls on one key one at a time, in order; other keys in parallel; a failure frees the key", async () => {
    const m = new KeyedMutex();
    const log: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const a1 = m.run("a", async () => {
      log.push("a1 in");
      await gate;
      log.push("a1 out");
      throw new Error("a1 failed");
    });
    const a2 = m.run("a", async () => {
      log.push("a2");
      return Promise.resolve(2);
    });
    const b1 = m.run("b", async () => {
      log.push("b1");
      return Promise.resolve(1);
    });
    assert.equal(await b1, 1);
    await tick();
    assert.deepEqual(log, ["a1 in", "b1"], "b ran while a1 held a; a2 waits");
    assert.ok(m.busy("a"));
    release();
    await assert.rejects(a1, /a1 failed/);
    assert.equal(await a2, 2, "the next call runs after a failure");
    assert.deepEqual(log, ["a1 in", "b1", "a1 out", "a2"]);
    assert.equal(m.busy("a"), false, "a key with nothing queued is forgotten");
  });
});

describe("ChangeEmitter", () => {
  it("tells every listener; one that throws is reported and does not stop the others", () => {
    const errors: unknown[] = [];
    const e = new ChangeEmitter((err) => errors.push(err));
    const got: string[] = [];
    const change: ObservedChange = { vmId: "v", backend: "qemu", state: "stopped", source: "qmp" };
    e.watch(() => {
      throw new Error("bad listener");
    });
    const off = e.watch((c) => got.push(c.vmId));
    e.emit(change);
    assert.deepEqual(got, ["v"]);
    assert.equal(errors.length, 1);
    off();
    e.emit(change);
    assert.deepEqual(got, ["v"], "unsubscribed");
  });
});

describe("resolveOptions", () => {
  it("takes the defaults for options not given, or given as undefined", () => {
    const given: { a?: number; b?: string | undefined; c?: boolean; d?: string } = {
      a: 5,
      b: undefined,
      d: "x",
    };
    const o = resolveOptions({ a: 1, b: "two", c: false }, given);
    assert.deepEqual(o, { a: 5, b: "two", c: false, d: "x" });
  });
});

describe("OwnCalls: was this change ours?", () => {
  it("a change while our call runs is ours; after it, only an announced effect until it settles", async () => {
    const own = new OwnCalls();
    assert.equal(own.isOurs("v"), false);
    let during = false;
    await own.run("v", async () => {
      during = own.isOurs("v") && !own.isOurs("w");
      own.expect("v", "halt");
      return Promise.resolve();
    });
    assert.ok(during, "ours while the call runs, for that VM only");
    assert.equal(own.isOurs("v"), false, "a change after the call is not ours...");
    assert.equal(own.isOurs("v", "halt"), true, "...unless it is the effect the call announced");
    own.settle("v");
    assert.equal(own.isOurs("v", "halt"), false, "a fresh run of the VM has nothing pending");
  });

  it("counts overlapping calls, and a call that fails ends too", async () => {
    const own = new OwnCalls();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const long = own.run("v", () => gate);
    await assert.rejects(
      own.run("v", () => Promise.reject(new Error("x"))),
      /x/,
    );
    assert.equal(own.isOurs("v"), true, "the long call still runs");
    release();
    await long;
    assert.equal(own.isOurs("v"), false);
  });
});
