import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { upcastEvent, type Upcaster } from "../../../src/contracts/index.js";

const v1Started = {
  type: "vm.started",
  version: 1,
  eventId: "e-1",
  vmId: "web-1",
  host: "h1",
  at: "2026-11-25T10:00:01.234Z",
  causationId: "c-1",
  correlationId: null,
  state: "running",
};

describe("upcastEvent", () => {
  it("reads a current event as it is", () => {
    const r = upcastEvent(v1Started);
    assert.ok(r.ok);
    assert.equal(r.event.type, "vm.started");
  });

  it("chains upcasters from an old version to the current one", () => {
    // A made-up history: v0 had `vm` instead of `vmId`, and v0.5 no correlationId.
    const table: Record<string, Upcaster> = {
      "vm.started@0": ({ vm, ...e }) => ({ ...e, vmId: vm, version: 0.5 }),
      "vm.started@0.5": (e) => ({ ...e, correlationId: null, version: 1 }),
    };
    const { vmId, correlationId, ...rest } = v1Started;
    assert.equal(correlationId, null);
    const r = upcastEvent({ ...rest, version: 0, vm: vmId }, table);
    assert.ok(r.ok, r.ok ? "" : r.message);
    assert.deepEqual(r.event, v1Started);
  });

  it("says why an event cannot be read instead of guessing", () => {
    for (const raw of [undefined, null, "text", { ...v1Started, version: 2 }, { type: "vm.x" }]) {
      const r = upcastEvent(raw);
      assert.equal(r.ok, false);
      if (!r.ok) assert.match(r.message, /cannot be read/);
    }
  });
});
