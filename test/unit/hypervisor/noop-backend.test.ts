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

  it("keeps every call below the bound, and beyond it drops only the oldest", async () => {
    const N = 5;
    const noop = new NoopBackend({ keepCalls: N });
    // One VM per call, so each call can be told apart (and its order seen).
    const made: { op: string; vmId: string }[] = [];
    for (let k = 1; k <= 6 * N; k++) {
      const handle = handleOf(`v${k}`);
      noop.seed(handle, "running");
      await noop.state(handle);
      made.push({ op: "state", vmId: `v${k}` });
      const kept = noop.calls.map((c) => ({ op: c.op, vmId: c.vmId }));
      if (k <= N) {
        assert.deepEqual(kept, made, `with ${k} <= keepCalls calls, all are kept, in order`);
        continue;
      }
      assert.ok(
        kept.length >= N && kept.length <= 2 * N,
        `after ${k} calls it holds between keepCalls and twice that (has ${kept.length})`,
      );
      assert.deepEqual(kept, made.slice(-kept.length), `after ${k} calls: the latest, in order`);
    }
    assert.notDeepEqual(noop.calls[0], made[0], "the oldest calls were dropped");
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
