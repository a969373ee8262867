import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { currentView, names, viewRecordAt, type VmView } from "../../../src/contracts/index.js";

const view = (o: Partial<VmView> = {}): VmView => ({
  vmId: "v1",
  host: "h1",
  state: "running",
  lastEventSeq: 7,
  handle: null,
  pending: null,
  updatedAt: "2026-11-25T11:00:00.000Z",
  ...o,
});

describe("view keys (version 2: <host>.<vmId>)", () => {
  it("names the key after the host and the vmId", () => {
    assert.equal(names("vmq").viewKey("h1", "v1"), "h1.v1");
    assert.equal(names("vmq").leasesBucket, "vmq-leases");
  });

  it("reads a record only under its own key; a record naming another host or vmId is forged", () => {
    assert.deepEqual(viewRecordAt("h1.v1", view()), view());
    assert.equal(viewRecordAt("h1.v1", view({ host: "h2" })), undefined, "h1 claims h2's VM");
    assert.equal(viewRecordAt("h1.v1", view({ vmId: "v2" })), undefined);
    assert.equal(viewRecordAt("h1.v1", { vmId: "v1" }), undefined, "not a record");
  });

  it("reads a v1 record (vmId alone) as its own host's", () => {
    assert.deepEqual(viewRecordAt("v1", view({ host: "h9" })), view({ host: "h9" }));
    assert.equal(viewRecordAt("v2", view()), undefined);
  });

  it("prefers host-keyed records over v1 leftovers, then the latest update", () => {
    const old = view({ host: "h1", updatedAt: "2026-11-25T12:00:00.000Z" });
    const a = view({ host: "h1", state: "destroyed", updatedAt: "2026-11-25T10:00:00.000Z" });
    const b = view({ host: "h2", updatedAt: "2026-11-25T11:00:00.000Z" });
    assert.equal(
      currentView([
        { key: "v1", view: old },
        { key: "h1.v1", view: a },
        { key: "h2.v1", view: b },
      ]),
      b,
    );
    assert.equal(currentView([{ key: "v1", view: old }]), old);
    assert.equal(currentView([]), undefined);
  });
});
