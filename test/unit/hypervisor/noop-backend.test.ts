import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { NoopBackend } from "../../../src/hypervisor/index.js";

const handleOf = (id: string) => ({
  id,
  name: id,
  backend: "noop" as const,
  workDir: `noop://${id}`,
  vcpus: 1,
  memoryMb: 256,
  network: { type: "user" as const },
  uefi: false,
});

describe("NoopBackend call log", () => {
  it("keeps the latest calls in order and stays bounded (a long-running worker reconciles)", async () => {
    const noop = new NoopBackend({ keepCalls: 4 });
    const handle = handleOf("k");
    noop.seed(handle, "running");
    for (let i = 0; i < 50; i++) await noop.state(handle);
    await noop.guestIp(handle);
    assert.ok(noop.calls.length >= 4, `keeps at least keepCalls (has ${noop.calls.length})`);
    assert.ok(noop.calls.length <= 8, `holds at most twice keepCalls (has ${noop.calls.length})`);
    assert.deepEqual(noop.calls.at(-1), { op: "guestIp", vmId: "k" }, "the newest call is last");
  });

  it("keeps every call below the bound", async () => {
    const noop = new NoopBackend();
    const handle = handleOf("a");
    noop.seed(handle, "stopped");
    await noop.state(handle);
    await noop.start(handle);
    assert.deepEqual(
      noop.calls.map((c) => c.op),
      ["state", "start"],
    );
  });
});

describe("NoopBackend destroyed VMs", () => {
  it("forgets a destroyed VM, which still reads as destroyed and can be prepared again", async () => {
    const noop = new NoopBackend();
    const spec = { ...handleOf("d"), imagePath: "/images/d.qcow2" };
    const handle = await noop.prepare("d", spec);
    await noop.start(handle, {});
    await noop.destroy(handle, { timeoutMs: 1_000, force: "never" });
    assert.equal(noop.peek("d"), undefined, "nothing is held for a destroyed VM");
    assert.equal(await noop.state(handle), "destroyed");
    assert.equal(await noop.recorded("d"), undefined);
    // A second destroy is harmless, and the vmId can be used again.
    await noop.destroy(handle, { timeoutMs: 1_000, force: "never" });
    const again = await noop.prepare("d", spec);
    assert.equal(noop.peek(again.id), "prepared");
  });
});
