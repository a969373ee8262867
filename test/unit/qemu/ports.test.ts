import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  freePort,
  portsHeld,
  releasePort,
} from "../../../src/hypervisor/backends/qemu/qemu-image.js";

describe("SSH forwarding ports", () => {
  it("gives each VM a port of its own and holds one per VM, not one per call", async () => {
    const start = portsHeld();
    const ids = Array.from({ length: 30 }, (_, i) => `pt-${i}`);
    const ports = [];
    for (const id of ids) ports.push(await freePort(id));
    assert.equal(new Set(ports).size, ids.length, "no two VMs share a port");
    assert.equal(portsHeld(), start + ids.length);
    // A VM whose port was busy at start gets a new one and lets go of the old one.
    for (let i = 0; i < 20; i++) await freePort("pt-0");
    assert.equal(portsHeld(), start + ids.length, "reallocating for one VM does not accumulate");
    for (const id of ids) releasePort(id);
    assert.equal(portsHeld(), start, "destroyed VMs give their ports back");
    releasePort("pt-0"); // twice is harmless
    assert.equal(portsHeld(), start);
  });
});
