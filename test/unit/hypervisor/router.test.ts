import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { HypervisorRouter, NoopBackend } from "../../../src/hypervisor/index.js";
import { expectCode } from "../../conformance/hypervisor.conformance.js";

const spec = {
  name: "w",
  imagePath: "/i",
  vcpus: 1,
  memoryMb: 256,
  network: { type: "user" as const },
  uefi: false,
};

/** Noop backends posing as other tags, to see where the router sends calls. */
const TaggedNoop = NoopBackend;
class FakeQemu extends NoopBackend {
  constructor() {
    super({ tag: "qemu", suspend: false });
  }
}

describe("HypervisorRouter", () => {
  it("sends prepare to spec.backend, or to the default", async () => {
    const noop = new TaggedNoop();
    const qemu = new FakeQemu();
    const r = new HypervisorRouter([noop, qemu], "qemu");
    await r.prepare("a", spec);
    assert.deepEqual(
      qemu.calls.map((c) => c.op),
      ["prepare"],
    );
    await r.prepare("b", { ...spec, backend: "noop" });
    assert.deepEqual(
      noop.calls.map((c) => c.op),
      ["prepare"],
    );
  });

  it("dispatches every other call on the handle's tag", async () => {
    const noop = new NoopBackend();
    const r = new HypervisorRouter([noop]);
    const h = await r.prepare("a", spec);
    await r.start(h);
    assert.equal(await r.state(h), "running");
    assert.deepEqual(
      noop.calls.map((c) => c.op),
      ["prepare", "start", "state"],
    );
  });

  it("a tag with no configured backend gives hypervisor::backend-unavailable", async () => {
    const r = new HypervisorRouter([new NoopBackend()]);
    await expectCode(
      r.prepare("a", { ...spec, backend: "propolis" }),
      "hypervisor::backend-unavailable",
    );
    const h = {
      id: "a",
      name: "a",
      backend: "qemu" as const,
      workDir: "/x",
      vcpus: 1,
      memoryMb: 1,
      network: { type: "user" as const },
      uefi: false,
    };
    assert.throws(() => r.consoleEndpoint(h), /not configured/);
    await assert.rejects(
      async () => r.state(h),
      (e: Error & { code?: string }) => e.code === "hypervisor::backend-unavailable",
    );
  });

  it("refuses suspend on a backend without the capability before touching it", async () => {
    const q = new FakeQemu();
    const r = new HypervisorRouter([q]);
    const h = await r.prepare("a", spec);
    await assert.rejects(
      async () => r.suspend(h),
      (e: Error & { code?: string }) => e.code === "hypervisor::unsupported",
    );
    assert.deepEqual(
      q.calls.map((c) => c.op),
      ["prepare"],
    );
  });

  it("refuses a default backend that is not configured", () => {
    assert.throws(() => new HypervisorRouter([new NoopBackend()], "qemu"), /not configured/);
  });
});

describe("NoopBackend fault injection", () => {
  it("fails the next N calls with the given code, then recovers", async () => {
    const b = new NoopBackend();
    b.failNext(2, "hypervisor::timeout", { ops: ["prepare"] });
    await expectCode(b.prepare("a", spec), "hypervisor::timeout");
    await expectCode(b.prepare("a", spec), "hypervisor::timeout");
    const h = await b.prepare("a", spec);
    assert.equal(await b.state(h), "prepared");
  });

  it("reports a vanished VM to watchers and in its state", async () => {
    const b = new NoopBackend();
    const seen: string[] = [];
    b.watch((c) => seen.push(`${c.vmId}:${c.state}:${c.guestInitiated ? "guest" : "crash"}`));
    const h = await b.start(await b.prepare("a", spec));
    b.vanish("a");
    assert.deepEqual(seen, ["a:stopped:crash"]);
    assert.equal(await b.state(h), "stopped");
  });

  it("an unreachable backend fails every call as retryable", async () => {
    const b = new NoopBackend();
    b.setUnreachable();
    await assert.rejects(
      async () => b.prepare("a", spec),
      (e: Error & { code?: string; retryable?: boolean }) =>
        e.code === "hypervisor::unreachable" && e.retryable === true,
    );
  });
});
